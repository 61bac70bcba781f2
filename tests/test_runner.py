"""The grid runner end to end: real HTTP to the local fake server, real DuckDB files, real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

import workbench as wb
from workbench.errors import ModelFatalError, TemplateError

ROOT = Path(__file__).resolve().parents[1]


def _cases(n: int = 12) -> list[dict[str, str]]:
    """Half the gold answers appear in the question (so the echo server 'answers' them), half do not."""
    out = []
    for i in range(n):
        gold = f"token{i}" if i % 2 == 0 else f"absent{i}"
        out.append({"qid": f"q{i}", "query": f"What is the value number {i}? hint token{i}", "gold_answer": gold})
    return out


def _model(server, **kw):
    return {
        "name": "fake",
        "model": "openai/test-model",
        "api_base": server.base_url,
        "params": {"temperature": 0},
        "retry_base": 0.05,
        **kw,
    }


def _experiment(ws, server, prompts=None, models=None, metrics=None, n=12, **kw):
    ds = ws.add_dataset("qa", _cases(n), id="qid")
    prompts = prompts or [
        wb.Prompt("terse", "Question: {{ query }}", "You answer questions."),
        wb.Prompt("polite", "Please answer: {{ query }}"),
    ]
    models = models or [_model(server)]
    metrics = (
        metrics
        if metrics is not None
        else [{"name": "token_f1", "expected": "gold_answer"}, {"name": "contains", "expected": "gold_answer"}]
    )
    return ws.experiment(ds, prompts, models, metrics, **kw)


def test_grid_scores_and_stores_every_cell(tmp_path, fake_llm):
    ws = wb.open(tmp_path / "ws")
    run = _experiment(ws, fake_llm).run(progress=False)
    assert fake_llm.stats()["chat"] == 24
    res = run.results()
    assert len(res) == 24
    assert set(res["variant"]) == {"terse", "polite"}
    assert res["error"].isna().all()
    assert not res["cached"].any()
    # the server echoes the last user message: check the stored output is what went over the wire
    terse = res[res.variant == "terse"].set_index("case_id")
    assert terse.loc["q3", "output"] == "echo: Question: What is the value number 3? hint token3"
    assert terse.loc["q3", "messages"][0] == {"role": "system", "content": "You answer questions."}
    # contains: 1 exactly for even cases, whose gold token is in the question
    expected_contains = {f"q{i}": float(i % 2 == 0) for i in range(12)}
    assert terse["contains"].to_dict() == expected_contains
    # usage from the server: whitespace words
    assert terse.loc["q3", "completion_tokens"] == len(terse.loc["q3", "output"].split())
    board = run.leaderboard()
    assert list(board["variant"]) == ["terse", "polite"]
    assert board["n"].tolist() == [12, 12]
    assert board["contains"].tolist() == [0.5, 0.5]
    assert board["latency_p95_ms"].notna().all()
    assert run.status == "completed"


def test_cached_rerun_makes_zero_requests(tmp_path, fake_llm):
    ws = wb.open(tmp_path / "ws")
    first = _experiment(ws, fake_llm).run(progress=False)
    before = fake_llm.stats()["requests"]
    second = _experiment(ws, fake_llm).run(progress=False)
    assert fake_llm.stats()["requests"] == before
    assert second.last.model_calls == 0 and second.last.cached == 24
    a = first.results().set_index(["case_id", "variant"])
    b = second.results().set_index(["case_id", "variant"])
    assert (a["output"] == b.loc[a.index, "output"]).all()
    assert b["cached"].all()


def test_identical_requests_are_sent_once(tmp_path, fake_llm):
    ws = wb.open(tmp_path / "ws")
    same = [wb.Prompt("a", "Q: {{ query }}"), wb.Prompt("b", "Q: {{ query }}")]
    run = _experiment(ws, fake_llm, prompts=same).run(progress=False)
    assert fake_llm.stats()["chat"] == 12
    assert len(run.results()) == 24


def test_repeats_are_distinct_requests(tmp_path, fake_llm):
    ws = wb.open(tmp_path / "ws")
    run = _experiment(ws, fake_llm, n=4, repeats=3).run(progress=False)
    assert fake_llm.stats()["chat"] == 4 * 2 * 3
    res = run.results()
    assert sorted(res["repeat"].unique().tolist()) == [0, 1, 2]
    assert res["request_key"].nunique() == 24


def test_template_errors_are_reported_before_any_request(tmp_path, fake_llm):
    ws = wb.open(tmp_path / "ws")
    prompts = [wb.Prompt("ok", "{{ query }}"), wb.Prompt("typo", "{{ querry }}"), wb.Prompt("typo2", "{{ gold }}")]
    with pytest.raises(TemplateError) as err:
        _experiment(ws, fake_llm, prompts=prompts).run(progress=False)
    message = str(err.value)
    assert "'typo'" in message and "querry" in message and "'typo2'" in message and "gold" in message
    assert "q0" in message
    assert fake_llm.stats()["requests"] == 0
    assert len(ws.runs()) == 0


@pytest.mark.parametrize("client", ["openai", "litellm"])  # both routes of the gateway behave the same
def test_auth_error_stops_the_run_early_and_resume_finishes_it(tmp_path, fake_llm, monkeypatch, client):
    fake_llm.configure(auth_key="sk-good", latency=0.02)
    monkeypatch.setenv("WB_TEST_KEY", "sk-wrong")
    ws = wb.open(tmp_path / "ws")
    model = _model(fake_llm, api_key_env="WB_TEST_KEY", client=client)
    exp = _experiment(ws, fake_llm, models=[model], n=40, concurrency=4)
    with pytest.raises(ModelFatalError) as err:
        exp.run(progress=False)
    assert "WB_TEST_KEY" in str(err.value) and "authentication" in str(err.value)
    # at most one request per worker was in flight when the first 401 came back
    assert fake_llm.stats()["requests"] <= 4
    run_id = ws.runs()["run_id"][0]
    run = ws.get_run(run_id)
    assert run.status == "failed"
    assert len(run.results()) == 0  # fatal errors are not stored as failed cells
    monkeypatch.setenv("WB_TEST_KEY", "sk-good")
    run.resume(progress=False)
    assert run.status == "completed"
    res = run.results()
    assert len(res) == 80 and res["error"].isna().all()
    # the key is never written to the workspace
    raw = (tmp_path / "ws" / "workspace.duckdb").read_bytes()
    assert b"sk-good" not in raw and b"sk-wrong" not in raw


@pytest.mark.parametrize("client", ["openai", "litellm"])  # both routes of the gateway behave the same
def test_unknown_model_stops_with_one_clear_error(tmp_path, fake_llm, client):
    fake_llm.configure(unknown_models=["test-model"])
    ws = wb.open(tmp_path / "ws")
    with pytest.raises(ModelFatalError, match="not found"):
        _experiment(ws, fake_llm, n=30, concurrency=2, models=[_model(fake_llm, client=client)]).run(progress=False)
    assert fake_llm.stats()["requests"] <= 2


@pytest.mark.parametrize("client", ["openai", "litellm"])  # both routes of the gateway behave the same
def test_rate_limit_honours_retry_after(tmp_path, fake_llm, client):
    fake_llm.configure(script=[{"status": 429, "retry_after": 0.6, "count": 1}])
    ws = wb.open(tmp_path / "ws")
    exp = _experiment(ws, fake_llm, n=1, prompts=[wb.Prompt("p", "{{ query }}")], concurrency=1,
                      models=[_model(fake_llm, client=client)])
    start = time.perf_counter()
    run = exp.run(progress=False)
    elapsed = time.perf_counter() - start
    assert run.results()["error"].isna().all()
    assert fake_llm.stats()["requests"] == 2
    assert run.last.retries == 1
    assert elapsed >= 0.6  # waited as the server asked, not the 0.05 s backoff


@pytest.mark.parametrize(
    "step", [{"status": 500, "count": 2}, {"malformed": True, "count": 1}, {"hang": 3.0, "count": 1}]
)
@pytest.mark.parametrize("client", ["openai", "litellm"])  # both routes of the gateway behave the same
def test_transient_failures_are_retried(tmp_path, fake_llm, step, client):
    fake_llm.configure(script=[step])
    ws = wb.open(tmp_path / "ws")
    exp = _experiment(
        ws,
        fake_llm,
        n=3,
        prompts=[wb.Prompt("p", "{{ query }}")],
        models=[_model(fake_llm, timeout=1.0, client=client)],
        concurrency=1,
    )
    run = exp.run(progress=False)
    assert run.results()["error"].isna().all()
    assert fake_llm.stats()["requests"] == 3 + step["count"]


@pytest.mark.parametrize("client", ["openai", "litellm"])  # both routes of the gateway behave the same
def test_persistent_failure_is_recorded_per_cell_and_other_variants_go_on(tmp_path, fake_llm, client):
    fake_llm.configure(fail_models={"broken-model": 500})
    ws = wb.open(tmp_path / "ws")
    models = [_model(fake_llm, client=client),
              _model(fake_llm, name="broken", model="openai/broken-model", max_retries=1, client=client)]
    run = _experiment(ws, fake_llm, n=5, prompts=[wb.Prompt("p", "{{ query }}")], models=models).run(progress=False)
    res = run.results()
    broken = res[res.variant == "p/broken"]
    good = res[res.variant == "p/fake"]
    assert broken["error"].notna().all() and broken["error"].str.contains("after 2 attempts").all()
    assert good["error"].isna().all() and good["output"].str.startswith("echo:").all()
    board = run.leaderboard().set_index("variant")
    assert board.loc["p/broken", "errors"] == 5 and board.loc["p/fake", "errors"] == 0
    assert fake_llm.stats()["by_model"]["broken-model"] == 10


def _quiet(server) -> None:
    """Wait until requests abandoned by earlier tests (client timeouts) have left the server."""
    deadline = time.monotonic() + 10
    while server.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    server.reset()


@pytest.mark.parametrize("client", ["openai", "litellm"])  # both routes of the gateway behave the same
def test_per_model_concurrency_limit(tmp_path, fake_llm, client):
    _quiet(fake_llm)
    fake_llm.configure(latency=0.1)
    ws = wb.open(tmp_path / "ws")
    _experiment(ws, fake_llm, n=10, models=[_model(fake_llm, max_concurrency=2, client=client)], concurrency=8).run(
        progress=False)
    assert fake_llm.stats()["max_in_flight"] == 2
    fake_llm.reset()
    fake_llm.configure(latency=0.1)
    ws2 = wb.open(tmp_path / "ws2")
    _experiment(ws2, fake_llm, n=10, concurrency=8).run(progress=False)
    assert fake_llm.stats()["max_in_flight"] > 2


def test_failing_metric_records_error_for_that_cell_only(tmp_path, fake_llm):
    @wb.metric(name="fragile")
    def fragile(output: str) -> float:
        if "number 3" in output:
            raise RuntimeError("cannot score this one")
        return 1.0

    ws = wb.open(tmp_path / "ws")
    run = _experiment(ws, fake_llm, n=5, metrics=["fragile", {"name": "contains", "expected": "gold_answer"}]).run(
        progress=False
    )
    res = run.results().set_index(["case_id", "variant"])
    assert pd_isna(res.loc[("q3", "terse"), "fragile"])
    assert "cannot score this one" in res.loc[("q3", "terse"), "fragile_error"]
    assert res.drop(index="q3", level=0)["fragile"].eq(1.0).all()
    assert res["contains"].notna().all()
    assert run.summary()["metric_errors"] == {"fragile": 2}


def pd_isna(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_variant_names(tmp_path, fake_llm):
    ws = wb.open(tmp_path / "ws")
    two_models = [_model(fake_llm), _model(fake_llm, name="other", params={"temperature": 0.5})]
    exp = _experiment(ws, fake_llm, models=two_models)
    assert [v.name for v in exp.variants] == ["terse/fake", "terse/other", "polite/fake", "polite/other"]
    exp = _experiment(
        ws,
        fake_llm,
        models=two_models,
        variants=[{"name": "best", "prompt": "terse", "model": "other"}, {"prompt": "polite", "model": "fake"}],
    )
    assert [v.name for v in exp.variants] == ["best", "polite/fake"]


# ------------------------------------------------------------------------------------------------
# processes: kill -9, Ctrl-C, CLI


def _write_spec(tmp_path: Path, server, n: int, concurrency: int = 4) -> Path:
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in _cases(n)))
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""
dataset: {{name: covid, path: qa.jsonl, id: qid}}
prompts:
  - {{name: terse, system: "You answer questions.", user: "Question: {{{{ query }}}}"}}
  - {{name: polite, user: "Please answer: {{{{ query }}}}"}}
models:
  - {{name: local, model: openai/test-model, api_base: "{server.base_url}", params: {{temperature: 0}}}}
metrics:
  - {{name: token_f1, expected: gold_answer}}
  - {{name: contains, expected: gold_answer}}
concurrency: {concurrency}
""")
    return spec


def _llmops(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, timeout=120, **kw
    )


def _stored(ws_dir: Path) -> tuple[int, int]:
    """(cells, distinct cells) read straight from the file, retrying while the runner holds the lock."""
    for _ in range(200):
        try:
            con = duckdb.connect(str(ws_dir / "workspace.duckdb"))
        except duckdb.IOException:
            time.sleep(0.02)
            continue
        try:
            return con.execute(
                "SELECT count(*), count(DISTINCT (run_id, case_id, variant, repeat)) FROM cells"
            ).fetchall()[0]
        except duckdb.CatalogException:
            return (0, 0)
        finally:
            con.close()
    raise AssertionError("workspace stayed locked")


def test_cli_run_json_and_results(tmp_path, fake_llm):
    spec = _write_spec(tmp_path, fake_llm, 6)
    ws_dir = tmp_path / "ws"
    out = _llmops("run", str(spec), "--workspace", str(ws_dir), "--json", "--no-progress")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["cells"] == 12 and summary["failed"] == 0 and summary["model_calls"] == 12
    assert {row["variant"] for row in summary["leaderboard"]} == {"terse", "polite"}
    again = json.loads(_llmops("run", str(spec), "-w", str(ws_dir), "--json", "--no-progress").stdout)
    assert again["cached"] == 12 and again["model_calls"] == 0
    res = _llmops("results", summary["run_id"], "-w", str(ws_dir), "--format", "json")
    rows = json.loads(res.stdout)
    assert len(rows) == 12
    assert {"case_id", "variant", "output", "error", "token_f1", "contains"} <= set(rows[0])
    csv_file = tmp_path / "out.csv"
    assert (
        _llmops("results", summary["run_id"], "-w", str(ws_dir), "--format", "csv", "-o", str(csv_file)).returncode == 0
    )
    assert csv_file.read_text().splitlines()[0].startswith("case_id,variant,repeat,prompt,output")
    pq = tmp_path / "out.parquet"
    assert (
        _llmops("results", summary["run_id"], "-w", str(ws_dir), "--format", "parquet", "-o", str(pq)).returncode == 0
    )
    import pandas as pd

    assert len(pd.read_parquet(pq)) == 12
    runs = json.loads(_llmops("runs", "-w", str(ws_dir), "--json").stdout)
    assert len(runs) == 2


def test_cli_bad_spec_names_the_key(tmp_path, fake_llm):
    spec = _write_spec(tmp_path, fake_llm, 2)
    spec.write_text(spec.read_text().replace("params:", "parms:"))
    out = _llmops("run", str(spec), "-w", str(tmp_path / "ws"))
    assert out.returncode == 2
    assert "models[0].parms: unknown key" in out.stderr
    assert fake_llm.stats()["requests"] == 0


def test_kill_9_then_resume_stores_every_cell_once(tmp_path, fake_llm):
    fake_llm.configure(latency=0.15)
    n = 30
    spec = _write_spec(tmp_path, fake_llm, n, concurrency=2)
    ws_dir = tmp_path / "ws"
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "run", str(spec), "-w", str(ws_dir), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            stored, _ = _stored(ws_dir) if (ws_dir / "workspace.duckdb").exists() else (0, 0)
            if stored >= 6:
                break
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    stored, distinct = _stored(ws_dir)
    assert 0 < stored < 2 * n and stored == distinct
    fake_llm.configure(latency=0.0)
    before = fake_llm.stats()["requests"]  # counted on arrival, so the killed process's calls are all in
    ws = wb.open(ws_dir)
    run = ws.get_run(ws.runs()["run_id"][0])
    assert run.status == "interrupted"  # it died without saying so: its owner process is gone
    run.resume(progress=False)
    assert run.status == "completed"
    total, distinct = _stored(ws_dir)
    assert total == distinct == 2 * n
    # exactly the missing cells were asked for
    assert fake_llm.stats()["requests"] - before == 2 * n - stored


def test_ctrl_c_leaves_a_resumable_run(tmp_path, fake_llm):
    fake_llm.configure(latency=0.2)
    spec = _write_spec(tmp_path, fake_llm, 30, concurrency=2)
    ws_dir = tmp_path / "ws"
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "run", str(spec), "-w", str(ws_dir), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and fake_llm.stats()["chat"] < 6:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    ws = wb.open(ws_dir)
    run = ws.get_run(ws.runs()["run_id"][0])
    assert run.status == "interrupted"
    stored, distinct = _stored(ws_dir)
    assert 0 < stored < 60 and stored == distinct
    fake_llm.configure(latency=0.0)
    out = _llmops("resume", run.run_id, "-w", str(ws_dir), "--json", "--no-progress")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "completed"
    assert _stored(ws_dir) == (60, 60)


def test_cached_rerun_scores_in_batch_with_identical_results(tmp_path, fake_llm):
    """A cached re-run scores similarity metrics vectorised; the values must equal the per-cell path's."""
    from workbench.metrics.registry import get

    assert get("rouge_l").batch is not None and get("chrf").batch is not None
    ws = wb.open(tmp_path / "ws")
    metrics = [{"name": n, "expected": "gold_answer"} for n in ("rouge1", "rouge_l", "chrf", "edit_similarity")]
    metrics.append({"name": "rouge2", "expected": "gold_answer", "use_stemmer": False})
    first = _experiment(ws, fake_llm, metrics=metrics).run(progress=False)  # live calls: scored cell by cell
    second = _experiment(ws, fake_llm, metrics=metrics).run(progress=False)  # all cached: scored in batches
    assert second.last.cached == 24
    a = first.results().set_index(["case_id", "variant"]).sort_index()
    b = second.results().set_index(["case_id", "variant"]).sort_index()
    for name in ("rouge1", "rouge_l", "chrf", "edit_similarity", "rouge2"):
        assert a[name].notna().all()
        assert (a[name] - b[name]).abs().max() < 1e-12, name
    details = ws.sql("SELECT run_id, detail FROM scores WHERE metric = 'rouge_l' ORDER BY case_id, variant")
    by_run = details.groupby("run_id")["detail"].apply(list)
    assert by_run[first.run_id] == by_run[second.run_id]
