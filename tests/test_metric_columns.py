"""One naming rule for result tables: a metric's column is its label; raw cell/leaderboard columns are reserved.

Regression: the built-in ``cost`` metric used to give results() two ``cost`` columns plus ``cost_x``/``cost_y``,
the leaderboard two ``cost`` columns, ``llmops run --json`` a traceback and ``run.winner("latency")`` a pandas
reindex error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import workbench as wb
from workbench.errors import MetricError
from workbench.metrics.registry import RESERVED_COLUMNS, bind, register

ROOT = Path(__file__).resolve().parents[1]


def _ds(ws, n=6):
    rows = [{"id": f"c{i}", "question": f"question number {i}", "answer": f"answer {i}"} for i in range(n)]
    return ws.add_dataset("qa", rows, id="id")


def _models(server):
    # gpt-4o-mini is in litellm's local price map, so cells get a real (non-None) cost from the token counts
    return [
        {"name": name, "model": "openai/gpt-4o-mini", "api_base": server.base_url, "retry_base": 0.01,
         "params": {"temperature": t}}
        for name, t in (("cold", 0.0), ("warm", 0.7))
    ]


def _no_duplicates(frame):
    cols = list(frame.columns)
    assert len(cols) == len(set(cols)), cols
    assert not [c for c in cols if c.endswith(("_x", "_y"))], cols


def test_cost_and_latency_metrics_share_the_raw_columns(tmp_path, fake_llm):
    ws = wb.open(tmp_path / "ws")
    metrics = [{"name": "contains", "expected": "answer"}, "latency", "cost"]
    run = ws.experiment(_ds(ws), [wb.Prompt("p", "Q: {{ question }}")], _models(fake_llm), metrics,
                        concurrency=2).run(progress=False)
    res = run.results()
    _no_duplicates(res)
    assert {"contains", "latency", "cost", "latency_ms"} <= set(res.columns)
    assert res["cost"].notna().all() and (res["cost"] > 0).all()
    # the stored `cost` scores are exactly the raw column the table shows under that name
    scores = ws.sql(f"SELECT case_id, variant, value FROM scores WHERE run_id='{run.run_id}' AND metric='cost'")
    merged = res.merge(scores, on=["case_id", "variant"])
    assert len(merged) == len(res) and (merged["value"] == merged["cost"]).all()
    assert (res["latency"] == res["latency_ms"]).all()

    board = run.leaderboard()
    _no_duplicates(board)
    assert board["cost"].tolist() == pytest.approx(res.groupby("variant", sort=False)["cost"].sum().tolist())

    decision = run.winner("latency")
    assert decision.winner in ("p/cold", "p/warm")
    assert run.winner("cost").winner in ("p/cold", "p/warm")
    assert run.compare("p/cold", "p/warm", "cost").result.n == 6
    summary = run.summary()
    assert summary["cost"] == pytest.approx(res["cost"].sum())
    json.dumps(summary)


def test_llmops_run_json_with_the_cost_metric(tmp_path, fake_llm):
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"id": f"c{i}", "question": f"q {i}", "answer": "a"}) + "\n" for i in range(3)))
    spec = {
        "dataset": {"name": "qa", "path": str(data), "id": "id"},
        "prompts": [{"name": "p", "user": "{{ question }}"}],
        "models": [{k: v for k, v in m.items() if k != "retry_base"} for m in _models(fake_llm)],
        "metrics": ["cost", "latency", {"name": "exact_match", "expected": "answer"}],
    }
    (tmp_path / "spec.yaml").write_text(json.dumps(spec))  # JSON is YAML
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "run", str(tmp_path / "spec.yaml"), "-w", str(tmp_path / "ws"),
         "--json", "--no-progress"],
        capture_output=True, text=True, env=env, timeout=240,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout)
    assert summary["status"] == "completed" and summary["cost"] > 0
    row = summary["leaderboard"][0]
    assert set(row) >= {"cost", "latency", "exact_match", "cost_per_1k"} and row["cost"] > 0

    exported = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "results", summary["run_id"], "-w", str(tmp_path / "ws"),
         "--format", "csv"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert exported.returncode == 0, exported.stderr[-2000:]
    header = exported.stdout.splitlines()[0].split(",")
    assert header.count("cost") == 1 and "cost_x" not in header


@pytest.mark.parametrize("label", sorted(RESERVED_COLUMNS) + ["human_rating"])
def test_a_metric_label_that_names_a_raw_column_is_refused(label):
    with pytest.raises(MetricError, match=f"clashes with the raw column {label!r}"):
        bind("contains", {"expected": "answer"}, label=label)


def test_a_user_metric_named_like_a_raw_column_is_refused():
    def tokens(output: str) -> float:
        return float(len(output))

    with pytest.raises(MetricError, match="'tokens'.*another label"):
        register(tokens)
    with pytest.raises(MetricError, match="'latency_ms'"):
        wb.metric(name="latency_ms")(tokens)
    with pytest.raises(MetricError, match="clashes"):
        register(tokens, "cost")  # only the built-in `cost` is that column


def test_a_label_that_names_another_metrics_error_column_is_refused(tmp_path):
    ws = wb.open(tmp_path / "ws")
    model = {"name": "m", "model": "local/extractive"}
    metrics = [{"name": "contains", "expected": "answer"},
               {"name": "exact_match", "expected": "answer", "label": "contains_error"}]
    with pytest.raises(MetricError, match="'contains_error' clashes with the error column of metric 'contains'"):
        ws.experiment(_ds(ws), [wb.Prompt("p", "{{ question }}")], [model], metrics)


def test_an_unpriced_model_has_no_cost_not_zero(tmp_path):
    ws = wb.open(tmp_path / "ws")
    models = [{"name": "a", "model": "local/extractive"}, {"name": "b", "model": "local/extractive",
                                                          "params": {"temperature": 0.5}}]
    run = ws.experiment(_ds(ws, 4), [wb.Prompt("p", "Context: {{ answer }}. Question: {{ question }}")], models,
                        ["cost"]).run(progress=False)
    assert run.results()["cost"].isna().all()
    board = run.leaderboard()
    assert board["cost"].isna().all() and board["cost_per_1k"].isna().all()
    assert run.summary()["cost"] == 0.0  # nothing known was spent
    assert run.winner("cost").winner is None  # no variant has a cost to rank on
