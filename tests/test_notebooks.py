"""The story notebooks run top to bottom in a real kernel, offline, each in a fresh temp copy and workspace.

The four notebooks are independent, so they execute concurrently (one kernel each) to keep the file within a
few minutes; each cell has a time budget (``CELL_TIMEOUT``). A notebook must finish with no error output and
show the content its story is about.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01-quickstart.ipynb", "02-rag-tuning.ipynb", "03-judges-and-statistics.ipynb", "04-deploy-and-monitor.ipynb"]
CELL_TIMEOUT = 240  # seconds per cell, generous for a loaded 2-core machine


def _execute(name: str, tmp: Path) -> tuple[Any, Path]:
    """Run a copy of notebook ``name`` in ``tmp``, with its workspace at ``tmp/ws``."""
    work = tmp / name.removesuffix(".ipynb")
    work.mkdir()
    shutil.copy(NOTEBOOK_DIR / name, work / name)
    nb = nbformat.read(work / name, as_version=4)
    env = {**os.environ, "LLMOPS_WORKSPACE": str(work / "ws"), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("LLMOPS_JUDGE_MODEL", None)  # 03 must skip its judge cells cleanly without one
    # Unix sockets, not TCP ports: four kernels started at once each pick free ports before binding them, and
    # two could pick the same one ("Address already in use", seen once in CI). A socket path cannot clash.
    km = AsyncKernelManager(kernel_name="python3", transport="ipc", ip=str(work / "kernel"))
    client = NotebookClient(
        nb, km=km, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    )
    client.execute(env=env)  # the kernel gets this environment (threads must not touch os.environ)
    return nb, work


def _text(nb: Any) -> str:
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    parts = []
    for o in outputs:
        data = o.get("data", {})
        parts.append(str(data.get("text/plain", "")) + str(data.get("text/html", "")) + str(o.get("text", "")))
    return "\n".join(parts)


def _errors(nb: Any) -> list[str]:
    return [
        f"{o.get('ename')}: {o.get('evalue')}"
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error" or o.get("name") == "stderr" and "Traceback" in o.get("text", "")
    ]


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Path]]:
    tmp = tmp_path_factory.mktemp("notebooks")
    with ThreadPoolExecutor(len(NAMES)) as pool:
        futures = {name: pool.submit(_execute, name, tmp) for name in NAMES}
        return {name: f.result() for name, f in futures.items()}


def test_notebooks_are_stored_without_outputs() -> None:
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == NAMES
    for name in NAMES:
        nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), name
        assert sum(c.cell_type == "markdown" for c in nb.cells) >= 5, f"{name} should tell its story in markdown"
        assert "/work/" not in "".join(c.source for c in nb.cells), name


@pytest.mark.slow
@pytest.mark.timeout(900)  # the first test waits for the module fixture: all four notebooks, concurrently
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_offline(name: str, executed: dict[str, tuple[Any, Path]]) -> None:
    nb, work = executed[name]
    assert not _errors(nb), _errors(nb)
    text = _text(nb)
    assert (work / "ws" / "workspace.duckdb").exists()
    if name.startswith("01"):
        assert "with-context" in text and "question-only" in text
        assert "EvalGrid(" in text and "winner='with-context'" in text
    elif name.startswith("02"):
        # 16 retrieval configs scored, the best three in a generation grid next to the no-retrieval floor
        assert "c128-flat-hybrid-k3" in text and "c32-hnsw-dense-k1" in text and "recall@k" in text
        assert "4 variants" in text and "Decision(metric='rouge_l'" in text
    elif name.startswith("03"):
        assert text.count("Skipped: no judge configured") == 3
        assert "'kappa'" in text and "'spearman'" in text
        assert "Holm-adjusted p=" in text and "PairedResult(" in text
    else:
        assert "'status': 'ok'" in text and "0 errors" in text
        assert "MonitorReport(" in text and "LogDatasetPreview" in text
        assert "server stopped" in text
        assert "pubmedqa" in text and " 2 " in text  # the dataset's second version is listed
