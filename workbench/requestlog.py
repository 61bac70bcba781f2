"""The request log of a served bundle: its format, the writer ``llmops serve`` uses and the one reader.

A log is a folder of JSONL segments. ``requests-<utc-start>-<pid>-<seq>.jsonl``: one served request per
line (ts, request_id, bundle_hash, variant, arm, user, input, output, retrieved, latency_ms, prompt_tokens,
completion_tokens, cost, error, status). ``feedback-<utc-start>-<pid>-<seq>.jsonl``: ts, request_id,
rating, label, comment. Each server process writes its own segments and starts a new one past
``SEGMENT_BYTES`` (rotation), so readers glob every segment.

Writing: rows go on an in-memory queue and one background thread appends them about every second and on
shutdown. Why files and a thread: a response must never wait for a disk write, and a server must never
hold the notebook's DuckDB lock. Nothing is lost on SIGTERM/SIGINT; after kill -9 at most the last second,
and a torn last line.

Reading (``read_requests``, ``read_feedback``, and ``attach``, which ``monitoring`` builds on): DuckDB's
``read_json`` over the segments with an explicit column schema, not a Python loop: one vectorised scan
reads a million requests in about a second, fields a request lacks are NULL, fields added later are
ignored, and ``ignore_errors`` turns the torn last line a killed server leaves into an all-NULL row that
is dropped. The log is never opened through the workspace: reading it needs no workspace lock.
"""

from __future__ import annotations

import datetime as _dt
import glob
import json
import os
import queue
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

__all__ = [
    "FEEDBACK_GLOB",
    "REQUEST_GLOB",
    "LogWriter",
    "attach",
    "connect",
    "read_feedback",
    "read_requests",
]

FLUSH_SECONDS = 1.0
SEGMENT_BYTES = 64 << 20

REQUEST_GLOB = "requests-*.jsonl"
FEEDBACK_GLOB = "feedback-*.jsonl"

# DuckDB types of the request/feedback log fields; fields added later by the server are ignored. Keep them in
# the order the server writes them: DuckDB's reader is fastest when the schema follows the objects' keys.
_REQUEST_COLUMNS = {
    "ts": "TIMESTAMPTZ",
    "request_id": "VARCHAR",
    "bundle_hash": "VARCHAR",
    "variant": "VARCHAR",
    "arm": "VARCHAR",
    "user": "VARCHAR",
    "input": "JSON",
    "output": "JSON",
    "retrieved": "JSON",
    "latency_ms": "DOUBLE",
    "prompt_tokens": "BIGINT",
    "completion_tokens": "BIGINT",
    "cost": "DOUBLE",
    "error": "VARCHAR",
    "status": "INTEGER",
}
# What monitor parses: the same fields typed for speed (extra input keys are ignored; an object
# output arrives as its JSON text).
_TYPED_COLUMNS = _REQUEST_COLUMNS | {
    "input": "STRUCT(question VARCHAR)",
    "output": "VARCHAR",
    "retrieved": "STRUCT(score DOUBLE)[]",
}
_CACHE_VERSION = 1
_ACTIVE_SECONDS = 5.0
_FEEDBACK_COLUMNS = {"ts": "TIMESTAMPTZ", "request_id": "VARCHAR", "rating": "DOUBLE", "label": "VARCHAR",
                     "comment": "VARCHAR"}  # fmt: skip

# Thumbs labels (up/down and the like), read as ratings 1/0 when no numeric rating is given.
_GOOD_LABELS = ("up", "thumbs_up", "good", "positive", "helpful", "correct")
_BAD_LABELS = ("down", "thumbs_down", "bad", "negative", "unhelpful", "wrong")


# --------------------------------------------------------------------------------------------------
# writing


class LogWriter:
    """Appends rows to JSONL segment files from one background thread; ``write`` never blocks."""

    def __init__(
        self, folder: str | os.PathLike[str], flush_seconds: float = FLUSH_SECONDS, segment_bytes: int = SEGMENT_BYTES
    ) -> None:
        self.folder = Path(folder)
        self.flush_seconds = flush_seconds
        self.segment_bytes = segment_bytes
        self._queue: queue.SimpleQueue[tuple[str, dict[str, Any]]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._files: dict[str, Any] = {}
        self._pending: dict[str, list[str]] = {}
        self._seq: dict[str, int] = {}
        self._start = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self._thread: threading.Thread | None = None
        self.written = 0

    def start(self) -> LogWriter:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValidationError(f"cannot create the request-log folder {self.folder}: {exc}; pass --log-dir") from exc
        self._thread = threading.Thread(target=self._loop, name="llmops-log-writer", daemon=True)
        self._thread.start()
        return self

    def write(self, kind: str, row: dict[str, Any]) -> None:
        self._queue.put((kind, row))

    def close(self) -> None:
        """Write everything queued, then close the files (called on graceful shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._drain()
        for fh in self._files.values():
            fh.close()
        self._files.clear()

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self._drain()
            except Exception as exc:  # noqa: BLE001 - the writer thread must outlive any one bad write
                sys.stderr.write(f"llmops serve: request log write failed ({exc}); will retry\n")

    def _file(self, kind: str) -> Any:
        fh = self._files.get(kind)
        if fh is not None and fh.tell() >= self.segment_bytes:
            fh.close()
            fh = None
        if fh is None:
            seq = self._seq[kind] = self._seq.get(kind, -1) + 1
            name = f"{kind}-{self._start}-{os.getpid()}-{seq:04d}.jsonl"
            fh = self._files[kind] = (self.folder / name).open("a", encoding="utf-8")
        return fh

    def _drain(self) -> None:
        """Serialise what is queued and append it; lines whose write failed stay pending for the next try."""
        while True:
            try:
                kind, row = self._queue.get_nowait()
            except queue.Empty:
                break
            self._pending.setdefault(kind, []).append(_json_line(row))
        for kind in list(self._pending):
            batch = self._pending[kind]
            if not batch:
                continue
            fh = self._file(kind)
            fh.write("\n".join(batch) + "\n")  # one write per flush: a torn line can only be the last one
            fh.flush()
            self.written += len(batch)
            self._pending[kind] = []


def _orjson() -> Any:
    try:
        import orjson
    except ImportError:
        return None
    return orjson


_ORJSON = _orjson()  # optional: 8x faster than json here (10 vs 80 us a row); it writes NaN as null too


def _json_line(row: dict[str, Any]) -> str:
    """One JSON line; NaN / infinity (not JSON) become null instead of breaking the line for every reader."""
    if _ORJSON is not None:
        try:
            return str(_ORJSON.dumps(row, default=str).decode("utf-8"))
        except TypeError:  # e.g. a non-string dict key: the standard library handles it below
            pass
    try:
        return json.dumps(row, ensure_ascii=False, default=str, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(row), ensure_ascii=False, default=str, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------------
# reading


def _log_dir(log: str | os.PathLike[str]) -> Path:
    path = Path(log)
    if not path.exists():
        raise NotFoundError(f"request log {path} does not exist; point at the folder `llmops serve` writes its log to")
    if path.is_file():
        return path.parent
    return path


def _files(log: str | os.PathLike[str], pattern: str) -> list[str]:
    folder = _log_dir(log)
    if Path(log).is_file():
        return [str(Path(log))]
    return sorted(glob.glob(str(folder / pattern)))


def connect() -> duckdb.DuckDBPyConnection:
    import duckdb

    con = duckdb.connect(config={"python_enable_replacements": False})
    con.execute("SET enable_progress_bar = false")
    try:
        con.execute("SET TimeZone = 'UTC'")
    except duckdb.Error:
        pass
    return con


def attach(
    con: duckdb.DuckDBPyConnection,
    log: str | os.PathLike[str],
    where: str | None = None,
    materialize: bool = False,
    cache: bool = True,
) -> int:
    """Create the views ``requests`` and ``feedback`` over the log in ``con``; returns the number of request files.

    ``requests`` adds: ``question`` (input.question), ``output`` as text, ``top_score`` (best retrieval
    score), ``failed`` (an error or a 5xx status) and the request's latest ``rating``/``label``/``comment``;
    ``where`` (a SQL condition over those columns) filters it. ``materialize`` (what monitor uses) parses
    the JSON once into an in-memory table of the typed fields monitoring needs, reusing a Parquet copy of
    every segment that has not changed since the last call (``cache``).
    """
    import duckdb

    files = [f for f in _files(log, REQUEST_GLOB) if os.path.getsize(f) > 0]
    if not files:
        raise NotFoundError(
            f"no request log segments ({REQUEST_GLOB}) with data in {_log_dir(log)}; has the server answered a "
            f"request? A running server writes its log about every {FLUSH_SECONDS:g} s: try again in a moment."
        )
    _feedback_views(con, log)
    if materialize:
        source = _typed_source(con, files, _cache_dir(log) if cache else None)
        con.execute(
            f"""
            CREATE OR REPLACE TEMP VIEW all_requests AS
            SELECT r.*, f.rating, f.label, f.comment FROM ({source}) r LEFT JOIN feedback f USING (request_id)
            """
        )
    else:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP VIEW all_requests AS
            SELECT r.* EXCLUDE (output),
                   CASE WHEN json_type(r.output) = 'VARCHAR' THEN r.output ->> '$' ELSE CAST(r.output AS VARCHAR) END
                       AS output,
                   r.input ->> 'question' AS question,
                   list_max(CAST(json_extract(r.retrieved, '$[*].score') AS DOUBLE[])) AS top_score,
                   (r.error IS NOT NULL OR coalesce(r.status, 200) >= 500) AS failed,
                   f.rating, f.label, f.comment
            FROM ({_read_json(files, _REQUEST_COLUMNS)}) r LEFT JOIN feedback f USING (request_id)
            WHERE r.request_id IS NOT NULL AND r.ts IS NOT NULL
            """
        )
    try:
        con.execute("CREATE OR REPLACE TEMP VIEW requests AS SELECT * FROM all_requests" + _where(where))
        con.execute("SELECT * FROM requests LIMIT 0")
    except duckdb.Error as exc:
        raise ValidationError(f"where={where!r} is not a valid condition over the request log: {exc}") from exc
    return len(files)


def _feedback_views(con: duckdb.DuckDBPyConnection, log: str | os.PathLike[str]) -> None:
    """Views ``raw_feedback`` (every row) and ``feedback`` (the latest per request id, thumbs labels as 1/0)."""
    fb_files = [f for f in _files(log, FEEDBACK_GLOB) if os.path.getsize(f) > 0] if Path(log).is_dir() else []
    if fb_files:
        con.execute(
            "CREATE OR REPLACE TEMP VIEW raw_feedback AS SELECT * FROM read_json($files, format='newline_delimited', "
            "ignore_errors=true, columns=$cols) WHERE request_id IS NOT NULL".replace(
                "$files", _sql_list(fb_files)
            ).replace("$cols", _sql_struct(_FEEDBACK_COLUMNS))
        )
    else:
        con.execute(
            "CREATE OR REPLACE TEMP VIEW raw_feedback AS SELECT NULL::TIMESTAMPTZ AS ts, NULL::VARCHAR AS request_id, "
            "NULL::DOUBLE AS rating, NULL::VARCHAR AS label, NULL::VARCHAR AS comment WHERE false"
        )
    good = ", ".join(f"'{x}'" for x in _GOOD_LABELS)
    bad = ", ".join(f"'{x}'" for x in _BAD_LABELS)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW feedback AS
        SELECT request_id, ts AS feedback_ts, label, comment,
               coalesce(rating, CASE WHEN lower(label) IN ({good}) THEN 1.0
                                     WHEN lower(label) IN ({bad}) THEN 0.0 END) AS rating
        FROM raw_feedback
        QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY ts DESC NULLS LAST) = 1
        """
    )


def _read_json(files: Sequence[str], columns: Mapping[str, str]) -> str:
    return (
        f"SELECT * FROM read_json({_sql_list(files)}, format='newline_delimited', ignore_errors=true, "
        f"columns={_sql_struct(columns)})"
    )


def _typed_select(files: Sequence[str]) -> str:
    """The fields monitoring needs, parsed straight into typed columns (3x faster than JSON columns)."""
    return f"""
        SELECT ts, request_id, bundle_hash, arm, latency_ms, prompt_tokens, completion_tokens, cost, error, status,
               output, input.question AS question,
               list_max(list_transform(retrieved, lambda e: e.score)) AS top_score,
               (error IS NOT NULL OR coalesce(status, 200) >= 500) AS failed
        FROM ({_read_json(files, _TYPED_COLUMNS)})
        WHERE request_id IS NOT NULL AND ts IS NOT NULL
    """


def _cache_dir(log: str | os.PathLike[str]) -> Path | None:
    folder = _log_dir(log) / ".monitor-cache"
    try:
        folder.mkdir(exist_ok=True)
    except OSError:  # a read-only log folder: no cache, every call parses the JSON
        return None
    return folder if os.access(folder, os.W_OK) else None


def _typed_source(con: duckdb.DuckDBPyConnection, files: Sequence[str], cache: Path | None) -> str:
    """SQL over all segments: cached Parquet for segments unchanged since they were cached, JSON for the rest.

    A cache entry is keyed by the segment's name, size and modification time, so a segment that grows
    gets a new entry and a stale one can never be read. Segments written to in the last few seconds
    (the server's open ones) are read from JSON and not cached.
    """
    import hashlib
    import time

    if cache is None:
        con.execute(f"CREATE OR REPLACE TEMP TABLE fresh_requests AS {_typed_select(files)}")
        return "SELECT * FROM fresh_requests"
    parquet: list[str] = []
    fresh: list[str] = []
    now = time.time()
    for f in files:
        st = os.stat(f)
        if now - st.st_mtime < _ACTIVE_SECONDS:
            fresh.append(f)
            continue
        key = hashlib.sha256(f"{_CACHE_VERSION}|{Path(f).name}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
        target = cache / f"{Path(f).stem}.{key[:16]}.parquet"
        if not target.exists():
            for old in cache.glob(f"{Path(f).stem}.*.parquet"):
                old.unlink(missing_ok=True)
            tmp = target.with_suffix(f".tmp{os.getpid()}")
            con.execute(f"COPY ({_typed_select([f])}) TO '{_sql_str(str(tmp))}' (FORMAT parquet)")
            os.replace(tmp, target)
        parquet.append(str(target))
    parts = []
    if parquet:
        parts.append(f"SELECT * FROM read_parquet({_sql_list(parquet)})")
    if fresh:  # parsed once into memory; the cached part is scanned column by column by each query
        con.execute(f"CREATE OR REPLACE TEMP TABLE fresh_requests AS {_typed_select(fresh)}")
        parts.append("SELECT * FROM fresh_requests")
    return " UNION ALL ".join(parts)


def _sql_str(text: str) -> str:
    return text.replace("'", "''")


def _sql_list(items: Sequence[str]) -> str:
    return "[" + ", ".join("'" + s.replace("'", "''") + "'" for s in items) + "]"


def _sql_struct(columns: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"'{k}': '{v}'" for k, v in columns.items()) + "}"


def _where(where: str | None) -> str:
    if not where:
        return ""
    if ";" in where:
        raise ValidationError(f"where={where!r}: give one SQL condition over the log's columns, without ';'")
    return f" WHERE ({where})"


def read_requests(log: str | os.PathLike[str], where: str | None = None, limit: int | None = None) -> pd.DataFrame:
    """Served requests as a DataFrame (one row per request, with its latest feedback), oldest first.

    ``where`` is a SQL condition over the columns (e.g. ``"arm = 'B' AND rating <= 2"``).
    """
    import duckdb

    con = connect()
    try:
        attach(con, log, where)
        query = "SELECT * FROM requests ORDER BY ts"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        try:
            return con.execute(query).df()
        except duckdb.Error as exc:
            raise ValidationError(f"cannot select requests from {log} where {where!r}: {exc}") from exc
    finally:
        con.close()


def read_feedback(log: str | os.PathLike[str], latest: bool = True) -> pd.DataFrame:
    """Feedback rows: the latest per request id (``rating`` filled from thumbs labels), or all of them as logged.

    ``latest=False`` gives every row as the server wrote it (ts, request_id, rating, label, comment), oldest first.
    """
    _log_dir(log)  # a clear error when the folder does not exist
    con = connect()
    try:
        _feedback_views(con, log)
        query = "SELECT * FROM feedback ORDER BY feedback_ts" if latest else "SELECT * FROM raw_feedback ORDER BY ts"
        return con.execute(query).df()
    finally:
        con.close()
