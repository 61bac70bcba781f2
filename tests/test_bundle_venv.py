"""A bundle exported here loads and serves in a fresh venv holding only the workbench and the bundle's pins.

It installs the ~145 pinned requirements from the package index into a new virtualenv: measured here at
25 minutes on the shared 2-core machine (load ~15), so besides ``slow`` it runs only when asked:
``LLMOPS_TEST_FRESH_VENV=1 pytest tests/test_bundle_venv.py``. It needs the package index and skips without it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from served import BundleServer, demo_run, post

ROOT = Path(__file__).resolve().parents[1]


def _index_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_bundle_serves_in_a_fresh_venv(tmp_path):
    if os.environ.get("LLMOPS_TEST_FRESH_VENV") != "1":
        pytest.skip("set LLMOPS_TEST_FRESH_VENV=1 to build a fresh venv from the package index (tens of minutes here)")
    if not _index_reachable():
        pytest.skip("the package index is not reachable: cannot build a fresh venv")
    run = demo_run(tmp_path, n_cases=10)
    bundle = run.export(tmp_path / "bundle", "rag-hybrid128", zip=True)
    with zipfile.ZipFile(bundle) as zf:
        (tmp_path / "requirements.txt").write_bytes(zf.read("requirements.txt"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    pip = [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(tmp_path / "requirements.txt")], check=True, env=env, cwd=tmp_path, timeout=1200)
    subprocess.run([*pip, "--no-deps", str(ROOT)], check=True, env=env, cwd=tmp_path, timeout=600)
    check = subprocess.run([py, "-m", "pip", "check"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    where = subprocess.run(
        [py, "-c", "import workbench, json; print(json.dumps(workbench.__file__))"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(venv) in json.loads(where.stdout)  # the venv's own copy, not this checkout
    replay = subprocess.run(
        [py, "-m", "workbench.cli", "bundle", "verify", str(bundle), "--replay", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert json.loads(replay.stdout)["replay"]["identical"] is True
    with BundleServer(bundle, "--no-log", python=py, cwd=str(tmp_path), drop_env=("PYTHONPATH",)) as srv:
        status, body = post(srv.url + "/v1/answer", {"question": "Does aspirin prevent stroke?"})
        assert status == 200 and body["answer"] and len(body["retrieved"]) == 3
