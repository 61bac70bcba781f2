"""Monitoring a served request log: figures per window, drift, safety flags, alerts, the CLI exit code.

Logs are written in the server's format by tests/synthetic_log.py with real PubMedQA questions; retrieval
scores come from the real retriever (wordllama + FAISS over the demo abstracts), so off-topic questions
get the low scores they would get in production.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from synthetic_log import (
    DEMO,
    OFF_TOPIC,
    PII_OUTPUTS,
    SECRET_OUTPUTS,
    eval_rows,
    held_out_rows,
    make_requests,
    write_log,
)

import workbench as wb
from workbench import monitoring
from workbench.errors import NotFoundError, ValidationError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from workbench.retrieval.config import RetrievalConfig
    from workbench.retrieval.grid import retrieve_for_cases

    tmp = tmp_path_factory.mktemp("mon")
    ws = wb.open(tmp / "ws")
    ev, held = eval_rows(), held_out_rows()
    ds = ws.add_dataset("eval", [{k: r[k] for k in ("pmid", "question", "long_answer")} for r in ev], id="pmid")
    cfg = RetrievalConfig.parse(
        {
            "name": "dense",
            "corpus": {"path": str(DEMO), "id": "pmid", "text": "context"},
            "chunker": {"size": 128, "overlap": 16},
            "embedder": "local",
            "index": {"type": "flat"},
            "top_k": 3,
        }
    )
    texts = [r["question"] for r in ev + held] + OFF_TOPIC
    hits = retrieve_for_cases(ws.store, cfg, [(str(i), {"question": t}) for i, t in enumerate(texts)])
    scores = {t: [h["score"] for h in hits[str(i)]] for i, t in enumerate(texts)}

    def score(_rng: object, q: dict | str) -> list[float]:
        return scores[q["question"] if isinstance(q, dict) else q]

    return {"tmp": tmp, "ws": ws, "ds": ds, "held": held, "score": score}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_window_figures_match_numpy_and_torn_line_is_skipped(env: dict) -> None:
    reqs = make_requests(1200, questions=env["held"], spacing_s=6.0, error_rate=0.03, scores=env["score"], seed=1)
    log = write_log(env["tmp"] / "figures", reqs, segment=250, partial_tail=True)
    report = monitoring.monitor(log, window="30m", cache=False)
    s = report.summary
    lat = np.array([r["latency_ms"] for r in reqs])
    failed = sum(r["error"] is not None for r in reqs)
    assert s["requests"] == 1200  # the half-written line after the last one is not a request
    assert s["errors"] == failed > 0 and s["error_rate"] == pytest.approx(failed / 1200)
    assert s["latency_p50_ms"] == pytest.approx(np.percentile(lat, 50))
    assert s["latency_p95_ms"] == pytest.approx(np.percentile(lat, 95))
    assert s["prompt_tokens"] == sum(r["prompt_tokens"] for r in reqs)
    w = report.windows
    assert len(w) == 4 and list(w["requests"]) == [300, 300, 300, 300]  # 2 hours of 6 s spacing in 30 min windows
    first = lat[:300]
    assert w["latency_p95_ms"].iloc[0] == pytest.approx(np.percentile(first, 95))
    start = datetime(2026, 1, 5, 8, 0)
    assert w["window"].iloc[0].to_pydatetime().replace(tzinfo=None) == start
    # the Parquet cache gives the same figures, and is rebuilt when a segment grows
    assert not list((log / ".monitor-cache").glob("*.parquet"))  # segments written seconds ago are still open
    for seg in log.glob("requests-*.jsonl"):
        os.utime(seg, (1e9, 1e9))
    cached = monitoring.monitor(log, window="30m")
    assert len(list((log / ".monitor-cache").glob("*.parquet"))) == 5
    cached = monitoring.monitor(log, window="30m")
    assert cached.summary == s
    extra = make_requests(10, questions=env["held"], start=datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc), seed=9)
    seg = sorted(log.glob("requests-*.jsonl"))[0]
    with seg.open("a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in extra))
    os.utime(seg, (1e9 + 1, 1e9 + 1))  # size and time changed: a new cache key
    assert monitoring.monitor(log, window="30m").summary["requests"] == 1210
    assert len(list((log / ".monitor-cache").glob("*.parquet"))) == 5  # the stale copy was replaced


def test_question_drift_off_topic_detected_held_out_not(env: dict) -> None:
    on = make_requests(600, questions=env["held"], scores=env["score"], seed=2)
    mixed = make_requests(600, questions=env["held"] + OFF_TOPIC * 2, scores=env["score"], seed=3)
    on_log = write_log(env["tmp"] / "on-topic", on)
    off_log = write_log(env["tmp"] / "off-topic", mixed)
    calm = monitoring.monitor(on_log, store=env["ws"].store, reference="eval")
    assert calm.drift["status"] == "ok" and calm.drift["p_value"] > 0.05
    assert calm.drift["statistic"] < calm.drift["threshold"]
    assert not any(a.name == "question_drift" for a in calm.alerts)
    drifted = env["ws"].monitor(off_log, dataset=env["ds"])
    d = drifted.drift
    assert d["drifted"] and d["p_value"] < 0.01 and d["statistic"] > d["threshold"]
    assert d["outlier_share"] > 0.2  # a third of the distinct questions are off-topic
    assert all(f["question"] in OFF_TOPIC for f in d["farthest"])
    assert any(a.name == "question_drift" for a in drifted.alerts)
    assert "questions drifted from eval@v1" in str(drifted)


def test_retrieval_drift_against_a_bundle_eval_reference(env: dict) -> None:
    import pandas as pd

    held = env["held"]
    cases = pd.DataFrame(
        {
            "inputs": [json.dumps({"question": r["question"]}) for r in held[:50]],
            "retrieved": [json.dumps([{"chunk_id": "c", "doc_id": "d", "score": s} for s in env["score"](None, r)])
                          for r in held[:50]],
        }
    )  # fmt: skip
    questions, scores = monitoring.bundle_eval_reference(cases)
    assert questions == [r["question"] for r in held[:50]] and len(scores) == 50
    off = write_log(env["tmp"] / "ret-bundle", make_requests(300, questions=OFF_TOPIC, scores=env["score"], seed=12))
    report = monitoring.monitor(off, reference=questions, retrieval_reference=("bundle eval", scores))
    assert report.retrieval["reference"] == "bundle eval" and report.retrieval["drifted"]
    assert report.retrieval["mean_current"] < report.retrieval["mean_reference"]


def test_retrieval_score_drift(env: dict) -> None:
    calm = make_requests(800, questions=env["held"], scores=env["score"], seed=4)
    early = make_requests(400, questions=env["held"], scores=env["score"], seed=5)
    late = make_requests(
        400,
        questions=env["held"] + OFF_TOPIC * 3,
        scores=env["score"],
        start=datetime(2026, 1, 5, 8, 6, 40, tzinfo=timezone.utc),
        seed=6,
    )
    a = monitoring.monitor(write_log(env["tmp"] / "ret-calm", calm))
    b = monitoring.monitor(write_log(env["tmp"] / "ret-drift", early + late))
    assert a.retrieval["status"] == "ok"
    r = b.retrieval
    assert r["drifted"] and r["mean_current"] < r["mean_reference"] and r["ci_high"] < 0
    assert any(x.name == "retrieval_drift" for x in b.alerts)


def test_safety_flags_counted_and_cli_exit_code(env: dict) -> None:
    reqs = make_requests(
        1000, questions=env["held"], pii_rate=0.03, secrets_rate=0.02, injection_rate=0.02, scores=env["score"], seed=7
    )
    log = write_log(env["tmp"] / "safety", reqs)
    report = monitoring.monitor(log)
    flags = report.safety["flags"]
    assert flags["pii"]["count"] == sum(r["output"] == PII_OUTPUTS[0] for r in reqs) > 0
    assert flags["secrets"]["count"] == sum(r["output"] == SECRET_OUTPUTS[0] for r in reqs) > 0
    injected = sum("instructions" in r["input"]["question"] for r in reqs)
    assert flags["prompt_injection"]["count"] == injected > 0
    assert not report.safety["sampled"]
    names = {a.name for a in report.alerts}
    assert {"pii_rate", "secrets_rate", "prompt_injection_rate"} <= names
    # sampled: a seeded uniform sample estimates the rates
    sampled = monitoring.monitor(log, safety_sample=400)
    assert sampled.safety["sampled"] and sampled.safety["checked"] == 400
    assert abs(sampled.safety["flags"]["pii"]["rate"] - flags["pii"]["rate"]) < 0.03
    alert = _cli("monitor", str(log), "--json")
    assert alert.returncode == 1
    out = json.loads(alert.stdout)
    assert out["ok"] is False and {a["name"] for a in out["alerts"]} >= {"secrets_rate"}
    relaxed = _cli(
        "monitor", str(log), "--max", "pii_rate=1", "--max", "secrets_rate=1", "--max", "prompt_injection_rate=1"
    )
    assert relaxed.returncode == 0, relaxed.stdout + relaxed.stderr
    assert "no alerts" in relaxed.stdout and "safety flags" in relaxed.stdout
    tight = _cli("monitor", str(log), "--max", "latency_p95_ms=1", "--max", "pii_rate=1", "--max", "secrets_rate=1")
    assert tight.returncode == 1 and "latency_p95_ms" in tight.stdout
    assert _cli("monitor", str(log), "--max", "latency=1").returncode == 2


def test_bad_inputs(env: dict, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        monitoring.monitor(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match=r"no request log segments.*writes its log about every 1 s"):
        monitoring.monitor(tmp_path / "empty")
    log = write_log(tmp_path / "log", make_requests(20, questions=env["held"]))
    with pytest.raises(ValidationError, match="window"):
        monitoring.monitor(log, window="fortnight")
    with pytest.raises(ValidationError, match="not a valid condition"):
        monitoring.read_requests(log, where="no_such_column = 1")


def test_chart_and_html(env: dict) -> None:
    log = write_log(env["tmp"] / "chart", make_requests(300, questions=env["held"], spacing_s=30, seed=8))
    report = monitoring.monitor(log)
    spec = report.chart().to_dict()
    assert len(spec["vconcat"]) == 2
    html = report._repr_html_()
    assert "no alerts" in html and "<table" in html
    from workbench.magics import llmops

    shown = llmops(f"monitor {log} --window 15m --workspace {env['ws'].path}")
    assert isinstance(shown, monitoring.MonitorReport) and shown.window == "15m"
    assert shown.summary == monitoring.monitor(log, window="15m").summary


def test_mmd_test_is_calibrated_and_sees_a_new_cluster() -> None:
    from workbench import stats

    rng = np.random.default_rng(0)
    null_p = [
        stats.mmd_test(rng.normal(size=(60, 16)), rng.normal(size=(80, 16)), n_resamples=199, seed=s).p_value
        for s in range(40)
    ]
    assert 0.0 <= np.mean(np.array(null_p) < 0.05) <= 0.15  # about 5% false alarms under no drift
    assert 0.35 < np.mean(null_p) < 0.65  # p-values roughly uniform
    base = rng.normal(size=(100, 16))
    novel = np.vstack([rng.normal(size=(70, 16)), rng.normal(loc=3.0, size=(30, 16))])  # 30% from elsewhere
    for kernel in ("rbf", "linear"):
        assert stats.mmd_test(novel, base, kernel=kernel).p_value < 0.01
