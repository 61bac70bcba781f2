"""Datasets: loading from every source, content-hashed versions, stable case ids, dedupe, errors, profile."""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import workbench as wb
from workbench.datasets import Dataset, prepare
from workbench.errors import DatasetError, NotFoundError, ValidationError

PUBMEDQA = Path(wb.__file__).resolve().parent / "data" / "pubmedqa_demo.jsonl"

ROWS: list[dict[str, Any]] = [
    {"qid": "q1", "question": "What is the capital of France?", "answer": "Paris", "note": None},
    {"qid": "q2", "question": "Who wrote Hamlet?", "answer": "Shakespeare", "note": "classic, with a comma"},
    {"qid": "q3", "question": "Boiling point of water at sea level?", "answer": "100 °C", "note": "unicode °"},
    {"qid": "q4", "question": 'Quote "this"', "answer": "line one\nline two", "note": None},
]


@pytest.fixture
def ws(tmp_path: Path) -> wb.Workspace:
    return wb.open(tmp_path / "ws")


def _counts(ws: wb.Workspace) -> tuple[int, int]:
    row = ws.sql("SELECT (SELECT count(*) FROM datasets) AS d, (SELECT count(*) FROM dataset_cases) AS c")
    return int(row["d"].iloc[0]), int(row["c"].iloc[0])


def _pubmedqa_records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in PUBMEDQA.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write_all_formats(folder: Path, rows: list[dict[str, Any]]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {k: folder / f"data.{k}" for k in ("csv", "jsonl", "json", "parquet")}
    columns = list(rows[0])
    with paths["csv"].open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows([{k: ("" if v is None else v) for k, v in r.items()} for r in rows])
    paths["jsonl"].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    paths["json"].write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    pd.DataFrame(rows, columns=columns).to_parquet(paths["parquet"])
    return paths


# ---------------------------------------------------------------------------------------------
# sources and versions


def test_every_source_with_the_same_content_is_one_version(ws: wb.Workspace, tmp_path: Path) -> None:
    paths = _write_all_formats(tmp_path / "files", ROWS)
    first = ws.add_dataset("qa", pd.DataFrame(ROWS), id="qid")
    assert first.version == 1 and first.n_cases == len(ROWS)
    assert first.columns == tuple(ROWS[0])
    stored = _counts(ws)
    assert stored == (1, len(ROWS))

    sources: list[Any] = [ROWS, *paths.values()]
    for source in sources:
        again = ws.add_dataset("qa", source, id="qid")
        assert (again.version, again.hash) == (first.version, first.hash), source
        assert _counts(ws) == stored, source

    # what comes back is what went in (None stays None, text keeps newlines, quotes and unicode)
    assert [row for _cid, row in ws.dataset("qa").cases()] == ROWS
    assert [cid for cid, _row in ws.dataset("qa").cases()] == [r["qid"] for r in ROWS]
    frame = ws.dataset("qa").to_pandas()
    assert list(frame.columns) == ["case_id", *ROWS[0]]
    assert frame["answer"].tolist() == [r["answer"] for r in ROWS]


def test_types_survive_jsonl_json_and_parquet(ws: wb.Workspace, tmp_path: Path) -> None:
    rows = [
        {"id": 1, "x": 1.5, "flag": True, "tags": ["a", "b"], "meta": {"k": 1}, "text": "first"},
        {"id": 2, "x": -2.0, "flag": False, "tags": [], "meta": {"k": 2}, "text": "second"},
    ]
    jsonl = tmp_path / "typed.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = ws.add_dataset("typed", jsonl, id="id")
    assert [row for _, row in ds.cases()] == rows
    assert [cid for cid, _ in ds.cases()] == ["1", "2"]

    as_json = tmp_path / "typed.json"
    as_json.write_text(json.dumps(rows))
    assert ws.add_dataset("typed", as_json, id="id").hash == ds.hash

    flat = [{k: v for k, v in r.items() if k != "meta"} for r in rows]
    pq = tmp_path / "typed.parquet"
    pd.DataFrame(flat).to_parquet(pq)
    from_pq = ws.add_dataset("typed_pq", pq, id="id")
    assert [row for _, row in from_pq.cases()] == flat


# JSON values that pandas types in different ways: ints at the 64-bit limits, floats incl. NaN/inf/-0.0, bools,
# nulls, text that looks like a number, nested values. Keys may be absent from a record.
_JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, -1, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1]),
    st.integers(-1000, 1000),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from(["", "x", "1", "1.5", "NaN", "null", "true"]),
    st.lists(st.one_of(st.none(), st.integers(-3, 3), st.floats(allow_nan=True)), max_size=2),
    st.dictionaries(st.sampled_from(["k"]), st.one_of(st.none(), st.floats(allow_nan=True)), max_size=1),
)


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "c"]), _JSON_VALUES, max_size=3), min_size=1, max_size=5))
def test_json_files_read_without_pandas_hash_as_the_pandas_reader(records: list[dict[str, Any]]) -> None:
    # JSON files are typed by hand (no pandas import on the CLI's path); a list of dicts still goes through
    # pd.DataFrame. Same columns, same values to the bit (dumps tells -0.0 and 0.0, 1 and 1.0 apart), same hash.
    import tempfile

    from workbench.datasets import dataset_hash
    from workbench.store import dumps

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        try:
            want = prepare(records)
        except DatasetError as exc:  # no columns, duplicate rows: the file must fail the same way
            with pytest.raises(DatasetError) as failed:
                prepare(path)
            assert str(failed.value).replace(f"dataset {path}", "dataset") == str(exc)
            return
        got = prepare(path)
    assert got[0] == want[0]
    assert dumps(got[2]) == dumps(want[2])
    assert dataset_hash(got[0], got[1], got[2], None) == dataset_hash(want[0], want[1], want[2], None)


def test_reading_a_jsonl_dataset_does_not_import_pandas(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "d.jsonl"
    path.write_text('{"query": "q1", "n": 1}\n{"query": "q2"}\n')
    code = (
        "import sys, workbench as wb; ws = wb.open(sys.argv[1]); ds = ws.add_dataset('d', sys.argv[2]); "
        "print(ds.n_cases, [r for _, r in ds.cases()], 'pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "ws"), str(path)], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "2 [{'n': 1.0, 'query': 'q1'}, {'n': None, 'query': 'q2'}] False"


def test_json_object_keyed_by_id(ws: wb.Workspace, tmp_path: Path) -> None:
    path = tmp_path / "keyed.json"
    path.write_text(json.dumps({"a": {"question": "Q1"}, "b": {"question": "Q2"}}))
    ds = ws.add_dataset("keyed", path, id="id")
    assert ds.cases() == [("a", {"id": "a", "question": "Q1"}), ("b", {"id": "b", "question": "Q2"})]


def test_fmt_overrides_the_file_suffix(ws: wb.Workspace, tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    path.write_text('{"q": "one"}\n{"q": "two"}\n')
    with pytest.raises(DatasetError, match="unknown dataset format 'txt'"):
        ws.add_dataset("fmt", path)
    ds = ws.add_dataset("fmt", path, fmt="jsonl")
    assert [r["q"] for _, r in ds.cases()] == ["one", "two"]


def test_changed_content_makes_a_new_version(ws: wb.Workspace) -> None:
    v1 = ws.add_dataset("qa", ROWS, id="qid")
    n1 = _counts(ws)
    changed = [dict(r) for r in ROWS]
    changed[1]["answer"] = "William Shakespeare"
    v2 = ws.add_dataset("qa", changed, id="qid")
    assert v2.version == 2 and v2.hash != v1.hash
    assert _counts(ws) == (n1[0] + 1, n1[1] + len(changed))

    # adding version 1's content again finds version 1: versions are content, not history
    again = ws.add_dataset("qa", ROWS, id="qid")
    assert (again.version, again.hash) == (1, v1.hash)
    assert _counts(ws) == (n1[0] + 1, n1[1] + len(changed))

    # another name with the same content is its own version 1 and shares the stored cases
    other = ws.add_dataset("qa-copy", ROWS, id="qid")
    assert (other.version, other.hash) == (1, v1.hash)
    assert _counts(ws) == (n1[0] + 2, n1[1] + len(changed))

    listing = ws.datasets()
    assert listing[["name", "version"]].values.tolist() == [["qa", 1], ["qa", 2], ["qa-copy", 1]]


def test_lookup_latest_number_v_prefix_and_hash_prefix(ws: wb.Workspace) -> None:
    v1 = ws.add_dataset("qa", ROWS, id="qid")
    v2 = ws.add_dataset("qa", ROWS[:2], id="qid")
    assert ws.dataset("qa").hash == v2.hash
    assert ws.dataset("qa", version=1).hash == v1.hash
    assert ws.dataset("qa", "v1").hash == v1.hash
    assert ws.dataset("qa", "2").hash == v2.hash
    assert ws.dataset("qa", v1.hash[:12]).version == 1
    assert ws.dataset("qa", v2.hash).version == 2
    loaded = ws.dataset("qa", 1)
    assert (loaded.columns, loaded.id_column, loaded.n_cases) == (v1.columns, "qid", len(ROWS))
    assert loaded == v1
    assert loaded.ref == "qa@v1"
    assert "qa@v1" in loaded._repr_html_()


def test_lookup_errors_name_what_exists(ws: wb.Workspace) -> None:
    ws.add_dataset("qa", ROWS, id="qid")
    with pytest.raises(NotFoundError) as err:
        ws.dataset("nope")
    assert "'nope'" in str(err.value) and "qa" in str(err.value) and "add_dataset" in str(err.value)
    with pytest.raises(NotFoundError, match="version 7"):
        ws.dataset("qa", 7)
    with pytest.raises(NotFoundError):
        ws.dataset("qa", "ffffffffffff")
    # LIKE wildcards in a "prefix" are not wildcards
    with pytest.raises(NotFoundError):
        ws.dataset("qa", "%")


def test_ambiguous_hash_prefix_is_an_error(ws: wb.Workspace) -> None:
    seen: dict[str, list[Dataset]] = {}
    for i in range(60):
        ds = ws.add_dataset("many", [{"q": f"question {i}"}])
        seen.setdefault(ds.hash[0], []).append(ds)
        shared = [c for c, group in seen.items() if len(group) > 1 and c.isalpha()]
        if shared:
            break
    else:  # pragma: no cover - 60 random hashes always repeat a letter among a-f
        pytest.fail("no two hashes share a first letter")
    prefix = shared[0]
    with pytest.raises(NotFoundError, match="ambiguous") as err:
        ws.dataset("many", prefix)
    for ds in seen[prefix]:
        assert str(ds.version) in str(err.value)


# ---------------------------------------------------------------------------------------------
# case ids


def test_ids_from_an_id_column(ws: wb.Workspace) -> None:
    rows = [{"n": 10, "q": "a"}, {"n": 3, "q": "b"}, {"n": 7, "q": "c"}]
    ds = ws.add_dataset("ids", rows, id="n")
    assert [cid for cid, _ in ds.cases()] == ["10", "3", "7"]  # strings, in dataset order


def test_hashed_ids_are_stable_across_versions(ws: wb.Workspace) -> None:
    a = {"question": "What is A?", "answer": "a"}
    b = {"question": "What is B?", "answer": "b"}
    c = {"question": "What is C?", "answer": "c"}
    d = {"question": "What is D?", "answer": "d"}
    v1 = ws.add_dataset("h", [a, b, c])
    v2 = ws.add_dataset("h", [c, d, a])  # reordered, one removed, one added
    assert v2.version == 2
    ids1 = {row["question"]: cid for cid, row in v1.cases()}
    ids2 = {row["question"]: cid for cid, row in v2.cases()}
    assert ids1[a["question"]] == ids2[a["question"]]
    assert ids1[c["question"]] == ids2[c["question"]]
    assert ids2[d["question"]] not in ids1.values()
    assert len(set(ids1.values())) == 3
    assert all(re.fullmatch(r"[0-9a-f]{16}", cid) for cid in ids1.values())

    # the id depends on the values, not on the column order
    swapped = ws.add_dataset("h-swapped", [{"answer": r["answer"], "question": r["question"]} for r in (a, b, c)])
    assert [cid for cid, _ in swapped.cases()] == [cid for cid, _ in v1.cases()]


def test_inputs_restrict_the_hashed_columns(ws: wb.Workspace) -> None:
    rows = [{"question": "What is A?", "answer": "a"}, {"question": "What is B?", "answer": "b"}]
    fixed = [{"question": "What is A?", "answer": "A (corrected)"}, rows[1]]

    with_inputs_1 = ws.add_dataset("in", rows, inputs=["question"])
    with_inputs_2 = ws.add_dataset("in", fixed, inputs=["question"])
    assert with_inputs_2.version == 2
    # correcting the expected answer keeps the case id: results of both versions line up
    assert [cid for cid, _ in with_inputs_1.cases()] == [cid for cid, _ in with_inputs_2.cases()]

    all_cols_1 = ws.add_dataset("all", rows)
    all_cols_2 = ws.add_dataset("all", fixed)
    ids1 = [cid for cid, _ in all_cols_1.cases()]
    ids2 = [cid for cid, _ in all_cols_2.cases()]
    assert ids1[0] != ids2[0] and ids1[1] == ids2[1]


def test_identical_inputs_without_id_is_a_duplicate_id_error(ws: wb.Workspace) -> None:
    rows = [{"question": "same?", "answer": "x"}, {"question": "other", "answer": "y"},
            {"question": "same?", "answer": "z"}]
    with pytest.raises(DatasetError, match="duplicate case id") as err:
        ws.add_dataset("dups", rows, inputs=["question"])
    assert "rows [0, 2]" in str(err.value)
    assert "dedupe" in str(err.value)


# ---------------------------------------------------------------------------------------------
# dedupe


def _norm(v: Any) -> Any:
    return " ".join(v.split()).casefold() if isinstance(v, str) else v


def test_dedupe_exact_and_normalized_counts_on_real_data(ws: wb.Workspace) -> None:
    base = [{k: r[k] for k in ("question", "final_decision")} for r in _pubmedqa_records()[:60]]
    rng = random.Random(7)
    rows = list(base)
    rows += [dict(r) for r in rng.sample(base, 6)]  # exact copies
    for r in rng.sample(base, 5):  # same up to whitespace and case
        shouted = "  " + r["question"].upper().replace(" ", "   ") + " "
        rows.append({"question": shouted, "final_decision": r["final_decision"]})
    rng.shuffle(rows)

    frame = pd.DataFrame(rows)
    exact_dups = int(frame.duplicated().sum())
    norm_dups = int(frame.map(_norm).duplicated().sum())
    assert exact_dups > 0 and norm_dups > exact_dups  # the data really has both kinds

    with pytest.raises(DatasetError, match="duplicate case id"):
        ws.add_dataset("pq", rows)

    exact = ws.add_dataset("pq", rows, dedupe="exact")
    assert exact.report == {"rows_in": len(rows), "dropped_exact": exact_dups, "dropped_normalized": 0,
                            "rows": len(rows) - exact_dups}
    assert exact.n_cases == len(rows) - exact_dups
    assert [r for _, r in exact.cases()] == frame.drop_duplicates().to_dict("records")

    norm = ws.add_dataset("pq", rows, dedupe="normalized")
    assert norm.report["dropped_exact"] == exact_dups
    assert norm.report["dropped_normalized"] == norm_dups - exact_dups
    assert norm.n_cases == len(rows) - norm_dups
    keep = ~frame.map(_norm).duplicated()
    assert [r for _, r in norm.cases()] == frame[keep].to_dict("records")  # first occurrence wins, order kept
    assert norm.version == 2  # different content from the exact-deduped version


def test_dedupe_counts_when_the_later_row_is_already_normalized() -> None:
    # "a b" is not an exact copy of "A B": it must count as a normalized duplicate
    _, _, rows, report = prepare([{"q": "A B"}, {"q": "a b"}, {"q": "a  b"}, {"q": "a b"}], dedupe="normalized")
    assert rows == [{"q": "A B"}]
    assert (report["dropped_exact"], report["dropped_normalized"]) == (1, 2)
    _, _, rows, report = prepare([{"q": "A B"}, {"q": "a b"}], dedupe="exact")
    assert rows == [{"q": "A B"}, {"q": "a b"}]
    assert report["dropped_exact"] == 0


def test_dedupe_ignores_the_id_column(ws: wb.Workspace) -> None:
    rows = [{"id": "1", "q": "same"}, {"id": "2", "q": "same"}, {"id": "3", "q": "SAME "}, {"id": "4", "q": "other"}]
    ds = ws.add_dataset("d", rows, id="id", dedupe="normalized")
    assert [cid for cid, _ in ds.cases()] == ["1", "4"]
    assert (ds.report["dropped_exact"], ds.report["dropped_normalized"]) == (1, 1)
    with pytest.raises(DatasetError, match="dedupe must be"):
        ws.add_dataset("d2", rows, id="id", dedupe="fuzzy")  # type: ignore[arg-type]


def test_report_is_empty_when_loaded_by_name(ws: wb.Workspace) -> None:
    ws.add_dataset("d", ROWS, id="qid")
    assert ws.dataset("d").report == {}


# ---------------------------------------------------------------------------------------------
# errors: clear messages, and nothing stored


def _latin1_csv(tmp_path: Path) -> Path:
    path = tmp_path / "latin1.csv"
    path.write_bytes("question,answer\nwhat is a café?,a place\n".encode("latin-1"))
    return path


def test_latin1_csv_names_line_and_offset(ws: wb.Workspace, tmp_path: Path) -> None:
    path = _latin1_csv(tmp_path)
    data = path.read_bytes()
    offset = data.index(b"\xe9")
    line = data[:offset].count(b"\n") + 1
    with pytest.raises(DatasetError) as err:
        ws.add_dataset("latin", path)
    msg = str(err.value)
    assert str(path) in msg and "UTF-8" in msg
    assert f"byte offset {offset}" in msg and f"line {line}" in msg


def test_jsonl_with_invalid_byte_names_the_line(ws: wb.Workspace, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    lines = [b'{"q": "fine"}\n', b"\n", b'{"q": "broken \xff here"}\n']
    path.write_bytes(b"".join(lines))
    with pytest.raises(DatasetError) as err:
        ws.add_dataset("bad", path)
    msg = str(err.value)
    assert str(path) in msg
    assert "line 3" in msg and "UTF-8" in msg
    bad_at = lines[2].index(b"\xff")
    assert f"byte {bad_at}" in msg


def test_malformed_jsonl_names_the_line(ws: wb.Workspace, tmp_path: Path) -> None:
    path = tmp_path / "mal.jsonl"
    path.write_text('{"q": "one"}\n{"q": "two"}\n\n{"q": "four",}\n{"q": "five"}\n')
    with pytest.raises(DatasetError, match=r"line 4 is not valid JSON"):
        ws.add_dataset("mal", path)
    path.write_text('{"q": "one"}\n["not", "an", "object"]\n')
    with pytest.raises(DatasetError, match=r"line 2 is a JSON list"):
        ws.add_dataset("mal", path)


def _error_cases(tmp_path: Path) -> dict[str, tuple[dict[str, Any], str]]:
    empty_jsonl = tmp_path / "empty.jsonl"
    empty_jsonl.write_text("\n\n")
    header_only = tmp_path / "header.csv"
    header_only.write_text("question,answer\n")
    scalars = tmp_path / "scalars.json"
    scalars.write_text("[1, 2, 3]")
    broken_json = tmp_path / "broken.json"
    broken_json.write_text('[{"q": 1},')
    unknown = tmp_path / "data.xlsx"
    unknown.write_bytes(b"PK\x03\x04 not really")
    not_parquet = tmp_path / "fake.parquet"
    not_parquet.write_text("definitely not parquet")
    folder = tmp_path / "folder.jsonl"
    folder.mkdir(exist_ok=True)
    rows = [{"question": "Q1", "answer": "A1"}, {"question": "Q2", "answer": 2}, {"question": None, "answer": "A3"}]
    return {
        "missing column": ({"data": rows, "required": ["expected", "answer"]},
                           r"no column\(s\) \['expected'\]; its columns are \['question', 'answer'\]"),
        "missing id column": ({"data": rows, "id": "qid"}, r"no column\(s\) \['qid'\].*question"),
        "missing input column": ({"data": rows, "inputs": ["query"]}, r"\['query'\].*\['question', 'answer'\]"),
        "empty list": ({"data": []}, "empty"),
        "empty frame": ({"data": pd.DataFrame({"question": []})}, "empty"),
        "blank jsonl": ({"data": empty_jsonl}, f"{re.escape(str(empty_jsonl))} is empty"),
        "header-only csv": ({"data": header_only}, "empty"),
        "duplicate ids": ({"data": [{"id": "a", "q": 1}, {"id": "b", "q": 2}, {"id": "a", "q": 3}, {"id": "b", "q": 4}],
                           "id": "id"}, r"2 duplicate case id\(s\): 'a' at rows \[0, 2\]; 'b' at rows \[1, 3\]"),
        "empty id": ({"data": [{"id": "a", "q": 1}, {"id": " ", "q": 2}], "id": "id"}, "row 1 has an empty id"),
        "non-text": ({"data": rows, "text_columns": ["question", "answer"]},
                     r"column 'question' must be text but rows \[2\] hold \['NoneType'\]; "
                     r"column 'answer' must be text but rows \[1\] hold \['int'\]"),
        "latin-1": ({"data": _latin1_csv(tmp_path)}, "not valid UTF-8"),
        "unknown format": ({"data": unknown},
                           r"unknown dataset format 'xlsx'; use \.csv, \.jsonl, \.json or \.parquet"),
        "no such file": ({"data": tmp_path / "nope.csv"}, "does not exist"),
        "json scalars": ({"data": scalars}, "must be a list of objects"),
        "broken json": ({"data": broken_json}, "cannot read .* as json"),
        "not parquet": ({"data": not_parquet}, "cannot read .* as parquet"),
        "jsonl folder": ({"data": folder}, r"cannot read .*folder\.jsonl as jsonl: .*Is a directory"),
        "list of strings": ({"data": ["q1", "q2"]}, r"must be dicts .* \['str'\]"),
        "dict": ({"data": {"question": ["Q1"]}}, "cannot make a dataset from a dict"),
        "bad name": ({"data": rows, "name": "has space"}, "dataset name 'has space'"),
    }


ERROR_CASES = [
    "missing column", "missing id column", "missing input column", "empty list", "empty frame", "blank jsonl",
    "header-only csv", "duplicate ids", "empty id", "non-text", "latin-1", "unknown format", "no such file",
    "json scalars", "broken json", "not parquet", "jsonl folder", "list of strings", "dict", "bad name",
]


def test_error_case_list_is_complete(tmp_path: Path) -> None:
    assert sorted(_error_cases(tmp_path)) == sorted(ERROR_CASES)


@pytest.mark.parametrize("case", ERROR_CASES)
def test_errors_are_clear_and_store_nothing(ws: wb.Workspace, tmp_path: Path, case: str) -> None:
    kwargs, pattern = _error_cases(tmp_path)[case]
    kwargs = dict(kwargs)
    name = kwargs.pop("name", "target")
    ws.add_dataset("target", [{"question": "kept", "answer": "x"}])
    before = _counts(ws)
    with pytest.raises(DatasetError, match=pattern):
        ws.add_dataset(name, **kwargs)
    assert _counts(ws) == before
    assert ws.dataset("target").version == 1


def test_dataset_errors_are_validation_errors() -> None:
    assert issubclass(DatasetError, ValidationError)
    assert issubclass(DatasetError, wb.WorkbenchError)


# ---------------------------------------------------------------------------------------------
# real data and profile


def test_pubmedqa_demo_loads_with_pmid_ids(ws: wb.Workspace) -> None:
    records = _pubmedqa_records()
    ds = ws.add_dataset("pubmedqa", PUBMEDQA, id="pmid", text_columns=["question", "context", "long_answer"])
    assert ds.n_cases == len(records) == 200
    cases = ds.cases()
    assert [cid for cid, _ in cases] == [str(r["pmid"]) for r in records]
    assert [row for _, row in cases] == [{c: r.get(c) for c in ds.columns} for r in records]
    assert set(ds.columns) == set().union(*(r.keys() for r in records))
    stored = ws.sql("SELECT source, id_column FROM datasets WHERE name = 'pubmedqa'").iloc[0]
    assert stored["source"] == str(PUBMEDQA) and stored["id_column"] == "pmid"


def _expected_profile(frame: pd.DataFrame, id_column: str | None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Profile numbers computed independently with pandas."""
    out = []
    for col in frame.columns:
        s = frame[col]
        text = s.dropna()
        text = text[text.map(lambda v: isinstance(v, str))]
        lengths = text.str.len()
        out.append({
            "column": col,
            "nulls": int(s.isna().sum()),
            "empty": int((text.str.strip() == "").sum()),
            "distinct": int(s.nunique(dropna=False)),
            "len_min": int(lengths.min()) if len(lengths) else None,
            "len_mean": float(lengths.mean()) if len(lengths) else None,
            "len_max": int(lengths.max()) if len(lengths) else None,
        })
    content = frame.drop(columns=[id_column]) if id_column else frame
    dups = {
        "rows": len(frame),
        "duplicates_exact": int(content.duplicated().sum()),
        "duplicates_normalized": int(content.map(_norm).duplicated().sum()),
    }
    return pd.DataFrame(out), dups


def _check_profile(got: pd.DataFrame, expected: pd.DataFrame, dups: dict[str, int]) -> None:
    assert got["column"].tolist() == expected["column"].tolist()
    for col in ("nulls", "empty", "distinct", "len_min", "len_max"):
        assert got[col].tolist() == expected[col].tolist(), col
    for g, e in zip(got["len_mean"], expected["len_mean"]):
        assert g == pytest.approx(e, abs=0.05)
    assert {k: got.attrs[k] for k in dups} == dups


def test_profile_matches_pandas_on_pubmedqa(ws: wb.Workspace) -> None:
    ds = ws.add_dataset("pubmedqa", PUBMEDQA, id="pmid")
    frame = pd.DataFrame(_pubmedqa_records(), columns=list(ds.columns)).astype(object)
    frame = frame.where(frame.notna(), None)
    expected, dups = _expected_profile(frame, "pmid")
    assert expected["nulls"].sum() > 0  # the real data has gaps (year), so nulls are exercised
    got = ds.profile()
    _check_profile(got, expected, dups)
    assert got.set_index("column").loc["question", "types"] == "str"


def test_profile_counts_duplicates_and_blanks(ws: wb.Workspace) -> None:
    records = _pubmedqa_records()[:40]
    rows = [{"pmid": r["pmid"], "question": r["question"], "final_decision": r["final_decision"]} for r in records]
    rows += [{**rows[i], "pmid": f"copy-{i}"} for i in (0, 3, 5)]  # same content, new ids
    rows += [{**rows[i], "pmid": f"shout-{i}", "question": rows[i]["question"].upper() + "  "} for i in (1, 2)]
    rows += [{"pmid": "blank", "question": "   ", "final_decision": None}]
    ds = ws.add_dataset("dups", rows, id="pmid")
    frame = pd.DataFrame(rows).astype(object)
    frame = frame.where(frame.notna(), None)
    expected, dups = _expected_profile(frame, "pmid")
    assert dups["duplicates_exact"] == 3 and dups["duplicates_normalized"] == 5  # sanity of the fixture itself
    _check_profile(ds.profile(), expected, dups)
