"""Served requests back into the eval set: ws.dataset_from_log dedupes, keeps feedback, and the next run uses it."""

from __future__ import annotations

import random
from pathlib import Path

from synthetic_log import eval_rows, held_out_rows, make_feedback, make_requests, write_log

import workbench as wb


def test_dataset_from_log_dedupes_keeps_feedback_and_runs(tmp_path: Path) -> None:
    ws = wb.open(tmp_path / "ws")
    ev = eval_rows()[:30]
    v1 = ws.add_dataset("pubmed", [{k: r[k] for k in ("pmid", "question", "long_answer")} for r in ev], id="pmid")
    held = held_out_rows()[:20]
    # traffic: questions already in the eval set, new ones asked several times (one with different case
    # and spacing), some failed requests; about half of the requests get a rating
    reqs = make_requests(300, questions=ev[:10] + held, error_rate=0.05, seed=11)
    reqs[0]["input"]["question"] = "  " + held[0]["question"].upper() + " "
    reqs[0]["error"], reqs[0]["status"] = None, 200

    def rate(rng: random.Random, req: dict) -> float | None:
        return float(rng.randint(1, 5)) if rng.random() < 0.5 else None

    feedback = make_feedback(reqs, rate, seed=2)
    log = write_log(tmp_path / "log", reqs, feedback)
    rated = {f["request_id"]: f for f in feedback}

    preview = ws.dataset_from_log(log, "pubmed")
    report = preview.report
    assert report["requests"] == 300 and report["base"] == "pubmed@v1"
    usable = [r for r in reqs if r["error"] is None and r["request_id"] in rated]
    assert report["selected"] == len(usable)
    new_questions = {" ".join(r["input"]["question"].split()).casefold() for r in usable} - {
        r["question"].casefold() for r in ev
    }
    assert report["new_cases"] == len(new_questions) == len(preview.new_rows)
    assert report["duplicates_of_existing"] > 0 and report["duplicates_in_log"] > 0
    assert ws.dataset("pubmed").version == 1  # nothing stored before review
    html = preview._repr_html_()
    assert "call <code>.save()</code>" in html and f"{report['new_cases']} new case(s)" in html
    frame = preview.to_pandas()
    for row in frame.to_dict("records"):  # feedback and the served answer are kept, from the latest request
        fb = rated[row["request_id"]]
        assert row["feedback_rating"] == fb["rating"] and row["feedback_label"] == fb["label"]
        src = next(r for r in reqs if r["request_id"] == row["request_id"])
        assert row["served_output"] == src["output"] and row["pmid"] == row["request_id"]
        later = [r for r in usable if r["input"]["question"].casefold().strip() == row["question"].casefold().strip()]
        assert src["ts"] == max(r["ts"] for r in later)

    v2 = preview.save()
    assert v2.version == 2 and v2.n_cases == 30 + report["new_cases"]
    old_ids = [cid for cid, _ in v1.cases()]
    assert [cid for cid, _ in v2.cases()][:30] == old_ids  # existing cases keep their ids
    assert preview.save() is v2  # saving twice stores nothing new
    # filtered, and with confirm=True: the low ratings only, stored at once
    low = ws.dataset_from_log(log, "pubmed-low", where="rating <= 2", confirm=True)
    stored = ws.dataset("pubmed-low")
    assert stored.n_cases == low.report["new_cases"] > 0
    assert all(row["feedback_rating"] <= 2 for _, row in stored.cases())
    everything = ws.dataset_from_log(log, "pubmed-all", with_feedback=False)
    assert everything.report["selected"] == sum(r["error"] is None for r in reqs)

    # the next experiment runs on the new version
    exp = ws.experiment(
        ws.dataset("pubmed"),
        wb.Prompt("q", "Question: {{ question }}"),
        "local/extractive",
        [{"name": "token_f1", "expected": "question"}],
    )
    run = exp.run(progress=False)
    assert run.info["dataset_hash"] == v2.hash and run.summary()["stored"] == v2.n_cases
