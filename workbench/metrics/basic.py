"""Deterministic built-in metrics: cheap, exact, and the first thing every grid should report."""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from functools import lru_cache
from typing import Any

from workbench.metrics.registry import Score, register
from workbench.text import JSON_FENCE, as_text

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower case, drop punctuation and articles, squeeze spaces."""
    text = text.lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _expected_list(expected: Any) -> list[str]:
    if isinstance(expected, (list, tuple)):
        return [as_text(e) for e in expected]
    return [as_text(expected)]


def exact_match(output: str, expected: Any) -> float:
    """1 if the output equals the expected value exactly (any of them, for a list)."""
    out = as_text(output)
    return float(any(out == e for e in _expected_list(expected)))


def normalized_exact_match(output: str, expected: Any) -> float:
    """1 if the outputs match after SQuAD normalisation (case, punctuation, articles, spaces)."""
    out = normalize_answer(as_text(output))
    return float(any(out == normalize_answer(e) for e in _expected_list(expected)))


def contains(output: str, expected: Any, case_sensitive: bool = False) -> float:
    """1 if the expected text occurs inside the output (case-insensitive by default); an empty expected is 0."""
    out = as_text(output)
    if not case_sensitive:  # casefold, not lower: "STRASSE" contains "straße"
        out = out.casefold()
    for e in _expected_list(expected):
        needle = e if case_sensitive else e.casefold()
        if needle and needle in out:
            return 1.0
    return 0.0


@lru_cache(maxsize=256)
def _compile(pattern: str, flags: int) -> re.Pattern[str]:
    return re.compile(pattern, flags)


def regex_match(output: str, pattern: str, ignore_case: bool = False) -> Score:
    """1 if the regular expression ``pattern`` is found in the output (re.search)."""
    try:
        rx = _compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise ValueError(f"regex_match: pattern {pattern!r} is not a valid regular expression: {exc}") from exc
    m = rx.search(as_text(output))
    return Score(1.0 if m else 0.0, {"match": m.group(0)} if m else None)


@lru_cache(maxsize=65536)
def _tokens(text: str) -> tuple[str, ...]:
    return tuple(normalize_answer(text).split())


def f1_tokens(prediction: str, reference: str) -> float:
    """SQuAD v1.1 token F1 between two strings; when either has no tokens, 1 if both are empty (as SQuAD v2.0).

    v1.1 scores empty-vs-empty 0 (its data never has an empty answer); an empty output for an empty
    expected answer is right, so it scores 1 here.
    """
    pred = _tokens(prediction)
    ref = _tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred)
    recall = same / len(ref)
    return 2 * precision * recall / (precision + recall)


def token_f1(output: str, expected: Any) -> float:
    """SQuAD token F1 (max over expected answers when there are several)."""
    return max((f1_tokens(as_text(output), e) for e in _expected_list(expected)), default=0.0)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (RFC 8259 has no NaN or Infinity)")


def json_valid(output: str, allow_fences: bool = True) -> Score:
    """1 if the output parses as JSON (optionally inside a ```json fence)."""
    text = as_text(output)
    if allow_fences:
        m = JSON_FENCE.fullmatch(text.strip())
        if m:
            text = m.group(1)
    try:
        json.loads(text, parse_constant=_not_json)
    except ValueError as exc:
        return Score(0.0, {"error": str(exc)})
    return Score(1.0)


def latency(latency_ms: float | None) -> float | None:
    """Model call latency in ms; a cell answered from the cache reports the original call's latency."""
    return latency_ms


def cost(cost: float | None) -> float | None:
    """Model call cost in USD from litellm's price map; None for a model it does not price (unknown, not 0).

    A cell answered from the cache reports the original call's cost (what the variant costs to run), and
    under its own name this metric is the raw ``cost`` column of results() rather than a second copy of it.
    """
    return cost


register(exact_match)
register(normalized_exact_match)
register(contains)
register(regex_match)
register(token_f1)
register(json_valid)
register(latency, higher_is_better=False)
register(cost, higher_is_better=False, column="cost")
