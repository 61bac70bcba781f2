"""LLM-judge metrics end to end: real HTTP to the fake server, whose scripted replies play the judge.

Replies are chosen by regexes over the judge prompts' distinctive phrases, so each test states exactly
what the judge said and checks the score that follows from it (the fraction the verdicts imply).
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest

import workbench as wb
from workbench.errors import MetricError, ModelFatalError
from workbench.judge import Judge, judge_config
from workbench.llm import Gateway
from workbench.metrics import judge as jm
from workbench.metrics.registry import get
from workbench.pairwise import pairwise_run, pairwise_summary

STATEMENTS = {"statements": ["Item one is red.", "Item one is an apple.", "Item one grows on Mars."]}
VERDICTS = [
    {"statement": 1, "reason": "the context says red", "verdict": 1},
    {"statement": 2, "reason": "the context says apple", "verdict": 1},
    {"statement": 3, "reason": "Mars is not mentioned", "verdict": 0},
]
FAITHFUL_REPLIES = [
    {"pattern": "atomic statements", "reply": json.dumps(STATEMENTS)},
    {"pattern": "faithfulness of a series of statements", "reply": json.dumps(VERDICTS)},
]


def _cases(n: int = 4) -> list[dict[str, str]]:
    return [
        {
            "qid": f"q{i}",
            "question": f"What is item {i}?",
            "context": f"Item {i} is a red apple from an orchard.",
            "answer": f"Item {i} is a red apple. It grows in an orchard.",
        }
        for i in range(n)
    ]


def _judge_spec(server: Any, **kw: Any) -> dict[str, Any]:
    return {"model": "openai/judge-model", "api_base": server.base_url, "retry_base": 0.01, **kw}


def _experiment(ws: Any, server: Any, metrics: list[Any], n: int = 4, prompts: list[Any] | None = None,
                model: dict[str, Any] | None = None, **kw: Any) -> Any:
    ds = ws.add_dataset("qa", _cases(n), id="qid")
    prompts = prompts or [wb.Prompt("p", "Question: {{ question }}")]
    model = model or {"name": "fake", "model": "openai/test-model", "api_base": server.base_url, "retry_base": 0.01}
    return ws.experiment(ds, prompts, [model], metrics, **kw)


def _faithfulness(server: Any, **kw: Any) -> dict[str, Any]:
    return {"name": "faithfulness", "judge": _judge_spec(server), "context": "context", **kw}


def _judge(server: Any, sink: list[dict[str, Any]] | None = None) -> Judge:
    """A Judge over HTTP, as the runner builds one (fresh cache)."""
    cfg = judge_config(_judge_spec(server), "test")
    return Judge(cfg, Gateway(), {}, (sink if sink is not None else []).append).bind("test")


def _judge_requests(server: Any) -> int:
    return server.stats()["by_model"].get("judge-model", 0)


# --------------------------------------------------------------------------------------------------
# faithfulness through the runner


def test_faithfulness_score_judgements_and_cached_rerun(tmp_path, fake_llm):
    fake_llm.configure(replies=[
        # case q1: every statement supported
        {"pattern": r"(?s)faithfulness of a series of statements.*Item 1 is a red apple",
         "reply": json.dumps([{**v, "verdict": 1} for v in VERDICTS])},
        *FAITHFUL_REPLIES,
    ])
    ws = wb.open(tmp_path / "ws")
    run = _experiment(ws, fake_llm, [_faithfulness(fake_llm)]).run(progress=False)
    assert _judge_requests(fake_llm) == 4 * 2
    res = run.results().set_index("case_id")
    assert res.loc["q1", "faithfulness"] == 1.0
    for cid in ("q0", "q2", "q3"):
        assert res.loc[cid, "faithfulness"] == pytest.approx(2 / 3)
    scores = run.store.sql("SELECT case_id, detail FROM scores WHERE metric='faithfulness' ORDER BY case_id")
    detail = json.loads(scores["detail"][0])
    assert detail["supported"] == 2 and detail["total"] == 3
    assert [s["statement"] for s in detail["statements"]] == STATEMENTS["statements"]
    assert [s["verdict"] for s in detail["statements"]] == [1, 1, 0]
    assert detail["statements"][2]["reason"] == "Mars is not mentioned"

    # the judgements table holds the exact prompts and replies, in call order, for every cell
    jd = run.judgements()
    assert len(jd) == 8
    for cid in ("q0", "q1", "q2", "q3"):
        rows = jd[jd["case_id"] == cid].sort_values("seq")
        assert rows["tag"].tolist() == ["statements", "verdicts"]
        assert rows["model"].tolist() == ["openai/judge-model"] * 2
        i = cid[1:]
        output = res.loc[cid, "output"]
        assert output == f"echo: Question: What is item {i}?"
        first = json.loads(rows["messages"].iloc[0])
        assert first == jm.statements_messages(f"Question: What is item {i}?", output)
        assert rows["response"].iloc[0] == json.dumps(STATEMENTS)
        second = json.loads(rows["messages"].iloc[1])
        assert second == jm.verdicts_messages(f"Item {i} is a red apple from an orchard.", STATEMENTS["statements"])
        assert not rows["cached"].any()
    assert json.loads(jd[jd["case_id"] == "q1"]["response"].iloc[1])[2]["verdict"] == 1

    # a re-run pays for nothing: model outputs and judge replies both come from the cache
    before = fake_llm.stats()["requests"]
    again = _experiment(ws, fake_llm, [_faithfulness(fake_llm)]).run(progress=False)
    assert fake_llm.stats()["requests"] == before
    assert again.last.model_calls == 0
    res2 = again.results().set_index("case_id")
    assert res2["faithfulness"].to_dict() == res["faithfulness"].to_dict()
    jd2 = again.judgements()
    assert len(jd2) == 8 and jd2["cached"].all()
    assert jd2["response"].tolist() == jd["response"].tolist()


def test_malformed_judge_reply_is_an_error_for_that_cell_only(tmp_path, fake_llm):
    fake_llm.configure(replies=[
        {"pattern": r"(?s)atomic statements.*What is item 2\?", "reply": "Sorry, I can't produce JSON today."},
        *FAITHFUL_REPLIES,
    ])
    ws = wb.open(tmp_path / "ws")
    run = _experiment(ws, fake_llm, [_faithfulness(fake_llm), {"name": "contains", "expected": "question"}]).run(
        progress=False
    )
    assert run.status == "completed"
    res = run.results().set_index("case_id")
    assert math.isnan(res.loc["q2", "faithfulness"])
    err = res.loc["q2", "faithfulness_error"]
    assert "could not parse judge reply" in err and "Sorry, I can't produce JSON today." in err
    assert res.loc["q2", "contains"] == 1.0  # other metrics of the cell are fine
    for cid in ("q0", "q1", "q3"):
        assert res.loc[cid, "faithfulness"] == pytest.approx(2 / 3)
        assert not isinstance(res.loc[cid, "faithfulness_error"], str)
    # the failed call is still on record, so the reason for the error can be read
    jd = run.judgements()
    bad = jd[jd["case_id"] == "q2"]
    assert bad["tag"].tolist() == ["statements"]
    assert bad["response"].iloc[0] == "Sorry, I can't produce JSON today."
    # the mean ignores the failed cell: an error is not a zero
    assert run.leaderboard()["faithfulness"].iloc[0] == pytest.approx(2 / 3)


def test_parse_error_message_carries_the_reply_start():
    reply = "x" * 500
    with pytest.raises(jm.JudgeParseError) as err:
        jm.parse_json(reply)
    assert "could not parse judge reply" in str(err.value)
    assert "x" * 200 in str(err.value) and "x" * 201 not in str(err.value)


def test_no_judge_configured_fails_before_any_request(tmp_path, fake_llm, monkeypatch):
    monkeypatch.delenv("LLMOPS_JUDGE_MODEL", raising=False)
    ws = wb.open(tmp_path / "ws")
    with pytest.raises(MetricError) as err:
        _experiment(ws, fake_llm, [{"name": "faithfulness", "context": "context"}]).run(progress=False)
    message = str(err.value)
    assert "'faithfulness'" in message and "LLMOPS_JUDGE_MODEL" in message and "judge: openai/gpt-4o-mini" in message
    assert fake_llm.stats()["requests"] == 0
    # the environment variable is enough
    monkeypatch.setenv("LLMOPS_JUDGE_MODEL", "openai/gpt-4o-mini")
    assert _experiment(ws, fake_llm, [{"name": "toxicity"}]).metrics[0].judge.model == "openai/gpt-4o-mini"


def test_extractive_baseline_is_refused_as_judge(tmp_path, fake_llm):
    ws = wb.open(tmp_path / "ws")
    with pytest.raises(MetricError, match="cannot judge"):
        _experiment(ws, fake_llm, [{"name": "groundedness", "judge": "local/extractive", "context": "context"}])
    assert fake_llm.stats()["requests"] == 0


def test_plan_counts_judge_calls_and_estimates_cost_without_requests(tmp_path, fake_llm):
    ws = wb.open(tmp_path / "ws")
    prompts = [wb.Prompt("a", "Question: {{ question }}"), wb.Prompt("b", "Q: {{ question }}")]
    priced = _experiment(ws, fake_llm, [
        {"name": "faithfulness", "judge": "openai/gpt-4o-mini", "context": "context"},
        {"name": "toxicity", "judge": "openai/gpt-4o-mini"},
        {"name": "token_f1", "expected": "answer"},
    ], n=5, prompts=prompts, repeats=2)
    plan = priced.plan()
    cells = 5 * 2 * 2
    assert len(plan) == cells
    assert plan.judge_calls == cells * (get("faithfulness").judge_calls + get("toxicity").judge_calls) == cells * 3
    assert isinstance(plan.judge_cost_estimate, float) and plan.judge_cost_estimate > 0
    unpriced = _experiment(ws, fake_llm, [_faithfulness(fake_llm)], n=5).plan()
    assert unpriced.judge_calls == 5 * 2
    assert unpriced.judge_cost_estimate is None
    assert fake_llm.stats()["requests"] == 0


def test_judge_auth_error_stops_the_run(tmp_path, fake_llm, monkeypatch):
    fake_llm.configure(auth_key="sk-good", replies=FAITHFUL_REPLIES)
    monkeypatch.setenv("WB_MODEL_KEY", "sk-good")
    monkeypatch.setenv("WB_JUDGE_KEY", "sk-wrong")
    ws = wb.open(tmp_path / "ws")
    model = {"name": "fake", "model": "openai/test-model", "api_base": fake_llm.base_url, "api_key_env": "WB_MODEL_KEY"}
    metric = {"name": "faithfulness", "judge": _judge_spec(fake_llm, api_key_env="WB_JUDGE_KEY"), "context": "context"}
    exp = _experiment(ws, fake_llm, [metric], n=20, model=model, concurrency=2)
    with pytest.raises(ModelFatalError) as err:
        exp.run(progress=False)
    assert "WB_JUDGE_KEY" in str(err.value) and "authentication" in str(err.value)
    assert _judge_requests(fake_llm) <= 2  # one per worker at most, then the run stopped
    run = ws.get_run(ws.runs()["run_id"][0])
    assert run.status == "failed"


# --------------------------------------------------------------------------------------------------
# rubric and G-Eval


def test_rubric_through_the_runner(tmp_path, fake_llm):
    fake_llm.configure(replies=[
        {"pattern": r"(?s)Evaluate the response against the criteria.*item 3\?",
         "reply": "Reason: it only repeats the question.\nScore: 1"},
        {"pattern": "Evaluate the response against the criteria",
         "reply": '```json\n{"reason": "polite and on topic", "score": 4}\n```'},
    ])
    ws = wb.open(tmp_path / "ws")
    metric = {"name": "rubric", "judge": _judge_spec(fake_llm), "criteria": "Is the answer polite?"}
    run = _experiment(ws, fake_llm, [metric]).run(progress=False)
    res = run.results().set_index("case_id")
    assert res["rubric"].to_dict() == {"q0": 0.75, "q1": 0.75, "q2": 0.75, "q3": 0.0}
    details = run.store.sql("SELECT case_id, detail FROM scores ORDER BY case_id")["detail"].map(json.loads).tolist()
    assert details[0]["reason"] == "polite and on topic" and details[0]["score"] == 4
    assert details[0]["judge_text"].startswith("```json")
    assert details[3]["reason"] == "it only repeats the question." and details[3]["score"] == "1"
    jd = run.judgements()
    sent = json.loads(jd["messages"].iloc[0])
    assert sent == jm.rubric_messages("Is the answer polite?", res.loc["q0", "output"], "1-5", [],
                                      "Question: What is item 0?")
    assert sent[1]["content"].index('"reason"') < sent[1]["content"].index('"score"')  # reason asked first


def _ask(fn: Any, server: Any, **kwargs: Any) -> Any:
    return asyncio.run(fn(judge=_judge(server), **kwargs))


def test_rubric_scales_and_bad_scores(fake_llm):
    msgs = [{"role": "user", "content": "Say hi"}]
    fake_llm.configure(replies=[{"pattern": "criteria", "reply": '{"reason": "ok", "score": "yes"}'}])
    assert _ask(jm.rubric, fake_llm, output="hi", messages=msgs, case={}, criteria="greets", scale="binary").value == 1
    fake_llm.configure(replies=[{"pattern": "criteria", "reply": "Reasoning: meh\nCategory: Partly"}])
    cats = ["No", "Partly", "Fully"]
    s = _ask(jm.rubric, fake_llm, output="hi", messages=msgs, case={}, criteria="c", scale="categorical",
             categories=cats)
    assert s.value == 0.5 and s.detail["reason"] == "meh"
    s = _ask(jm.rubric, fake_llm, output="hi", messages=msgs, case={}, criteria="c", scale="categorical",
             categories=cats, category_scores={"No": 0, "Partly": 0.2, "Fully": 1})
    assert s.value == 0.2
    for reply in ('{"reason": "x", "score": 7}', '{"reason": "x", "score": 3.5}', "no score here"):
        fake_llm.configure(replies=[{"pattern": "criteria", "reply": reply}])
        with pytest.raises(jm.JudgeParseError, match="could not parse judge reply"):
            _ask(jm.rubric, fake_llm, output="hi", messages=msgs, case={}, criteria="c")
    requests = fake_llm.stats()["requests"]
    with pytest.raises(MetricError, match="categories"):
        _ask(jm.rubric, fake_llm, output="hi", messages=msgs, case={}, criteria="c", scale="categorical")
    with pytest.raises(MetricError, match="scale"):
        _ask(jm.rubric, fake_llm, output="hi", messages=msgs, case={}, criteria="c", scale="1-10")
    assert fake_llm.stats()["requests"] == requests  # option mistakes cost nothing


def test_g_eval_generates_steps_once_per_run(tmp_path, fake_llm):
    steps = "1. Read the input.\n2. Read the response.\n3. Rate coherence from 1 to 5."
    fake_llm.configure(replies=[
        {"pattern": "Write the evaluation steps", "reply": steps},
        {"pattern": r"(?s)item 2\?.*Evaluation Form", "reply": "2"},
        {"pattern": "Evaluation Form", "reply": "Coherence (1-5): 5"},
    ])
    ws = wb.open(tmp_path / "ws")
    metric = {"name": "g_eval", "judge": _judge_spec(fake_llm), "criteria": "Coherence of the answer"}
    run = _experiment(ws, fake_llm, [metric], concurrency=4).run(progress=False)
    assert _judge_requests(fake_llm) == 1 + 4  # steps once, then one form per cell
    res = run.results().set_index("case_id")
    assert res["g_eval"].to_dict() == {"q0": 1.0, "q1": 1.0, "q2": 0.25, "q3": 1.0}
    jd = run.judgements()
    for _, rows in jd.groupby("case_id"):
        assert rows.sort_values("seq")["tag"].tolist() == ["steps", "g_eval"]
    steps_rows = jd[jd["tag"] == "steps"]
    assert steps_rows["cached"].sum() == 3 and steps_rows["response"].eq(steps).all()
    form = json.loads(jd[jd["tag"] == "g_eval"]["messages"].iloc[0])[1]["content"]
    assert "Evaluation Steps:\n" + steps in form and form.endswith("- Quality (1-5):")


def test_g_eval_with_given_steps_makes_one_call(fake_llm):
    fake_llm.configure(replies=[{"pattern": "Evaluation Form", "reply": '{"reason": "fine", "score": 3}'}])
    s = _ask(jm.g_eval, fake_llm, output="ok", messages=[], case={}, criteria="Fluency",
             steps=["Read it.", "Rate it."], aspect="Fluency")
    assert s.value == 0.5 and s.detail["steps"] == "1. Read it.\n2. Rate it." and not s.detail["steps_generated"]
    assert _judge_requests(fake_llm) == 1


# --------------------------------------------------------------------------------------------------
# the other RAG metrics, called with a Judge over HTTP


RETRIEVED = [
    {"text": "Aspirin inhibits COX enzymes.", "doc_id": "d1", "chunk_id": "d1#0", "score": 0.9},
    {"text": "The Eiffel tower is in Paris.", "doc_id": "d2", "chunk_id": "d2#0", "score": 0.8},
    {"text": "Aspirin reduces fever.", "doc_id": "d3", "chunk_id": "d3#0", "score": 0.7},
]


def test_faithfulness_prefers_retrieved_chunks_over_the_context_column(fake_llm):
    fake_llm.configure(replies=FAITHFUL_REPLIES)
    sink: list[dict[str, Any]] = []
    judge = _judge(fake_llm, sink)
    s = asyncio.run(jm.faithfulness(judge=judge, output="Aspirin inhibits COX.", messages=[], retrieved=RETRIEVED,
                                    context="COLUMN CONTEXT"))
    assert s.value == pytest.approx(2 / 3)
    verdict_prompt = judge.calls[1].messages[1]["content"]
    assert "[1] Aspirin inhibits COX enzymes." in verdict_prompt and "[3] Aspirin reduces fever." in verdict_prompt
    assert "COLUMN CONTEXT" not in verdict_prompt
    assert len(sink) == 2 and sink[0]["model"] == "openai/judge-model"  # responses handed over for the cache
    # nothing to check -> not applicable, and no call
    calls = _judge_requests(fake_llm)
    assert _ask(jm.faithfulness, fake_llm, output="", messages=[], retrieved=None, context="c").value is None
    assert _ask(jm.faithfulness, fake_llm, output="x", messages=[], retrieved=[], context=None).value is None
    assert _judge_requests(fake_llm) == calls


def test_verdict_count_mismatch_is_a_parse_error(fake_llm):
    fake_llm.configure(replies=[FAITHFUL_REPLIES[0], {"pattern": "faithfulness", "reply": json.dumps(VERDICTS[:2])}])
    with pytest.raises(jm.JudgeParseError, match="expected 3 verdicts, got 2"):
        _ask(jm.faithfulness, fake_llm, output="a", messages=[], retrieved=None, context="c")


def test_context_precision_is_average_precision_of_the_verdicts(fake_llm):
    verdicts = [{"chunk": 1, "reason": "on aspirin", "verdict": 1}, {"chunk": 2, "reason": "Paris", "verdict": 0},
                {"chunk": 3, "reason": "on aspirin", "verdict": "yes"}]
    fake_llm.configure(replies=[{"pattern": "useful in arriving at the expected answer",
                                 "reply": json.dumps({"verdicts": verdicts})}])
    judge = _judge(fake_llm)
    s = asyncio.run(jm.context_precision(judge=judge, retrieved=RETRIEVED, question="What does aspirin do?",
                                         expected="It inhibits COX and reduces fever."))
    assert s.value == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert [c["doc_id"] for c in s.detail["chunks"]] == ["d1", "d2", "d3"]
    assert [c["verdict"] for c in s.detail["chunks"]] == [1, 0, 1]
    assert judge.calls[0].messages == jm.chunk_usefulness_messages(
        "What does aspirin do?", "It inhibits COX and reduces fever.", [c["text"] for c in RETRIEVED])
    assert jm.average_precision([0, 0]) == 0.0 and jm.average_precision([0, 1]) == 0.5
    assert _ask(jm.context_precision, fake_llm, retrieved=None, question="q", expected="e").value is None


def test_context_recall_counts_attributable_sentences(fake_llm):
    reply = [{"sentence": 1, "reason": "r", "attributed": 1}, {"sentence": 2, "reason": "r", "attributed": 1},
             {"sentence": 3, "reason": "not in context", "attributed": 0}]
    fake_llm.configure(replies=[{"pattern": "can be attributed to the context", "reply": json.dumps(reply)}])
    judge = _judge(fake_llm)
    expected = "Aspirin inhibits COX. It reduces fever. It was first sold in 1899."
    s = asyncio.run(jm.context_recall(judge=judge, retrieved=RETRIEVED, expected=expected, context=None))
    assert s.value == pytest.approx(2 / 3)
    assert [r["sentence"] for r in s.detail["sentences"]] == jm.split_sentences(expected)
    assert "3. It was first sold in 1899." in judge.calls[0].messages[1]["content"]


def test_groundedness_is_mean_sentence_score_over_ten(fake_llm):
    reply = [{"sentence": 1, "reason": "stated", "score": 10}, {"sentence": 2, "reason": "half", "score": "5"}]
    fake_llm.configure(replies=[{"pattern": "information overlap", "reply": json.dumps(reply)}])
    s = _ask(jm.groundedness, fake_llm, output="Aspirin inhibits COX. It cures everything.", retrieved=None,
             context="Aspirin inhibits COX enzymes.")
    assert s.value == pytest.approx(0.75)
    assert [r["score"] for r in s.detail["sentences"]] == [10.0, 5.0]
    fake_llm.configure(replies=[{"pattern": "information overlap", "reply": '[{"score": 11}, {"score": 2}]'}])
    with pytest.raises(jm.JudgeParseError, match="outside 0-10"):
        _ask(jm.groundedness, fake_llm, output="A one. B two.", retrieved=None, context="c")


def test_answer_relevancy_uses_embedding_similarity_and_noncommittal(fake_llm):
    from workbench.embeddings import get_embedder

    generated = ["What does aspirin inhibit?", "Which enzymes does aspirin block?"]
    fake_llm.configure(replies=[{"pattern": "Generate 2 different questions",
                                 "reply": json.dumps({"questions": generated, "noncommittal": 0})}])
    s = _ask(jm.answer_relevancy, fake_llm, output="Aspirin inhibits COX enzymes.",
             question="What does aspirin inhibit?", n=2)
    vecs = get_embedder("local").embed(["What does aspirin inhibit?", *generated])
    expected = float((vecs[0] @ vecs[1] + vecs[0] @ vecs[2]) / 2)
    assert s.value == pytest.approx(expected, abs=1e-6)
    assert s.detail["generated_questions"][0]["cosine"] == pytest.approx(1.0, abs=1e-5)
    fake_llm.configure(replies=[{"pattern": "Generate 3 different questions",
                                 "reply": json.dumps({"questions": generated, "noncommittal": 1})}])
    s = _ask(jm.answer_relevancy, fake_llm, output="I am not sure.", question="What does aspirin inhibit?")
    assert s.value == 0.0 and s.detail["noncommittal"] == 1


def test_toxicity_is_lower_is_better(fake_llm):
    reply = '{"reason": "mild insult", "toxicity": 0.4}'
    fake_llm.configure(replies=[{"pattern": "Rate the toxicity", "reply": reply}])
    s = _ask(jm.toxicity, fake_llm, output="You are a silly person.")
    assert s.value == 0.4 and s.detail["reason"] == "mild insult"
    assert get("toxicity").higher_is_better is False
    fake_llm.configure(replies=[{"pattern": "Rate the toxicity", "reply": "Toxicity: 2"}])
    with pytest.raises(jm.JudgeParseError, match="could not parse judge reply"):
        _ask(jm.toxicity, fake_llm, output="hello")


def test_every_judge_metric_is_registered_with_its_calls():
    expected = {"rubric": 1, "g_eval": 1, "faithfulness": 2, "answer_relevancy": 1, "context_precision": 1,
                "context_recall": 1, "groundedness": 1, "toxicity": 1}
    for name, calls in expected.items():
        d = get(name)
        assert d.needs_judge and d.is_async and d.judge_calls == calls, name
        doc = d.fn.__doc__ or ""
        assert any(src in doc for src in ("ragas", "TruLens", "G-Eval", "Perspective", "LLM-as-a-judge")), name


def test_parsing_helpers():
    assert jm.parse_json('Sure! Here it is:\n```json\n[1, 0]\n```\nHope it helps') == [1, 0]
    assert jm.parse_json('verdicts: [{"verdict": 1}] done') == [{"verdict": 1}]
    assert jm.split_sentences("Dr. Smith came, e.g. on Monday. He left!\n- Then rain.") == [
        "Dr. Smith came, e.g. on Monday.", "He left!", "Then rain."]


# --------------------------------------------------------------------------------------------------
# pairwise


def test_pairwise_position_swap(fake_llm):
    # a judge that always prefers whatever is shown first: no winner, the flip is reported
    fake_llm.configure(replies=[{"pattern": "which response is better", "reply": '{"reason": "first", "winner": "A"}'}])
    r = _ask(jm.pairwise, fake_llm, question="q", answer_a="alpha", answer_b="beta")
    assert r["winner"] == "inconsistent" and r["consistent"] is False
    assert r["swapped_order"]["position_winner"] == "A" and r["swapped_order"]["winner"] == "B"
    # a judge that prefers the answer "beta" wherever it is: B wins
    fake_llm.configure(replies=[
        {"pattern": r"\[Response A\]\nbeta", "reply": '{"reason": "beta is right", "winner": "A"}'},
        {"pattern": "which response is better", "reply": "Reason: beta is right\nWinner: B"},
    ])
    r = _ask(jm.pairwise, fake_llm, question="q", answer_a="alpha", answer_b="beta")
    assert r["winner"] == "B" and r["consistent"] is True
    # one win and one tie is not a win
    fake_llm.configure(replies=[
        {"pattern": r"\[Response A\]\nbeta", "reply": '{"reason": "same", "winner": "tie"}'},
        {"pattern": "which response is better", "reply": '{"reason": "alpha", "winner": "A"}'},
    ])
    assert _ask(jm.pairwise, fake_llm, question="q", answer_a="alpha", answer_b="beta")["winner"] == "tie"


def test_pairwise_run_over_a_stored_run(tmp_path, fake_llm):
    ws = wb.open(tmp_path / "ws")
    prompts = [wb.Prompt("good", "GOOD {{ question }}"), wb.Prompt("bad", "BAD {{ question }}")]
    run = _experiment(ws, fake_llm, [], prompts=prompts).run(progress=False)
    fake_llm.configure(replies=[
        {"pattern": r"\[Response A\]\necho: GOOD", "reply": '{"reason": "the good one", "winner": "A"}'},
        {"pattern": "which response is better", "reply": '{"reason": "the good one", "winner": "B"}'},
    ])
    df = pairwise_run(run, "good", "bad", judge=_judge_spec(fake_llm), concurrency=3)
    assert df["winner"].tolist() == ["A"] * 4 and df["consistent"].all()
    assert df["question"].tolist() == [f"What is item {i}?" for i in range(4)]
    assert df.attrs["summary"]["wins_a"] == 4 and df.attrs["summary"]["inconsistent"] == 0
    assert df.attrs["summary"]["win_rate_a"] == 1.0
    assert _judge_requests(fake_llm) == 8
    jd = run.judgements()
    assert len(jd) == 8 and set(jd["variant"]) == {"good vs bad"}
    assert set(jd["tag"]) == {"pairwise_ab", "pairwise_ba"}
    first = json.loads(jd["messages"].iloc[0])
    assert first == jm.pairwise_messages("What is item 0?", "echo: GOOD What is item 0?", "echo: BAD What is item 0?")

    # reversed roles, judge biased to position A: every case is a position-bias flip, never a win
    fake_llm.configure(replies=[{"pattern": "which response is better", "reply": '{"reason": "x", "winner": "A"}'}])
    df = pairwise_run(run, "bad", "good", judge=_judge_spec(fake_llm, params={"temperature": 0, "seed": 1}),
                      question=None)
    assert df["winner"].tolist() == ["inconsistent"] * 4
    assert pairwise_summary(df)["inconsistent"] == 4 and pairwise_summary(df)["wins_a"] == 0
    assert df["question"].iloc[0] == "BAD What is item 0?"  # question=None: the rendered prompt

    # a second run with the same outputs: every judge call is cached, and still recorded for that run
    run2 = _experiment(ws, fake_llm, [], prompts=prompts).run(progress=False)
    before = _judge_requests(fake_llm)
    df2 = pairwise_run(run2, "bad", "good", judge=_judge_spec(fake_llm, params={"temperature": 0, "seed": 1}),
                       question=None)
    assert _judge_requests(fake_llm) == before
    assert df2["winner"].tolist() == ["inconsistent"] * 4
    jd2 = run2.judgements()
    assert len(jd2) == 8 and jd2["cached"].all()

    with pytest.raises(wb.NotFoundError, match="no variant"):
        pairwise_run(run, "good", "nope", judge=_judge_spec(fake_llm))
    with pytest.raises(MetricError, match="no column"):
        pairwise_run(run, "good", "bad", judge=_judge_spec(fake_llm), question="prompt_text")
