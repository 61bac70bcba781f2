"""The experiment spec: strict parsing with key paths in errors, YAML loading, and building experiments from it."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import workbench as wb
from workbench import spec as wbspec
from workbench.errors import MetricError, NotFoundError, SpecError, ValidationError

MINIMAL_YAML = """\
dataset: {name: covid, path: qa.jsonl, id: qid}
prompts:
  - {name: terse, system: "You answer questions.", user: "Question: {{ query }}"}
  - {name: polite, user: "Please answer: {{ query }}"}
models:
  - {name: local, model: openai/test-model, api_base: "http://127.0.0.1:8000/v1", params: {temperature: 0}}
metrics:
  - {name: token_f1, expected: gold_answer}
  - {name: contains, expected: gold_answer}
concurrency: 8
"""

QA_ROWS = [
    {"qid": "q1", "query": "What virus causes COVID-19?", "gold_answer": "SARS-CoV-2"},
    {"qid": "q2", "query": "How is it mainly transmitted?", "gold_answer": "respiratory droplets"},
    {"qid": "q3", "query": "Name one common symptom.", "gold_answer": "fever"},
]


def minimal() -> dict[str, Any]:
    return yaml.safe_load(MINIMAL_YAML)


def _problems(err: pytest.ExceptionInfo[SpecError]) -> list[str]:
    """The problem lines of a SpecError message (after the 'N problem(s):' header)."""
    return [line.strip() for line in str(err.value).splitlines()[1:]]


# ---------------------------------------------------------------------------------------------
# parse


def test_minimal_example_parses() -> None:
    s = wbspec.parse(minimal())
    assert (s.dataset.name, s.dataset.path, s.dataset.id) == ("covid", "qa.jsonl", "qid")
    assert [p.name for p in s.prompts] == ["terse", "polite"]
    assert s.prompts[0].system == "You answer questions." and s.prompts[1].system is None
    assert s.prompts[1].user == "Please answer: {{ query }}"
    m = s.models[0]
    assert (m.name, m.model, m.api_base, m.params) == ("local", "openai/test-model", "http://127.0.0.1:8000/v1",
                                                       {"temperature": 0})
    assert [(x.name, x.options()) for x in s.metrics] == [("token_f1", {"expected": "gold_answer"}),
                                                          ("contains", {"expected": "gold_answer"})]
    assert s.concurrency == 8
    # defaults for what the example leaves out
    assert s.repeats == 1 and s.variants is None and s.retrievers == [] and s.name is None


def test_full_spec_parses() -> None:
    data = minimal()
    data.update({
        "name": "full",
        "repeats": 3,
        "variants": [{"prompt": "terse", "model": "local"}, {"name": "p2", "prompt": "polite", "model": "local"}],
        "metrics": ["exact_match", {"name": "contains", "expected": "gold_answer", "label": "has_gold"}],
    })
    data["dataset"].update({"inputs": ["query"], "dedupe": "normalized", "format": "jsonl"})
    data["prompts"][0]["few_shot"] = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    data["models"][0].update({"timeout": 5, "max_concurrency": 2, "max_retries": 0, "api_key_env": "MY_KEY"})
    s = wbspec.parse(data)
    assert s.repeats == 3 and s.name == "full"
    assert [v.name for v in s.variants or []] == [None, "p2"]
    assert s.metrics[0] == "exact_match"
    assert s.metrics[1].label == "has_gold" and s.metrics[1].options() == {"expected": "gold_answer"}
    assert [f.role for f in s.prompts[0].few_shot] == ["user", "assistant"]
    assert s.models[0].max_retries == 0


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d.update(concurency=4), "concurency: unknown key"),
        (lambda d: d["models"][0].update(temprature=0.2), "models[0].temprature: unknown key"),
        (lambda d: d["prompts"][1].update(sytem="hi"), "prompts[1].sytem: unknown key"),
        (lambda d: d["dataset"].update(id_column="qid"), "dataset.id_column: unknown key"),
        (lambda d: d.update(variants=[{"prompt": "terse", "model": "local", "retreiver": "x"}]),
         "variants[0].retreiver: unknown key"),
        (lambda d: d["prompts"][0].update(few_shot=[{"role": "user", "content": "x", "name": "bob"}]),
         "prompts[0].few_shot[0].name: unknown key"),
    ],
)
def test_unknown_keys_name_their_path(mutate: Any, expected: str) -> None:
    data = minimal()
    mutate(data)
    with pytest.raises(SpecError) as err:
        wbspec.parse(data)
    assert _problems(err) == [expected]
    assert isinstance(err.value, ValidationError)


def test_all_problems_are_reported_together() -> None:
    data = minimal()
    data["extra"] = 1
    data["models"][0]["temprature"] = 0
    data["repeats"] = 0
    with pytest.raises(SpecError) as err:
        wbspec.parse(data, source="exp.yaml")
    msg = str(err.value)
    assert msg.startswith("exp.yaml: 3 problem(s)")
    problems = _problems(err)
    assert "extra: unknown key" in problems
    assert "models[0].temprature: unknown key" in problems
    assert any(p.startswith("repeats:") for p in problems)


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda d: d.update(concurrency="x"), "concurrency"),
        (lambda d: d.update(concurrency=0), "concurrency"),
        (lambda d: d.update(concurrency=2.5), "concurrency"),
        (lambda d: d.update(repeats=0), "repeats"),
        (lambda d: d.update(repeats=True), "repeats"),
        (lambda d: d.update(repeats="twice"), "repeats"),
        (lambda d: d["models"][0].update(timeout=-1), "models[0].timeout"),
        (lambda d: d["models"][0].update(max_retries=-1), "models[0].max_retries"),
        (lambda d: d["models"][0].update(params="temperature=0"), "models[0].params"),
        (lambda d: d["dataset"].update(dedupe="fuzzy"), "dataset.dedupe"),
        (lambda d: d["dataset"].update(inputs="query"), "dataset.inputs"),
        (lambda d: d["prompts"][0].update(few_shot=[{"role": "bot", "content": "x"}]), "prompts[0].few_shot[0].role"),
        (lambda d: d.update(prompts={"name": "terse"}), "prompts"),
        (lambda d: d.update(prompts=[]), "prompts"),
    ],
)
def test_wrong_types_and_values_name_the_key(mutate: Any, key: str) -> None:
    data = minimal()
    mutate(data)
    with pytest.raises(SpecError) as err:
        wbspec.parse(data)
    problems = _problems(err)
    assert problems, str(err.value)
    assert all(p.startswith((f"{key}:", f"{key}.", f"{key}[")) for p in problems), problems
    assert "got" in problems[0]


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d.pop("models"), "models: required key is missing"),
        (lambda d: d.pop("dataset"), "dataset: required key is missing"),
        (lambda d: d["dataset"].pop("name"), "dataset.name: required key is missing"),
        (lambda d: d["prompts"][1].pop("user"), "prompts[1].user: required key is missing"),
        (lambda d: d["models"][0].pop("model"), "models[0].model: required key is missing"),
        (lambda d: d.update(metrics=[{"expected": "gold_answer"}]), "metrics[0].name: required key is missing"),
    ],
)
def test_missing_keys_name_their_path(mutate: Any, expected: str) -> None:
    data = minimal()
    mutate(data)
    with pytest.raises(SpecError) as err:
        wbspec.parse(data)
    assert _problems(err) == [expected]


def test_duplicate_prompt_or_model_names() -> None:
    data = minimal()
    data["prompts"][1]["name"] = "terse"
    with pytest.raises(SpecError, match=r"prompts: .*repeated: \['terse'\]"):
        wbspec.parse(data)
    data = minimal()
    data["models"].append(dict(data["models"][0]))
    with pytest.raises(SpecError, match=r"models: .*repeated: \['local'\]"):
        wbspec.parse(data)


@pytest.mark.parametrize("data", [None, [], "dataset: x", 42])
def test_spec_must_be_a_mapping(data: Any) -> None:
    with pytest.raises(SpecError, match="must be a mapping"):
        wbspec.parse(data)


# ---------------------------------------------------------------------------------------------
# load


def _write_spec(folder: Path, text: str = MINIMAL_YAML, rows: list[dict[str, Any]] = QA_ROWS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    path = folder / "experiment.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_returns_the_spec_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write_spec(tmp_path / "specs")
    monkeypatch.chdir(tmp_path)
    parsed, base = wbspec.load("specs/experiment.yaml")
    assert base == (tmp_path / "specs").resolve()
    assert parsed == wbspec.parse(minimal())
    assert parsed.dataset.path == "qa.jsonl"  # kept as written; the caller resolves it against `base`
    assert path.exists()


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        wbspec.load(tmp_path / "missing.yaml")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("dataset: {name: x\nprompts: [\n")
    with pytest.raises(SpecError, match="not valid YAML") as err:
        wbspec.load(bad_yaml)
    assert str(bad_yaml) in str(err.value)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(SpecError, match="not UTF-8"):
        wbspec.load(latin)
    typo = tmp_path / "typo.yaml"
    typo.write_text(MINIMAL_YAML.replace("params:", "parmas:"))
    with pytest.raises(SpecError) as err:
        wbspec.load(typo)
    assert str(typo) in str(err.value)
    assert _problems(err) == ["models[0].parmas: unknown key"]
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(SpecError, match="must be a mapping"):
        wbspec.load(empty)


# ---------------------------------------------------------------------------------------------
# building experiments from specs


def test_from_spec_resolves_the_dataset_next_to_the_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write_spec(tmp_path / "project" / "specs")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "qa.jsonl").write_text('{"qid": "decoy", "query": "wrong file", "gold_answer": "x"}\n')
    monkeypatch.chdir(elsewhere)
    ws = wb.open(tmp_path / "ws")

    exp = ws.from_spec(path)
    ds = exp.dataset
    assert (ds.name, ds.version, ds.id_column, ds.n_cases) == ("covid", 1, "qid", len(QA_ROWS))
    assert [cid for cid, _ in ds.cases()] == [r["qid"] for r in QA_ROWS]
    source = ws.sql("SELECT source FROM datasets WHERE name = 'covid'")["source"].iloc[0]
    assert source == str((path.parent / "qa.jsonl").resolve())

    assert [v.name for v in exp.variants] == ["terse", "polite"]
    assert [m.label for m in exp.metrics] == ["token_f1", "contains"]
    assert exp.concurrency == 8 and exp.repeats == 1
    assert exp.variants[0].model.model == "openai/test-model"
    assert exp.variants[0].model.api_base == "http://127.0.0.1:8000/v1"

    plan = exp.plan()  # renders every prompt against every case; no model call
    assert len(plan) == len(QA_ROWS) * 2
    terse_q1 = next(c for c in plan.cells if c.variant.name == "terse" and c.case_id == "q1")
    assert terse_q1.messages == [{"role": "system", "content": "You answer questions."},
                                 {"role": "user", "content": f"Question: {QA_ROWS[0]['query']}"}]

    # the same spec again is the same dataset version
    assert ws.from_spec(path).dataset.hash == ds.hash
    assert ws.sql("SELECT count(*) AS n FROM datasets")["n"].iloc[0] == 1


def test_from_spec_dict_resolves_against_cwd_or_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_spec(tmp_path / "data")
    ws = wb.open(tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "data")
    assert ws.from_spec(minimal()).dataset.n_cases == len(QA_ROWS)
    monkeypatch.chdir(tmp_path)
    assert ws.from_spec(minimal(), base=tmp_path / "data").dataset.n_cases == len(QA_ROWS)
    data = minimal()
    data["dataset"]["path"] = str((tmp_path / "data" / "qa.jsonl").resolve())
    assert ws.from_spec(data).dataset.n_cases == len(QA_ROWS)


def test_from_spec_without_path_uses_the_stored_dataset(tmp_path: Path) -> None:
    ws = wb.open(tmp_path / "ws")
    v1 = ws.add_dataset("covid", QA_ROWS, id="qid")
    v2 = ws.add_dataset("covid", QA_ROWS[:2], id="qid")
    data = minimal()
    data["dataset"] = {"name": "covid"}
    assert ws.from_spec(data).dataset.hash == v2.hash
    data["dataset"] = {"name": "covid", "version": 1}
    assert ws.from_spec(data).dataset.hash == v1.hash
    data["dataset"] = {"name": "covid", "version": "v1"}
    assert ws.from_spec(data).dataset.hash == v1.hash
    data["dataset"] = {"name": "unknown"}
    with pytest.raises(NotFoundError, match="'unknown'"):
        ws.from_spec(data)


@pytest.mark.parametrize(
    "metrics, index, pattern",
    [
        ([{"name": "token_f1", "expected": "gold_answer"}, {"name": "no_such_metric"}], 1,
         "unknown metric 'no_such_metric'"),
        (["no_such_metric"], 0, "unknown metric"),
        ([{"name": "contains", "expectd": "gold_answer"}], 0, r"does not take option\(s\) \['expectd'\]"),
        ([{"name": "token_f1", "expected": "gold_answer"}, {"name": "token_f1", "expected": "gold_answer",
                                                            "bogus": 1}], 1, "bogus"),
    ],
)
def test_bad_metrics_name_their_index(tmp_path: Path, metrics: list[Any], index: int, pattern: str) -> None:
    path = _write_spec(tmp_path / "specs")
    data = yaml.safe_load(path.read_text())
    data["metrics"] = metrics
    ws = wb.open(tmp_path / "ws")
    with pytest.raises((SpecError, MetricError)) as err:
        ws.from_spec(data, base=path.parent)
    msg = str(err.value)
    assert f"metrics[{index}]" in msg
    assert re.search(pattern, msg), msg


def test_metric_reading_a_missing_column_fails_at_plan(tmp_path: Path) -> None:
    path = _write_spec(tmp_path / "specs", MINIMAL_YAML.replace("{name: contains, expected: gold_answer}",
                                                                "{name: contains, expected: answer}"))
    ws = wb.open(tmp_path / "ws")
    exp = ws.from_spec(path)
    with pytest.raises(MetricError) as err:
        exp.plan()
    assert "'answer'" in str(err.value) and "gold_answer" in str(err.value)


def test_explicit_variants_must_refer_to_defined_names(tmp_path: Path) -> None:
    path = _write_spec(tmp_path / "specs")
    ws = wb.open(tmp_path / "ws")
    data = yaml.safe_load(path.read_text())
    data["variants"] = [{"prompt": "terse", "model": "local"}, {"prompt": "curt", "model": "local"}]
    with pytest.raises(SpecError, match=r"variants\[1\]\.prompt: 'curt' is not defined"):
        ws.from_spec(data, base=path.parent)
    data["variants"] = [{"prompt": "terse", "model": "local"}, {"name": "nice", "prompt": "polite", "model": "local"}]
    exp = ws.from_spec(copy.deepcopy(data), base=path.parent)
    assert [v.name for v in exp.variants] == ["terse/local", "nice"]


def test_spec_template_problems_surface_at_plan(tmp_path: Path) -> None:
    path = _write_spec(tmp_path / "specs", MINIMAL_YAML.replace("Please answer: {{ query }}", "Please: {{ qeury }}"))
    ws = wb.open(tmp_path / "ws")
    exp = ws.from_spec(path)
    with pytest.raises(wb.TemplateError) as err:
        exp.plan()
    assert "'polite'" in str(err.value) and "qeury" in str(err.value)
    for row in QA_ROWS:
        assert row["qid"] in str(err.value)
