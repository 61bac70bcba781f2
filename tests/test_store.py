"""The workspace and its store: folder layout, migrations, read-only SQL, locking across real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import workbench as wb
from workbench import store as store_mod
from workbench.errors import SchemaVersionError, ValidationError, WorkspaceError, WorkspaceLockedError


def _migration_rows(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT id, name, applied_at FROM _migrations ORDER BY id").fetchall()
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# folder layout and default paths


def test_open_creates_database_and_artifacts(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "ws"
    ws = wb.open(target)
    assert ws.path == target.resolve()
    assert (target / "workspace.duckdb").is_file()
    assert (target / "artifacts").is_dir()
    # the file is a real DuckDB database holding the documented tables
    con = duckdb.connect(str(target / "workspace.duckdb"), read_only=True)
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    finally:
        con.close()
    assert {"_migrations", "datasets", "dataset_cases", "prompts", "models", "responses", "runs",
            "run_variants", "cells", "scores", "feedback"} <= tables


def test_default_path_is_dot_llmops_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMOPS_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    ws = wb.open()
    assert ws.path == (tmp_path / ".llmops").resolve()
    assert (tmp_path / ".llmops" / "workspace.duckdb").is_file()
    assert (tmp_path / ".llmops" / "artifacts").is_dir()


def test_env_variable_chooses_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LLMOPS_WORKSPACE", str(tmp_path / "from-env"))
    ws = wb.open()
    assert ws.path == (tmp_path / "from-env").resolve()
    assert (tmp_path / "from-env" / "workspace.duckdb").is_file()
    assert not (tmp_path / ".llmops").exists()
    # an explicit path still wins over the variable
    explicit = wb.open(tmp_path / "explicit")
    assert explicit.path == (tmp_path / "explicit").resolve()


def test_relative_path_is_resolved_against_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ws = wb.open("rel/ws")
    assert ws.path.is_absolute()
    assert ws.path == (tmp_path / "rel" / "ws").resolve()
    assert ws.store.db_path.is_absolute()


def test_workspace_path_that_is_a_file_gives_workspace_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(WorkspaceError, match="cannot create workspace folder") as err:
        wb.open(blocker)
    assert str(blocker.resolve()) in str(err.value)


@pytest.mark.parametrize("content", [b"this is not a duckdb file at all" * 8, b""], ids=["garbage", "empty"])
def test_damaged_database_file_gives_workspace_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "ws").mkdir()
    db = tmp_path / "ws" / "workspace.duckdb"
    db.write_bytes(content)
    an_hour_ago = time.time() - 3600
    os.utime(db, (an_hour_ago, an_hour_ago))  # not a file some process is creating right now
    with pytest.raises(WorkspaceError) as err:
        wb.open(tmp_path / "ws")
    assert not isinstance(err.value, WorkspaceLockedError)
    assert str(db) in str(err.value)
    assert "move it away" in str(err.value)


def test_open_waits_while_another_process_creates_the_file(tmp_path: Path) -> None:
    """DuckDB calls a file that another process has just created (still empty) invalid: that is retried."""
    ready = wb.open(tmp_path / "elsewhere").store.db_path  # a complete database made "by the other process"
    (tmp_path / "ws").mkdir()
    db = tmp_path / "ws" / "workspace.duckdb"
    db.write_bytes(b"")  # the other process has created the file but not written the header yet
    def finish_creation() -> None:
        time.sleep(0.3)
        os.utime(ready)  # written just now, as the creating process would
        os.replace(ready, db)

    t = threading.Thread(target=finish_creation)
    t.start()
    try:
        ws = wb.open(tmp_path / "ws")
    finally:
        t.join()
    assert db.stat().st_size > 0
    assert ws.store.schema_version() == len(store_mod.MIGRATIONS)


# ---------------------------------------------------------------------------------------------
# migrations


def test_migrations_are_recorded_once(tmp_path: Path) -> None:
    ws = wb.open(tmp_path / "ws")
    db = ws.store.db_path
    first = _migration_rows(db)
    expected = [(i, name) for i, (name, _fn) in enumerate(store_mod.MIGRATIONS, start=1)]
    assert [(r[0], r[1]) for r in first] == expected
    assert ws.store.schema_version() == len(store_mod.MIGRATIONS)

    wb.open(tmp_path / "ws")
    wb.open(tmp_path / "ws")
    again = _migration_rows(db)
    assert again == first  # same ids, names and applied_at: nothing re-applied


def test_newer_schema_raises_schema_version_error(tmp_path: Path) -> None:
    ws = wb.open(tmp_path / "ws")
    con = duckdb.connect(str(ws.store.db_path))
    con.execute("INSERT INTO _migrations (id, name) VALUES (999, 'm999_from_the_future')")
    con.close()
    with pytest.raises(SchemaVersionError) as err:
        wb.open(tmp_path / "ws")
    msg = str(err.value)
    assert "999" in msg
    assert str(len(store_mod.MIGRATIONS)) in msg
    assert str(ws.path) in msg
    assert "upgrade" in msg.lower()
    assert isinstance(err.value, WorkspaceError)


def test_failing_migration_is_rolled_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wb.open(tmp_path / "ws")  # current schema applied

    def m_broken(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("boom in the middle of a migration")

    monkeypatch.setattr(store_mod, "MIGRATIONS", [*store_mod.MIGRATIONS, ("m_broken", m_broken)])
    with pytest.raises(RuntimeError, match="boom"):
        wb.open(tmp_path / "ws")
    db = tmp_path / "ws" / "workspace.duckdb"
    assert [r[1] for r in _migration_rows(db)] == [name for name, _ in store_mod.MIGRATIONS[:-1]]
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    finally:
        con.close()
    assert "half_done" not in tables

    def m_fixed(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("CREATE TABLE half_done (x INTEGER)")

    monkeypatch.setattr(store_mod, "MIGRATIONS", [*store_mod.MIGRATIONS[:-1], ("m_fixed", m_fixed)])
    ws = wb.open(tmp_path / "ws")
    assert ws.store.schema_version() == len(store_mod.MIGRATIONS)
    assert ws.sql("SELECT count(*) AS n FROM half_done")["n"].iloc[0] == 0


# ---------------------------------------------------------------------------------------------
# read-only SQL


def test_sql_returns_dataframe_and_takes_params(tmp_path: Path) -> None:
    ws = wb.open(tmp_path / "ws")
    ws.add_dataset("alpha", [{"q": "one"}, {"q": "two"}])
    ws.add_dataset("beta", [{"q": "three"}])
    df = ws.sql("SELECT name, n_cases FROM datasets ORDER BY name")
    assert isinstance(df, pd.DataFrame)
    assert df.to_dict("records") == [{"name": "alpha", "n_cases": 2}, {"name": "beta", "n_cases": 1}]

    by_pos = ws.sql("SELECT n_cases FROM datasets WHERE name = $1", ["beta"])
    assert by_pos["n_cases"].tolist() == [1]
    by_name = ws.sql("SELECT n_cases FROM datasets WHERE name = $n", {"n": "alpha"})
    assert by_name["n_cases"].tolist() == [2]
    # a value that would be an injection if pasted into the SQL is just a value
    assert ws.sql("SELECT count(*) AS n FROM datasets WHERE name = $1", ["x' OR '1'='1"])["n"].iloc[0] == 0
    # WITH ... SELECT and EXPLAIN are read-only too
    assert ws.sql("WITH t AS (SELECT 41 AS x) SELECT x + 1 AS y FROM t")["y"].tolist() == [42]
    assert len(ws.sql("EXPLAIN SELECT * FROM datasets")) >= 1
    assert len(ws.sql("EXPLAIN ANALYZE SELECT * FROM datasets")) >= 1


@pytest.mark.parametrize(
    "query, kind",
    [
        ("INSERT INTO datasets (name) VALUES ('x')", "INSERT"),
        ("DROP TABLE datasets", "DROP"),
        ("DELETE FROM datasets", "DELETE"),
        ("UPDATE datasets SET version = 9", "UPDATE"),
        ("CREATE TABLE t (x INTEGER)", "CREATE"),
        ("COPY datasets TO 'out.csv'", "COPY"),
        ("SELECT 1; DROP TABLE datasets", "DROP"),
        ("SELECT 1; SELECT 2", "2 statements"),
        # EXPLAIN ANALYZE executes its statement: only an EXPLAIN of a SELECT is read-only
        ("EXPLAIN ANALYZE COPY datasets TO 'out.csv'", "EXPLAIN"),
        ("EXPLAIN (ANALYZE) COPY datasets TO 'out.csv'", "EXPLAIN"),
        ("EXPLAIN /* hidden */ ANALYZE COPY datasets TO 'out.csv'", "EXPLAIN"),
        ("EXPLAIN ANALYZE DELETE FROM datasets", "EXPLAIN"),
    ],
)
def test_sql_refuses_writes_and_multiple_statements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, query: str, kind: str
) -> None:
    monkeypatch.chdir(tmp_path)
    ws = wb.open(tmp_path / "ws")
    ws.add_dataset("keep", [{"q": "still here"}])
    with pytest.raises(ValidationError, match="read-only") as err:
        ws.sql(query)
    assert kind in str(err.value)
    # nothing changed
    assert ws.sql("SELECT name, version FROM datasets").to_dict("records") == [{"name": "keep", "version": 1}]
    assert not (tmp_path / "out.csv").exists()


def test_sql_errors_are_validation_errors(tmp_path: Path) -> None:
    ws = wb.open(tmp_path / "ws")
    with pytest.raises(ValidationError, match="parse|Parser"):
        ws.sql("SELEC nonsense FROM")
    with pytest.raises(ValidationError, match="no_such_table"):
        ws.sql("SELECT * FROM no_such_table")


def test_python_replacement_scans_are_off(tmp_path: Path) -> None:
    ws = wb.open(tmp_path / "ws")
    my_df = pd.DataFrame({"secret": [1, 2, 3]})  # noqa: F841 - the point is that DuckDB must not see it
    with pytest.raises(ValidationError, match="my_df"):
        ws.sql("SELECT * FROM my_df")
    # also on the connection factory itself, where the variable is in the calling frame
    with ws.store.connect() as con:
        frame_local = pd.DataFrame({"secret": [1]})  # noqa: F841
        with pytest.raises(duckdb.CatalogException):
            con.execute("SELECT * FROM frame_local").fetchall()
    setting = ws.sql("SELECT current_setting('python_enable_replacements') AS v")["v"].iloc[0]
    assert setting in (False, "false")


def test_connection_uses_utc(tmp_path: Path) -> None:
    ws = wb.open(tmp_path / "ws")
    assert ws.sql("SELECT current_setting('TimeZone') AS tz")["tz"].iloc[0] == "UTC"


# ---------------------------------------------------------------------------------------------
# several real processes on one workspace

_WRITER = textwrap.dedent(
    """
    import sys
    import workbench as wb

    path, tag = sys.argv[1], sys.argv[2]
    ws = wb.open(path)
    for i in range(20):
        rows = [{"question": f"{tag} question {i}.{j}", "answer": f"{j}"} for j in range(5)]
        ws.add_dataset(f"{tag}-{i}", rows)
        cells = [{"case_id": f"c{i}-{j}", "variant": "v", "repeat": 0, "cached": False, "output": tag}
                 for j in range(10)]
        ws.store.write_batch(f"run-{tag}", cells, [], [])
    print("done", tag, flush=True)
    """
)


@pytest.mark.slow
def test_two_processes_share_a_workspace(tmp_path: Path) -> None:
    path = tmp_path / "shared"
    env = {**os.environ, "LLMOPS_LOCK_TIMEOUT": "60"}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), tag], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for tag in ("a", "b")
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.startswith("done")

    ws = wb.open(path)
    datasets = ws.sql("SELECT name, version, n_cases FROM datasets")
    assert len(datasets) == 40
    assert set(datasets["name"]) == {f"{t}-{i}" for t in "ab" for i in range(20)}
    assert set(datasets["version"]) == {1} and set(datasets["n_cases"]) == {5}
    assert ws.sql("SELECT count(*) AS n FROM dataset_cases")["n"].iloc[0] == 200
    per_run = ws.sql("SELECT run_id, count(*) AS n, min(output) AS o FROM cells GROUP BY run_id ORDER BY run_id")
    assert per_run.to_dict("records") == [{"run_id": "run-a", "n": 200, "o": "a"},
                                          {"run_id": "run-b", "n": 200, "o": "b"}]
    assert len(_migration_rows(ws.store.db_path)) == len(store_mod.MIGRATIONS)


_HOLDER = textwrap.dedent(
    """
    import sys, time
    import duckdb

    con = duckdb.connect(sys.argv[1])
    print("holding", flush=True)
    if sys.argv[2] == "stdin":
        sys.stdin.readline()
    else:
        time.sleep(float(sys.argv[2]))
    con.close()
    """
)


def test_lock_timeout_names_file_and_holder_pid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = wb.open(tmp_path / "ws")
    db = ws.store.db_path
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(db), "stdin"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        monkeypatch.setenv("LLMOPS_LOCK_TIMEOUT", "1")
        start = time.monotonic()
        with pytest.raises(WorkspaceLockedError) as err:
            wb.open(tmp_path / "ws")
        waited = time.monotonic() - start
        msg = str(err.value)
        assert str(db) in msg
        assert f"process {holder.pid}" in msg
        assert "LLMOPS_LOCK_TIMEOUT" in msg
        assert 1.0 <= waited < 30  # it retried for the 1 s asked for, not the 60 s default
        # every kind of access waits and fails the same way, not only opening
        with pytest.raises(WorkspaceLockedError):
            ws.sql("SELECT 1")
    finally:
        assert holder.stdin is not None
        holder.stdin.write("release\n")
        holder.stdin.flush()
        holder.wait(timeout=30)
    assert holder.returncode == 0
    reopened = wb.open(tmp_path / "ws")
    assert reopened.sql("SELECT 1 AS x")["x"].tolist() == [1]


def test_open_waits_for_a_short_lived_holder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = wb.open(tmp_path / "ws")
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(ws.store.db_path), "1.0"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        monkeypatch.setenv("LLMOPS_LOCK_TIMEOUT", "60")
        ws.add_dataset("after-wait", [{"q": "x"}])  # retries with backoff until the holder lets go
        assert holder.poll() is not None  # so it really had to wait for the other process
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=30)
    assert ws.dataset("after-wait").version == 1


def test_bad_lock_timeout_value_falls_back_to_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_LOCK_TIMEOUT", "soon")
    assert store_mod._lock_timeout() == 60.0
    monkeypatch.setenv("LLMOPS_LOCK_TIMEOUT", "2.5")
    assert store_mod._lock_timeout() == 2.5


def test_user_sql_cannot_read_files(tmp_path):
    """ws.sql() is exposed by the server extension: it must not read the machine's files."""
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    ws = wb.open(tmp_path / "ws")
    with pytest.raises(ValidationError):
        ws.sql(f"SELECT * FROM read_text('{secret}')")
    # the restriction ends with the query: the workspace itself still works
    assert ws.store.schema_version() >= 1 and len(ws.sql("SELECT 1 AS x")) == 1
