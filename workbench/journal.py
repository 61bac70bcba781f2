"""The journal: an append-only spill file that keeps paid responses and finished cells when the database is busy.

DuckDB lets one process at a time open the workspace file. When another process (a long ``llmops sql``, a
second kernel) holds it past the lock timeout, a run must not keep paid responses only in memory: each
batch that cannot be written goes to ``artifacts/journal/<run_id>.<pid>.<token>.jsonl`` instead, one JSON
line per batch with a sha256 of its payload, fsync'ed. The executor holds an exclusive ``flock`` on its
file while it lives; the run merges the file when the database is free again, and any later open of the
workspace merges files whose owner is gone (their lock is free). Merging is idempotent (cells and
responses are keyed; a replayed line stores nothing new), so a crash between the database commit and
the file's removal costs nothing. A torn last line (kill -9 mid-write) fails its checksum and is skipped:
at most the last flush interval is lost, never a stored cell.

The file's mtime doubles as the run's heartbeat (see ``workbench.liveness``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

FOLDER = "journal"


def _digest(payload: str) -> str:
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def encode(record: dict[str, Any]) -> bytes:
    payload = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return (json.dumps({"sha256": _digest(payload), "payload": payload}, ensure_ascii=False) + "\n").encode("utf-8")


def decode(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """Valid records of a journal file, and how many lines failed their checksum (torn or damaged)."""
    records: list[dict[str, Any]] = []
    bad = 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            outer = json.loads(line)
            payload = outer["payload"]
            if _digest(payload) != outer["sha256"]:
                raise ValueError("checksum mismatch")
            records.append(json.loads(payload))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            bad += 1
    return records, bad


class Journal:
    """One executor's spill file, exclusively locked while the executor lives."""

    def __init__(self, artifacts: Path, run_id: str) -> None:
        folder = artifacts / FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{run_id}.{os.getpid()}.{secrets.token_hex(4)}"
        # locked under a name the merger ignores, then renamed: a merger can never take a file being born
        tmp = folder / f"{name}.new"
        self._fh: IO[bytes] | None = tmp.open("ab")
        fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.path = folder / f"{name}.jsonl"
        tmp.rename(self.path)
        self.pending = 0  # batches in the file that the database does not have yet

    def append(self, record: dict[str, Any]) -> None:
        """Durably add one batch (write + fsync) before the caller forgets it."""
        assert self._fh is not None
        self._fh.write(encode(record))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.pending += 1

    def records(self) -> list[dict[str, Any]]:
        return decode(self.path.read_bytes())[0]

    def clear(self) -> None:
        """The database has every batch: empty the file (the lock stays held)."""
        if self._fh is not None:
            self._fh.truncate(0)
            self._fh.seek(0)
        self.pending = 0

    def beat(self) -> None:
        """Heartbeat: the file's mtime says the owner is alive."""
        try:
            os.utime(self.path)
        except OSError:
            pass

    def close(self) -> None:
        """Release the lock; an empty file is removed, a non-empty one waits for the next open to merge it."""
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            if self.pending == 0:
                self.path.unlink(missing_ok=True)
        finally:
            fh.close()


@contextmanager
def orphans(artifacts: Path) -> Iterator[list[tuple[Path, list[dict[str, Any]]]]]:
    """Journal files whose owner is gone, locked for the caller; removed when the caller's block succeeds."""
    folder = artifacts / FOLDER
    if not folder.is_dir():
        yield []
        return
    held: list[tuple[Path, IO[bytes]]] = []
    found: list[tuple[Path, list[dict[str, Any]]]] = []
    try:
        for path in sorted(folder.glob("*.jsonl")):
            try:
                fh: IO[bytes] = path.open("rb")
            except OSError:
                continue
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # its owner is alive and will merge it
                fh.close()
                continue
            held.append((path, fh))
            found.append((path, decode(fh.read())[0]))
        yield found
        for path, _ in held:
            path.unlink(missing_ok=True)
    finally:
        for _, handle in held:
            handle.close()


def heartbeat(artifacts: Path, run_id: str) -> float | None:
    """Newest journal mtime of a run (its owner's last heartbeat), or None."""
    folder = artifacts / FOLDER
    if not folder.is_dir():
        return None
    times = []
    for path in folder.glob(f"{run_id}.*.jsonl"):
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            continue
    return max(times) if times else None
