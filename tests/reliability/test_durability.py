"""Nothing paid is lost to a lock; runs know whether they are alive; failures show in exit codes; no secrets."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

import workbench as wb
from workbench.errors import ModelFatalError, RunInProgressError, SpecError

from .helpers import db_rows, secrets_in

HOLDER = (
    "import duckdb, os, sys, time\n"
    "while True:\n"
    "    try:\n"
    "        con = duckdb.connect(sys.argv[1]); break\n"
    "    except duckdb.IOException:\n"
    "        time.sleep(0.002)\n"
    "open(sys.argv[2], 'w').close()\n"
    "while not os.path.exists(sys.argv[3]):\n"
    "    time.sleep(0.02)\n"
    "con.close()\n"
)


def _cases(ws: wb.Workspace, n: int, name: str = "qs") -> wb.Dataset:
    return ws.add_dataset(name, [{"id": f"c{i}", "question": f"question number {i}"} for i in range(n)], id="id")


def _model(server, **kw):  # type: ignore[no-untyped-def]
    return {"name": kw.pop("name", "m"), "model": "openai/test-model", "api_base": server.base_url, **kw}


def _hold(ws_dir: Path, tmp: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    held, release = tmp / "held", tmp / "release"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(ws_dir / "workspace.duckdb"), str(held), str(release)])
    return proc, held, release


def test_a_workspace_held_past_the_lock_timeout_loses_no_paid_response(tmp_path, fake_llm, monkeypatch):
    monkeypatch.setenv("LLMOPS_LOCK_TIMEOUT", "1")
    fake_llm.configure(latency=0.01)
    ws = wb.open(tmp_path / "ws")
    exp = ws.experiment(_cases(ws, 150), [wb.Prompt("p", "Q: {{ question }}")], [_model(fake_llm)], concurrency=8)
    from workbench.llm import litellm_module

    litellm_module()
    box: dict[str, object] = {}

    def target() -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            box["run"] = exp.run(progress=False)
        box["warnings"] = [str(w.message) for w in caught]

    runner = threading.Thread(target=target)
    runner.start()
    while fake_llm.stats()["chat"] < 20:
        time.sleep(0.01)
    holder, held, release = _hold(ws.path, tmp_path)
    try:
        while not held.exists():
            time.sleep(0.01)
        runner.join(timeout=240)  # the run ends while the other process still holds the workspace
        assert not runner.is_alive()
        spilled = list((ws.path / "artifacts" / "journal").glob("*.jsonl"))
        assert spilled, "the last batches must wait in the journal"
        assert any("stored the next time the workspace is opened" in w for w in box["warnings"])  # type: ignore[attr-defined]
    finally:
        release.touch()
        holder.wait(30)
    answered = fake_llm.stats()["answered"]
    reopened = wb.open(ws.path)  # the next open merges the journal
    assert not list((ws.path / "artifacts" / "journal").glob("*.jsonl"))
    stored = reopened.sql("SELECT count(*) AS n FROM responses")["n"][0]
    assert answered == 150 and stored == answered, "paid responses lost"
    runs = reopened.runs()
    assert runs["status"][0] == "completed" and runs["done"][0] == 150
    print(f"\npaid responses: {answered}, stored: {stored}, lost: {answered - stored}")


def test_kill_9_while_the_workspace_is_held_keeps_every_journaled_batch(tmp_path, fake_llm):
    fake_llm.configure(latency=0.1)  # ~10 s of calls: the kill must land while the run is still paying for calls
    ws_dir = tmp_path / "ws"
    ws = wb.open(ws_dir)
    _cases(ws, 400)
    spec = tmp_path / "s.yaml"
    spec.write_text(json.dumps({
        "dataset": {"name": "qs"}, "prompts": [{"name": "p", "user": "Q: {{ question }}"}],
        "models": [_model(fake_llm)], "concurrency": 4,
    }))
    env = {**os.environ, "LLMOPS_LOCK_TIMEOUT": "1"}
    argv = [sys.executable, "-m", "workbench.cli", "run", str(spec), "-w", str(ws_dir), "--no-progress"]
    run = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    while fake_llm.stats()["chat"] < 10:
        assert run.poll() is None, run.stderr.read().decode()  # type: ignore[union-attr]
        time.sleep(0.01)
    holder, held, release = _hold(ws_dir, tmp_path)
    journal = ws_dir / "artifacts" / "journal"
    try:
        deadline = time.monotonic() + 120
        while sum(p.read_bytes().count(b"\n") for p in journal.glob("*.jsonl")) < 3:
            assert time.monotonic() < deadline and run.poll() is None
            time.sleep(0.05)
        journaled = set()
        for p in journal.glob("*.jsonl"):
            from workbench.journal import decode

            for rec in decode(p.read_bytes())[0]:
                journaled |= {r["request_key"] for r in rec.get("responses", [])}  # a "finish" record has none
        run.send_signal(signal.SIGKILL)
        run.wait(30)
    finally:
        release.touch()
        holder.wait(30)
    reopened = wb.open(ws_dir)
    keys = set(reopened.sql("SELECT request_key FROM responses")["request_key"])
    assert journaled and journaled <= keys, "a journaled (paid) response was lost"
    run_id = reopened.runs()["run_id"][0]
    assert reopened.runs()["status"][0] == "interrupted"
    reopened.get_run(run_id).resume(progress=False)
    total, distinct = db_rows(ws_dir, "SELECT count(*), count(DISTINCT case_id) FROM cells")[0]
    assert total == distinct == 400


def test_a_live_run_is_not_resumed_twice_and_a_dead_one_shows_interrupted(tmp_path, fake_llm):
    fake_llm.configure(latency=1.5)  # the owner is busy for ~30 s: long enough to try resuming it
    ws_dir = tmp_path / "ws"
    ws = wb.open(ws_dir)
    _cases(ws, 40)
    spec = tmp_path / "s.yaml"
    spec.write_text(json.dumps({
        "dataset": {"name": "qs"}, "prompts": [{"name": "p", "user": "Q: {{ question }}"}],
        "models": [_model(fake_llm)], "concurrency": 2,
    }))
    owner = subprocess.Popen([sys.executable, "-m", "workbench.cli", "run", str(spec), "-w", str(ws_dir),
                              "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while fake_llm.stats()["chat"] < 2:
            assert owner.poll() is None, owner.stderr.read().decode()  # type: ignore[union-attr]
            time.sleep(0.02)
        runs = ws.runs()
        assert runs["status"][0] == "running" and runs["owner"][0].endswith(f":{owner.pid}")
        run = ws.get_run(runs["run_id"][0])
        with pytest.raises(RunInProgressError, match=f"process {owner.pid}"):
            run.resume(progress=False)
        with pytest.raises(RunInProgressError):  # --force never overrides a live process on this host
            run.resume(progress=False, force=True)
        cli = subprocess.run([sys.executable, "-m", "workbench.cli", "resume", run.run_id, "-w", str(ws_dir)],
                             capture_output=True, text=True, timeout=120)
        assert cli.returncode == 2 and f"process {owner.pid}" in cli.stderr and "Traceback" not in cli.stderr
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(30)
    finally:
        if owner.poll() is None:
            owner.kill()
    runs = ws.runs()
    assert runs["status"][0] == "interrupted"
    cli = subprocess.run([sys.executable, "-m", "workbench.cli", "runs", "-w", str(ws_dir), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert json.loads(cli.stdout)[0]["status"] == "interrupted"
    fake_llm.configure(latency=0.0)
    run.resume(progress=False)
    assert run.status == "completed"
    # never two owners at once: paid twice are at most the calls in flight at the kill and those answered in
    # the last flush interval (concurrency 2, 1.5 s per call, flushed every second), not the whole run again
    assert fake_llm.stats()["chat"] <= 40 + 2 * 2


def test_an_owner_on_another_host_needs_a_stale_heartbeat_or_force(tmp_path, fake_llm):
    ws = wb.open(tmp_path / "ws")
    exp = ws.experiment(_cases(ws, 3), [wb.Prompt("p", "Q: {{ question }}")], [_model(fake_llm)])
    run = exp.run(progress=False)
    with ws.store.connect() as con:
        con.execute("UPDATE runs SET status='running' WHERE run_id=$1", [run.run_id])
        con.execute("UPDATE run_owners SET host='build-box-7', pid=4242, heartbeat_at=now() WHERE run_id=$1",
                    [run.run_id])
    assert ws.runs()["status"][0] == "running"
    with pytest.raises(RunInProgressError, match="process 4242 on host build-box-7.*--force"):
        run.resume(progress=False)
    run.resume(progress=False, force=True)
    assert run.status == "completed"
    with ws.store.connect() as con:
        con.execute("UPDATE runs SET status='running' WHERE run_id=$1", [run.run_id])
        con.execute("UPDATE run_owners SET host='build-box-7', heartbeat_at=now() - INTERVAL 1 HOUR")
    assert ws.runs()["status"][0] == "interrupted" and run.status == "interrupted"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, timeout=300)


def test_exit_code_3_names_the_variant_that_failed_entirely_and_why(tmp_path, fake_llm):
    import socket

    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    ws = wb.open(tmp_path / "ws")
    _cases(ws, 6)
    spec = tmp_path / "s.yaml"
    spec.write_text(json.dumps({
        "dataset": {"name": "qs"}, "prompts": [{"name": "p", "user": "Q: {{ question }}"}],
        "models": [_model(fake_llm, name="good"), {"name": "gone", "model": "openai/x", "api_base": dead,
                                                    "max_retries": 0}],
    }))
    out = _cli("run", str(spec), "-w", str(ws.path), "--no-progress")
    assert out.returncode == 3, out.stderr
    assert "variant 'p/gone' failed: 6/6 cells (100%, every cell failed)" in out.stderr
    assert "most frequent error: model 'gone'" in out.stderr
    assert "p/good" not in out.stderr
    # a failure rate: 2 of 6 cells of the good model fail (HTTP 500, not retried)
    fake_llm.configure(script=[{"status": 500, "count": 2}])
    spec.write_text(json.dumps({
        "dataset": {"name": "qs"}, "prompts": [{"name": "p2", "user": "Question: {{ question }}"}],
        "models": [_model(fake_llm, name="good", max_retries=0)], "concurrency": 1,
    }))
    out = _cli("run", str(spec), "-w", str(ws.path), "--no-progress", "--max-failure-rate", "0.2", "--json")
    assert out.returncode == 3 and "2/6 cells (33%" in out.stderr
    assert json.loads(out.stdout)["failed_variants"][0]["variant"] == "p2"
    run_id = json.loads(out.stdout)["run_id"]
    assert _cli("resume", run_id, "-w", str(ws.path), "--max-failure-rate", "0.5", "--no-progress").returncode == 0
    assert _cli("run", str(spec), "-w", str(ws.path), "--max-failure-rate", "2").returncode == 2


SECRET = "sk-live-" + "Q7xY2mN9pL4vR8tK3wZ6" * 3


@pytest.mark.parametrize(
    "params, where",
    [
        ({"extra_headers": {"Authorization": f"Bearer {SECRET}"}}, "params.extra_headers.Authorization"),
        ({"extra_headers": {"X-Trace": f"Bearer {SECRET}"}}, "params.extra_headers.X-Trace"),
        ({"metadata": {"note": SECRET}}, "params.metadata.note"),
        ({"extra_body": {"auth": {"password": "hunter2hunter2"}}}, "params.extra_body.auth"),
        ({"extra_headers": {"x-api-key": "abc123abc123"}}, "params.extra_headers.x-api-key"),
        ({"extra_headers": {"Cookie": "session=abc"}}, "params.extra_headers.Cookie"),
        ({"stop": ["ghp_" + "a" * 36]}, "params.stop[0]"),
    ],
)
def test_secret_shaped_params_are_refused_before_anything_is_stored(tmp_path, fake_llm, params, where):
    ws = wb.open(tmp_path / "ws")
    ds = _cases(ws, 2)
    with pytest.raises(SpecError, match=re.escape(where) + ".*api_key_env"):
        ws.experiment(ds, [wb.Prompt("p", "{{ question }}")], [_model(fake_llm, params=params)])
    spec = tmp_path / "s.yaml"
    spec.write_text(json.dumps({"dataset": {"name": "qs"}, "prompts": [{"name": "p", "user": "{{ question }}"}],
                                "models": [_model(fake_llm, params=params)]}))
    out = _cli("run", str(spec), "-w", str(ws.path))
    assert out.returncode == 2 and "credential" in out.stderr and "Traceback" not in out.stderr
    assert fake_llm.stats()["requests"] == 0
    assert secrets_in(tmp_path / "ws", [SECRET, "hunter2hunter2", "abc123abc123", "a" * 36]) == []


def test_known_params_are_type_checked_and_credentials_in_api_base_refused(fake_llm):
    from workbench.llm import ModelConfig

    with pytest.raises(SpecError, match=r"params.temperature must be a number.*'hot'"):
        ModelConfig("m", "openai/x", params={"temperature": "hot", "max_tokens": 5})
    with pytest.raises(SpecError, match=r"top_p must be <= 1.*max_tokens must be an integer"):
        ModelConfig("m", "openai/x", params={"max_tokens": 2.5, "top_p": 3})
    with pytest.raises(SpecError, match="api_base"):
        ModelConfig("m", "openai/x", api_base="https://user:pa55word@llm.example.com/v1")
    ModelConfig("m", "openai/x", params={"temperature": 0, "max_tokens": 16, "stop": ["\n"], "seed": 1})


def test_an_error_raised_to_python_carries_no_request_and_no_key(tmp_path, fake_llm, monkeypatch):
    monkeypatch.setenv("WB_TEST_KEY", SECRET)
    fake_llm.configure(auth_key="the-right-key")
    ws = wb.open(tmp_path / "ws")
    exp = ws.experiment(_cases(ws, 3), [wb.Prompt("p", "{{ question }}")],
                        [_model(fake_llm, api_key_env="WB_TEST_KEY")])
    with pytest.raises(ModelFatalError) as info:
        exp.run(progress=False)
    chain = []
    exc: BaseException | None = info.value
    while exc is not None and len(chain) < 20:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    for e in chain:
        assert e.__class__.__module__.startswith("workbench"), f"provider exception in the chain: {e!r}"
        assert not hasattr(e, "request") and not hasattr(e, "response")
        assert SECRET not in repr(e) and SECRET not in str(e)
    assert secrets_in(tmp_path / "ws", [SECRET]) == []
