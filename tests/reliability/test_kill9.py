"""kill -9 at six points of a 2,000-cell RAG grid, resuming each time.

Points: during an index build, while paying for calls, inside a batch's open write transaction, during a
DuckDB checkpoint, right after a resume claimed the run, and while a resume pays for calls. After each
kill the database opens, no cell is stored twice and the run shows as interrupted (its owner is dead);
at the end every cell is stored exactly once with the outputs of an uninterrupted run, and the
half-written index was never used.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

import workbench as wb

from .helpers import child, db_rows, echo_of, grid_files

pytestmark = pytest.mark.slow

N_CELLS = 2000


def _wait_killed(proc, timeout: float = 240) -> str:  # type: ignore[no-untyped-def]
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, err.decode()[-3000:])
    return err.decode()


def _kill_after_calls(proc, server, more: int, timeout: float = 240) -> None:  # type: ignore[no-untyped-def]
    start = server.stats()["chat"]
    deadline = time.monotonic() + timeout
    while server.stats()["chat"] - start < more:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the child made too few calls"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    _wait_killed(proc)


def _check_after_kill(ws_dir: Path, expect_run: bool = True) -> str | None:
    total, distinct = db_rows(ws_dir, "SELECT count(*), count(DISTINCT (case_id, variant, repeat)) FROM cells")[0]
    assert total == distinct, "a cell was stored twice"
    runs = wb.open(ws_dir).runs()
    if not expect_run:
        assert len(runs) == 0
        return None
    assert len(runs) == 1
    assert runs["status"][0] == "interrupted", runs.to_dict("records")  # its process is gone
    return str(runs["run_id"][0])


@pytest.mark.timeout(600)
def test_kill_9_at_six_points_then_resume_matches_an_uninterrupted_run(tmp_path, fake_llm):
    fake_llm.configure(latency=0.1)  # at most ~160 calls/s: every phase below still finds calls to make
    spec = grid_files(tmp_path, fake_llm.base_url)
    ws_dir = tmp_path / "ws"
    ws = ["-w", str(ws_dir), "--no-progress"]
    kills = 0

    # 1. an index build: the FAISS file is half written when the process dies, before the run exists
    err = _wait_killed(child("index", "run", str(spec), *ws))
    kills += 1
    torn = list((ws_dir / "artifacts").rglob("index.faiss"))
    assert torn and all("tmp" in p.parts for p in torn), "the torn index must never be moved into place"
    _check_after_kill(ws_dir, expect_run=False)

    # 2. while paying for calls
    _kill_after_calls(child("none", "run", str(spec), *ws), fake_llm, 120)
    kills += 1
    run_id = _check_after_kill(ws_dir)
    assert run_id is not None

    # 3. inside an open write transaction (rows inserted, not committed)
    err = _wait_killed(child("write", "resume", run_id, *ws))
    assert "inside an open write transaction" in err
    kills += 1
    _check_after_kill(ws_dir)

    # 4. during a checkpoint
    err = _wait_killed(child("checkpoint", "resume", run_id, *ws))
    assert "killpoint: checkpointing" in err
    kills += 1
    _check_after_kill(ws_dir)

    # 5. right after a resume claimed the run: the dead claimant must not block the next resume
    _wait_killed(child("claimed", "resume", run_id, *ws))
    kills += 1
    _check_after_kill(ws_dir)

    # 6. while a resume pays for calls
    _kill_after_calls(child("none", "resume", run_id, *ws), fake_llm, 60)
    kills += 1
    _check_after_kill(ws_dir)

    before = fake_llm.stats()["chat"]
    stored_before = db_rows(ws_dir, "SELECT count(*) FROM cells WHERE error IS NULL")[0][0]
    last = child("none", "resume", run_id, *ws)
    _, err_b = last.communicate(timeout=300)
    assert last.returncode == 0, err_b.decode()[-3000:]
    # the last resume paid only for cells that were not stored
    assert fake_llm.stats()["chat"] - before <= N_CELLS - stored_before

    total, distinct, failed = db_rows(
        ws_dir, "SELECT count(*), count(DISTINCT (case_id, variant, repeat)), count(error) FROM cells"
    )[0]
    assert total == distinct == N_CELLS and failed == 0
    assert wb.open(ws_dir).runs()["status"][0] == "completed"
    assert not list((ws_dir / "artifacts" / "journal").glob("*.jsonl"))

    # every output is the server's answer to that cell's own prompt, and an uninterrupted run of the same
    # spec, answered from the cache, stores the same outputs
    key = ["case_id", "variant", "repeat"]
    got = wb.open(ws_dir).get_run(run_id).results()
    assert [echo_of(m) for m in got["messages"]] == list(got["output"])
    calls = fake_llm.stats()["chat"]
    again = wb.open(ws_dir).run(spec, progress=False)
    assert fake_llm.stats()["chat"] == calls and again.last.cached == N_CELLS
    want = again.results().set_index(key).sort_index()
    got = got.set_index(key).sort_index()
    for col in ("output", "prompt"):
        assert got[col].equals(want[col])
    assert got["retrieved"].map(str).equals(want["retrieved"].map(str))
    paid_last = fake_llm.stats()["chat"] - before
    print(f"\nkill -9 survived: {kills}; cells {N_CELLS}; calls after the last kill: {paid_last}")
