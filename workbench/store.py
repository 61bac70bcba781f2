"""The store: every byte the workbench keeps lives in one DuckDB file, and every SQL statement lives here.

Storage design
==============
``<workspace>/workspace.duckdb`` holds the tables below; ``<workspace>/artifacts/`` holds files too
big or too binary for a table (chunk tables, embeddings, FAISS indexes), keyed by content hashes.

- ``_migrations``: one row per applied schema migration (id, name, time). Migrations are ordered
  functions, each applied in one transaction, never renamed or reordered.
- ``datasets`` (name, hash, version, ...): immutable dataset versions; ``dataset_cases`` holds each
  version's rows as JSON keyed by a stable ``case_id``.
- ``prompts`` (name, hash, version, system, user, few_shot): immutable template versions.
- ``models`` (hash, name, model, params): model configurations (never an API key).
- ``responses``: the model-call cache keyed by ``request_key`` = hash(model, messages, params,
  repeat). An identical request is never paid twice.
- ``runs`` / ``run_variants``: one row per run and per variant in it, with the hashes of what
  produced it.
- ``cells``: one row per (run, case, variant, repeat): rendered messages, output, error, tokens,
  cost, latency, cache hit, retrieved chunks. Primary key makes a cell impossible to store twice.
- ``scores``: one row per (cell, metric) with value, detail and error.
- ``judgements``: every LLM-judge prompt and response behind a judge metric's score, per cell and
  metric, in call order (``seq``), so a score can be audited.
- ``feedback``: human ratings of cells.
- ``retrievers`` (name, hash, version, config): named retrieval configs, versioned like prompts.
- ``corpora`` (name, hash, version) / ``corpus_documents``: immutable retrieval corpus versions; chunks,
  embeddings and FAISS indexes derived from them live under ``artifacts/`` keyed by content hashes.
- ``promotions``: every attempt to move a bundle (by manifest hash) dev -> qa -> prod, promoted or
  refused, with the gate checks (and the dataset version and run they were checked on), the approver,
  note and approval time.

- ``run_owners``: the process executing each run (host, pid, start time) and its last heartbeat, so a
  run whose process died shows as interrupted and a live one is never resumed twice (``workbench.liveness``).

Batches that cannot be written because another process holds the file go to an append-only, checksummed
journal under ``artifacts/journal/`` and are merged idempotently by the run or the next open
(``workbench.journal``).

Concurrency: DuckDB lets one process open a file read-write and then locks everyone else out,
so connections are short-lived (open, do a batch, close) and opening retries with backoff until
``LLMOPS_LOCK_TIMEOUT`` seconds (default 60) pass; the error then names the file and the PID.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench import journal as _journal
from workbench.errors import (
    NotFoundError,
    RunInProgressError,
    SchemaVersionError,
    ValidationError,
    WorkspaceError,
    WorkspaceLockedError,
)
from workbench.liveness import Owner
from workbench.liveness import state as owner_state

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

DB_FILE = "workspace.duckdb"

# ---------------------------------------------------------------------------------------------
# migrations


Migration = Callable[["duckdb.DuckDBPyConnection"], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    """Register ``fn`` as the next schema migration. Order of definition is the order applied."""
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_initial(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE datasets (
            name TEXT NOT NULL, hash TEXT NOT NULL, version INTEGER NOT NULL,
            id_column TEXT, columns JSON NOT NULL, n_cases INTEGER NOT NULL, source TEXT,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (name, hash), UNIQUE (name, version));
        CREATE TABLE dataset_cases (
            dataset_hash TEXT NOT NULL, case_id TEXT NOT NULL, position INTEGER NOT NULL, data JSON NOT NULL,
            PRIMARY KEY (dataset_hash, case_id));
        CREATE TABLE prompts (
            name TEXT NOT NULL, hash TEXT NOT NULL, version INTEGER NOT NULL,
            system TEXT, "user" TEXT NOT NULL, few_shot JSON,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (name, hash), UNIQUE (name, version));
        CREATE TABLE models (
            hash TEXT PRIMARY KEY, name TEXT NOT NULL, model TEXT NOT NULL, config JSON NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now());
        CREATE TABLE responses (
            request_key TEXT PRIMARY KEY, model TEXT NOT NULL, output TEXT,
            prompt_tokens INTEGER, completion_tokens INTEGER, cost DOUBLE, latency_ms DOUBLE,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now());
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY, name TEXT, status TEXT NOT NULL,
            dataset_name TEXT NOT NULL, dataset_hash TEXT NOT NULL,
            spec JSON NOT NULL, repeats INTEGER NOT NULL, n_cells INTEGER NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(), finished_at TIMESTAMPTZ);
        CREATE TABLE run_variants (
            run_id TEXT NOT NULL, variant TEXT NOT NULL, variant_hash TEXT NOT NULL, position INTEGER NOT NULL,
            prompt_name TEXT NOT NULL, prompt_hash TEXT NOT NULL, model_name TEXT NOT NULL,
            model TEXT NOT NULL, model_hash TEXT NOT NULL, retriever_name TEXT, retriever_hash TEXT,
            PRIMARY KEY (run_id, variant));
        CREATE TABLE cells (
            run_id TEXT NOT NULL, case_id TEXT NOT NULL, variant TEXT NOT NULL, repeat INTEGER NOT NULL,
            request_key TEXT, messages JSON, output TEXT, error TEXT, error_kind TEXT,
            latency_ms DOUBLE, prompt_tokens INTEGER, completion_tokens INTEGER, cost DOUBLE,
            cached BOOLEAN NOT NULL, retrieved JSON,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (run_id, case_id, variant, repeat));
        CREATE TABLE scores (
            run_id TEXT NOT NULL, case_id TEXT NOT NULL, variant TEXT NOT NULL, repeat INTEGER NOT NULL,
            metric TEXT NOT NULL, value DOUBLE, detail JSON, error TEXT,
            PRIMARY KEY (run_id, case_id, variant, repeat, metric));
        CREATE SEQUENCE feedback_seq;
        CREATE TABLE feedback (
            feedback_id BIGINT PRIMARY KEY DEFAULT nextval('feedback_seq'),
            run_id TEXT, case_id TEXT, variant TEXT, repeat INTEGER,
            kind TEXT NOT NULL, value DOUBLE, label TEXT, comment TEXT, author TEXT,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now());
        """
    )


@migration
def m002_judgements(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE judgements (
            run_id TEXT NOT NULL, case_id TEXT NOT NULL, variant TEXT NOT NULL, repeat INTEGER NOT NULL,
            metric TEXT NOT NULL, seq INTEGER NOT NULL, tag TEXT, model TEXT NOT NULL, request_key TEXT NOT NULL,
            messages JSON NOT NULL, response TEXT, cached BOOLEAN NOT NULL,
            PRIMARY KEY (run_id, case_id, variant, repeat, metric, seq));
        """
    )


@migration
def m003_corpora(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE corpora (
            name TEXT NOT NULL, hash TEXT NOT NULL, version INTEGER NOT NULL, n_docs INTEGER NOT NULL,
            source TEXT, created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (name, hash), UNIQUE (name, version));
        CREATE TABLE corpus_documents (
            corpus_hash TEXT NOT NULL, doc_id TEXT NOT NULL, position INTEGER NOT NULL, text TEXT NOT NULL,
            metadata JSON, PRIMARY KEY (corpus_hash, doc_id));
        """
    )


@migration
def m107_i7_retrievers(con: duckdb.DuckDBPyConnection) -> None:
    """Named retrieval configs (``%%llmops retriever NAME``), versioned like prompts."""
    con.execute(
        """
        CREATE TABLE retrievers (
            name TEXT NOT NULL, hash TEXT NOT NULL, version INTEGER NOT NULL, config JSON NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (name, hash), UNIQUE (name, version));
        """
    )


@migration
def m110_i8_promotions(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE SEQUENCE promotion_seq;
        CREATE TABLE promotions (
            promotion_id BIGINT PRIMARY KEY DEFAULT nextval('promotion_seq'),
            bundle_hash TEXT NOT NULL, stage TEXT NOT NULL, previous_stage TEXT NOT NULL, status TEXT NOT NULL,
            bundle_path TEXT, run_id TEXT, variant TEXT, dataset_name TEXT, dataset_hash TEXT,
            checked_dataset_version INTEGER, checked_dataset_hash TEXT, gate_run_id TEXT, gates JSON,
            approved_by TEXT, note TEXT, approved_at TIMESTAMPTZ, reason TEXT, manifest JSON,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now());
        """
    )


@migration
def m130_i13_content_hashes(con: duckdb.DuckDBPyConnection) -> None:
    """Retriever and variant hashes by corpus *content*, not path (issue 13); stored runs are re-hashed.

    A run's corpus is the version registered from its recorded path at or before the run (``corpora.source``);
    the retriever hash becomes sha256 of its recorded settings with ``corpus = {"content": <corpus hash>}``
    (what ``RetrievalConfig.hash`` computes now), and the variant hash follows. Rows whose corpus version cannot
    be found keep their old hashes. Request keys never contained a path, so the response cache is untouched.
    """
    import hashlib

    con.execute("ALTER TABLE run_variants ADD COLUMN corpus_hash TEXT")
    rows = con.execute(
        "SELECT v.run_id, v.variant, v.prompt_hash, v.model_hash, r.spec, r.created_at FROM run_variants v "
        "JOIN runs r USING (run_id) WHERE v.retriever_hash IS NOT NULL"
    ).fetchall()
    for run_id, variant, prompt_hash, model_hash, spec, created_at in rows:
        recorded = {v["name"]: v for v in json.loads(spec).get("variants", [])}.get(variant) or {}
        retriever = dict(recorded.get("retriever") or {})
        path = (retriever.get("corpus") or {}).get("path")
        if not path:
            continue
        found = _first(
            con.execute(
                "SELECT hash FROM corpora WHERE source=$1 ORDER BY (created_at <= $2) DESC, created_at DESC LIMIT 1",
                [path, created_at],
            )
        )
        if not found:
            continue
        retriever.pop("name", None)
        retriever["corpus"] = {"content": found[0]}
        retriever_hash = hashlib.sha256(dumps(retriever).encode("utf-8")).hexdigest()
        variant_hash = hashlib.sha256(
            dumps({"p": prompt_hash, "m": model_hash, "r": retriever_hash}).encode()
        ).hexdigest()
        con.execute(
            "UPDATE run_variants SET retriever_hash=$3, variant_hash=$4, corpus_hash=$5 WHERE run_id=$1 AND variant=$2",
            [run_id, variant, retriever_hash, variant_hash, found[0]],
        )


@migration
def m110_i10_run_owners(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE run_owners (
            run_id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, started DOUBLE NOT NULL,
            claimed_at TIMESTAMPTZ NOT NULL DEFAULT now(), heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now());
        """
    )


@migration
def m131_i13_served_by(con: duckdb.DuckDBPyConnection) -> None:
    """What the provider says served each call: its reply's ``model`` and ``system_fingerprint`` (issue 13).

    On ``responses`` (the cache: a hit carries the original's ids) and on ``cells`` (each cell keeps the ids of
    the response that answered it, so a no-cache replay's new fingerprint never rewrites the original run's).
    Nullable: rows written before, and providers that send neither, have NULL.
    """
    for table in ("responses", "cells"):
        con.execute(f"ALTER TABLE {table} ADD COLUMN served_model TEXT")
        con.execute(f"ALTER TABLE {table} ADD COLUMN system_fingerprint TEXT")


# ---------------------------------------------------------------------------------------------
# connections


def lock_timeout() -> float:
    try:
        return float(os.environ.get("LLMOPS_LOCK_TIMEOUT", "60"))
    except ValueError:
        return 60.0


_lock_timeout = lock_timeout  # the name tests and older callers use


def _sql_timeout() -> float:
    """Seconds a user query may run (it holds writers out meanwhile): ``LLMOPS_SQL_TIMEOUT``, default 30."""
    try:
        return float(os.environ.get("LLMOPS_SQL_TIMEOUT", "30"))
    except ValueError:
        return 30.0


_PID_RE = re.compile(r"PID (\d+)")
_LOCK_WORDS = ("Could not set lock", "Conflicting lock", "database is locked")
# A process creating a new database file leaves it empty for a moment; another process opening it then
# gets "not a valid DuckDB database file". When the file was touched in the last few seconds it is being
# created (its header may be complete by the time we look), so that error is retried like a lock; an
# older file that DuckDB calls invalid is damaged and reported at once.
_INVALID_FILE = "not a valid DuckDB database file"
_CREATION_GRACE = 5.0

# DuckDB shares one database instance between connections of one process; serialise our own
# short-lived connections so threads of one process never race each other for the file.
_PROCESS_LOCK = threading.RLock()


def _first(cursor: Any) -> Any:
    """First row of a result, fetched fully: DuckDB 2 refuses new work while a result is unread."""
    rows = cursor.fetchall()
    return rows[0] if rows else None


_EXPLAIN_PREFIX = re.compile(r"^\s*explain\b\s*(?:analy[sz]e\b|\([^)]*\))?\s*", re.IGNORECASE)


def _read_only(con: Any, statement: Any) -> bool:
    """A SELECT, or an EXPLAIN of one: EXPLAIN ANALYZE runs its statement, and COPY writes files."""
    import duckdb

    if statement.type == duckdb.StatementType.SELECT:
        return True
    if statement.type != duckdb.StatementType.EXPLAIN:
        return False
    try:
        inner = con.extract_statements(_EXPLAIN_PREFIX.sub("", statement.query, count=1))
    except duckdb.Error:
        return False
    return len(inner) == 1 and inner[0].type == duckdb.StatementType.SELECT


def dumps(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, so equal content hashes equally."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass
class Store:
    """Opens short-lived connections to a workspace database and holds all of its SQL.

    ``read_only`` (the JupyterLab server extension) never creates, migrates or writes: it opens DuckDB
    read-only, so a kernel writing the same workspace only waits for the reader's brief connection.
    ``lock_timeout`` overrides ``LLMOPS_LOCK_TIMEOUT`` (an HTTP request should not wait a minute).
    """

    path: Path
    read_only: bool = False
    lock_timeout: float | None = None

    def __post_init__(self) -> None:
        self._held = threading.local()  # the connection of an open session(), per thread
        self.path = Path(self.path).resolve()
        self.db_path = self.path / DB_FILE
        self.artifacts = self.path / "artifacts"
        if self.read_only:
            if not self.db_path.is_file():
                raise WorkspaceError(f"no workspace database at {self.db_path}; create one with wb.open() first")
            newest = self.schema_version()
            if newest > len(MIGRATIONS):
                raise SchemaVersionError(
                    f"workspace {self.path} has schema version {newest} but this workbench knows only up to "
                    f"{len(MIGRATIONS)}: upgrade the package (pip install -U llmops-workbench)."
                )
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.artifacts.mkdir(exist_ok=True)
        except OSError as exc:
            raise WorkspaceError(f"cannot create workspace folder {self.path}: {exc}") from exc
        self._migrate()
        self.merge_journals()

    # -- connection factory ---------------------------------------------------------------

    def _connect_once(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        import duckdb

        config: dict[str, Any] = {"python_enable_replacements": False}
        if read_only:
            config["enable_external_access"] = False
        con = duckdb.connect(str(self.db_path), read_only=read_only or self.read_only, config=config)
        try:
            con.execute("SET TimeZone = 'UTC'")
        except duckdb.Error:  # ICU may be missing; timestamps are still stored as UTC instants
            pass
        return con

    def _being_created(self, msg: str) -> bool:
        """True while another process is creating the file: DuckDB then calls it invalid (it is still empty)."""
        if _INVALID_FILE not in msg:
            return False
        try:
            st = self.db_path.stat()
        except OSError:
            return True
        return time.time() - st.st_mtime < _CREATION_GRACE

    @contextmanager
    def session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One connection for a block of calls (a server request): ``connect()`` inside it reuses that connection,
        so a page of reads costs one open instead of one per query. Keep the block short."""
        held = getattr(self._held, "con", None)
        if held is not None:
            yield held
            return
        with self.connect() as con:
            self._held.con = con
            try:
                yield con
            finally:
                self._held.con = None

    @contextmanager
    def connect(self, timeout: float | None = None, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the database, waiting with backoff while another process holds it; close on exit."""
        import duckdb

        held = getattr(self._held, "con", None)
        if held is not None:
            yield held
            return

        if timeout is None:
            timeout = self.lock_timeout if self.lock_timeout is not None else lock_timeout()
        wait = timeout
        deadline = time.monotonic() + wait
        delay = 0.01
        with _PROCESS_LOCK:
            while True:
                try:
                    con = self._connect_once(read_only)
                    break
                except duckdb.IOException as exc:
                    msg = str(exc)
                    if not any(w in msg for w in _LOCK_WORDS) and not self._being_created(msg):
                        hint = (
                            " If no other program uses it, the file is damaged: move it away and the workspace "
                            "starts empty."
                            if _INVALID_FILE in msg
                            else ""
                        )
                        raise WorkspaceError(f"cannot open workspace database {self.db_path}: {msg}{hint}") from exc
                    if time.monotonic() >= deadline:
                        m = _PID_RE.search(msg)
                        holder = f"process {m.group(1)}" if m else "another process"
                        raise WorkspaceLockedError(
                            f"workspace database {self.db_path} is locked by {holder} and stayed locked for "
                            f"{wait:.0f} s. Another kernel or command is writing to it; wait for it to "
                            "finish, stop it if it is stuck, use a different workspace (LLMOPS_WORKSPACE or "
                            "--workspace), or raise LLMOPS_LOCK_TIMEOUT."
                        ) from exc
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 0.5)
            try:
                yield con
            finally:
                con.close()

    @contextmanager
    def transaction(self, timeout: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection inside BEGIN/COMMIT: all of a batch is stored, or none of it."""
        with self.connect(timeout) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # -- migrations ------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self.connect() as con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS _migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            applied = {row[0] for row in con.execute("SELECT id FROM _migrations").fetchall()}
            newest = max(applied, default=0)
            if newest > len(MIGRATIONS):
                raise SchemaVersionError(
                    f"workspace {self.path} has schema version {newest} but this workbench knows only up to "
                    f"{len(MIGRATIONS)}: it was written by a newer workbench. Upgrade the package "
                    "(pip install -U llmops-workbench) or open another workspace."
                )
            for number, (name, fn) in enumerate(MIGRATIONS, start=1):
                if number in applied:
                    continue
                con.execute("BEGIN TRANSACTION")
                try:
                    fn(con)
                    con.execute("INSERT INTO _migrations (id, name) VALUES ($1, $2)", [number, name])
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")

    def schema_version(self) -> int:
        with self.connect() as con:
            row = _first(con.execute("SELECT max(id) FROM _migrations"))
        return int(row[0] or 0) if row else 0

    # -- read-only SQL for users ----------------------------------------------------------

    def sql(
        self, query: str, params: Sequence[Any] | dict[str, Any] | None = None, timeout: float | None = None
    ) -> pd.DataFrame:
        """Run a user's read-only query, refused before it runs unless DuckDB's parser calls it a SELECT.

        Read-only by construction: the statement type comes from DuckDB's own parser, and the query runs on a
        read-only connection with no file or network access, so nothing it calls (``nextval``, ``setval``,
        a COPY hidden in a subquery) can change the workspace. It is stopped after ``timeout`` seconds
        (``LLMOPS_SQL_TIMEOUT``, default 30): while it runs no other process can write to the workspace.
        """
        import duckdb

        limit = _sql_timeout() if timeout is None else float(timeout)
        with self.connect(read_only=True) as con:
            try:
                statements = con.extract_statements(query)
            except duckdb.Error as exc:
                raise ValidationError(f"SQL does not parse: {exc}") from None
            bad = [s.type.name for s in statements if not _read_only(con, s)]
            if bad or len(statements) != 1:
                raise ValidationError(
                    "ws.sql() is read-only and takes exactly one SELECT statement; got "
                    f"{', '.join(bad) or str(len(statements)) + ' statements'}. Use the Python API to change data."
                )
            timer = threading.Timer(limit, con.interrupt)
            timer.daemon = True
            timer.start()
            try:
                return con.execute(query, params or []).df()
            except duckdb.InterruptException:
                raise ValidationError(
                    f"SQL stopped after {limit:g} s: while a query runs no run can store its results. Narrow it "
                    "(WHERE, LIMIT), or allow more time with timeout= / LLMOPS_SQL_TIMEOUT."
                ) from None
            except duckdb.Error as exc:
                raise ValidationError(f"SQL error: {exc}") from None
            finally:
                timer.cancel()

    # -- datasets --------------------------------------------------------------------------

    def find_dataset(self, name: str, hash_: str | None = None, version: int | None = None) -> dict[str, Any] | None:
        query = (
            "SELECT name, hash, version, id_column, columns, n_cases, source, created_at FROM datasets WHERE name=$1"
        )
        params: list[Any] = [name]
        if hash_ is not None:
            query += " AND starts_with(hash, $2)"
            params.append(hash_)
        elif version is not None:
            query += " AND version=$2"
            params.append(version)
        query += " ORDER BY version DESC"
        with self.connect() as con:
            rows = con.execute(query, params).fetchall()
        if not rows:
            return None
        if hash_ is not None and len(rows) > 1 and rows[0][1] != hash_:
            raise NotFoundError(
                f"hash prefix {hash_!r} of dataset {name!r} is ambiguous: it matches versions "
                f"{sorted(r[2] for r in rows)}; give more characters of the hash or a version number"
            )
        row = rows[0]
        keys = ("name", "hash", "version", "id_column", "columns", "n_cases", "source", "created_at")
        rec = dict(zip(keys, row))
        rec["columns"] = json.loads(rec["columns"])
        return rec

    def insert_dataset(
        self,
        name: str,
        hash_: str,
        id_column: str | None,
        columns: list[str],
        source: str | None,
        case_ids: list[str],
        rows_json: list[str],
    ) -> int:
        """Store a dataset version and its cases in one transaction; returns the version number."""
        with self.transaction() as con:
            row = _first(con.execute("SELECT version FROM datasets WHERE name=$1 AND hash=$2", [name, hash_]))
            if row:
                return int(row[0])
            (version,) = _first(con.execute("SELECT coalesce(max(version), 0) + 1 FROM datasets WHERE name=$1", [name]))
            con.execute(
                "INSERT INTO datasets (name, hash, version, id_column, columns, n_cases, source) "
                "VALUES ($1,$2,$3,$4,$5,$6,$7)",
                [name, hash_, version, id_column, dumps(columns), len(case_ids), source],
            )
            exists = _first(con.execute("SELECT count(*) FROM dataset_cases WHERE dataset_hash=$1", [hash_]))
            if not exists or exists[0] == 0:
                # lists as parameters, unnested side by side: registering an Arrow table would import pandas
                con.execute(
                    "INSERT INTO dataset_cases "
                    "SELECT $1, unnest($2::VARCHAR[]), unnest(range(len($2))), unnest($3::VARCHAR[])",
                    [hash_, case_ids, rows_json],
                )
            return int(version)

    def dataset_cases(self, hash_: str) -> list[tuple[str, str]]:
        with self.connect() as con:
            return con.execute(
                "SELECT case_id, data FROM dataset_cases WHERE dataset_hash=$1 ORDER BY position", [hash_]
            ).fetchall()

    def list_datasets(self) -> pd.DataFrame:
        with self.connect() as con:
            return con.execute(
                "SELECT name, version, hash, n_cases, id_column, source, created_at FROM datasets "
                "ORDER BY name, version"
            ).df()

    # -- prompts ---------------------------------------------------------------------------

    def upsert_prompt(self, name: str, hash_: str, system: str | None, user: str, few_shot: list[Any]) -> int:
        with self.transaction() as con:
            row = _first(con.execute("SELECT version FROM prompts WHERE name=$1 AND hash=$2", [name, hash_]))
            if row:
                return int(row[0])
            (version,) = _first(con.execute("SELECT coalesce(max(version), 0) + 1 FROM prompts WHERE name=$1", [name]))
            con.execute(
                'INSERT INTO prompts (name, hash, version, system, "user", few_shot) VALUES ($1,$2,$3,$4,$5,$6)',
                [name, hash_, version, system, user, dumps(few_shot)],
            )
            return int(version)

    def find_prompt(self, name: str, version: int | None = None) -> dict[str, Any] | None:
        query = 'SELECT name, hash, version, system, "user", few_shot FROM prompts WHERE name=$1'
        params: list[Any] = [name]
        if version is not None:
            query += " AND version=$2"
            params.append(version)
        query += " ORDER BY version DESC LIMIT 1"
        with self.connect() as con:
            row = _first(con.execute(query, params))
        if row is None:
            return None
        rec = dict(zip(("name", "hash", "version", "system", "user", "few_shot"), row))
        rec["few_shot"] = json.loads(rec["few_shot"] or "[]")
        return rec

    def list_prompts(self) -> pd.DataFrame:
        with self.connect() as con:
            return con.execute(
                'SELECT name, version, hash, system, "user", created_at FROM prompts ORDER BY name, version'
            ).df()

    # -- runs ------------------------------------------------------------------------------

    def create_run(
        self,
        run_id: str,
        name: str | None,
        dataset_name: str,
        dataset_hash: str,
        spec: dict[str, Any],
        repeats: int,
        n_cells: int,
        variants: list[dict[str, Any]],
        models: list[dict[str, Any]],
        prompts: list[dict[str, Any]],
    ) -> None:
        """Record a run, its variants and the models/prompts they use, atomically."""
        with self.transaction() as con:
            for p in prompts:
                row = _first(con.execute("SELECT 1 FROM prompts WHERE name=$1 AND hash=$2", [p["name"], p["hash"]]))
                if not row:
                    (version,) = _first(
                        con.execute("SELECT coalesce(max(version), 0) + 1 FROM prompts WHERE name=$1", [p["name"]])
                    )
                    con.execute(
                        'INSERT INTO prompts (name, hash, version, system, "user", few_shot) '
                        "VALUES ($1,$2,$3,$4,$5,$6)",
                        [p["name"], p["hash"], version, p["system"], p["user"], dumps(p["few_shot"])],
                    )
            for m in models:
                con.execute(
                    "INSERT INTO models (hash, name, model, config) VALUES ($1,$2,$3,$4) ON CONFLICT DO NOTHING",
                    [m["hash"], m["name"], m["model"], dumps(m["config"])],
                )
            con.execute(
                "INSERT INTO runs (run_id, name, status, dataset_name, dataset_hash, spec, repeats, n_cells) "
                "VALUES ($1,$2,'created',$3,$4,$5,$6,$7)",
                [run_id, name, dataset_name, dataset_hash, dumps(spec), repeats, n_cells],
            )
            for i, v in enumerate(variants):
                con.execute(
                    "INSERT INTO run_variants (run_id, variant, variant_hash, position, prompt_name, prompt_hash, "
                    "model_name, model, model_hash, retriever_name, retriever_hash, corpus_hash) "
                    "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
                    [
                        run_id,
                        v["name"],
                        v["hash"],
                        i,
                        v["prompt_name"],
                        v["prompt_hash"],
                        v["model_name"],
                        v["model"],
                        v["model_hash"],
                        v.get("retriever_name"),
                        v.get("retriever_hash"),
                        v.get("corpus_hash"),
                    ],
                )

    def get_run(self, run_id: str) -> dict[str, Any]:
        with self.connect() as con:
            row = con.execute(
                "SELECT r.run_id, name, status, dataset_name, dataset_hash, spec, repeats, n_cells, created_at, "
                "finished_at, o.host, o.pid, o.started, epoch(o.heartbeat_at) "
                "FROM runs r LEFT JOIN run_owners o USING (run_id) WHERE starts_with(r.run_id, $1) "
                "ORDER BY created_at DESC",
                [run_id],
            ).fetchall()
        if not row:
            raise NotFoundError(f"no run {run_id!r} in workspace {self.path}; list runs with `llmops runs`")
        if len(row) > 1 and row[0][0] != run_id:
            raise NotFoundError(f"run id prefix {run_id!r} is ambiguous: {[r[0] for r in row][:5]}")
        keys = (
            "run_id",
            "name",
            "status",
            "dataset_name",
            "dataset_hash",
            "spec",
            "repeats",
            "n_cells",
            "created_at",
            "finished_at",
        )
        rec = dict(zip(keys, row[0]))
        rec["spec"] = json.loads(rec["spec"])
        owner = row[0][10:] if row[0][10] is not None else None
        rec["owner"] = None if owner is None else Owner(owner[0], int(owner[1]), float(owner[2]))
        rec["stored_status"] = rec["status"]
        if rec["status"] == "running":
            rec["status"] = self._live_status(rec["run_id"], rec["owner"], owner[3] if owner else None)
        return rec

    def _live_status(self, run_id: str, owner: Owner | None, heartbeat: float | None) -> str:
        """``running`` only while its owner lives; a run whose process died is ``interrupted`` (resumable)."""
        beats = [b for b in (heartbeat, _journal.heartbeat(self.artifacts, run_id)) if b is not None]
        alive = owner_state(owner, run_id, max(beats) if beats else None)
        return "interrupted" if alive == "dead" else "running"

    def list_runs(self) -> pd.DataFrame:
        with self.connect() as con:
            frame = con.execute(
                """
                SELECT r.run_id, r.name, r.status, r.dataset_name, r.n_cells,
                       count(c.case_id) AS done, count(c.error) AS failed,
                       coalesce(sum(c.cost), 0) AS cost, r.created_at, r.finished_at,
                       any_value(o.host) AS owner_host, any_value(o.pid) AS owner_pid,
                       any_value(o.started) AS owner_started, any_value(epoch(o.heartbeat_at)) AS heartbeat
                FROM runs r LEFT JOIN cells c USING (run_id) LEFT JOIN run_owners o USING (run_id)
                GROUP BY r.run_id, r.name, r.status, r.dataset_name, r.n_cells, r.created_at, r.finished_at
                ORDER BY r.created_at DESC
                """
            ).df()
        statuses = []
        for row in frame.itertuples(index=False):
            status = row.status
            if status == "running":
                owner = None
                if isinstance(row.owner_host, str):
                    owner = Owner(row.owner_host, int(row.owner_pid), float(row.owner_started))
                heartbeat = None if row.heartbeat != row.heartbeat else row.heartbeat  # NaN when no owner row
                status = self._live_status(row.run_id, owner, heartbeat)
            statuses.append(status)
        frame["status"] = statuses
        frame["owner"] = [
            f"{h}:{int(p)}" if isinstance(h, str) else None for h, p in zip(frame["owner_host"], frame["owner_pid"])
        ]
        return frame.drop(columns=["owner_host", "owner_pid", "owner_started", "heartbeat"])

    def claim_run(self, run_id: str, owner: Owner, force: bool = False) -> None:
        """Make ``owner`` the process executing a run; refuse while another live process executes it.

        Check and claim happen in one transaction, and only one process can hold the database at a
        time, so two resumes racing for a dead run cannot both win.
        """
        with self.transaction() as con:
            row = _first(con.execute("SELECT status FROM runs WHERE run_id=$1", [run_id]))
            if row is None:
                raise NotFoundError(f"no run {run_id!r} in workspace {self.path}")
            prev = _first(
                con.execute("SELECT host, pid, started, epoch(heartbeat_at) FROM run_owners WHERE run_id=$1", [run_id])
            )
            if row[0] == "running" and prev is not None:
                other = Owner(prev[0], int(prev[1]), float(prev[2]))
                beats = [b for b in (prev[3], _journal.heartbeat(self.artifacts, run_id)) if b is not None]
                alive = owner_state(other, run_id, max(beats) if beats else None)
                if alive == "alive" and not (force and other.host != owner.host):
                    hint = (
                        f"stop it first (`kill {other.pid}`) or wait for it to finish"
                        if other.host == owner.host
                        else f"stop it on {other.host}, or once it is gone pass --force (force=True)"
                    )
                    raise RunInProgressError(
                        f"run {run_id} is being executed by {other.describe()}; resuming it now would pay for "
                        f"its cells twice. To take it over, {hint}."
                    )
            con.execute(
                "INSERT OR REPLACE INTO run_owners (run_id, host, pid, started, claimed_at, heartbeat_at) "
                "VALUES ($1, $2, $3, $4, now(), now())",
                [run_id, owner.host, owner.pid, owner.started],
            )
            con.execute("UPDATE runs SET status='running' WHERE run_id=$1", [run_id])

    def variant_failures(self, run_id: str) -> list[dict[str, Any]]:
        """Per variant: cells stored, cells failed, and the most frequent error (for exit codes and summaries)."""
        with self.connect() as con:
            rows = con.execute(
                """
                SELECT v.variant, count(c.case_id) AS n, count(c.error) AS failed, mode(c.error) AS error
                FROM run_variants v LEFT JOIN cells c ON c.run_id = v.run_id AND c.variant = v.variant
                WHERE v.run_id = $1 GROUP BY v.variant, v.position ORDER BY v.position
                """,
                [run_id],
            ).fetchall()
        return [{"variant": r[0], "n": int(r[1]), "failed": int(r[2]), "error": r[3]} for r in rows]

    def runs_page(self, limit: int, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """One page of ``list_runs`` (newest first) and the number of runs: only the page's cells are counted."""
        with self.connect() as con:
            cur = con.execute(
                """
                WITH page AS (SELECT * FROM runs ORDER BY created_at DESC, run_id LIMIT $1 OFFSET $2)
                SELECT p.run_id, p.name, p.status, p.dataset_name, p.n_cells,
                       count(c.case_id) AS done, count(c.error) AS failed,
                       coalesce(sum(c.cost), 0) AS cost, p.created_at, p.finished_at
                FROM page p LEFT JOIN cells c ON c.run_id = p.run_id
                GROUP BY ALL ORDER BY p.created_at DESC, p.run_id
                """,
                [limit, offset],
            )
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r)) for r in cur.fetchall()]
            (total,) = _first(con.execute("SELECT count(*) FROM runs"))
        return rows, int(total)

    def catalog(self) -> dict[str, list[dict[str, Any]]]:
        """Datasets, prompts, corpora and the retrievers runs used, as plain records from one connection.

        No pandas on purpose: the JupyterLab sidebar's first load would otherwise wait for its import (~0.5 s).
        """
        queries = {
            "datasets": "SELECT name, version, hash, n_cases, id_column, source, created_at FROM datasets "
            "ORDER BY name, version",
            "prompts": 'SELECT name, version, hash, system, "user", created_at FROM prompts ORDER BY name, version',
            "corpora": "SELECT name, version, hash, n_docs, source, created_at FROM corpora ORDER BY name, version",
            "retrievers": "SELECT retriever_name AS name, retriever_hash AS hash, count(DISTINCT run_id) AS runs, "
            "min(run_id) AS example_run FROM run_variants WHERE retriever_name IS NOT NULL GROUP BY ALL "
            "ORDER BY name",
        }
        out: dict[str, list[dict[str, Any]]] = {}
        with self.connect() as con:
            for key, query in queries.items():
                cur = con.execute(query)
                names = [d[0] for d in cur.description]
                out[key] = [dict(zip(names, r)) for r in cur.fetchall()]
        return out

    def run_variants(self, run_id: str) -> list[dict[str, Any]]:
        with self.connect() as con:
            cur = con.execute("SELECT * FROM run_variants WHERE run_id=$1 ORDER BY position", [run_id])
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    # -- cells, scores, cache --------------------------------------------------------------

    def served_by(self, run_id: str) -> dict[str, dict[str, list[str]]]:
        """Per variant, the distinct provider-reported model ids and system fingerprints of its answered cells."""
        with self.connect() as con:
            rows = con.execute(
                "SELECT variant, list(DISTINCT served_model ORDER BY served_model) FILTER (WHERE served_model "
                "IS NOT NULL), list(DISTINCT system_fingerprint ORDER BY system_fingerprint) FILTER (WHERE "
                "system_fingerprint IS NOT NULL) FROM cells WHERE run_id=$1 GROUP BY variant ORDER BY variant",
                [run_id],
            ).fetchall()
        return {r[0]: {"served_models": list(r[1] or []), "system_fingerprints": list(r[2] or [])} for r in rows}

    def stored_cells(self, run_id: str, include_failed: bool = True) -> set[tuple[str, str, int]]:
        """Keys of cells already stored for a run (what resume skips)."""
        query = "SELECT case_id, variant, repeat FROM cells WHERE run_id=$1"
        if not include_failed:
            query += " AND error IS NULL"
        with self.connect() as con:
            return {(r[0], r[1], int(r[2])) for r in con.execute(query, [run_id]).fetchall()}

    def start_execution(self, run_id: str, keys: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        """Mark a run running and fetch the cached responses for its request keys, in one connection."""
        with self.connect() as con:
            con.execute("UPDATE runs SET status='running' WHERE run_id=$1", [run_id])
            if not keys:
                return {}
            # the keys as a list parameter: registering an Arrow table would import pandas (~0.5 s) before the run
            rows = con.execute(
                "SELECT request_key, output, prompt_tokens, completion_tokens, cost, latency_ms, served_model, "
                "system_fingerprint FROM responses JOIN (SELECT unnest($1::VARCHAR[]) AS k) ON request_key = k",
                [list(keys)],
            ).fetchall()
        return {r[0]: r[1:] for r in rows}

    def finish_run(
        self, run_id: str, status: str, batches: list[dict[str, Any]], wait: float | None = None
    ) -> tuple[int, int, str]:
        """Write the last batches and set the final status together; returns (stored, n_cells, status)."""
        with self.transaction(wait) as con:
            for b in batches:
                self._write(
                    con, run_id, b["cells"], b["scores"], b["responses"], b["replace"], b.get("judgements") or []
                )
            return self._finish(con, run_id, status)

    @staticmethod
    def _finish(con: duckdb.DuckDBPyConnection, run_id: str, status: str) -> tuple[int, int, str]:
        stored, n_cells = _first(
            con.execute(
                "SELECT (SELECT count(*) FROM cells WHERE run_id=$1), n_cells FROM runs WHERE run_id=$1", [run_id]
            )
        )
        if status == "completed" and stored < n_cells:
            status = "incomplete"
        elif status == "interrupted" and stored >= n_cells:  # stop pressed as the last cells were written
            status = "completed"
        con.execute(
            "UPDATE runs SET status=$2, finished_at=CASE WHEN $3 THEN now() ELSE finished_at END WHERE run_id=$1",
            [run_id, status, status == "completed"],
        )
        return int(stored), int(n_cells), status

    def write_batch(
        self,
        run_id: str,
        cells: list[dict[str, Any]],
        scores: list[dict[str, Any]],
        responses: list[dict[str, Any]],
        replace: bool = False,
        judgements: list[dict[str, Any]] | None = None,
    ) -> None:
        """Store finished cells, their scores, judge calls and new cache entries in one transaction."""
        if not cells and not responses and not judgements:
            return
        with self.transaction() as con:
            self._write(con, run_id, cells, scores, responses, replace, judgements)

    def write_batches(self, run_id: str, batches: list[dict[str, Any]], timeout: float | None = None) -> None:
        """Several batches (journal records) and a heartbeat in one transaction; waits at most ``timeout`` s."""
        with self.transaction(timeout) as con:
            for b in batches:
                self._write(
                    con, run_id, b["cells"], b["scores"], b["responses"], b["replace"], b.get("judgements") or []
                )
            con.execute("UPDATE run_owners SET heartbeat_at = now() WHERE run_id=$1", [run_id])

    def merge_journals(self) -> int:
        """Store the batches of journals whose run process is gone (idempotent); returns batches merged."""
        with _journal.orphans(self.artifacts) as found:
            records = [r for _, recs in found for r in recs]
            if not records:
                return 0
            with self.transaction() as con:
                for r in records:
                    if r.get("kind") == "finish":
                        self._finish(con, r["run_id"], r["status"])
                    else:
                        self._write(
                            con,
                            r["run_id"],
                            r["cells"],
                            r["scores"],
                            r["responses"],
                            r["replace"],
                            r.get("judgements") or [],
                        )
        return len(records)

    @staticmethod
    def _write(
        con: duckdb.DuckDBPyConnection,
        run_id: str,
        cells: list[dict[str, Any]],
        scores: list[dict[str, Any]],
        responses: list[dict[str, Any]],
        replace: bool,
        judgements: list[dict[str, Any]] | None,
    ) -> None:
        import pyarrow as pa

        if responses:
            con.register("_resp", pa.Table.from_pylist(responses, schema=_RESPONSE_SCHEMA()))
            con.execute(
                "INSERT INTO responses (request_key, model, output, prompt_tokens, completion_tokens, cost, "
                "latency_ms, served_model, system_fingerprint) SELECT request_key, model, output, prompt_tokens, "
                "completion_tokens, cost, latency_ms, served_model, system_fingerprint FROM _resp "
                "ON CONFLICT DO NOTHING"
            )
            con.unregister("_resp")
        if cells:
            con.register("_cells", pa.Table.from_pylist(cells, schema=_CELL_SCHEMA()))
            if replace:  # only failed cells are replaced: replaying an old batch never overwrites a success
                con.execute(
                    "CREATE OR REPLACE TEMP TABLE _failed AS SELECT case_id, variant, repeat FROM cells "
                    "WHERE run_id=$1 AND error IS NOT NULL AND (case_id, variant, repeat) IN "
                    "(SELECT (case_id, variant, repeat) FROM _cells)",
                    [run_id],
                )
                for table in ("scores", "judgements", "cells"):
                    con.execute(
                        f"DELETE FROM {table} WHERE run_id=$1 AND (case_id, variant, repeat) IN "
                        "(SELECT (case_id, variant, repeat) FROM _failed)",
                        [run_id],
                    )
                con.execute("DROP TABLE _failed")
            con.execute(
                "INSERT INTO cells (run_id, case_id, variant, repeat, request_key, messages, output, error, "
                "error_kind, latency_ms, prompt_tokens, completion_tokens, cost, cached, retrieved, served_model, "
                "system_fingerprint) SELECT $1, case_id, variant, repeat, request_key, messages, output, error, "
                "error_kind, latency_ms, prompt_tokens, completion_tokens, cost, cached, retrieved, served_model, "
                "system_fingerprint FROM _cells "
                "ON CONFLICT DO NOTHING",
                [run_id],
            )
            con.unregister("_cells")
        if scores:
            con.register("_scores", pa.Table.from_pylist(scores, schema=_SCORE_SCHEMA()))
            con.execute(
                "INSERT INTO scores SELECT $1, case_id, variant, repeat, metric, value, detail, error "
                "FROM _scores ON CONFLICT DO NOTHING",
                [run_id],
            )
            con.unregister("_scores")
        if judgements:
            con.register("_judge", pa.Table.from_pylist(judgements, schema=_JUDGEMENT_SCHEMA()))
            con.execute(
                "INSERT INTO judgements SELECT $1, case_id, variant, repeat, metric, seq, tag, model, request_key, "
                "messages, response, cached FROM _judge ON CONFLICT DO NOTHING",
                [run_id],
            )
            con.unregister("_judge")

    # -- corpora -----------------------------------------------------------------------------

    def insert_corpus(self, name: str, hash_: str, source: str | None, docs: list[tuple[str, str, str]]) -> int:
        """Store a corpus version (doc_id, text, metadata JSON) once; returns its version number."""
        import pyarrow as pa

        with self.transaction() as con:
            row = _first(con.execute("SELECT version FROM corpora WHERE name=$1 AND hash=$2", [name, hash_]))
            if row:
                return int(row[0])
            (version,) = _first(con.execute("SELECT coalesce(max(version), 0) + 1 FROM corpora WHERE name=$1", [name]))
            con.execute(
                "INSERT INTO corpora (name, hash, version, n_docs, source) VALUES ($1,$2,$3,$4,$5)",
                [name, hash_, version, len(docs), source],
            )
            exists = _first(con.execute("SELECT count(*) FROM corpus_documents WHERE corpus_hash=$1", [hash_]))
            if not exists or exists[0] == 0:
                table = pa.table(
                    {
                        "doc_id": pa.array([d[0] for d in docs], pa.string()),
                        "position": pa.array(range(len(docs)), pa.int32()),
                        "text": pa.array([d[1] for d in docs], pa.string()),
                        "metadata": pa.array([d[2] for d in docs], pa.string()),
                    }
                )
                con.register("_docs", table)
                con.execute(
                    "INSERT INTO corpus_documents SELECT $1, doc_id, position, text, metadata FROM _docs", [hash_]
                )
                con.unregister("_docs")
            return int(version)

    def list_corpora(self) -> pd.DataFrame:
        with self.connect() as con:
            return con.execute(
                "SELECT name, version, hash, n_docs, source, created_at FROM corpora ORDER BY name, version"
            ).df()

    def corpus_documents(self, hash_: str) -> list[tuple[str, str, str]]:
        with self.connect() as con:
            return con.execute(
                "SELECT doc_id, text, metadata FROM corpus_documents WHERE corpus_hash=$1 ORDER BY position", [hash_]
            ).fetchall()

    def find_corpus(self, name: str, version: int | None = None) -> dict[str, Any] | None:
        query = "SELECT name, hash, version, n_docs, source FROM corpora WHERE name=$1"
        params: list[Any] = [name]
        if version is not None:
            query += " AND version=$2"
            params.append(version)
        with self.connect() as con:
            row = _first(con.execute(query + " ORDER BY version DESC LIMIT 1", params))
        return dict(zip(("name", "hash", "version", "n_docs", "source"), row)) if row else None

    # -- named retrievers and stored names ----------------------------------------------------

    def upsert_retriever(self, name: str, hash_: str, config: dict[str, Any]) -> int:
        """Store a named retriever config; the same content returns its existing version."""
        with self.transaction() as con:
            row = _first(con.execute("SELECT version FROM retrievers WHERE name=$1 AND hash=$2", [name, hash_]))
            if row:
                return int(row[0])
            (version,) = _first(
                con.execute("SELECT coalesce(max(version), 0) + 1 FROM retrievers WHERE name=$1", [name])
            )
            con.execute(
                "INSERT INTO retrievers (name, hash, version, config) VALUES ($1,$2,$3,$4)",
                [name, hash_, version, dumps(config)],
            )
            return int(version)

    def find_retriever(self, name: str, version: int | None = None) -> dict[str, Any] | None:
        query = "SELECT name, hash, version, config FROM retrievers WHERE name=$1"
        params: list[Any] = [name]
        if version is not None:
            query += " AND version=$2"
            params.append(version)
        with self.connect() as con:
            row = _first(con.execute(query + " ORDER BY version DESC LIMIT 1", params))
        if row is None:
            return None
        rec = dict(zip(("name", "hash", "version", "config"), row))
        rec["config"] = json.loads(rec["config"])
        return rec

    def list_retrievers(self) -> pd.DataFrame:
        with self.connect() as con:
            return con.execute(
                "SELECT name, version, hash, config, created_at FROM retrievers ORDER BY name, version"
            ).df()

    def find_model(self, name: str) -> dict[str, Any] | None:
        """The newest stored model config with this name (models are stored by the runs that use them)."""
        with self.connect() as con:
            row = _first(
                con.execute(
                    "SELECT name, model, config FROM models WHERE name=$1 ORDER BY created_at DESC LIMIT 1", [name]
                )
            )
        return {"name": row[0], "model": row[1], "config": json.loads(row[2])} if row else None

    def names(self, kind: str) -> list[str]:
        """Stored names of one kind (run, dataset, prompt, retriever, model, corpus), for completion and hints."""
        return names_at(self.path, kind)

    # -- feedback ----------------------------------------------------------------------------

    def cell_exists(self, run_id: str, case_id: str, variant: str, repeat: int) -> bool:
        with self.connect() as con:
            row = _first(
                con.execute(
                    "SELECT count(*) FROM cells WHERE run_id=$1 AND case_id=$2 AND variant=$3 AND repeat=$4",
                    [run_id, case_id, variant, repeat],
                )
            )
        return bool(row and row[0])

    def insert_feedback(self, rec: dict[str, Any]) -> int:
        with self.connect() as con:
            row = _first(
                con.execute(
                    "INSERT INTO feedback (run_id, case_id, variant, repeat, kind, value, label, comment, author) "
                    "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) RETURNING feedback_id",
                    [
                        rec["run_id"],
                        rec["case_id"],
                        rec["variant"],
                        rec["repeat"],
                        rec["kind"],
                        rec["value"],
                        rec["label"],
                        rec["comment"],
                        rec["author"],
                    ],
                )
            )
        return int(row[0])

    def feedback(self, run_id: str | None = None) -> pd.DataFrame:
        query = (
            "SELECT feedback_id, run_id, case_id, variant, repeat, kind, value, label, comment, author, created_at "
            "FROM feedback"
        )
        params: list[Any] = []
        if run_id is not None:
            query += " WHERE run_id=$1"
            params.append(run_id)
        with self.connect() as con:
            return con.execute(query + " ORDER BY feedback_id", params).df()

    def responses_for_models(self, models: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        """All cached responses of some models (judges): their prompts are only known once outputs exist."""
        with self.connect() as con:
            rows = con.execute(
                "SELECT request_key, output, prompt_tokens, completion_tokens, cost, latency_ms FROM responses "
                "WHERE list_contains($1, model)",
                [list(models)],
            ).fetchall()
        return {r[0]: r[1:] for r in rows}

    def judgements(self, run_id: str) -> pd.DataFrame:
        with self.connect() as con:
            return con.execute(
                "SELECT case_id, variant, repeat, metric, seq, tag, model, messages, response, cached "
                "FROM judgements WHERE run_id=$1 ORDER BY case_id, variant, repeat, metric, seq",
                [run_id],
            ).df()

    def results(self, run_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Cells and scores of a run as two long tables (the analysis layer pivots them)."""
        with self.connect() as con:
            cells = con.execute(
                """
                SELECT c.case_id, c.variant, c.repeat, c.messages, c.output, c.error, c.error_kind,
                       c.latency_ms, c.prompt_tokens, c.completion_tokens, c.cost, c.cached, c.retrieved,
                       c.request_key, v.position AS variant_position, d.position AS case_position
                FROM cells c
                JOIN runs r USING (run_id)
                JOIN run_variants v ON v.run_id = c.run_id AND v.variant = c.variant
                LEFT JOIN dataset_cases d ON d.dataset_hash = r.dataset_hash AND d.case_id = c.case_id
                WHERE c.run_id = $1
                ORDER BY case_position, variant_position, c.repeat
                """,
                [run_id],
            ).df()
            scores = con.execute(
                "SELECT case_id, variant, repeat, metric, value, detail, error FROM scores WHERE run_id=$1",
                [run_id],
            ).df()
        return cells, scores

    def leaderboard(self, run_id: str) -> pd.DataFrame:
        """Per-variant aggregates computed in DuckDB."""
        with self.connect() as con:
            return con.execute(
                """
                SELECT v.variant, v.position, count(c.case_id) AS n, count(c.error) AS errors,
                       count_if(c.cached)::BIGINT AS cached,
                       sum(c.cost) AS cost,  -- NULL when no cell was priced: unknown, not free
                       (coalesce(sum(c.prompt_tokens), 0) + coalesce(sum(c.completion_tokens), 0))::BIGINT AS tokens,
                       quantile_cont(c.latency_ms, 0.5) AS latency_p50_ms,
                       quantile_cont(c.latency_ms, 0.95) AS latency_p95_ms
                FROM run_variants v LEFT JOIN cells c ON c.run_id = v.run_id AND c.variant = v.variant
                WHERE v.run_id = $1
                GROUP BY v.variant, v.position ORDER BY v.position
                """,
                [run_id],
            ).df()

    def score_means(self, run_id: str) -> pd.DataFrame:
        with self.connect() as con:
            return con.execute(
                "SELECT variant, metric, avg(value) AS mean, count(value) AS n, count(error) AS errors "
                "FROM scores WHERE run_id=$1 GROUP BY variant, metric",
                [run_id],
            ).df()

    # -- promotions (workbench.promotion) ---------------------------------------------------

    def insert_promotion(self, rec: dict[str, Any]) -> int:
        keys = [k for k in _PROMOTION_FIELDS if k in rec]
        placeholders = ", ".join(f"${i}" for i in range(1, len(keys) + 1))
        values = [dumps(rec[k]) if k in ("gates", "manifest") else rec[k] for k in keys]
        with self.connect() as con:
            row = _first(
                con.execute(
                    f"INSERT INTO promotions ({', '.join(keys)}) VALUES ({placeholders}) RETURNING promotion_id",
                    values,
                )
            )
        return int(row[0])

    def promotions(self, bundle_hash: str | None = None) -> pd.DataFrame:
        query = (
            "SELECT promotion_id, bundle_hash, stage, previous_stage, status, approved_by, approved_at, note, "
            "run_id, variant, dataset_name, checked_dataset_version, gate_run_id, gates, reason, bundle_path, "
            "created_at FROM promotions"
        )
        params: list[Any] = []
        if bundle_hash is not None:
            query += " WHERE bundle_hash = $1"
            params.append(bundle_hash)
        with self.connect() as con:
            return con.execute(query + " ORDER BY promotion_id", params).df()

    def bundle_stage(self, bundle_hash: str) -> str | None:
        """The stage a bundle was last promoted to (None: never promoted, i.e. still dev)."""
        with self.connect() as con:
            row = _first(
                con.execute(
                    "SELECT stage FROM promotions WHERE bundle_hash = $1 AND status = 'promoted' "
                    "ORDER BY promotion_id DESC LIMIT 1",
                    [bundle_hash],
                )
            )
        return str(row[0]) if row else None


_PROMOTION_FIELDS = (
    "bundle_hash", "stage", "previous_stage", "status", "bundle_path", "run_id", "variant", "dataset_name",
    "dataset_hash", "checked_dataset_version", "checked_dataset_hash", "gate_run_id", "gates", "approved_by",
    "note", "approved_at", "reason", "manifest",
)  # fmt: skip


_NAME_QUERIES = {
    "run": "SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 200",
    "dataset": "SELECT DISTINCT name FROM datasets ORDER BY name",
    "prompt": "SELECT DISTINCT name FROM prompts ORDER BY name",
    "retriever": "SELECT DISTINCT name FROM retrievers ORDER BY name",
    "model": "SELECT DISTINCT name FROM models ORDER BY name",
    "corpus": "SELECT DISTINCT name FROM corpora ORDER BY name",
}


def names_at(path: str | os.PathLike[str], kind: str) -> list[str]:
    """Names in a workspace, in one attempt and without creating or migrating anything: tab completion must
    neither wait on another process's lock nor create a workspace where the user is typing."""
    import duckdb

    db = Path(path) / DB_FILE
    if kind not in _NAME_QUERIES or not db.exists():
        return []
    with _PROCESS_LOCK:
        try:
            con = duckdb.connect(str(db.resolve()), config={"python_enable_replacements": False})
        except duckdb.Error:
            return []
        try:
            return [str(r[0]) for r in con.execute(_NAME_QUERIES[kind]).fetchall()]
        except duckdb.Error:  # an older workspace without that table
            return []
        finally:
            con.close()


def _RESPONSE_SCHEMA() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("request_key", pa.string()),
            ("model", pa.string()),
            ("output", pa.string()),
            ("prompt_tokens", pa.int64()),
            ("completion_tokens", pa.int64()),
            ("cost", pa.float64()),
            ("latency_ms", pa.float64()),
            ("served_model", pa.string()),
            ("system_fingerprint", pa.string()),
        ]
    )


def _CELL_SCHEMA() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("case_id", pa.string()),
            ("variant", pa.string()),
            ("repeat", pa.int32()),
            ("request_key", pa.string()),
            ("messages", pa.string()),
            ("output", pa.string()),
            ("error", pa.string()),
            ("error_kind", pa.string()),
            ("latency_ms", pa.float64()),
            ("prompt_tokens", pa.int64()),
            ("completion_tokens", pa.int64()),
            ("cost", pa.float64()),
            ("cached", pa.bool_()),
            ("retrieved", pa.string()),
            ("served_model", pa.string()),
            ("system_fingerprint", pa.string()),
        ]
    )


def _JUDGEMENT_SCHEMA() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("case_id", pa.string()),
            ("variant", pa.string()),
            ("repeat", pa.int32()),
            ("metric", pa.string()),
            ("seq", pa.int32()),
            ("tag", pa.string()),
            ("model", pa.string()),
            ("request_key", pa.string()),
            ("messages", pa.string()),
            ("response", pa.string()),
            ("cached", pa.bool_()),
        ]
    )


def _SCORE_SCHEMA() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("case_id", pa.string()),
            ("variant", pa.string()),
            ("repeat", pa.int32()),
            ("metric", pa.string()),
            ("value", pa.float64()),
            ("detail", pa.string()),
            ("error", pa.string()),
        ]
    )
