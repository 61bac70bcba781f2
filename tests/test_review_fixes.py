"""Regression tests for bugs found in review: each reproduces the failure it guards against."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

import workbench as wb
from workbench.errors import RetrievalError, SpecError
from workbench.runner import Experiment


def _ds(ws, n=4):
    return ws.add_dataset("qa", [{"id": f"c{i}", "question": f"question {i}"} for i in range(n)], id="id")


def _model(server, **kw):
    return {"name": "m", "model": "openai/test-model", "api_base": server.base_url, "retry_base": 0.01, **kw}


@pytest.mark.parametrize("client", ["openai", "litellm"])  # both routes of the gateway behave the same
def test_a_400_is_not_retried(tmp_path, fake_llm, client):
    fake_llm.configure(script=[{"status": 400, "message": "maximum context length exceeded", "count": 1}])
    ws = wb.open(tmp_path / "ws")
    run = ws.experiment(_ds(ws), [wb.Prompt("p", "{{ question }}")], [_model(fake_llm, client=client)],
                        concurrency=1).run(
        progress=False)
    res = run.results().set_index("case_id")
    assert "not retried" in res.loc["c0", "error"] and "context length" in res.loc["c0", "error"]
    assert res.drop(index="c0")["error"].isna().all()
    assert fake_llm.stats()["requests"] == 4  # one per cell: the 400 was not sent again


def test_judgements_of_a_cached_judge_are_kept_with_their_cell(tmp_path, fake_llm):
    fake_llm.configure(replies=[
        {"pattern": "toxicity", "reply": json.dumps({"reason": "fine", "toxicity": 0.0})},
        {"pattern": "(?s).", "reply": json.dumps({"reason": "ok", "score": 4})},
    ])
    ws = wb.open(tmp_path / "ws")
    ds = _ds(ws, 1)
    judge = {"model": "openai/judge-model", "api_base": fake_llm.base_url, "retry_base": 0.01}
    tox = {"name": "toxicity", "judge": judge}
    rub = {"name": "rubric", "judge": judge, "criteria": "Is it polite?"}
    prompt = [wb.Prompt("p", "Q: {{ question }}")]
    ws.experiment(ds, prompt, [_model(fake_llm)], [tox], concurrency=1).run(progress=False)
    fake_llm.configure(latency=1.6)  # the rubric call outlives a flush tick; toxicity comes from the cache
    second = ws.experiment(ds, prompt, [_model(fake_llm)], [tox, rub], concurrency=1).run(progress=False)
    assert sorted(second.judgements()["metric"]) == ["rubric", "toxicity"]


def test_a_locked_workspace_delays_writes_but_loses_nothing(tmp_path, fake_llm, monkeypatch):
    monkeypatch.setenv("LLMOPS_LOCK_TIMEOUT", "1")
    fake_llm.configure(latency=0.2)
    ws = wb.open(tmp_path / "ws")
    exp = ws.experiment(_ds(ws, 24), [wb.Prompt("p", "Q: {{ question }}")], [_model(fake_llm)], concurrency=2)
    from workbench.llm import litellm_module

    litellm_module()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import duckdb, sys, time\n"
        "time.sleep(1.2)\n"
        "while True:\n"
        "    try:\n"
        "        con = duckdb.connect(sys.argv[1]); break\n"
        "    except duckdb.IOException:\n"
        "        time.sleep(0.005)\n"
        "time.sleep(2.5); con.close()\n"), str(ws.store.db_path)])
    try:
        with pytest.warns(UserWarning, match="could not write finished cells yet"):
            run = exp.run(progress=False)
    finally:
        holder.wait(timeout=30)
    assert run.status == "completed" and len(run.results()) == 24
    assert fake_llm.stats()["requests"] == 24


def test_winner_on_a_latency_column_prefers_the_fast_variant(tmp_path, fake_llm):
    from openai_server import ServerProcess

    with ServerProcess(latency=0.08) as slow:
        ws = wb.open(tmp_path / "ws")
        models = [_model(fake_llm, name="fast"), _model(slow, name="slow")]
        run = ws.experiment(_ds(ws, 8), [wb.Prompt("p", "Q: {{ question }}")], models, concurrency=4).run(
            progress=False)
    assert run.winner("latency_ms").winner == "p/fast"


@pytest.mark.parametrize("client", ["openai", "litellm"])  # both routes of the gateway behave the same
def test_an_api_key_echoed_by_the_server_is_never_stored(tmp_path, fake_llm, monkeypatch, client):
    key = "sk-live-" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" * 12  # long enough to straddle any cut of the message
    monkeypatch.setenv("WB_REVIEW_KEY", key)
    fake_llm.configure(script=[{"status": 500, "message": f"upstream rejected key={key}", "count": 1}])
    ws = wb.open(tmp_path / "ws")
    model = _model(fake_llm, api_key_env="WB_REVIEW_KEY", max_retries=0, client=client)
    run = ws.experiment(_ds(ws, 1), [wb.Prompt("p", "{{ question }}")], [model], concurrency=1).run(progress=False)
    error = run.results()["error"][0]
    assert "upstream rejected key=***" in error
    assert key[:12] not in error
    assert key[:12].encode() not in (tmp_path / "ws" / "workspace.duckdb").read_bytes()


def test_a_model_config_judge_survives_the_run_record(tmp_path, fake_llm):
    ws = wb.open(tmp_path / "ws")
    judge = wb.ModelConfig(name="j", model="openai/judge-model", api_base=fake_llm.base_url, max_retries=2)
    exp = ws.experiment(_ds(ws), [wb.Prompt("p", "{{ question }}")], [_model(fake_llm)],
                        [{"name": "toxicity", "judge": judge}])
    again = Experiment.from_record(ws.store, json.loads(json.dumps(exp.to_record())))
    assert again.metrics[0].judge.model == "openai/judge-model"
    assert again.metrics[0].judge.hash == judge.hash


def test_bad_input_in_faces_is_a_typed_error(tmp_path, fake_llm):
    ws = wb.open(tmp_path / "ws")
    ds = _ds(ws)
    with pytest.raises(SpecError, match="unknown key.*temprature"):
        ws.experiment(ds, [wb.Prompt("p", "{{ question }}")], [{"model": "openai/x", "temprature": 0}])
    with pytest.raises(SpecError, match="use api_key_env"):
        ws.experiment(ds, [wb.Prompt("p", "{{ question }}")], [{"model": "openai/x", "api_key": "sk-123"}])
    with pytest.raises(SpecError, match=r"variants\[0\]: needs \['model'\]"):
        ws.experiment(ds, [wb.Prompt("p", "{{ question }}")], ["openai/x"], variants=[{"prompt": "p"}])
    from workbench.retrieval.grid import parse_retrievers, query_text

    cfg = parse_retrievers([{"name": "r", "query": "{{ titel }}"}], None)[0]
    with pytest.raises(RetrievalError, match="query template"):
        query_text(cfg, {"question": "q"})


def test_magic_reports_quote_and_yaml_errors(tmp_path, capsys):
    from workbench.magics import llmops

    assert llmops('sql "select 1') is None
    assert "check the quotes" in capsys.readouterr().out
    assert llmops(f"run -w {tmp_path / 'ws'}", "dataset: [unclosed") is None
    assert "not valid YAML" in capsys.readouterr().out


def test_run_id_prefix_is_not_a_pattern(tmp_path, fake_llm):
    ws = wb.open(tmp_path / "ws")
    run = ws.experiment(_ds(ws, 1), [wb.Prompt("p", "{{ question }}")], [_model(fake_llm)]).run(progress=False)
    assert ws.get_run(run.run_id[:8]).run_id == run.run_id
    with pytest.raises(wb.NotFoundError):
        ws.get_run("%")


def test_integral_float_params_share_the_cache(tmp_path, fake_llm):
    ws = wb.open(tmp_path / "ws")
    ds = _ds(ws, 2)
    prompt = [wb.Prompt("p", "{{ question }}")]
    ws.experiment(ds, prompt, [_model(fake_llm, params={"temperature": 0})]).run(progress=False)
    again = ws.experiment(ds, prompt, [_model(fake_llm, params={"temperature": 0.0})]).run(progress=False)
    assert again.last.model_calls == 0 and fake_llm.stats()["requests"] == 2


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_cancel_after_the_loop_closed_is_harmless(tmp_path, fake_llm):
    ws = wb.open(tmp_path / "ws")
    exp = ws.experiment(_ds(ws, 1), [wb.Prompt("p", "{{ question }}")], [_model(fake_llm)])
    run, plan = exp._create_run()
    from workbench.runner import _Executor

    executor = _Executor(run, plan.cells, progress=False, replace=False)
    import asyncio

    asyncio.run(executor.execute())
    time.sleep(0.01)
    executor.cancel()  # the loop is closed now: must not raise
    assert run.status == "completed"
