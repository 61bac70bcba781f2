"""Release gates and promotion on real runs of the offline baseline (local/extractive) over PubMedQA.

Gates go through the real ``llmops`` CLI in a subprocess (exit codes are what CI pipelines see).
Promotion to prod is refused without approval, with failing gates, and when a newer dataset version
makes the re-run fail the gates; accepted otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bundle_fixture import write_bundle
from synthetic_log import demo_rows

import workbench as wb
from workbench.errors import PromotionError, ValidationError

ROOT = Path(__file__).resolve().parents[1]
PROMPT = wb.Prompt("ctx", "Context: {{ context }}\nQuestion: {{ question }}", system="Answer from the abstract.")
COLUMNS = ("pmid", "question", "context", "long_answer")


def _rows(rows: list[dict]) -> list[dict]:
    return [{k: r[k] for k in COLUMNS} for r in rows]


def _run(ws: wb.Workspace, ds: wb.Dataset) -> wb.Run:
    exp = ws.experiment(
        ds,
        PROMPT,
        [{"name": "extractive", "model": "local/extractive"}],
        [{"name": "token_f1", "expected": "long_answer"}],
    )
    return exp.run(progress=False)


def _cli(ws: wb.Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args, "--workspace", str(ws.path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("promo")
    ws = wb.open(tmp / "ws")
    rows = demo_rows()
    v1 = ws.add_dataset("pubmed", _rows(rows[:30]), id="pmid")
    run = _run(ws, v1)
    f1 = float(run.leaderboard().set_index("variant").loc["ctx", "token_f1"])
    assert 0.1 < f1 < 1.0
    return {"tmp": tmp, "ws": ws, "rows": rows, "run": run, "f1": f1}


def test_gate_cli_exit_codes_and_report(setup: dict) -> None:
    ws, run, f1 = setup["ws"], setup["run"], setup["f1"]
    ok = _cli(ws, "gate", run.run_id, "--min", f"token_f1={f1 - 0.05:.4f}", "--max", "error_rate=0")
    assert ok.returncode == 0, ok.stderr
    assert "PASS  token_f1" in ok.stdout and "result: PASSED (2 of 2 checks pass)" in ok.stdout
    bad = _cli(ws, "gate", run.run_id, "--min", f"token_f1={f1 + 0.05:.4f}", "--max", "latency_p95_ms=100000")
    assert bad.returncode == 1
    assert "FAIL  token_f1" in bad.stdout and "PASS  latency_p95_ms" in bad.stdout and "FAILED" in bad.stdout
    js = _cli(ws, "gate", run.run_id, "--min", f"token_f1={f1 + 0.05:.4f}", "--json")
    report = json.loads(js.stdout)
    assert js.returncode == 1 and report["passed"] is False
    assert report["variants"]["ctx"][0]["value"] == pytest.approx(f1)
    typo = _cli(ws, "gate", run.run_id, "--min", "token_f2=0.4")
    assert typo.returncode == 2 and "token_f2" in typo.stderr and "token_f1" in typo.stderr
    # a bundle: its own recorded gates, or thresholds given on the command line
    bundle = write_bundle(run, "ctx", [("token_f1", ">=", round(f1 - 0.05, 4))], setup["tmp"] / "gate-bundle")
    assert _cli(ws, "gate", str(bundle)).returncode == 0
    assert _cli(ws, "gate", str(bundle), "--min", f"token_f1={f1 + 0.1:.4f}").returncode == 1


def test_gate_same_checks_as_winner(setup: dict) -> None:
    run, f1 = setup["run"], setup["f1"]
    decision = run.winner("token_f1", [f"token_f1>={f1 + 0.01}"])
    report = setup["ws"].gate(run.run_id, [f"token_f1>={f1 + 0.01}"])
    assert decision.winner is None and not report.passed
    assert report.failures[0].split(": ", 1)[1] in decision.reason


def test_tampered_bundle_refused(setup: dict) -> None:
    run, f1 = setup["run"], setup["f1"]
    bundle = write_bundle(run, "ctx", [("token_f1", ">=", f1 - 0.05)], setup["tmp"] / "tampered", salt="t")
    (bundle / "prompt.json").write_text('{"user": "changed"}', encoding="utf-8")
    with pytest.raises(ValidationError, match="prompt.json does not match its sha256"):
        setup["ws"].promote(bundle, "qa")


def test_promotion_order_approval_and_record(setup: dict) -> None:
    ws, run, f1 = setup["ws"], setup["run"], setup["f1"]
    bundle = write_bundle(run, "ctx", [("token_f1", ">=", round(f1 - 0.05, 4))], setup["tmp"] / "b1", salt="1")
    with pytest.raises(PromotionError, match="promote it to qa first"):
        ws.promote(bundle, "prod", approve="ann")
    qa = ws.promote(bundle, "qa")
    assert (qa.previous_stage, qa.stage) == ("dev", "qa")
    refused = _cli(ws, "promote", str(bundle), "--to", "prod")
    assert refused.returncode == 1 and "needs an explicit approval" in refused.stderr
    done = _cli(ws, "promote", str(bundle), "--to", "prod", "--approve", "ann", "--note", "release 1.2", "--json")
    assert done.returncode == 0, done.stderr
    rec = json.loads(done.stdout)
    assert rec["promoted"] and rec["stage"] == "prod" and rec["approved_by"] == "ann" and rec["approved_at"]
    assert rec["gate_run_id"] == run.run_id and rec["checked_on"] == "pubmed@v1"
    history = ws.promotions(bundle)
    assert list(history["status"]) == ["promoted", "refused", "promoted"]
    assert list(history["stage"]) == ["qa", "prod", "prod"]
    last = history.iloc[-1]
    assert last["approved_by"] == "ann" and last["note"] == "release 1.2" and last["approved_at"] is not None
    assert json.loads(last["gates"])[0]["passed"] is True
    with pytest.raises(PromotionError, match="already in prod"):
        ws.promote(bundle, "prod", approve="ann")


def test_failing_gates_refused(setup: dict) -> None:
    ws, run, f1 = setup["ws"], setup["run"], setup["f1"]
    bundle = write_bundle(run, "ctx", [("token_f1", ">=", round(f1 + 0.2, 4))], setup["tmp"] / "b-fail", salt="f")
    with pytest.raises(PromotionError, match="gates fail"):
        ws.promote(bundle, "qa")
    assert list(ws.promotions(bundle)["status"]) == ["refused"]


def test_prod_rechecks_gates_on_newer_dataset_versions(setup: dict) -> None:
    ws, run, f1, rows = setup["ws"], setup["run"], setup["f1"], setup["rows"]
    gates = [("token_f1", ">=", round(0.75 * f1, 4))]
    bad = write_bundle(run, "ctx", gates, setup["tmp"] / "b-bad", salt="bad")
    good = write_bundle(run, "ctx", gates, setup["tmp"] / "b-good", salt="good")
    ws.promote(bad, "qa")
    ws.promote(good, "qa")
    # v2: 60 new cases whose gold answer belongs to another abstract: the extractive answers no longer match
    shifted = _rows(rows[30:90])
    answers = [r["long_answer"] for r in shifted]
    shifted = [{**r, "long_answer": answers[(i + 7) % len(answers)]} for i, r in enumerate(shifted)]
    v2 = ws.add_dataset("pubmed", _rows(rows[:30]) + shifted, id="pmid")
    assert v2.version == 2
    runs_before = len(ws.runs())
    with pytest.raises(PromotionError, match=r"gates fail on pubmed@v2: ctx: token_f1 = "):
        ws.promote(bad, "prod", approve="ann", note="try")
    assert len(ws.runs()) == runs_before + 1  # the re-run is kept as evidence
    refused = ws.promotions(bad).iloc[-1]
    assert refused["status"] == "refused" and refused["checked_dataset_version"] == 2
    recheck = ws.get_run(refused["gate_run_id"])
    assert recheck.info["dataset_hash"] == v2.hash and recheck.info["n_cells"] == 90
    # v3: the original cases plus 40 new real ones: the variant still clears the gate
    v3 = ws.add_dataset("pubmed", _rows(rows[:30]) + _rows(rows[100:140]), id="pmid")
    ok = ws.promote(good, "prod", approve="bob", note="grew the eval set")
    assert ok.stage == "prod" and ok.checked_on == "pubmed@v3" and ok.gate_run_id != run.run_id
    assert ws.get_run(ok.gate_run_id).info["dataset_hash"] == v3.hash
    rerun_f1 = ok.gates[0]["value"]
    assert rerun_f1 >= 0.75 * f1
    # the re-run reused the cached answers of the 30 original cases: only the 40 new ones were computed
    res = ws.get_run(ok.gate_run_id).results()
    assert int(res["cached"].sum()) >= 30


def test_monitor_uses_the_bundle_eval_dataset(setup: dict) -> None:
    from synthetic_log import OFF_TOPIC, make_requests, write_log

    ws, run, f1 = setup["ws"], setup["run"], setup["f1"]
    bundle = write_bundle(run, "ctx", [("token_f1", ">=", f1 - 0.05)], setup["tmp"] / "served", salt="m")
    log = write_log(setup["tmp"] / "served-log", make_requests(200, questions=OFF_TOPIC, seed=4))
    report = ws.monitor(log, bundle=bundle)
    assert report.drift["reference"] == "pubmed@v1" and report.drift["drifted"]
    # monitored from another workspace: the bundle's own eval cases are the reference
    elsewhere = wb.open(setup["tmp"] / "ops-ws").monitor(log, bundle=bundle)
    d = elsewhere.drift
    assert d["reference"] == f"eval cases of bundle {bundle}" and d["drifted"] and d["n_reference"] == 30


def test_check_constraints_on_integer_and_missing_figures() -> None:
    import numpy as np
    import pandas as pd

    from workbench.analysis import check_constraints

    board = pd.DataFrame({"errors": np.array([0, 3], dtype="int64"), "f1": [0.5, np.nan]}, index=["a", "b"])
    checks = check_constraints(board, [("errors", "<=", 0.0), ("f1", ">=", 0.4)])
    assert [c.passed for c in checks["a"]] == [True, True]
    assert [c.passed for c in checks["b"]] == [False, False] and checks["b"][
        1
    ].describe() == "f1 missing (needs >= 0.4)"
    with pytest.raises(ValidationError, match="known figures"):
        check_constraints(board, [("f2", ">=", 0.1)])
