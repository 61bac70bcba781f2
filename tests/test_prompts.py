"""Prompts: rendering, strictness, the sandbox, syntax errors, content hashes, versions, and plan-time checks."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

import workbench as wb
from workbench.errors import NotFoundError, TemplateError, ValidationError
from workbench.prompts import Prompt, template_vars

PUBMEDQA = Path(wb.__file__).resolve().parent / "data" / "pubmedqa_demo.jsonl"


@pytest.fixture
def ws(tmp_path: Path) -> wb.Workspace:
    return wb.open(tmp_path / "ws")


def _prompt_rows(ws: wb.Workspace) -> list[dict]:
    return ws.sql('SELECT name, version, hash, system, "user" FROM prompts ORDER BY name, version').to_dict("records")


# ---------------------------------------------------------------------------------------------
# rendering


def test_render_system_few_shot_and_user() -> None:
    p = Prompt(
        "qa",
        user="Question: {{ question }}\nAnswer in {{ lang }}.",
        system="You are a careful {{ role }}.",
        few_shot=(
            {"role": "user", "content": "Question: What is 2+2?\nAnswer in {{ lang }}."},
            {"role": "assistant", "content": "4"},
        ),
    )
    case = {"question": "Is the sky blue?", "lang": "English", "role": "physician"}
    assert p.render(case) == [
        {"role": "system", "content": f"You are a careful {case['role']}."},
        {"role": "user", "content": f"Question: What is 2+2?\nAnswer in {case['lang']}."},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": f"Question: {case['question']}\nAnswer in {case['lang']}."},
    ]


def test_render_without_system_has_only_the_user_turn() -> None:
    p = Prompt("bare", "{{ q }}")
    assert p.render({"q": "hello"}) == [{"role": "user", "content": "hello"}]


def test_template_vars_expose_columns_case_and_extras() -> None:
    p = Prompt("v", "{{ question }} | {{ case.question }} | {{ context }} | "
                    "{% for c in chunks %}[{{ c.id }}]{% endfor %}")
    row = {"question": "Why?"}
    chunks = [{"id": "d1"}, {"id": "d2"}]
    out = p.render(template_vars(row, {"context": "CTX", "chunks": chunks}))
    assert out[-1]["content"] == "Why? | Why? | CTX | [d1][d2]"


def test_rendering_is_not_html_escaped() -> None:
    text = "<b>5 > 3 & 'quotes' \"double\"</b>"
    assert Prompt("raw", "{{ t }}").render({"t": text})[0]["content"] == text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"user": "Q: {{ question }} {{ typo }}"},
        {"user": "Q: {{ question }}", "system": "Be {{ tone }}."},
        {"user": "Q: {{ question }}", "few_shot": ({"role": "user", "content": "{{ example }}"},)},
        {"user": "Q: {{ case.missing_column }}"},
    ],
    ids=["user", "system", "few_shot", "case attribute"],
)
def test_strict_undefined_raises_on_missing_variable(kwargs: dict) -> None:
    p = Prompt("strict", **kwargs)
    with pytest.raises(TemplateError, match="undefined variable"):  # the library's type, jinja's message
        p.render(template_vars({"question": "q"}))


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ().__class__.__base__.__subclasses__() }}",
        "{{ lipsum.__globals__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ '{0.__class__}'.format(question) }}",
        "{{ question.__len__() }}",
    ],
)
def test_sandbox_blocks_access_to_internals(template: str) -> None:
    p = Prompt("attack", template)
    with pytest.raises(TemplateError, match="SecurityError|undefined"):  # lipsum is not offered at all
        p.render({"question": "q"})


def test_sandbox_still_allows_ordinary_filters_and_methods() -> None:
    p = Prompt("ok", "{{ q|upper }} {{ q.split()|length }} {{ q[:3] }} {{ items|join(', ') }}")
    assert p.render({"q": "one two three", "items": ["a", "b"]})[0]["content"] == "ONE TWO THREE 3 one a, b"


# ---------------------------------------------------------------------------------------------
# syntax and shape errors, raised when the prompt is built


@pytest.mark.parametrize(
    "kwargs, part, line",
    [
        ({"user": "line one\n{{ question }\nline three"}, "user", 2),
        ({"user": "fine", "system": "a\nb\n{% if %}"}, "system", 3),
        ({"user": "fine",
          "few_shot": ({"role": "user", "content": "ok"}, {"role": "assistant", "content": "{% for %}"})},
         "few_shot[1]", 1),
        ({"user": "{% if question %}unclosed"}, "user", 1),
    ],
)
def test_syntax_errors_name_prompt_part_and_line(kwargs: dict, part: str, line: int) -> None:
    with pytest.raises(TemplateError) as err:
        Prompt("my_prompt", **kwargs)
    msg = str(err.value)
    assert "'my_prompt'" in msg
    assert part in msg
    assert f"line {line}" in msg
    assert isinstance(err.value, ValidationError)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"name": "", "user": "x"}, "non-empty name"),
        ({"name": "p", "user": "   "}, "user template is empty"),
        ({"name": "p", "user": "x", "few_shot": ({"role": "bot", "content": "hi"},)}, r"few_shot\[0\]"),
        ({"name": "p", "user": "x", "few_shot": ({"role": "user", "content": "a"}, {"role": "user"})},
         r"few_shot\[1\]"),
        ({"name": "p", "user": "x", "few_shot": ({"role": "user", "content": "a", "extra": 1},)}, r"few_shot\[0\]"),
    ],
)
def test_shape_errors(kwargs: dict, pattern: str) -> None:
    with pytest.raises(TemplateError, match=pattern):
        Prompt(**kwargs)


# ---------------------------------------------------------------------------------------------
# content hash


def test_hash_is_content_not_name() -> None:
    shots = ({"role": "user", "content": "ex"}, {"role": "assistant", "content": "ans"})
    base = Prompt("a", "Q: {{ q }}", "sys", shots)
    assert re.fullmatch(r"[0-9a-f]{64}", base.hash)
    assert Prompt("renamed", base.user, base.system, base.few_shot).hash == base.hash
    # the same content given as a list and with keys in another order is the same prompt
    as_list = [{"content": "ex", "role": "user"}, {"content": "ans", "role": "assistant"}]
    assert Prompt("a", "Q: {{ q }}", "sys", as_list).hash == base.hash  # type: ignore[arg-type]

    variants = [
        Prompt("a", "Q: {{ q }}!", base.system, base.few_shot),
        Prompt("a", base.user, "sys.", base.few_shot),
        Prompt("a", base.user, None, base.few_shot),
        Prompt("a", base.user, "", base.few_shot),
        Prompt("a", base.user, base.system, base.few_shot[:1]),
        Prompt("a", base.user, base.system, ({"role": "system", "content": "ex"}, base.few_shot[1])),
        Prompt("a", base.user, base.system, tuple(reversed(base.few_shot))),
    ]
    hashes = {base.hash, *(v.hash for v in variants)}
    assert len(hashes) == len(variants) + 1


def test_hash_is_sha256_of_canonical_content() -> None:
    p = Prompt("x", "U {{ a }}", "S")
    canonical = json.dumps({"few_shot": [], "system": "S", "user": "U {{ a }}"}, sort_keys=True, separators=(",", ":"))
    assert p.hash == hashlib.sha256(canonical.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# stored versions


def test_add_prompt_versions(ws: wb.Workspace) -> None:
    first = ws.add_prompt("qa", "Q: {{ question }}", system="Be brief.")
    again = ws.add_prompt("qa", "Q: {{ question }}", system="Be brief.")
    assert first.hash == again.hash
    rows = _prompt_rows(ws)
    assert [(r["name"], r["version"], r["hash"]) for r in rows] == [("qa", 1, first.hash)]

    changed = ws.add_prompt("qa", "Question: {{ question }}", system="Be brief.")
    assert changed.hash != first.hash
    rows = _prompt_rows(ws)
    assert [(r["version"], r["hash"]) for r in rows] == [(1, first.hash), (2, changed.hash)]

    # re-adding version 1's content does not make a version 3
    ws.add_prompt("qa", "Q: {{ question }}", system="Be brief.")
    assert len(_prompt_rows(ws)) == 2

    assert ws.prompt("qa") == changed
    assert ws.prompt("qa", 1) == first
    assert ws.prompt("qa", 1).hash == first.hash
    listing = ws.prompts()
    assert listing[["name", "version"]].values.tolist() == [["qa", 1], ["qa", 2]]


def test_few_shot_round_trips_through_the_store(ws: wb.Workspace) -> None:
    shots = [{"role": "user", "content": "Q: 1+1?"}, {"role": "assistant", "content": "2"}]
    p = ws.add_prompt("shots", "Q: {{ q }}", system="Math.", few_shot=shots)
    loaded = ws.prompt("shots")
    assert loaded == p and loaded.hash == p.hash
    assert loaded.render({"q": "2+2?"}) == p.render({"q": "2+2?"})


def test_same_content_under_two_names(ws: wb.Workspace) -> None:
    a = ws.add_prompt("a", "{{ q }}")
    b = ws.add_prompt("b", "{{ q }}")
    assert a.hash == b.hash
    assert [(r["name"], r["version"]) for r in _prompt_rows(ws)] == [("a", 1), ("b", 1)]


def test_missing_prompt_is_not_found(ws: wb.Workspace) -> None:
    with pytest.raises(NotFoundError, match="add_prompt"):
        ws.prompt("nope")
    ws.add_prompt("yes", "{{ q }}")
    with pytest.raises(NotFoundError):
        ws.prompt("yes", 2)


def test_bad_template_is_never_stored(ws: wb.Workspace) -> None:
    with pytest.raises(TemplateError):
        ws.add_prompt("broken", "{{ q ")
    assert _prompt_rows(ws) == []


# ---------------------------------------------------------------------------------------------
# experiment-level check: every template against every case, before any model call


def _qa_dataset(ws: wb.Workspace) -> wb.Dataset:
    rows = [
        {"id": "c1", "query": "What is A?", "note": "has a note"},
        {"id": "c2", "query": "What is B?", "note": None},
        {"id": "c3", "query": "What is C?", "note": "another note"},
        {"id": "c4", "query": "What is D?", "note": None},
    ]
    return ws.add_dataset("qa", rows, id="id")


def _stored_runs(ws: wb.Workspace) -> tuple[int, int, int]:
    r = ws.sql("SELECT (SELECT count(*) FROM runs) a, (SELECT count(*) FROM cells) b, "
               "(SELECT count(*) FROM responses) c")
    return int(r["a"].iloc[0]), int(r["b"].iloc[0]), int(r["c"].iloc[0])


def test_plan_reports_the_variant_variable_and_cases(ws: wb.Workspace) -> None:
    ds = _qa_dataset(ws)
    good = Prompt("good", "Q: {{ query }}")
    bad = Prompt("bad", "Q: {{ typo }}")
    with pytest.raises(TemplateError) as err:
        ws.experiment(ds, [good, bad], "local/extractive", []).plan()
    msg = str(err.value)
    assert "'bad'" in msg and "'good'" not in msg
    assert "typo" in msg
    for cid, _ in ds.cases():
        assert cid in msg
    assert "query" in msg  # the columns the template could have used
    assert _stored_runs(ws) == (0, 0, 0)


def test_plan_reports_all_bad_prompts_in_one_error(ws: wb.Workspace) -> None:
    ds = _qa_dataset(ws)
    prompts = [
        Prompt("good", "Q: {{ query }}"),
        Prompt("bad_one", "Q: {{ qeury }}"),
        {"name": "bad_two", "user": "{{ query }}", "system": "Use {{ context }}."},
    ]
    with pytest.raises(TemplateError) as err:
        ws.experiment(ds, prompts, "local/extractive", []).plan()
    msg = str(err.value)
    assert msg.startswith("2 template problem(s)")
    assert "'bad_one'" in msg and "qeury" in msg
    assert "'bad_two'" in msg and "context" in msg
    assert "'good'" not in msg


def test_plan_lists_only_the_failing_cases(ws: wb.Workspace) -> None:
    ds = _qa_dataset(ws)
    null_ids = [cid for cid, row in ds.cases() if row["note"] is None]
    ok_ids = [cid for cid, row in ds.cases() if row["note"] is not None]
    p = Prompt("notes", "{{ query }} ({{ note.upper() }})")
    with pytest.raises(TemplateError) as err:
        ws.experiment(ds, [p], "local/extractive", []).plan()
    line = next(x for x in str(err.value).splitlines() if "'notes'" in x)
    assert re.search(r"cases: (.*)\)", line).group(1).split(", ") == null_ids  # type: ignore[union-attr]
    assert not any(cid in line for cid in ok_ids)


def test_plan_reports_sandbox_violations(ws: wb.Workspace) -> None:
    ds = _qa_dataset(ws)
    with pytest.raises(TemplateError, match="SecurityError"):
        ws.experiment(ds, [Prompt("evil", "{{ query.__class__ }}")], "local/extractive", []).plan()


def test_plan_on_real_data_truncates_long_case_lists(ws: wb.Workspace) -> None:
    ds = ws.add_dataset("pubmedqa", PUBMEDQA, id="pmid")
    ids = [cid for cid, _ in ds.cases()]
    with pytest.raises(TemplateError) as err:
        ws.experiment(ds, [Prompt("typo", "{{ questoin }}")], "local/extractive", []).plan()
    msg = str(err.value)
    assert ", ".join(ids[:5]) in msg
    assert f"and {len(ids) - 5} more" in msg
    assert ids[5] not in msg


def test_plan_succeeds_for_good_prompts_without_storing_anything(ws: wb.Workspace) -> None:
    ds = _qa_dataset(ws)
    prompts = [Prompt("a", "{{ query }}"), Prompt("b", "Answer: {{ case.query }}")]
    exp = ws.experiment(ds, prompts, "local/extractive", [], repeats=2)
    plan = exp.plan()
    assert plan.summary()["cells"] == ds.n_cases * 2 * 2
    first = next(c for c in plan.cells if c.variant.name == "b" and c.repeat == 0)
    assert first.messages == [{"role": "user", "content": f"Answer: {first.case['query']}"}]
    assert _stored_runs(ws) == (0, 0, 0)


def test_syntax_error_in_an_experiment_prompt_names_it(ws: wb.Workspace) -> None:
    ds = _qa_dataset(ws)
    with pytest.raises(TemplateError, match=r"'broken', user: template syntax error on line 1"):
        ws.experiment(ds, [{"name": "broken", "user": "{{ query "}], "local/extractive", [])
