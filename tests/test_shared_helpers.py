"""One sentence splitter, one JSON-fence pattern, one judgement-row builder; batch scoring is never silently skipped."""

from __future__ import annotations

import re

import pytest

import workbench as wb
from workbench import baseline, text
from workbench.metrics import judge as jm
from workbench.metrics.registry import _REGISTRY, register
from workbench.retrieval import chunking

ABSTRACT = (
    "Dr. Smith et al. measured it, e.g. in Fig. 2. The mean was 25.9 s (p<.001). Was it longer? Yes!\n\n"
    "- A listed item\n- Another one. With two sentences."
)


def test_chunker_judge_and_baseline_split_sentences_alike():
    spans = chunking.split_sentences(ABSTRACT)
    assert [ABSTRACT[s:e] for s, e in spans] == text.split_sentences(ABSTRACT)
    assert baseline.split_sentences is text.split_sentences
    assert text.split_sentences(ABSTRACT)[:4] == [
        "Dr. Smith et al. measured it, e.g. in Fig. 2.",
        "The mean was 25.9 s (p<.001).",
        "Was it longer?",
        "Yes!",
    ]
    # judge statements: the same sentences, each line on its own, bullets dropped
    assert jm.split_sentences(ABSTRACT) == [
        "Dr. Smith et al. measured it, e.g. in Fig. 2.",
        "The mean was 25.9 s (p<.001).",
        "Was it longer?",
        "Yes!",
        "A listed item",
        "Another one.",
        "With two sentences.",
    ]
    assert text.split_sentences("") == [] and jm.split_sentences(None) == []


def test_one_json_fence_for_json_valid_and_the_judge_parser():
    reply = 'Sure:\n```JSON\n{"score": 4}\n```\nanything else?'
    assert jm.parse_json(reply) == {"score": 4}
    assert wb.metric  # public decorator still importable
    from workbench.metrics.basic import json_valid

    assert json_valid(reply).value == 0.0  # chatter around the fence: the output itself is not JSON
    assert json_valid('```JSON\n{"score": 4}\n```').value == 1.0


def _overlap(output: str, expected: str) -> float:
    return float(bool(set(re.findall(r"\w+", output.lower())) & set(re.findall(r"\w+", expected.lower()))))


@pytest.fixture
def counted_metric():
    calls = {"fn": 0, "batch": 0}

    def overlap(output: str, expected: str) -> float:
        calls["fn"] += 1
        return _overlap(output, expected)

    def good_batch(outputs, expecteds):
        calls["batch"] += 1
        return [_overlap(o, e) for o, e in zip(outputs, expecteds)]

    yield calls, overlap, good_batch
    _REGISTRY.pop("overlap_test", None)


def test_cached_cells_are_scored_by_the_batch_form(tmp_path, counted_metric):
    calls, fn, batch = counted_metric
    register(fn, "overlap_test", batch=batch)
    ws = wb.open(tmp_path / "ws")
    rows = [{"id": f"c{i}", "q": f"Grass is green. Is grass green {i}?", "a": "green"} for i in range(5)]
    exp = ws.experiment(ws.add_dataset("qa", rows, id="id"), [wb.Prompt("p", "{{ q }}")], "local/extractive",
                        [{"name": "overlap_test", "expected": "a"}])
    first = exp.run(progress=False)
    assert calls == {"fn": 5, "batch": 0}  # fresh cells are scored as they arrive
    second = exp.run(progress=False)
    assert calls == {"fn": 5, "batch": 1} and second.last.batch_fallbacks == 0  # all 5 cached cells, one call
    assert second.results()["overlap_test"].tolist() == first.results()["overlap_test"].tolist() == [1.0] * 5


def test_a_broken_batch_form_warns_and_is_counted(tmp_path, counted_metric):
    calls, fn, _ = counted_metric

    def short_batch(outputs, expecteds):
        calls["batch"] += 1
        return [1.0]  # one value for many cells: wrong

    register(fn, "overlap_test", batch=short_batch)
    ws = wb.open(tmp_path / "ws")
    rows = [{"id": f"c{i}", "q": f"Grass is green. Is grass green {i}?", "a": "green"} for i in range(4)]
    exp = ws.experiment(ws.add_dataset("qa", rows, id="id"), [wb.Prompt("p", "{{ q }}")], "local/extractive",
                        [{"name": "overlap_test", "expected": "a"}])
    exp.run(progress=False)
    with pytest.warns(UserWarning, match="'overlap_test': batch scoring failed .*1 values for 4 cells"):
        second = exp.run(progress=False)
    assert second.last.batch_fallbacks == 1 and calls["batch"] == 1
    assert second.results()["overlap_test"].tolist() == [1.0] * 4  # the cell-by-cell path still scored them
