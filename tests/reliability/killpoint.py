"""Run ``llmops`` in this process and SIGKILL it at a chosen point (the kill -9 tests' child process).

    python killpoint.py POINT -- llmops arguments...

POINT is where the process kills itself with SIGKILL (a real kill -9, no cleanup of any kind):
``index`` after writing half of a FAISS index file, ``write`` inside a batch's open transaction (rows
inserted, not committed), ``checkpoint`` while DuckDB checkpoints the database, ``claimed`` just after a
resume claimed the run, ``none`` never (the parent kills it, e.g. while it pays for calls).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time


def _die() -> None:
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str) -> None:
    from workbench.store import Store

    if point == "index":
        import faiss

        real = faiss.write_index

        def torn_write(index, path):  # type: ignore[no-untyped-def]
            real(index, path)
            size = os.path.getsize(path)
            with open(path, "r+b") as fh:
                fh.truncate(size // 2)
            _die()

        faiss.write_index = torn_write
    elif point == "write":
        real_write = Store._write

        def write_then_die(*args, **kwargs):  # type: ignore[no-untyped-def]
            real_write(*args, **kwargs)
            if args[2]:  # the first batch with cells: inserted, not committed
                sys.stderr.write("killpoint: inside an open write transaction\n")
                _die()

        Store._write = staticmethod(write_then_die)  # type: ignore[method-assign]
    elif point == "checkpoint":
        real_batches = Store.write_batches
        real_finish = Store.finish_run

        def checkpoint_and_die(self):  # type: ignore[no-untyped-def]
            started = threading.Event()

            def killer() -> None:
                started.wait()
                time.sleep(0.001)
                _die()

            threading.Thread(target=killer, daemon=True).start()
            with self.connect() as con:
                sys.stderr.write("killpoint: checkpointing\n")
                started.set()
                con.execute("FORCE CHECKPOINT")
                sys.stderr.write("killpoint: checkpoint finished before the kill\n")
                time.sleep(10)

        def batches_then_checkpoint(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            real_batches(self, *args, **kwargs)  # the first flush is committed, then the checkpoint is killed
            checkpoint_and_die(self)

        def finish_then_checkpoint(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            real_finish(self, *args, **kwargs)  # a run too short for a flush: its final write, then the kill
            checkpoint_and_die(self)

        Store.write_batches = batches_then_checkpoint  # type: ignore[method-assign]
        Store.finish_run = finish_then_checkpoint  # type: ignore[method-assign]
    elif point == "claimed":
        real_claim = Store.claim_run

        def claim_then_die(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            real_claim(self, *args, **kwargs)
            _die()

        Store.claim_run = claim_then_die  # type: ignore[method-assign]
    elif point != "none":
        raise SystemExit(f"unknown kill point {point!r}")


if __name__ == "__main__":
    point, sep, *argv = sys.argv[1:]
    assert sep == "--"
    install(point)
    from workbench.cli import main

    raise SystemExit(main(argv))
