"""A real JupyterLab (or Notebook 7) driven by Debian's Chromium through Playwright, for UI tests.

Small on purpose; other tests reuse it. The whole API:

- ``JupyterServer(root_dir, workspace, app="lab")``: context manager that starts
  ``python -m jupyterlab`` (or ``python -m notebook``) on 127.0.0.1 at a free port with a random
  token, private config/settings/runtime dirs (no news, no update check) and ``LLMOPS_WORKSPACE``
  set for its kernels; ``.url(path)`` gives an authenticated URL, ``.api(path)`` calls the REST API.
- ``launch_chromium(playwright)``: the system Chromium, headless (Playwright cannot download browsers here).
- ``write_notebook(path, cells)``: a notebook file from a list of code cell sources.
- ``NotebookPage(page, server, artifacts)``: ``open(name)``, ``run_all()`` (waits until every code
  cell ran and the kernel is idle), ``outputs_text()``, ``errors()``, ``screenshot(name)``,
  ``eval(js)`` (``window.jupyterapp`` is exposed), ``save()``.
- ``artifacts_dir()``: where screenshots go (``$LLMOPS_TEST_ARTIFACTS`` or ``test-artifacts/``).

The pytest fixtures in ``conftest.py`` wire these together (``lab``, ``chromium``, ``notebook_page``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import nbformat

CHROMIUM = os.environ.get("LLMOPS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
REPO = Path(__file__).resolve().parents[2]


def artifacts_dir() -> Path:
    """Screenshots and logs of UI tests: ``$LLMOPS_TEST_ARTIFACTS`` or ``<repo>/test-artifacts``."""
    path = Path(os.environ.get("LLMOPS_TEST_ARTIFACTS") or REPO / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def chromium_available() -> bool:
    return Path(CHROMIUM).exists()


def _tree_extension(private: Path) -> Path:
    """A data dir that makes the lab load this tree's extensions, as ``PYTHONPATH`` makes it import this tree.

    The server extension (``workbench.labserver``) is enabled in the private config; the labextension built
    from ``extension/`` (``workbench/labextension``, made by ``pip install`` or ``jlpm build:prod``) is linked
    in, so browser tests see the TypeScript of this checkout, not whatever the environment installed earlier.
    """
    data = private / "data"
    (private / "config").mkdir(parents=True, exist_ok=True)
    (private / "config" / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"workbench.labserver": True}}})
    )
    built = REPO / "workbench" / "labextension"
    link = data / "labextensions" / "llmops-workbench"
    if (built / "package.json").is_file() and not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(built, target_is_directory=True)
    return data


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class JupyterServer:
    """JupyterLab (``app="lab"``) or Notebook 7 (``app="notebook"``) in a subprocess, for one test module."""

    def __init__(
        self,
        root_dir: Path,
        workspace: Path,
        app: str = "lab",
        env: dict[str, str] | None = None,
        timeout: float = 90.0,
    ) -> None:
        self.root_dir = Path(root_dir)
        self.workspace = Path(workspace)
        self.app = app
        self.token = uuid.uuid4().hex
        self.port = 0
        self.extra_env = env or {}
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.root_dir.parent / f"jupyter-{app}.log"

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> JupyterServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _env(self) -> dict[str, str]:
        private = self.root_dir.parent / "jupyter-private"
        config = private / "config"
        (config / "labconfig").mkdir(parents=True, exist_ok=True)
        # No "get Jupyter news?" toast over the notebook, no network fetch.
        (config / "labconfig" / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
        )
        env = dict(os.environ)
        data = _tree_extension(private)
        env.update(
            {
                "JUPYTER_PATH": os.pathsep.join(p for p in (str(data), env.get("JUPYTER_PATH", "")) if p),
                "JUPYTER_CONFIG_DIR": str(config),
                "JUPYTER_RUNTIME_DIR": str(private / "runtime"),
                "JUPYTERLAB_SETTINGS_DIR": str(private / "settings"),
                "JUPYTERLAB_WORKSPACES_DIR": str(private / "workspaces"),
                "LLMOPS_WORKSPACE": str(self.workspace),
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
            }
        )
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        self.root_dir.mkdir(parents=True, exist_ok=True)
        module = "jupyterlab" if self.app == "lab" else "notebook"
        app_cls = "LabApp" if self.app == "lab" else "JupyterNotebookApp"
        for _attempt in range(3):  # another process may take the free port between asking and binding
            self.port = _free_port()
            cmd = [
                sys.executable,
                "-m",
                module,
                "--no-browser",
                f"--port={self.port}",
                "--ServerApp.port_retries=0",
                "--ServerApp.ip=127.0.0.1",
                f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={self.root_dir}",
                f"--{app_cls}.expose_app_in_browser=True",
            ]
            if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
                cmd.append("--allow-root")
            if self.app == "lab":
                cmd += ["--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
            log = self.log_path.open("ab")
            self.proc = subprocess.Popen(cmd, env=self._env(), stdout=log, stderr=subprocess.STDOUT, cwd=self.root_dir)
            log.close()
            if self._wait_ready():
                return
            self.stop()
        raise RuntimeError(f"Jupyter {self.app} did not start; see {self.log_path}:\n{self.log_tail()}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                self.api("/api/status")
                return True
            except OSError:
                time.sleep(0.25)
        return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:  # a clean shutdown also stops the kernels it started
            req = urllib.request.Request(self.url("/api/shutdown"), method="POST", headers=self._auth())
            urllib.request.urlopen(req, timeout=5).close()
            proc.wait(timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # -- HTTP ------------------------------------------------------------------------------

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def url(self, path: str = "/lab", token: bool = True) -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}{path}" + (f"{sep}token={self.token}" if token else "")

    def api(self, path: str) -> Any:
        req = urllib.request.Request(self.url(path, token=False), headers=self._auth())
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read() or b"null")

    def notebook_url(self, name: str) -> str:
        return self.url(f"/lab/tree/{name}" if self.app == "lab" else f"/notebooks/{name}")


def pubmed_grid_setup(base_url: str, n_cases: int, progress: bool = False) -> str:
    """Notebook code for the browser tests' run: 12 PubMedQA cases, two offline variants and one on the test
    server (whose scripted failures give the grid errors to filter)."""
    return f"""
import json
import workbench as wb
from workbench.demo import data_path

ws = wb.open()
rows = [json.loads(line) for line in open(data_path(), encoding="utf-8")][:{n_cases}]
ds = ws.add_dataset("pubmed12", rows, id="pmid")
prompts = [wb.Prompt("gold-context", "Context: {{{{ context }}}}\\nQuestion: {{{{ question }}}}"),
           wb.Prompt("question-only", "Question: {{{{ question }}}}")]
server = {{"name": "server", "model": "openai/test-model", "api_base": {base_url!r}, "max_retries": 0}}
variants = [{{"name": "gold-context", "prompt": "gold-context", "model": "extractive"}},
            {{"name": "question-only", "prompt": "question-only", "model": "extractive"}},
            {{"name": "server", "prompt": "question-only", "model": "server"}}]
metrics = [{{"name": "token_f1", "expected": "long_answer"}}, {{"name": "contains", "expected": "final_decision"}}]
exp = ws.experiment(ds, prompts, [{{"name": "extractive", "model": "local/extractive"}}, server], metrics,
                    variants=variants, concurrency=1)
run = exp.run({"" if progress else "progress=False"})
print("RUN", run.run_id, run.status)
"""


def launch_chromium(playwright: Any) -> Any:
    """Debian's Chromium, headless; Playwright's own browser download does not work offline."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def write_notebook(path: Path, cells: list[str]) -> Path:
    """Write a notebook of code cells (sources as strings) with the python3 kernel."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return Path(path)


# JS run in the page: the current notebook panel (JupyterLab and Notebook 7 expose window.jupyterapp).
_PANEL = (
    "(() => { const w = window.jupyterapp.shell.currentWidget; "
    "return w && w.content && w.sessionContext ? w : null; })()"
)


class NotebookPage:
    """A Playwright page showing one notebook in a JupyterServer."""

    def __init__(self, page: Any, server: JupyterServer, artifacts: Path, prefix: str = "") -> None:
        self.page = page
        self.server = server
        self.artifacts = artifacts
        self.prefix = prefix
        self.console: list[str] = []
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: self.console.append(f"pageerror: {exc}"))

    def eval(self, js: str, arg: Any = None) -> Any:
        return self.page.evaluate(js, arg)

    def open(self, name: str, timeout: float = 60.0) -> None:
        """Open ``name`` (relative to the server's root) and wait for its kernel to be idle.

        JupyterLab's left sidebar is collapsed so outputs get the width of the window.
        """
        self.page.goto(self.server.notebook_url(name))
        self.page.wait_for_function("() => !!window.jupyterapp", timeout=timeout * 1000)
        self.page.wait_for_function(
            f"""() => {{ const p = {_PANEL};
                return !!p && p.context.path.endsWith({json.dumps(name)}) && p.sessionContext.isReady
                       && p.sessionContext.session && p.sessionContext.session.kernel
                       && p.sessionContext.session.kernel.status === 'idle'; }}""",
            timeout=timeout * 1000,
        )
        self.eval("() => { const s = window.jupyterapp.shell; if (s.collapseLeft) s.collapseLeft(); }")

    def run_all(self, timeout: float = 120.0) -> None:
        """Run every cell and wait until each code cell has an execution count and the kernel is idle."""
        self.eval(f"() => {{ const p = {_PANEL}; window.jupyterapp.commands.execute('notebook:run-all-cells'); }}")
        self.wait_idle(timeout)

    def wait_idle(self, timeout: float = 120.0) -> None:
        self.page.wait_for_function(
            f"""() => {{ const p = {_PANEL}; if (!p) return false;
                const k = p.sessionContext.session && p.sessionContext.session.kernel;
                const cells = p.content.widgets.filter(c => c.model.type === 'code');
                const busy = Array.from(p.node.querySelectorAll('.jp-InputPrompt'))
                    .some(n => n.textContent.includes('*'));
                return !!k && k.status === 'idle' && !busy && cells.every(c => c.model.executionCount !== null); }}""",
            timeout=timeout * 1000,
            polling=250,
        )

    def execute(self, code: str, timeout: float = 60.0) -> None:
        """Append a code cell with ``code`` at the end of the notebook, run it and wait for idle."""
        self.eval(
            f"""(code) => {{ const p = {_PANEL}; const nb = p.content;
                nb.activeCellIndex = nb.widgets.length - 1;
                window.jupyterapp.commands.execute('notebook:insert-cell-below');
                nb.activeCell.model.sharedModel.setSource(code);
                window.jupyterapp.commands.execute('notebook:run-cell'); }}""",
            code,
        )
        self.wait_idle(timeout)

    def outputs_text(self) -> str:
        """All text shown in output areas (streams, results, errors)."""
        return str(self.eval(f"() => {{ const p = {_PANEL}; return p.node.querySelector('.jp-Notebook').innerText; }}"))

    def errors(self) -> list[str]:
        """Tracebacks and stderr blocks (red output) shown in the notebook."""
        return list(
            self.eval(
                f"""() => {{ const p = {_PANEL};
                    return Array.from(p.node.querySelectorAll(
                        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))
                        .map(n => n.innerText); }}"""
            )
        )

    def save(self) -> None:
        self.eval("() => window.jupyterapp.commands.execute('docmanager:save')")
        self.page.wait_for_function(f"() => {{ const p = {_PANEL}; return p && !p.context.model.dirty; }}")

    def screenshot(self, name: str, locator: Any = None) -> Path:
        """Save a PNG under the artifacts dir; ``locator`` narrows it to one element."""
        path = self.artifacts / f"{self.prefix}{name}.png"
        (locator or self.page).screenshot(path=str(path))
        return path


def clean_artifacts(prefix: str) -> None:
    """Remove this test's old screenshots so a stale PNG never passes for a new one."""
    for old in artifacts_dir().glob(f"{prefix}*.png"):
        old.unlink()


__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "JupyterServer",
    "NotebookPage",
    "artifacts_dir",
    "chromium_available",
    "clean_artifacts",
    "launch_chromium",
    "write_notebook",
]
