"""``Corpus``: the documents retrieval searches, validated, with a content hash as their version.

Why strict validation here: a corpus with duplicate ids or numbers in its text column produces an index
that silently answers wrong. Every error says what is wrong, where (file, line, row, id) and what to do.

Ids are strings (integer ids such as PubMed ids are converted, so gold ids from a CSV still match).
``Corpus.hash`` covers ids, texts and metadata; ``Corpus.text_hash`` covers ids and texts only and keys the
chunk/embedding cache, so editing metadata does not re-embed anything.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import RetrievalError
from workbench.retrieval.config import canonical_hash

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Corpus", "Document"]

TEXT_SUFFIXES = (".txt", ".md", ".markdown")
FILE_SUFFIXES = (*TEXT_SUFFIXES, ".jsonl", ".json", ".csv", ".parquet", ".pdf")
_MAX_LISTED = 5


@dataclass(frozen=True)
class Document:
    """One document: a string id, its text and JSON-able metadata (source file, year, ...)."""

    id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


def _plain(value: Any) -> Any:
    """Metadata value as plain JSON-able Python (numpy scalars -> numbers, NaN -> None, dates -> ISO)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return _plain(value.item())
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or (hasattr(value, "tolist") and callable(value.tolist)):
        seq = value.tolist() if hasattr(value, "tolist") else value
        return [_plain(v) for v in seq]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _coerce_id(value: Any) -> str | None:
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return _coerce_id(value.item())
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


class Corpus:
    """An immutable, validated list of documents. Build it with one of the ``from_*`` constructors."""

    def __init__(self, documents: Iterable[Document], source: str = "<memory>") -> None:
        self.documents: tuple[Document, ...] = tuple(documents)
        self.source = source
        if not self.documents:
            raise RetrievalError(f"corpus from {source} is empty: it needs at least one document with an id and a text")
        seen: dict[str, int] = {}
        dupes: list[str] = []
        for doc in self.documents:
            if doc.id in seen and (not dupes or doc.id not in dupes):
                dupes.append(doc.id)
            seen[doc.id] = seen.get(doc.id, 0) + 1
        if dupes:
            listed = ", ".join(f"{d!r} (x{seen[d]})" for d in dupes[:_MAX_LISTED])
            raise RetrievalError(
                f"corpus from {source} has {len(dupes)} duplicate document id(s): {listed}"
                f"{' ...' if len(dupes) > _MAX_LISTED else ''}; ids must be unique: drop duplicates or "
                "choose another id column"
            )
        self._by_id = {d.id: d for d in self.documents}

    # ---- constructors ---------------------------------------------------------------------------
    @classmethod
    def from_records(
        cls,
        records: Iterable[Mapping[str, Any]],
        id_field: str = "id",
        text_field: str = "text",
        source: str = "records",
    ) -> Corpus:
        """Build from dicts: ``id_field`` and ``text_field`` are required; other keys become metadata."""
        return cls(_records_to_docs(records, id_field, text_field, source, "record"), source=source)

    @classmethod
    def from_dataframe(cls, df: pd.DataFrame, id_col: str = "id", text_col: str = "text") -> Corpus:
        """Build from a DataFrame: ``id_col``/``text_col`` are required, other columns become metadata."""
        absent = [c for c in (id_col, text_col) if c not in df.columns]
        if absent:
            raise RetrievalError(
                f"corpus DataFrame has no column(s) {absent}; its columns are {list(df.columns)[:20]}: "
                f"pass id_col=/text_col= naming the right ones"
            )
        records = df.to_dict(orient="records")
        return cls(_records_to_docs(records, id_col, text_col, "DataFrame", "row", start=0), source="DataFrame")

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        id_field: str = "id",
        text_field: str = "text",
        glob: str | None = None,
    ) -> Corpus:
        """Read a file (.jsonl/.json/.csv/.parquet: records; .txt/.md/.pdf: one document) or a folder of them.

        Files in a folder are read in sorted order; a text/markdown/PDF file's id is its path relative to
        the folder (``guides/setup.md``); records keep the id from ``id_field``.
        """
        root = Path(path).expanduser()
        if not root.exists():
            raise RetrievalError(f"corpus path {str(root)!r} does not exist: check corpus.path (relative to the spec)")
        if root.is_file():
            return cls(_read_file(root, root.parent, id_field, text_field), source=str(root))
        pattern = glob or "**/*"
        files = sorted(p for p in root.glob(pattern) if p.is_file() and p.suffix.lower() in FILE_SUFFIXES)
        if not files:
            raise RetrievalError(
                f"corpus folder {str(root)!r} has no {'/'.join(FILE_SUFFIXES)} files matching {pattern!r}"
            )
        docs: list[Document] = []
        for f in files:
            docs.extend(_read_file(f, root, id_field, text_field))
        return cls(docs, source=str(root))

    # ---- access ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.documents)

    def __iter__(self) -> Iterator[Document]:
        return iter(self.documents)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._by_id

    def __getitem__(self, doc_id: str) -> Document:
        try:
            return self._by_id[doc_id]
        except KeyError:
            raise RetrievalError(f"document {doc_id!r} is not in corpus {self.source}") from None

    @property
    def ids(self) -> list[str]:
        return [d.id for d in self.documents]

    @cached_property
    def hash(self) -> str:
        """Version of the corpus: sha256 of the canonical JSON of its documents sorted by id."""
        docs = sorted(self.documents, key=lambda d: d.id)
        return canonical_hash([[d.id, d.text, dict(d.metadata)] for d in docs])

    @cached_property
    def text_hash(self) -> str:
        """Hash of ids and texts only: what chunks and embeddings depend on."""
        docs = sorted(self.documents, key=lambda d: d.id)
        return canonical_hash([[d.id, d.text] for d in docs])

    def to_dataframe(self) -> pd.DataFrame:
        """Documents as a DataFrame (id, text, then metadata columns)."""
        import pandas as pd

        return pd.DataFrame([{"id": d.id, "text": d.text, **d.metadata} for d in self.documents])

    def __repr__(self) -> str:
        return f"Corpus({len(self)} documents from {self.source}, hash={self.hash[:12]})"


def _records_to_docs(
    records: Iterable[Mapping[str, Any]],
    id_field: str,
    text_field: str,
    source: str,
    unit: str,
    start: int = 1,
    lines: list[int] | None = None,
) -> list[Document]:
    """Validate records into documents, collecting every problem (a few of each kind) into one error."""
    docs: list[Document] = []
    bad_ids: list[str] = []
    bad_text: list[str] = []
    missing: list[str] = []
    for n, rec in enumerate(records):
        where = f"{unit} {lines[n] if lines else n + start}"
        if not isinstance(rec, Mapping):
            raise RetrievalError(
                f"corpus from {source}: {where} is a {type(rec).__name__}, not an object with "
                f"{id_field!r} and {text_field!r}"
            )
        absent = [f for f in (id_field, text_field) if f not in rec]
        if absent:
            missing.append(f"{where} lacks {absent} (has {sorted(map(str, rec))[:8]})")
            continue
        doc_id = _coerce_id(rec[id_field])
        if doc_id is None:
            bad_ids.append(f"{where}: {rec[id_field]!r}")
            continue
        text = rec[text_field]
        if not isinstance(text, str) or not text.strip():
            bad_text.append(f"{doc_id!r} ({where}): {_describe(text)}")
            continue
        meta = {str(k): _plain(v) for k, v in rec.items() if k not in (id_field, text_field)}
        docs.append(Document(doc_id, text, meta))
    problems = []
    if missing:
        problems.append(
            f"{len(missing)} {unit}(s) miss a required field: "
            + "; ".join(missing[:_MAX_LISTED])
            + f". Name the right fields (now id: {id_field!r}, text: {text_field!r})"
        )
    if bad_ids:
        problems.append(
            f"{len(bad_ids)} {unit}(s) have an empty or non-string/integer id: " + "; ".join(bad_ids[:_MAX_LISTED])
        )
    if bad_text:
        problems.append(
            f"{len(bad_text)} document(s) have no text in {text_field!r}: "
            + "; ".join(bad_text[:_MAX_LISTED])
            + ". Drop them or fill them in"
        )
    if problems:
        raise RetrievalError(f"corpus from {source} is not valid:\n  " + "\n  ".join(problems))
    return docs


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return "empty text"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing (None/NaN)"
    return f"{type(value).__name__} {str(value)[:40]!r}, not text"


def _read_file(path: Path, root: Path, id_field: str, text_field: str) -> list[Document]:
    suffix = path.suffix.lower()
    rel = path.relative_to(root).as_posix() if path != root else path.name
    if suffix in TEXT_SUFFIXES:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise RetrievalError(f"corpus file {str(path)!r} is not UTF-8 text ({exc}); re-encode it as UTF-8") from exc
        if not text.strip():
            raise RetrievalError(f"corpus file {str(path)!r} is empty: remove it or add text")
        return [Document(rel, text, {"source": rel})]
    if suffix == ".pdf":
        return [Document(rel, _read_pdf(path), {"source": rel})]
    if suffix == ".jsonl":
        records = []
        lines: list[int] = []
        with path.open(encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                    lines.append(line_no)
                except json.JSONDecodeError as exc:
                    raise RetrievalError(
                        f"corpus file {str(path)!r} line {line_no} is not valid JSON ({exc.msg}); fix or remove it"
                    ) from None
        return (
            _records_to_docs(records, id_field, text_field, str(path), "line", lines=lines) if records else _empty(path)
        )
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RetrievalError(f"corpus file {str(path)!r} is not valid JSON ({exc})") from None
        if isinstance(data, dict):  # {id: {text: ...}} or {id: text}
            data = [{id_field: k, **(v if isinstance(v, dict) else {text_field: v})} for k, v in data.items()]
        if not isinstance(data, list):
            raise RetrievalError(f"corpus file {str(path)!r} must hold a list of records or an object of id -> record")
        return _records_to_docs(data, id_field, text_field, str(path), "record") if data else _empty(path)
    if suffix in (".csv", ".parquet"):
        import pandas as pd

        df = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
        if df.empty:
            return _empty(path)
        absent = [c for c in (id_field, text_field) if c not in df.columns]
        if absent:
            raise RetrievalError(
                f"corpus file {str(path)!r} has no column(s) {absent}; its columns are {list(df.columns)[:20]}: "
                "set corpus.id / corpus.text"
            )
        return _records_to_docs(df.to_dict(orient="records"), id_field, text_field, str(path), "row", start=0)
    raise RetrievalError(f"corpus file {str(path)!r}: unsupported type {suffix!r}; use one of {FILE_SUFFIXES}")


def _empty(path: Path) -> list[Document]:
    raise RetrievalError(f"corpus file {str(path)!r} has no records")


def _read_pdf(path: Path) -> str:
    try:
        from pypdf import PdfReader
    except ImportError:
        raise RetrievalError(
            f"reading {str(path)!r} needs the optional 'pypdf' package: pip install pypdf "
            "(or convert the PDFs to text first)"
        ) from None
    try:
        reader = PdfReader(str(path))
        text = "\n\n".join((page.extract_text() or "") for page in reader.pages)
    except Exception as exc:  # pypdf raises many types for damaged files
        raise RetrievalError(f"could not read PDF {str(path)!r}: {exc}") from exc
    if not text.strip():
        raise RetrievalError(f"PDF {str(path)!r} has no extractable text (scanned images?): OCR it first")
    return text
