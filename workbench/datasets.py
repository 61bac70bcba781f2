"""Datasets: named, immutable, content-hashed versions of eval cases with stable case ids.

Why content hashes: a leaderboard number must say exactly which rows produced it, and adding the
same rows twice must not create a second version. Why stable case ids: results of different runs
line up case by case (paired statistics) only if a case keeps its id across versions.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from workbench.errors import DatasetError
from workbench.store import Store, dumps

if TYPE_CHECKING:
    import pandas as pd

Dedupe = Literal["exact", "normalized"] | None
_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class Dataset:
    """One stored dataset version. ``cases`` are loaded from the workspace on first use."""

    name: str
    hash: str
    version: int
    columns: tuple[str, ...]
    id_column: str | None
    n_cases: int
    store: Store = field(repr=False, compare=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: What ``add`` did to the input: rows_in, dropped_exact, dropped_normalized, rows (empty when loaded by name).
    report: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ref(self) -> str:
        """A short readable reference: ``name@v3``."""
        return f"{self.name}@v{self.version}"

    def cases(self) -> list[tuple[str, dict[str, Any]]]:
        """(case_id, row) pairs in dataset order."""
        if "cases" not in self._cache:
            self._cache["cases"] = [(cid, json.loads(data)) for cid, data in self.store.dataset_cases(self.hash)]
        return self._cache["cases"]

    def to_pandas(self) -> pd.DataFrame:
        import pandas as pd

        rows = [{"case_id": cid, **row} for cid, row in self.cases()]
        return pd.DataFrame(rows, columns=["case_id", *self.columns])

    def profile(self) -> pd.DataFrame:
        """Per column: type, nulls, distinct values, text length stats, duplicates (exact / normalized)."""
        return profile_rows([row for _, row in self.cases()], list(self.columns), self.id_column)

    def _repr_html_(self) -> str:
        return f"<b>Dataset {self.ref}</b> ({self.n_cases} cases, hash {self.hash[:12]})" + self.to_pandas().head(
            10
        ).to_html(index=False)


# ---------------------------------------------------------------------------------------------
# loading


#: deepest nesting of lists/objects accepted in a cell: deeper data is almost always a bug or an attack
MAX_NESTING = 64

_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def _convert_hint(path: Path, encoding: str) -> str:
    out = path.with_name(path.stem + ".utf8" + path.suffix)
    return (
        f"Convert it to UTF-8, e.g. `iconv -f {encoding} -t UTF-8 {path.name} > {out.name}`, or in Python "
        f"Path({str(out.name)!r}).write_text(Path({str(path.name)!r}).read_text(encoding={encoding.lower()!r}), "
        "encoding='utf-8')"
    )


def _guess_encoding(data: bytes) -> str:
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(data[:1 << 16]).best()
        if best is not None and best.encoding.replace("_", "-").lower() not in ("utf-8", "ascii"):
            return str(best.encoding).replace("_", "-").upper()
    except ImportError:  # pragma: no cover - charset-normalizer is a dependency
        pass
    return "CP1252"  # the usual culprit: Windows-1252 / latin-1 from a spreadsheet export


def decode_text(path: Path, data: bytes) -> str:
    """Dataset bytes as text: UTF-8 (a UTF-8 BOM is dropped), else a DatasetError naming the likely encoding."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise DatasetError(
                f"{path} is {name} text (it starts with a {name} byte-order mark), not UTF-8; "
                + _convert_hint(path, name)
            )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1)  # 0-based byte within the line
        guess = _guess_encoding(data)
        raise DatasetError(
            f"{path} is not valid UTF-8 (line {line}, byte {col} of the line, byte offset {exc.start}: "
            f"{data[exc.start : exc.start + 4]!r}); "
            f"it looks like {guess} (a guess from its bytes). " + _convert_hint(path, guess)
        ) from None


def _nesting(value: Any, limit: int) -> int:
    """Depth of nested lists/dicts in ``value``, counted without recursion; stops once past ``limit``."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, (list, tuple)):
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((v, depth) for v in item)
    return deepest


def check_nesting(row: Mapping[str, Any], where: str) -> None:
    """DatasetError when a cell of ``row`` nests lists/objects deeper than MAX_NESTING."""
    for col, value in row.items():
        if isinstance(value, (list, tuple, dict)) and _nesting(value, MAX_NESTING) > MAX_NESTING:
            raise DatasetError(
                f"{where}: column {col!r} nests lists/objects more than {MAX_NESTING} levels deep; flatten it, or "
                "store the structure as a JSON string"
            )


def _json_error(path: Path, text: str, exc: json.JSONDecodeError, lineno: int | None = None) -> DatasetError:
    """The line and (character) column of a JSON syntax error, with the text around it and a caret."""
    line = lineno or exc.lineno
    start = max(exc.colno - 21, 0)
    doc_line = text if lineno else (text.splitlines() or [""])[exc.lineno - 1]
    near = doc_line[start : exc.colno + 20]
    caret = " " * (exc.colno - 1 - start) + "^"
    where = f"{path}: line {line}" if lineno else f"cannot read {path} as json: line {line}"
    return DatasetError(f"{where} is not valid JSON (column {exc.colno}): {exc.msg}\n    {near}\n    {caret}")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    text = decode_text(path, path.read_bytes())
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _json_error(path, line, exc, lineno) from None
        except RecursionError:
            raise DatasetError(
                f"{path}: line {lineno} nests lists/objects too deeply to read (limit {MAX_NESTING} levels)"
            ) from None
        if not isinstance(obj, dict):
            raise DatasetError(f"{path}: line {lineno} is a JSON {type(obj).__name__}; each line must be an object")
        check_nesting(obj, f"{path}: line {lineno}")
        rows.append(obj)
    return rows


def load_table(source: Any, fmt: str | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """Column names and one dict per row from a DataFrame, list of dicts, or a CSV / JSONL / JSON / Parquet path.

    JSON files are read without pandas (its import is half a second of a cold ``llmops run``), typed as pandas
    would type them: the rows, and so the dataset's hash, do not depend on which reader ran.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        kind = (fmt or path.suffix.lstrip(".")).lower()
        if kind in ("jsonl", "ndjson", "json") and path.exists():
            try:
                return json_table(_read_jsonl(path) if kind != "json" else _read_json(path))
            except OSError as exc:  # a folder, no permission: said as load_frame says it
                raise DatasetError(f"cannot read {path} as {kind}: {exc}") from exc
    frame = load_frame(source, fmt)
    columns = [str(c) for c in frame.columns]
    return columns, [dict(zip(columns, rec)) for rec in frame.itertuples(index=False, name=None)]


def json_table(records: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns (first appearance) and rows of parsed JSON objects, each value as ``pd.DataFrame(records)`` holds it.

    pandas' rule for JSON values: a column of numbers only (int, float, null or absent) is float64 when it holds
    a float or a null, so its ints become floats; ints alone stay ints, and so does a column whose ints do not
    fit int64 / uint64 together. Every other column keeps its values; absent keys read as null (None).
    """
    columns = list(dict.fromkeys(k for r in records for k in r))
    as_float = {c for c in columns if _float_column([r.get(c) for r in records])}
    rows = []
    for r in records:
        row = {}
        for c in columns:
            v = r.get(c)
            if c in as_float and v is not None:
                v = float(v)
            row[c] = v
        rows.append(row)
    return columns, rows


def _float_column(values: list[Any]) -> bool:
    """True when pandas would make this column of JSON values float64 with its ints converted."""
    null = floats = False
    lo = hi = 0
    for v in values:
        if v is None:
            null = True
        elif isinstance(v, float):
            floats = True
        elif isinstance(v, int) and not isinstance(v, bool):
            lo, hi = min(lo, v), max(hi, v)
        else:
            return False  # text, bool, list, object: pandas keeps the values as they are
    if hi >= 2**64 or lo < -(2**63) or (hi >= 2**63 and lo < 0):
        return False  # no 64-bit integer type holds them all: object, values kept
    return null or floats


def _read_json(path: Path) -> list[dict[str, Any]]:
    text = decode_text(path, path.read_bytes())
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _json_error(path, text, exc) from None
    except RecursionError:
        raise DatasetError(f"{path}: nests lists/objects too deeply to read (limit {MAX_NESTING})") from None
    if isinstance(data, dict):
        data = [{"id": k, **v} if isinstance(v, dict) else {"id": k, "value": v} for k, v in data.items()]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DatasetError(
            f"{path}: a JSON dataset must be a list of objects (or an object of objects keyed by id); "
            "for one object per line use .jsonl"
        )
    return data


def load_frame(source: Any, fmt: str | None = None) -> pd.DataFrame:
    """A DataFrame from a DataFrame, list of dicts, or a CSV / Parquet path (JSON files: ``load_table``)."""
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        return source.copy()
    if isinstance(source, list):
        bad = [i for i, r in enumerate(source) if not isinstance(r, Mapping)]
        if bad:
            raise DatasetError(
                f"dataset records must be dicts (one per case); items {bad[:5]} are "
                f"{sorted({type(source[i]).__name__ for i in bad})}"
            )
        return pd.DataFrame(source)
    if not isinstance(source, (str, os.PathLike)):
        raise DatasetError(
            f"cannot make a dataset from a {type(source).__name__}; pass a DataFrame, a list of dicts, "
            "or the path of a .csv / .jsonl / .json / .parquet file"
        )
    path = Path(source)
    if not path.exists():
        raise DatasetError(f"dataset file {path} does not exist (current folder: {Path.cwd()})")
    kind = (fmt or path.suffix.lstrip(".")).lower()
    try:
        if kind == "csv":
            decode_text(path, path.read_bytes())  # a clear error for bad encodings, before pandas guesses
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
        if kind in ("parquet", "pq"):
            return pd.read_parquet(path)
    except UnicodeDecodeError as exc:
        line = bytes(exc.object[: exc.start]).count(b"\n") + 1
        raise DatasetError(
            f"{path} is not valid UTF-8 (line {line}, byte offset {exc.start}); re-save it as UTF-8"
        ) from exc
    except (ValueError, OSError) as exc:
        raise DatasetError(f"cannot read {path} as {kind}: {exc}") from exc
    raise DatasetError(f"{path}: unknown dataset format {kind!r}; use .csv, .jsonl, .json or .parquet (or fmt=...)")


def _clean(value: Any) -> Any:
    """JSON-safe value: NaN/NA become None, numpy scalars become Python ones."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)) and getattr(value, "ndim", 0) == 0:
        return _clean(value.item())
    if hasattr(value, "tolist"):
        return [_clean(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    pd = sys.modules.get("pandas")  # a value can only be pandas' NA once pandas is loaded: do not import it here
    if pd is not None and (value is pd.NA or value is pd.NaT):
        return None
    return value


def _normalize_text(value: Any) -> Any:
    if isinstance(value, str):
        return _WS.sub(" ", value).strip().casefold()
    return value


def _hash(obj: Any) -> str:
    return hashlib.sha256(dumps(obj).encode()).hexdigest()


def prepare(
    data: Any,
    *,
    id: str | None = None,
    inputs: Sequence[str] | None = None,
    text_columns: Sequence[str] | None = None,
    required: Sequence[str] | None = None,
    dedupe: Dedupe = None,
    fmt: str | None = None,
) -> tuple[list[str], list[str], list[dict[str, Any]], dict[str, Any]]:
    """Validate and normalise rows. Returns (columns, case_ids, rows, report) or raises DatasetError."""
    columns, table = load_table(data, fmt)
    where = f"dataset {data}" if isinstance(data, (str, Path)) else "dataset"
    if not table or not columns:
        raise DatasetError(f"{where} is empty: it has no rows. Check the file or the filter that built it.")
    needed = list(required or []) + list(text_columns or []) + list(inputs or []) + ([id] if id else [])
    missing = [c for c in dict.fromkeys(needed) if c not in columns]
    if missing:
        raise DatasetError(f"{where} has no column(s) {missing}; its columns are {columns}")
    rows = []
    for i, raw in enumerate(table):
        check_nesting(raw, f"{where}: row {i}")  # before _clean, which recurses
        rows.append({k: _clean(v) for k, v in raw.items()})

    problems = []
    for col in text_columns or []:
        bad = [i for i, r in enumerate(rows) if not isinstance(r[col], str)]
        if bad:
            kinds = sorted({type(rows[i][col]).__name__ for i in bad})
            more = "..." if len(bad) > 5 else ""
            problems.append(f"column {col!r} must be text but rows {bad[:5]}{more} hold {kinds}")
    if problems:
        raise DatasetError(f"{where}: " + "; ".join(problems))

    report: dict[str, Any] = {"rows_in": len(rows), "dropped_exact": 0, "dropped_normalized": 0}
    if dedupe not in (None, "exact", "normalized"):
        raise DatasetError(f"dedupe must be None, 'exact' or 'normalized', not {dedupe!r}")
    if dedupe:
        # Separate sets: a row's exact form can equal another row's normalized form ("a b" vs "A B").
        seen_exact: set[str] = set()
        seen_norm: set[str] = set()
        kept = []
        for r in rows:
            key_row = {k: v for k, v in r.items() if k != id} if id else r
            exact = dumps(key_row)
            norm = dumps({k: _normalize_text(v) for k, v in key_row.items()})
            if exact in seen_exact:  # identical to an earlier row
                report["dropped_exact"] += 1
                continue
            seen_exact.add(exact)
            if dedupe == "normalized" and norm in seen_norm:  # equal up to whitespace and case
                report["dropped_normalized"] += 1
                continue
            seen_norm.add(norm)
            kept.append(r)
        rows = kept

    if id:
        ids = []
        for i, r in enumerate(rows):
            v = r[id]
            if v is None or (isinstance(v, str) and not v.strip()):
                raise DatasetError(f"{where}: row {i} has an empty id in column {id!r}")
            ids.append(str(v))
    else:
        keys = list(inputs) if inputs else columns
        ids = [_hash({k: r[k] for k in keys})[:16] for r in rows]
    counts: dict[str, list[int]] = {}
    for i, cid in enumerate(ids):
        counts.setdefault(cid, []).append(i)
    dup = {k: v for k, v in counts.items() if len(v) > 1}
    if dup:
        shown = "; ".join(f"{k!r} at rows {v[:4]}" for k, v in list(dup.items())[:5])
        hint = (
            "make the id column unique"
            if id
            else "rows with identical inputs get the same id: pass dedupe='exact' "
            "(or 'normalized') to drop them, or give an id column"
        )
        raise DatasetError(f"{where}: {len(dup)} duplicate case id(s): {shown}. To fix: {hint}.")
    report["rows"] = len(rows)
    return columns, ids, rows, report


def dataset_hash(columns: list[str], ids: list[str], rows: list[dict[str, Any]], id_column: str | None) -> str:
    return _hash({"columns": columns, "id": id_column, "cases": list(zip(ids, rows))})


def add(
    store: Store,
    name: str,
    data: Any,
    *,
    id: str | None = None,
    inputs: Sequence[str] | None = None,
    text_columns: Sequence[str] | None = None,
    required: Sequence[str] | None = None,
    dedupe: Dedupe = None,
    fmt: str | None = None,
) -> Dataset:
    """Validate, hash and store a dataset version; the same content returns the existing version."""
    if not name or not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise DatasetError(f"dataset name {name!r} must be non-empty and use letters, digits, '_', '-' or '.'")
    columns, ids, rows, report = prepare(
        data, id=id, inputs=inputs, text_columns=text_columns, required=required, dedupe=dedupe, fmt=fmt
    )
    digest = dataset_hash(columns, ids, rows, id)
    source = str(Path(data).resolve()) if isinstance(data, (str, Path)) else None
    version = store.insert_dataset(name, digest, id, columns, source, ids, [dumps(r) for r in rows])
    return Dataset(name, digest, version, tuple(columns), id, len(ids), store, report=report)


def get(store: Store, name: str, version: int | str | None = None) -> Dataset:
    """Latest version by default; ``version`` may be a number, ``'v3'`` or a hash prefix."""
    from workbench.errors import NotFoundError

    number: int | None = None
    hash_: str | None = None
    if isinstance(version, int):
        number = version
    elif isinstance(version, str):
        if re.fullmatch(r"v?\d+", version) and len(version) < 8:
            number = int(version.lstrip("v"))
        else:
            hash_ = version
    rec = store.find_dataset(name, hash_, number)
    if rec is None:
        known = store.list_datasets()["name"].unique().tolist()
        raise NotFoundError(
            f"no dataset {name!r}"
            + (f" version {version}" if version is not None else "")
            + f" in workspace {store.path}; known datasets: {known or 'none'}. Add one with ws.add_dataset(...)"
        )
    return Dataset(
        rec["name"], rec["hash"], rec["version"], tuple(rec["columns"]), rec["id_column"], rec["n_cases"], store
    )


def profile_rows(rows: Iterable[Mapping[str, Any]], columns: list[str], id_column: str | None = None) -> pd.DataFrame:
    """Column statistics; duplicates compare rows without ``id_column`` (unique ids never hide a repeated case)."""
    import pandas as pd

    rows = list(rows)
    out = []
    content = [{k: v for k, v in r.items() if k != id_column} for r in rows]
    exact = len(content) - len({dumps(r) for r in content})
    normalized = len(content) - len({dumps({k: _normalize_text(v) for k, v in r.items()}) for r in content})
    for col in columns:
        values = [r.get(col) for r in rows]
        texts = [v for v in values if isinstance(v, str)]
        lengths = [len(t) for t in texts]
        out.append(
            {
                "column": col,
                "types": ",".join(sorted({type(v).__name__ for v in values if v is not None})) or "null",
                "nulls": sum(v is None for v in values),
                "empty": sum(isinstance(v, str) and not v.strip() for v in values),
                "distinct": len({dumps(v) for v in values}),
                "len_min": min(lengths) if lengths else None,
                "len_mean": round(sum(lengths) / len(lengths), 1) if lengths else None,
                "len_max": max(lengths) if lengths else None,
            }
        )
    frame = pd.DataFrame(out)
    frame.attrs.update({"rows": len(rows), "duplicates_exact": exact, "duplicates_normalized": normalized})
    return frame
