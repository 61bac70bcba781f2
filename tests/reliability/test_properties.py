"""Property tests (hypothesis): rendering raises only the library's errors; equal requests <-> equal cache
keys; chunkers lose no text; metrics stay in range on arbitrary Unicode; CSV exports round-trip."""

from __future__ import annotations

import csv
import io
import math

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.errors import WorkbenchError
from workbench.export import FORMULA_START, to_csv
from workbench.llm import ModelConfig, request_key
from workbench.prompts import Prompt, RenderLimits

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Template fragments a user (or an attacker) might combine: valid, invalid, expensive, escaping.
FRAGMENTS = [
    "{{ q }}", "{{ q|upper }}", "{{ q * n }}", "{{ n ** n }}", "{{ q ~ q }}", "{{ missing }}", "{{ q[0] }}",
    "{% for i in range(n) %}", "{% endfor %}", "{% if q %}", "{% endif %}", "{{ q|center(n) }}", "{{ 1/0 }}",
    "{{ q.__class__ }}", "{{ q|replace('', q) }}", "{{ '%*d' % (n, 1) }}", "{{ '{:>{}}'.format(q, n) }}",
    "{% set ns = namespace(s=q) %}", "{% set ns.s = ns.s ~ ns.s %}", "{{ ns.s|length }}", "{{ [q] * n }}",
    "{{ q|join(q) }}", "{{ q|indent(n) }}", "{{", "}}", "{%", "%}", "{# c #}", "text ", "\n", "{{ n|string * n }}",
    "{% macro f(x) %}{{ x }}{{ x }}{% endmacro %}", "{{ f(q) }}", "{{ case.q }}", "{{ q.split()|list }}",
]


@FAST
@given(
    parts=st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=8), min_size=1, max_size=10),
    q=st.text(max_size=40),
    n=st.integers(min_value=-5, max_value=10**12),
)
def test_rendering_never_raises_outside_the_library_errors(parts, q, n):
    template = "".join(parts)
    try:
        prompt = Prompt("p", template if template.strip() else "x", system=template or None)
        messages = prompt.render({"q": q, "n": n, "case": {"q": q}}, RenderLimits(max_chars=20_000, seconds=0.5))
    except WorkbenchError:
        return
    assert all(len(m["content"]) <= 20_000 for m in messages)


message = st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]), "content": st.text()})
params = st.fixed_dictionaries({}, optional={
    "temperature": st.integers(0, 1) | st.floats(0, 1, allow_nan=False), "top_p": st.floats(0, 1, allow_nan=False),
    "max_tokens": st.integers(1, 3), "seed": st.integers(0, 2)})


@FAST
@given(m1=st.lists(message, min_size=1, max_size=3), m2=st.lists(message, min_size=1, max_size=3),
       p1=params, p2=params, r1=st.integers(0, 3), r2=st.integers(0, 3),
       name1=st.sampled_from(["a", "b"]), name2=st.sampled_from(["a", "b"]))
def test_equal_requests_have_equal_cache_keys_and_only_they(m1, m2, p1, p2, r1, r2, name1, name2):
    a = ModelConfig(name1, "openai/x", params=p1)
    b = ModelConfig(name2, "openai/x", params=p2)
    same = a.identity() == b.identity() and m1 == m2 and r1 == r2  # the name of a model is not the request
    assert (request_key(a, m1, r1) == request_key(b, m2, r2)) == same
    assert request_key(a, m1, r1) == request_key(ModelConfig("c", "openai/x", params=dict(p1)), list(m1), r1)


@FAST
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=400),
       kind=st.sampled_from(["fixed", "sentence"]), unit=st.sampled_from(["tokens", "chars"]),
       size=st.integers(2, 40), overlap=st.integers(0, 1))
def test_chunkers_lose_no_text(text, kind, unit, size, overlap):
    from workbench.retrieval.chunking import chunk_document
    from workbench.retrieval.config import ChunkerConfig
    from workbench.retrieval.corpus import Document

    chunks = chunk_document(Document("d", text), ChunkerConfig(type=kind, unit=unit, size=size, overlap=overlap))
    covered = [False] * len(text)
    for c in chunks:
        assert c.text == text[c.start : c.end]
        for i in range(c.start, c.end):
            covered[i] = True
    lost = [ch for ch, cov in zip(text, covered) if not cov and not ch.isspace()]
    assert not lost, f"characters in no chunk: {lost[:10]}"


unicode_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)


@FAST
@given(output=unicode_text, expected=unicode_text)
def test_metrics_stay_in_range_on_arbitrary_unicode(output, expected):
    from workbench.metrics import basic, similarity
    from workbench.metrics.registry import Score

    for fn in (basic.exact_match, basic.normalized_exact_match, basic.contains, basic.token_f1,
               similarity.rouge1, similarity.rouge2, similarity.rouge_l, similarity.bleu, similarity.chrf,
               similarity.edit_similarity):
        value = fn(output, expected)
        value = value.value if isinstance(value, Score) else value
        if value is None:
            continue
        assert not math.isnan(value) and 0.0 <= value <= 1.0 + 1e-9, (fn.__name__, value)


cell = st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
                 st.sampled_from(["=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "\tx", "\rx", "a\rb", "a\r\nb",
                                  '"quoted", with comma', "multi\nline"]))


@FAST
@given(rows=st.lists(st.tuples(cell, cell, st.integers(-10**6, 10**6)), min_size=1, max_size=8),
       escape=st.booleans())
def test_csv_export_round_trips_through_pandas_and_csv(rows, escape):
    frame = pd.DataFrame(rows, columns=["output", "prompt", "n"])
    frame["messages"] = [[{"role": "user", "content": r[1]}] for r in rows]
    text = to_csv(frame, escape_formulas=escape)

    def expected(v):  # what a reader gets back: None is an empty field, formulas carry the quote
        if v is None:
            return ""
        return "'" + v if escape and v.startswith(FORMULA_START) else v

    with_csv = list(csv.reader(io.StringIO(text, newline="")))
    assert len(with_csv) == len(rows) + 1
    with_pandas = pd.read_csv(io.StringIO(text, newline=""), dtype=str, keep_default_na=False)
    assert len(with_pandas) == len(rows)
    for i, (out, prompt, n) in enumerate(rows):
        for got in (with_csv[i + 1], list(with_pandas.iloc[i])):
            assert got[0] == expected(out) and got[1] == expected(prompt) and int(got[2]) == n
            import json

            assert json.loads(got[3]) == [{"role": "user", "content": prompt}]
    if escape:
        assert not any(f.startswith(FORMULA_START) for row in with_csv for f in row[:2])


def test_formula_cells_are_neutralised_and_raw_keeps_them():
    frame = pd.DataFrame({"output": ['=HYPERLINK("http://evil","click")', "fine", "a\rb"]})
    safe = to_csv(frame)
    assert "'=HYPERLINK" in safe and '"a\rb"' in safe
    raw = list(csv.reader(io.StringIO(to_csv(frame, escape_formulas=False), newline="")))
    assert raw[1][0] == '=HYPERLINK("http://evil","click")' and len(raw) == 4


@pytest.mark.parametrize("value", ["-3", "+x", "@x", "\t=1", "\r=1", "=1"])
def test_every_owasp_formula_start_is_neutralised(value):
    (field,) = list(csv.reader(io.StringIO(to_csv(pd.DataFrame({"c": [value]})), newline="")))[1]
    assert field == "'" + value
