"""Hostile datasets, templates, SQL, specs and CLI input: a clear typed error each, stored data untouched,
all under a memory limit (a regression fails the test, not the machine). Cases: hostile_cases.py."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from .hostile_cases import CASES

HERE = Path(__file__).resolve().parent
MEMORY_LIMIT = 6 * 2**30  # address space: Python + DuckDB + numpy/faiss threads need ~2-3 GiB of it


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


@pytest.fixture(scope="module")
def outcomes() -> dict[str, dict]:
    proc = subprocess.run([sys.executable, str(HERE / "hostile_runner.py")], capture_output=True, text=True,
                          timeout=600, preexec_fn=_limit_memory, env={**os.environ, "LLMOPS_LOCK_TIMEOUT": "10"})
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            results[rec["id"]] = rec
    results["_stderr"] = {"text": proc.stderr[-4000:], "code": proc.returncode}
    print(f"\nhostile inputs tried: {len(results) - 1}")
    return results


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_hostile_input_gets_a_clear_typed_error_and_changes_nothing(case, outcomes):
    got = outcomes.get(case["id"])
    assert got is not None, f"the runner died before this case (memory limit?): {outcomes['_stderr']}"
    assert got.get("typed"), f"expected {case.get('error') or case.get('code')}, got {got}"
    assert got["matched"], f"message does not match {case.get('match')!r}: {got['message']}"
    assert got["untouched"], "stored data changed"
