"""Issue 13 item 4: replay a run from its record; with the cache it equals the original, without it drift shows."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from test_judge import FAITHFUL_REPLIES, _experiment, _faithfulness

import workbench as wb

ROOT = Path(__file__).resolve().parent.parent


def test_replay_with_cache_equals_and_without_reports_drift(tmp_path, fake_llm):
    ws = wb.open(tmp_path / "ws")
    metrics = [{"name": "contains", "expected": "question"}, {"name": "rouge1", "expected": "question"}]
    run = _experiment(ws, fake_llm, metrics, n=8).run(progress=False)
    before = fake_llm.stats()["requests"]
    again, report = run.replay()
    assert fake_llm.stats()["requests"] == before and again.last.model_calls == 0
    assert report.identical and report.changed_outputs == 0 and report.cells == 8
    keys = ["case_id", "variant", "repeat"]
    for label in ("contains", "rouge1"):
        assert run.results().set_index(keys)[label].equals(again.results().set_index(keys)[label])
    assert again.info["spec"]["replay_of"] == run.run_id
    # the provider now answers differently: a replay without the cache reports the drift per metric
    fake_llm.configure(replies=[{"pattern": "item [0-3]\\?", "reply": "something else entirely"}])
    out = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "replay", run.run_id, "--no-cache", "--json", "-w", str(ws.path)],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert fake_llm.stats()["requests"] == before + 8
    assert rep["changed_outputs"] == 4 and not rep["identical"]
    contains = next(m for m in rep["metrics"] if m["metric"] == "contains")
    assert contains["original"] == 1.0 and contains["replayed"] == 0.5 and contains["diff"] == -0.5
    assert contains["changed_cells"] == 4 and 0 < contains["p_value"] <= 1 and contains["n"] == 8
    # the original's cache entries are untouched: a cached replay still equals the original
    assert run.replay()[1].identical


def test_retry_failed_judgements(tmp_path, fake_llm):
    fake_llm.configure(
        replies=[
            {"pattern": r"(?s)atomic statements.*What is item 2\?", "reply": "Sorry, I can't produce JSON today."},
            *FAITHFUL_REPLIES,
        ]
    )
    ws = wb.open(tmp_path / "ws")
    run = _experiment(ws, fake_llm, [_faithfulness(fake_llm)]).run(progress=False)
    assert math.isnan(run.results().set_index("case_id").loc["q2", "faithfulness"])
    fake_llm.configure(replies=FAITHFUL_REPLIES)
    # a plain cached replay gives the same failure back (the failed reply is cached) ...
    same = run.replay()[0].results().set_index("case_id")
    assert math.isnan(same.loc["q2", "faithfulness"])
    # ... re-asking the failed judge prompts scores the cell
    again, report = run.replay(retry_failed_judgements=True)
    res = again.results().set_index("case_id")
    assert res.loc["q2", "faithfulness"] == pytest.approx(2 / 3)
    assert report.retried_judgements == 1 and report.changed_outputs == 0
    faith = next(m for m in report.metrics if m["metric"] == "faithfulness")
    assert faith["changed_cells"] == 1
