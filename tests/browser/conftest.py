"""Fixtures for browser tests (``@pytest.mark.browser``): a real JupyterLab and Debian's Chromium.

- ``chromium``: one headless browser per session (skips when ``/usr/bin/chromium`` is missing).
- ``lab``: a JupyterLab per test module, root dir and ``LLMOPS_WORKSPACE`` in a temp dir.
- ``notebook_page``: a fresh page (1600x1000) on ``lab``, wrapped in ``harness.NotebookPage``;
  screenshots are prefixed with the test's name.

Write a notebook into ``lab.root_dir`` with ``harness.write_notebook``, then ``notebook_page.open(name)``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    # Module scope: Playwright's sync API keeps an event loop running in the main thread while it is open, so a
    # session-wide instance made every later test's asyncio.run() fail ("cannot be called from a running loop").
    if not harness.chromium_available():
        pytest.skip(f"no Chromium at {harness.CHROMIUM} (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = harness.launch_chromium(pw)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.JupyterServer]:
    base = tmp_path_factory.mktemp("lab")
    with harness.JupyterServer(base / "root", base / "workspace", app="lab") as server:
        yield server


@pytest.fixture
def notebook_page(chromium: Any, lab: harness.JupyterServer, request: pytest.FixtureRequest) -> Iterator[Any]:
    prefix = request.node.name.replace("/", "_") + "-"
    harness.clean_artifacts(prefix)
    context = chromium.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    nb = harness.NotebookPage(page, lab, harness.artifacts_dir(), prefix=prefix)
    try:
        yield nb
    finally:
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            nb.screenshot("failure")
        context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """Remember each phase's report on the item, so fixtures can screenshot failures."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
