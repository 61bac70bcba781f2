"""Run archives: one zip file that carries a run to another workspace, with every number it produced.

Why a zip of Parquet tables plus JSON: Parquet keeps types (timestamps, floats, JSON text) exactly, so the
imported run's ``results()``, ``leaderboard()``, ``compare()`` and ``winner()`` equal the original's; JSON keeps
the run record and environment readable by eye. ``manifest.json`` lists the sha256 of every member: an archive
whose contents do not match is refused, as is any member name that is not a plain file name (zip-slip), and (before
anything is inflated) any member whose size differs from the manifest's record or that would inflate absurdly
(a zip bomb, ``workbench.safezip``).

This is a *run* archive: evidence of one run, for a colleague or a paper, not something to deploy.
Model configs carry key variable *names* only; secrets are never written.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sys
import tempfile
import time
import zipfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench import safezip
from workbench.errors import ArchiveError
from workbench.store import Store, dumps

if TYPE_CHECKING:
    import duckdb

__all__ = ["FORMAT", "environment", "export_run", "import_run", "read_manifest"]

FORMAT = "llmops-run-archive"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
RUN_JSON = "run.json"
_MEMBER = re.compile(r"^[a-z_]+\.(parquet|json)$")
_RUN_ID = re.compile(r"^[A-Za-z0-9_.:-]+$")
_SECRET_KEYS = {"api_key", "secret", "password", "authorization", "headers", "extra_headers", "access_token"}
_PACKAGES = ("llmops-workbench", "duckdb", "pandas", "pyarrow", "numpy", "litellm", "openai", "faiss-cpu", "wordllama")

# table -> SQL selecting the run's rows ({run} and {ds} are filled with quoted literals)
_TABLES: dict[str, str] = {
    "runs": "SELECT * FROM runs WHERE run_id={run}",
    "run_variants": "SELECT * FROM run_variants WHERE run_id={run} ORDER BY position",
    "cells": "SELECT * FROM cells WHERE run_id={run} ORDER BY case_id, variant, repeat",
    "scores": "SELECT * FROM scores WHERE run_id={run} ORDER BY case_id, variant, repeat, metric",
    "judgements": "SELECT * FROM judgements WHERE run_id={run} ORDER BY case_id, variant, repeat, metric, seq",
    "feedback": "SELECT * EXCLUDE (feedback_id) FROM feedback WHERE run_id={run} ORDER BY feedback_id",
    "datasets": "SELECT * FROM datasets WHERE hash={ds} AND name={dsname}",
    "dataset_cases": "SELECT * FROM dataset_cases WHERE dataset_hash={ds} ORDER BY position",
    "prompts": "SELECT * FROM prompts WHERE (name, hash) IN "
    "(SELECT (prompt_name, prompt_hash) FROM run_variants WHERE run_id={run}) ORDER BY name, version",
    "models": "SELECT * FROM models WHERE hash IN (SELECT model_hash FROM run_variants WHERE run_id={run})",
    "responses": "SELECT * FROM responses WHERE request_key IN (SELECT request_key FROM cells WHERE run_id={run} "
    "UNION SELECT request_key FROM judgements WHERE run_id={run})",
    "corpora": "SELECT * FROM corpora WHERE hash IN (SELECT corpus_hash FROM run_variants WHERE run_id={run})",
}


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _scrub(value: Any) -> Any:
    """Drop anything keyed like a secret (key variable *names* such as ``api_key_env`` stay)."""
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if str(k).lower() not in _SECRET_KEYS}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def environment() -> dict[str, Any]:
    """Python, platform and the versions of the packages that shape a score."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": versions,
    }


def export_run(store: Store, run_id: str, path: str | os.PathLike[str]) -> Path:
    """Write run ``run_id`` of ``store`` to the zip file ``path``; returns the path written."""
    import pyarrow.parquet as pq

    run = store.get_run(run_id)
    run_id = str(run["run_id"])
    if not _RUN_ID.match(run_id):
        raise ArchiveError(f"run id {run_id!r} has characters an archive cannot carry")
    target = Path(path)
    if target.is_dir():
        target = target / f"run-{run_id}.zip"
    fill = {"run": _lit(run_id), "ds": _lit(str(run["dataset_hash"])), "dsname": _lit(str(run["dataset_name"]))}
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="llmops-archive-") as tmp:
        files: dict[str, bytes] = {}
        with store.connect() as con:
            for table, query in _TABLES.items():
                sql = query.format(**fill)
                out = Path(tmp) / f"{table}.parquet"
                if table in ("runs", "models"):
                    frame = con.execute(sql).df()
                    column = "spec" if table == "runs" else "config"
                    frame[column] = [dumps(_scrub(json.loads(v))) for v in frame[column]]
                    con.register("_scrubbed", frame)
                    con.execute(f"COPY (SELECT * FROM _scrubbed) TO {_lit(str(out))} (FORMAT parquet)")
                    con.unregister("_scrubbed")
                else:
                    con.execute(f"COPY ({sql}) TO {_lit(str(out))} (FORMAT parquet, COMPRESSION zstd)")
                counts[table] = pq.read_metadata(out).num_rows
                files[out.name] = out.read_bytes()
            models = [
                r[0] for r in con.execute(_TABLES["models"].format(**fill).replace("*", "DISTINCT model", 1)).fetchall()
            ]
        info = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "run_id": run_id,
            "name": run["name"],
            "status": run["status"],
            "dataset": {"name": run["dataset_name"], "hash": run["dataset_hash"]},
            "rows": counts,
            "models": models,
            # per variant, what the provider said served it (reply `model` ids, `system_fingerprint`s)
            "served_by": store.served_by(run_id),
            "schema_version": store.schema_version(),
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "environment": environment(),
        }
        files[RUN_JSON] = json.dumps(info, indent=2, default=str).encode("utf-8")
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "run_id": run_id}
        manifest["files"] = {name: _sha256(data) for name, data in sorted(files.items())}  # type: ignore[assignment]
        manifest["sizes"] = {name: len(data) for name, data in sorted(files.items())}  # type: ignore[assignment]
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        with zipfile.ZipFile(partial, "w") as zf:
            for name, data in sorted(files.items()):
                # Parquet is already compressed: store it; deflate the JSON
                method = zipfile.ZIP_STORED if name.endswith(".parquet") else zipfile.ZIP_DEFLATED
                zf.writestr(name, data, compress_type=method)
            zf.writestr(MANIFEST, json.dumps(manifest, indent=2), compress_type=zipfile.ZIP_DEFLATED)
        partial.replace(target)
    return target


def read_manifest(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Open and verify an archive: (run.json, member bytes). Raises ``ArchiveError`` on any mismatch."""
    src = Path(path)
    if not src.is_file():
        raise ArchiveError(f"run archive {str(src)!r} does not exist (make one with `llmops export-run RUN PATH`)")
    try:
        zf = zipfile.ZipFile(src)
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"{src} is not a run archive (not a zip file: {exc})") from None
    with zf:
        names = zf.namelist()
        bad = [n for n in names if not _MEMBER.match(n)]
        if bad:
            raise ArchiveError(
                f"{src}: refused, member name(s) {bad[:3]} are not plain file names (a zip-slip attempt or not an "
                "llmops run archive); nothing was extracted"
            )
        if MANIFEST not in names:
            raise ArchiveError(f"{src} has no {MANIFEST}: not an llmops run archive")
        infos = {i.filename: i for i in safezip.check(zf, src, ArchiveError)}  # sizes and ratios, nothing inflated
        try:
            manifest = json.loads(safezip.read_member(zf, infos[MANIFEST], src, ArchiveError))
        except ValueError as exc:
            raise ArchiveError(f"{src}: {MANIFEST} is not valid JSON ({exc}); the archive is damaged") from None
        if manifest.get("format") != FORMAT:
            raise ArchiveError(f"{src} is not an llmops run archive (format {manifest.get('format')!r})")
        if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
            raise ArchiveError(
                f"{src} is format version {manifest.get('format_version')}; this workbench reads up to "
                f"{FORMAT_VERSION}: upgrade the package"
            )
        expected: dict[str, str] = manifest.get("files") or {}
        members = set(names) - {MANIFEST}
        if members != set(expected):
            raise ArchiveError(
                f"{src}: refused, members {sorted(members ^ set(expected))} are not what its manifest lists; "
                "the archive was altered: ask for a fresh export"
            )
        sizes = manifest.get("sizes")  # archives written before sizes were recorded have none
        if sizes is not None:
            if not isinstance(sizes, dict) or set(sizes) != set(expected):
                raise ArchiveError(f"{src}: refused, {MANIFEST} records sizes for other members than it lists")
            safezip.check(zf, src, ArchiveError, expected_sizes=sizes)
        data: dict[str, bytes] = {}
        for name, digest in expected.items():
            blob = safezip.read_member(zf, infos[name], src, ArchiveError)
            if _sha256(blob) != digest:
                raise ArchiveError(
                    f"{src}: refused, {name} fails its sha256 checksum (manifest {digest[:12]}..., file "
                    f"{_sha256(blob)[:12]}...): the archive was altered or damaged; ask for a fresh export"
                )
            data[name] = blob
    info = json.loads(data.pop(RUN_JSON))
    if info.get("run_id") != manifest.get("run_id"):
        raise ArchiveError(f"{src}: refused, run.json and manifest name different runs")
    return info, data


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [str(r[0]) for r in con.execute(f"DESCRIBE {table}").fetchall()]


def _names(con: duckdb.DuckDBPyConnection, relation: str) -> list[str]:
    cur = con.execute(f"SELECT * FROM {relation} LIMIT 0")
    names = [str(d[0]) for d in cur.description]
    cur.fetchall()  # finish the result: this connection runs more statements
    return names


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


def _copy_in(con: duckdb.DuckDBPyConnection, table: str, src: str, conflict: str = "ON CONFLICT DO NOTHING") -> None:
    """Insert the archived rows whose columns this workspace has (archives from older/newer schemas load)."""
    have = _columns(con, table)
    cols = [c for c in _names(con, src) if c in have]
    listed = ", ".join(f'"{c}"' for c in cols)
    con.execute(f"INSERT INTO {table} ({listed}) SELECT {listed} FROM {src} {conflict}")


def _same_run(con: duckdb.DuckDBPyConnection, run_id: str) -> bool | None:
    """None: not in this workspace; True: the same run (same variants, dataset, start); False: another run."""
    here = _one(con, "SELECT dataset_hash, created_at, n_cells FROM runs WHERE run_id=$1", [run_id])
    if here is None:
        return None
    there = _one(con, "SELECT dataset_hash, created_at, n_cells FROM _a_runs")
    listed = "SELECT list(variant || ':' || variant_hash ORDER BY variant) FROM "
    mine = _one(con, listed + "run_variants WHERE run_id=$1", [run_id])
    theirs = _one(con, listed + "_a_run_variants")
    return bool(here == there and mine == theirs)


def import_run(store: Store, path: str | os.PathLike[str]) -> str:
    """Load a verified archive into ``store``; returns the run id. Idempotent; never overwrites another run."""
    import pyarrow.parquet as pq

    info, data = read_manifest(path)
    run_id = str(info["run_id"])
    with tempfile.TemporaryDirectory(prefix="llmops-import-") as tmp:
        for name, blob in data.items():
            (Path(tmp) / name).write_bytes(blob)  # names were checked to be plain file names
        with store.transaction() as con:
            for name in data:
                table = name.removesuffix(".parquet")
                con.register(f"_a_{table}", pq.read_table(Path(tmp) / name))
            try:
                same = _same_run(con, run_id)
                if same is False:
                    raise ArchiveError(
                        f"workspace {store.path} already has a different run {run_id!r}; refusing to overwrite it. "
                        "Import into another workspace (ws = wb.open('other'))"
                    )
                _load(con)
            finally:
                for name in data:
                    con.unregister(f"_a_{name.removesuffix('.parquet')}")
    return run_id


def _load(con: duckdb.DuckDBPyConnection) -> None:
    # datasets and prompts: same (name, hash) -> reuse; else the next local version number
    for table, key in (("datasets", "name"), ("prompts", "name")):
        have = _columns(con, table)
        cols = [c for c in _names(con, f"_a_{table}") if c in have]
        cols = [c for c in cols if c != "version"]
        listed = ", ".join(f'"{c}"' for c in cols)
        prefixed = ", ".join(f'a."{c}"' for c in cols)
        con.execute(
            f"INSERT INTO {table} ({listed}, version) SELECT {prefixed}, "
            f"coalesce((SELECT max(t.version) FROM {table} t WHERE t.{key}=a.{key}), 0) "
            f"+ row_number() OVER (PARTITION BY a.{key} ORDER BY a.version) FROM _a_{table} a "
            f"WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.name=a.name AND t.hash=a.hash)"
        )
    for table in ("dataset_cases", "models", "responses", "runs", "run_variants", "cells", "scores", "judgements"):
        _copy_in(con, table, f"_a_{table}")
    # feedback has workspace-local ids: add rows not already present (an import twice adds nothing)
    have = _columns(con, "feedback")
    cols = [c for c in _names(con, "_a_feedback") if c in have]
    listed = ", ".join(f'"{c}"' for c in cols)
    con.execute(
        f"INSERT INTO feedback ({listed}) SELECT {listed} FROM "
        f"(SELECT {listed} FROM _a_feedback EXCEPT ALL SELECT {listed} FROM feedback) "
        + ("ORDER BY created_at" if "created_at" in cols else "")
    )  # in the order given, so a fresh workspace numbers them as the source did
    # corpora rows are provenance (version ids) only: their documents are not carried, so none are inserted
