"""Values of the deterministic built-in metrics and of the offline baseline, checked, not just run.

token_f1 and normalized_exact_match are cross-checked against the official SQuAD v1.1 evaluation script's
definitions (``evaluate-v1.1.py``: normalize_answer, f1_score, exact_match_score,
metric_max_over_ground_truths), written out again here from the published script rather than imported
from the package, on real PubMedQA text. The other metrics are pinned with hand-computed cases.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from pathlib import Path

import pytest

from workbench import baseline
from workbench.metrics import basic
from workbench.metrics.registry import get

DATA = Path(__file__).resolve().parent / "data"
DEMO = Path(__file__).resolve().parents[1] / "workbench" / "data" / "pubmedqa_demo.jsonl"


# --- SQuAD v1.1 reference (evaluate-v1.1.py, Rajpurkar et al. 2016) ---------------------------------------


def squad_normalize(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def squad_f1(prediction, ground_truth):
    prediction_tokens = squad_normalize(prediction).split()
    ground_truth_tokens = squad_normalize(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def squad_em(prediction, ground_truth):
    return squad_normalize(prediction) == squad_normalize(ground_truth)


def squad_max(metric_fn, prediction, ground_truths):
    return max(metric_fn(prediction, gt) for gt in ground_truths)


def _pairs():
    """(prediction, [answers]) from real data: PubMedQA sentence pairs and the baseline's demo answers."""
    rows = [json.loads(line) for line in (DATA / "pubmedqa_pairs.jsonl").read_text().splitlines()]
    out = [(r["hypothesis"], [r["reference"]]) for r in rows]
    demo = [json.loads(line) for line in DEMO.read_text().splitlines()][:60]
    for r in demo:
        msgs = [{"role": "user", "content": f"Context: {r['context']}\nQuestion: {r['question']}"}]
        predicted = baseline.answer(msgs)
        out.append((predicted, [r["long_answer"], r["final_decision"]]))
        # the same answer re-cased, re-punctuated and with articles: equal after normalisation only
        out.append((f"The {r['long_answer'].upper()}!", [r["long_answer"]]))
        out.append((r["final_decision"].capitalize() + ".", [r["final_decision"]]))
    return out


def test_token_f1_and_normalized_em_equal_the_squad_v11_definitions_on_real_pairs():
    pairs = _pairs()
    f1s = [basic.token_f1(p, answers) for p, answers in pairs]
    ems = [basic.normalized_exact_match(p, answers) for p, answers in pairs]
    assert f1s == pytest.approx([squad_max(squad_f1, p, a) for p, a in pairs], abs=1e-12)
    assert ems == [float(squad_max(squad_em, p, a)) for p, a in pairs]
    # the data exercises every branch: no overlap, partial overlap, full match
    assert min(f1s) == 0.0 and max(f1s) == 1.0 and sum(0 < f < 1 for f in f1s) > 150
    assert 0 < sum(ems) < len(ems)
    assert [basic.normalize_answer(p) for p, _ in pairs] == [squad_normalize(p) for p, _ in pairs]


def test_token_f1_by_hand():
    # pred -> [cat, sat, on, mat], ref -> [cat, on, mat]: P = 3/4, R = 1, F1 = 6/7
    assert basic.token_f1("The cat sat on the mat.", "a cat on a mat") == pytest.approx(6 / 7)
    assert basic.token_f1("yes yes no", "yes") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))
    assert basic.token_f1("Paris", ["London", "paris!"]) == 1.0  # max over answers
    assert basic.token_f1("Ünïcödé wörds", "ÜNÏCÖDÉ") == pytest.approx(2 / 3)  # lower() is Unicode-aware
    assert basic.token_f1("", "answer") == 0.0 and basic.token_f1("answer", "") == 0.0
    # where v1.1 says 0 (its answers are never empty) an empty output for an empty answer is right: 1
    assert basic.token_f1("", "") == 1.0 and basic.token_f1("the", "An") == 1.0
    assert squad_f1("", "") == 0
    assert basic.token_f1("anything", []) == 0.0
    assert basic.token_f1(None, "answer") == 0.0 and basic.token_f1("nan", float("nan")) == 0.0


def test_exact_match_by_hand():
    assert basic.exact_match("Paris", "Paris") == 1.0
    assert basic.exact_match("Paris ", "Paris") == 0.0 and basic.exact_match("paris", "Paris") == 0.0
    assert basic.exact_match("Paris", ["London", "Paris"]) == 1.0
    assert basic.exact_match("", "") == 1.0 and basic.exact_match(None, "") == 1.0
    assert basic.exact_match("café", "café") == 1.0
    assert basic.exact_match("caf\u00e9", "cafe\u0301") == 0.0  # exact means exact: no Unicode normalisation
    assert basic.exact_match("", float("nan")) == 1.0  # a missing expected value is empty, not "nan"


def test_normalized_exact_match_by_hand():
    assert basic.normalized_exact_match("The  Eiffel Tower!", "eiffel tower") == 1.0
    assert basic.normalized_exact_match("ÉCOLE, the école", "école école") == 1.0
    assert basic.normalized_exact_match("«école»", "école") == 0.0  # SQuAD strips ASCII punctuation only
    assert basic.normalized_exact_match("", "") == 1.0 and basic.normalized_exact_match("a", "") == 1.0
    assert basic.normalized_exact_match("yes", ["no", "maybe"]) == 0.0


def test_contains_by_hand():
    assert basic.contains("The answer is YES.", "yes") == 1.0
    assert basic.contains("The answer is YES.", "yes", case_sensitive=True) == 0.0
    assert basic.contains("GROSSE STRASSE", "straße") == 1.0  # casefold, not lower
    assert basic.contains("ΕΛΛΗΝΙΚΆ κείμενα", "ελληνικά") == 1.0
    assert basic.contains("anything", "") == 0.0 and basic.contains("", "") == 0.0  # empty expected: no evidence
    assert basic.contains(None, "x") == 0.0
    assert basic.contains("maybe not", ["yes", "maybe"]) == 1.0


def test_regex_match_by_hand():
    s = basic.regex_match("call 555-1234 now", r"\d{3}-\d{4}")
    assert s.value == 1.0 and s.detail == {"match": "555-1234"}
    assert basic.regex_match("ABC", "abc").value == 0.0
    assert basic.regex_match("ABC", "abc", ignore_case=True).value == 1.0
    assert basic.regex_match("naïve", r"^\w+$").value == 1.0  # \w is Unicode
    assert basic.regex_match("", "^$").value == 1.0 and basic.regex_match("", "x").value == 0.0
    with pytest.raises(ValueError, match="not a valid regular expression"):
        basic.regex_match("x", "(")


def test_json_valid_by_hand():
    ok = ['{"a": 1}', "null", "[]", '"ünï"', ' {"a": [1, 2]} ', '```json\n{"a": [1, 2]}\n```', "```JSON\n[]\n```",
          "```\n{}\n```"]
    bad = ["", "   ", "{a: 1}", "NaN", '{"x": Infinity}', '{"a": 1} trailing', "Here: ```json\n{}\n```", "```json```"]
    assert [basic.json_valid(t).value for t in ok] == [1.0] * len(ok)
    assert [basic.json_valid(t).value for t in bad] == [0.0] * len(bad)
    assert basic.json_valid("```json\n{}\n```", allow_fences=False).value == 0.0
    assert "NaN" in basic.json_valid("NaN").detail["error"]


def test_latency_and_cost_say_what_they_return():
    assert "original call's latency" in get("latency").description
    assert "None for a model it does not price" in get("cost").description
    assert get("latency").higher_is_better is False and get("cost").higher_is_better is False


def test_a_cached_cell_reports_the_original_latency(tmp_path):
    import workbench as wb

    ws = wb.open(tmp_path / "ws")
    ds = ws.add_dataset("qa", [{"id": f"c{i}", "q": f"Grass is green. Is grass green {i}?"} for i in range(3)], id="id")
    exp = ws.experiment(ds, [wb.Prompt("p", "{{ q }}")], "local/extractive", ["latency"])
    first = exp.run(progress=False).results().set_index("case_id")
    second = exp.run(progress=False).results().set_index("case_id")
    assert not first["cached"].any() and second["cached"].all()
    assert (first["latency_ms"] > 0).all()
    assert second["latency"].tolist() == first["latency_ms"].tolist() == second["latency_ms"].tolist()


# --- the offline baseline ---------------------------------------------------------------------------------


def _user(text):
    return [{"role": "user", "content": text}]


def test_baseline_answers_with_the_best_matching_context_sentence():
    ctx = "The sky is blue. Grass is green in spring. Snow is white."
    assert baseline.answer(_user(f"Context: {ctx}\nQuestion: What colour is grass?")) == "Grass is green in spring."
    assert baseline.answer(_user(f"Abstract: {ctx}\nQ: Is snow white?")) == "Snow is white."
    # BM25 weighs rare terms: "aspirin" (1 sentence) beats "patients" (3 sentences)
    ctx = "Patients were old. Patients were many. Aspirin lowered risk. Patients left."
    assert baseline.answer(_user(f"Context: {ctx}\nQuestion: Did aspirin help patients?")) == "Aspirin lowered risk."
    # no term in common: the first sentence (every score ties at 0)
    assert baseline.answer(_user("Context: One fish. Two fish.\nQuestion: Why?")) == "One fish."


def test_baseline_without_context_has_nothing_to_extract():
    assert baseline.answer(_user("Question: Is grass green?")) == ""
    assert baseline.answer(_user("")) == ""
    assert baseline.answer(_user("Grass is green. Is grass green?")) == "Grass is green."
    q, c = baseline.find_question_and_context(_user("Context: A b c.\nQuestion: Why so?"))
    assert (q, c) == ("Why so?", "A b c.")


def test_baseline_on_a_real_demo_case():
    row = json.loads(DEMO.read_text().splitlines()[0])
    got = baseline.answer(_user(f"Context: {row['context']}\nQuestion: {row['question']}"))
    # the one sentence holding five of the question's terms (oral, endotracheal, intubation, helicopter, environment)
    assert got.startswith("The purpose of this study was to determine whether") and got in row["context"]
