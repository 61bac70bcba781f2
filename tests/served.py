"""Helpers shared by the bundle/serving tests and benchmarks/bench_serving.py.

``demo_run`` runs the offline demo on the first N PubMedQA cases (embedded defaults: local/extractive,
wordllama, FAISS; no network). ``BundleServer`` starts a real ``llmops serve`` subprocess on 127.0.0.1 with
port 0 and reads the port it printed, so parallel test runs never collide.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def demo_run(folder: Path, n_cases: int = 30) -> Any:
    """A completed demo run over the first ``n_cases`` cases, in a workspace under ``folder``."""
    import pandas as pd

    import workbench as wb
    from workbench.demo import demo_spec

    spec = demo_spec()
    rows = [json.loads(line) for line in Path(spec["dataset"]["path"]).read_text().splitlines()[:n_cases]]
    data = folder / "cases.jsonl"
    pd.DataFrame(rows).to_json(data, orient="records", lines=True)
    spec["dataset"]["path"] = str(data)
    ws = wb.open(folder / "ws")
    return ws.run(spec, progress=False)


class BundleServer:
    """``llmops serve BUNDLE... --port 0`` as a subprocess; ``url`` is set once /health answers."""

    def __init__(
        self,
        *args: Any,
        env: dict[str, str] | None = None,
        startup_timeout: float = 120.0,
        python: str = sys.executable,
        cwd: str | None = None,
        drop_env: tuple[str, ...] = (),
    ) -> None:
        self.args = [str(a) for a in args]
        self.env = env
        self.python = python
        self.cwd = cwd
        self.drop_env = drop_env
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.output: list[str] = []
        self._stderr: Any = None

    def start(self) -> BundleServer:
        self._stderr = tempfile.TemporaryFile()
        cmd = [self.python, "-m", "workbench.cli", "serve", *self.args, "--port", "0"]
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(self.env or {}))
        for name in self.drop_env:
            env.pop(name, None)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr, env=env, cwd=self.cwd)
        lines: queue.Queue[str] = queue.Queue()

        def reader() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for raw in iter(self.proc.stdout.readline, b""):
                text = raw.decode("utf-8", "replace").rstrip()
                self.output.append(text)
                lines.put(text)
            lines.put("")

        threading.Thread(target=reader, daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.url:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                self._fail("no 'listening on' line")
            if line == "":
                self._fail(f"exited with code {self.proc.wait(5)}")
            if "listening on " in line:
                self.url = line.split("listening on ", 1)[1].strip()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._fail(f"exited with code {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                    if json.loads(resp.read()).get("status") == "ok":
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self._fail("/health never answered ok")
        return self

    def stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")[-4000:]

    def _fail(self, why: str) -> None:
        err = self.stderr()
        self.stop(kill=True)
        raise RuntimeError(f"llmops serve failed to start: {why}\nstdout: {self.output}\nstderr:\n{err}")

    def stop(self, kill: bool = False, timeout: float = 30) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return proc.returncode

    def __enter__(self) -> BundleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def post(url: str, payload: Any, token: str | None = None, raw: bytes | None = None) -> tuple[int, Any]:
    """POST JSON (or raw bytes); returns (status, parsed JSON body or text)."""
    data = raw if raw is not None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"}, method="POST")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode("utf-8", "replace")


def get(url: str, token: str | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url)
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode("utf-8", "replace")
