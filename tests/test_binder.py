"""Binder's build steps, reproduced: a fresh venv, binder/requirements.txt, binder/postBuild, then the quickstart.

Slow (minutes: it installs the workbench and its dependencies from the package index into a new virtualenv,
then postBuild prebuilds the notebooks' workspace), so it is marked ``slow``; it skips without the package index.
It checks what a Binder user relies on: the build succeeds under ``set -euo pipefail``, the warm-up really
leaves the retrieval caches where the notebooks look (a second retrieval eval builds and embeds nothing), and
01-quickstart executes in that environment with no error output.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(
    ".git", ".venv", "venv", ".llmops", "__pycache__", "test-artifacts", "*.egg-info", "build"
)


def _index_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


def test_binder_files_pin_python_and_fail_fast() -> None:
    assert (ROOT / "binder" / "runtime.txt").read_text().strip().startswith("python-3.")
    post = (ROOT / "binder" / "postBuild").read_text()
    assert "set -euo pipefail" in post and "pip install" in post
    assert os.access(ROOT / "binder" / "postBuild", os.X_OK)
    assert "urlpath=lab/tree/notebooks/01-quickstart.ipynb" in (ROOT / "README.md").read_text()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_binder_build_steps_in_a_fresh_venv(tmp_path: Path) -> None:
    if not _index_reachable():
        pytest.skip("the package index is not reachable: cannot build a fresh venv")
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=SKIP)
    runtime = (repo / "binder" / "runtime.txt").read_text().strip().removeprefix("python-")
    python = shutil.which(f"python{runtime}") or sys.executable
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env.pop("LLMOPS_WORKSPACE", None)
    py = str(venv / "bin" / "python")
    pip = [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", "binder/requirements.txt"], check=True, env=env, cwd=repo, timeout=600)
    build = subprocess.run(
        ["bash", "binder/postBuild"], env=env, cwd=repo, capture_output=True, text=True, timeout=1500
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "wordllama embedder loaded" in build.stdout
    assert (repo / "notebooks" / ".llmops" / "workspace.duckdb").exists()

    # the warm-up is real: the notebooks' retrievers are all cached in the notebooks' workspace
    check = """
import json, workbench as wb
from workbench.demo import data_path
ws = wb.open()
ds = ws.add_dataset("pubmedqa", data_path(), id="pmid")
corpus = {"path": str(data_path()), "id": "pmid", "text": "context"}
cfg = {"name": "c128-flat-hybrid-k3", "corpus": corpus, "chunker": {"size": 128, "overlap": 16},
       "index": "flat", "hybrid": True, "top_k": 3}
s = ws.retrieval_eval(ds, [cfg], gold="pmid")
print(json.dumps({"file": wb.__file__, "builds": int(s["index_builds"].sum()),
                  "embedded": int(s["embedded_texts"].sum())}))
"""
    out = subprocess.run([py, "-c", check], env=env, cwd=repo / "notebooks", capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert str(venv) in info["file"]  # the installed package, not this checkout
    assert info["builds"] == 0 and info["embedded"] == 0, info

    executed = tmp_path / "01-executed.ipynb"
    run = subprocess.run(
        [str(venv / "bin" / "jupyter"), "nbconvert", "--to", "notebook", "--execute",
         "--ExecutePreprocessor.timeout=300", "--output", str(executed), "notebooks/01-quickstart.ipynb"],
        env=env, cwd=repo, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    nb = json.loads(executed.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert outputs and not [o for o in outputs if o.get("output_type") == "error"]
    assert "winner='with-context'" in json.dumps(outputs)
