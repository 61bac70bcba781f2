"""The LLMOps sidebar in a real JupyterLab (Debian Chromium via Playwright), over a workspace a kernel writes.

A kernel-like subprocess runs a real grid (HTTP calls to the local OpenAI-compatible test server) while the
sidebar is open: the run must appear, progress, and finish without anyone being locked out. Then the grid
panel of a finished run is paged and filtered, a prompt diff is opened, and a palette command inserts a
``%llmops`` snippet into a notebook. Screenshots go to the artifacts dir (``test-artifacts/``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]

WRITER = Path(__file__).resolve().parents[1] / "labserver_writer.py"
CASES = 40


@pytest.fixture(scope="module")
def llmops_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.JupyterServer]:
    """A JupyterLab whose root holds a seeded workspace (`.llmops`: dataset, two prompt versions, a run)."""
    base = tmp_path_factory.mktemp("llmops-lab")
    root = base / "root"
    subprocess.run(
        [sys.executable, str(WRITER), str(root / ".llmops"), "--seed-only", "--cases", str(CASES)],
        check=True,
        timeout=600,
        capture_output=True,
    )
    with harness.JupyterServer(root, root / ".llmops", app="lab") as server:
        yield server


@pytest.fixture
def page(chromium: Any, llmops_lab: harness.JupyterServer, request: pytest.FixtureRequest) -> Iterator[Any]:
    prefix = "sidebar-"
    harness.clean_artifacts(prefix)
    context = chromium.new_context(viewport={"width": 1500, "height": 950})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    nb = harness.NotebookPage(pg, llmops_lab, harness.artifacts_dir(), prefix=prefix)
    try:
        yield nb
    finally:
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            nb.screenshot("failure")
            print("\n".join(nb.console[-30:]))
        context.close()


def test_sidebar_follows_a_running_kernel_then_grid_and_diff(
    page: Any, llmops_lab: harness.JupyterServer, openai_server: Any
) -> None:
    pg = page.page
    pg.goto(llmops_lab.url("/lab"))
    pg.wait_for_function("() => !!window.jupyterapp")
    # after the layout is restored (restoring re-activates the file browser)
    page.eval(
        "async () => { await window.jupyterapp.restored; window.jupyterapp.shell.activateById('jp-llmops-sidebar'); }"
    )
    sidebar = pg.locator("#jp-llmops-sidebar")
    baseline = sidebar.locator("li.jp-llmops-run", has_text="baseline")
    baseline.wait_for()
    assert baseline.get_attribute("data-status") == "completed"
    assert f"cells {2 * CASES}/{2 * CASES}" in baseline.inner_text()

    # --- a kernel starts writing: the run appears and progresses -------------------------------------
    openai_server.reset()
    openai_server.configure(latency=0.25)  # 80 calls one at a time: ~20 s to watch
    writer = subprocess.Popen(
        [
            sys.executable,
            str(WRITER),
            str(llmops_lab.root_dir / ".llmops"),
            "--no-seed",
            "--cases",
            str(CASES),
            "--api-base",
            openai_server.base_url,
            "--concurrency",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        live = sidebar.locator("li.jp-llmops-run", has_text="live")
        live.wait_for(timeout=300_000)  # the writer imports and plans first; slow on a busy machine
        done: list[int] = []
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and writer.poll() is None:
            text = live.inner_text()
            m = re.search(r"cells (\d+)/(\d+)", text)
            assert m, text
            done.append(int(m.group(1)))
            if len(set(done)) >= 3 or done[-1] == 2 * CASES:
                break
            pg.wait_for_timeout(500)
        assert len(set(done)) >= 2 and done[0] < 2 * CASES and done == sorted(done), done  # it moved, forward only
        assert live.get_attribute("data-status") in ("running", "created", "completed")
        page.screenshot("running", sidebar)
        out, err = writer.communicate(timeout=180)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert writer.returncode == 0, err[-3000:]
    pg.wait_for_function(
        "() => { const li = [...document.querySelectorAll('#jp-llmops-sidebar li.jp-llmops-run')]"
        ".find(n => n.innerText.includes('live')); return li && li.dataset.status === 'completed'; }",
        timeout=180_000,
    )
    assert f"cells {2 * CASES}/{2 * CASES}" in live.inner_text()
    live.locator(".jp-llmops-board-toggle").click()
    board = live.locator("table.jp-llmops-board")
    board.wait_for()
    assert "token f1" in board.inner_text() and "terse" in board.inner_text()
    page.screenshot("finished", sidebar)

    # --- the grid panel: paged and filtered ----------------------------------------------------------
    baseline.locator(".jp-llmops-open-run").click()
    grid = pg.locator(".jp-llmops-grid")
    label = grid.locator(".jp-llmops-page-label")
    label.wait_for()
    pg.wait_for_function(
        "() => document.querySelector('.jp-llmops-grid .jp-llmops-page-label').innerText.includes('cases')"
    )
    assert label.inner_text() == f"Page 1 of 2 · {CASES} cases"
    assert grid.locator("tbody tr").count() == 25
    first_ids = grid.locator(".jp-llmops-case-id").all_inner_texts()
    page.screenshot("grid-page1")
    grid.locator(".jp-llmops-next").click()
    pg.wait_for_function(
        "() => document.querySelector('.jp-llmops-grid .jp-llmops-page-label').innerText.startsWith('Page 2')"
    )
    assert grid.locator("tbody tr").count() == CASES - 25
    assert not set(first_ids) & set(grid.locator(".jp-llmops-case-id").all_inner_texts())
    # the notebook grid's filters: "failures" of token_f1 above 0.3 (any variant), then a regex search

    def answered(action: Any) -> None:
        """Do ``action`` on a grid control and wait until the grid has drawn the server's answer."""
        with pg.expect_response(lambda r: "/llmops/api/runs/" in r.url and "/grid" in r.url):
            action()
        pg.wait_for_timeout(200)

    answered(lambda: grid.locator(".jp-llmops-show").select_option("failures"))
    assert grid.locator(".jp-llmops-failure-metric").input_value() == "token_f1"
    answered(lambda: grid.locator(".jp-llmops-failure-op").select_option(">"))
    thr = grid.locator(".jp-llmops-failure-threshold")
    thr.fill("0.3")
    answered(lambda: thr.press("Enter"))
    n = int(re.search(r"· (\d+) cases", label.inner_text()).group(1))
    assert label.inner_text().startswith("Page 1") and 0 < n < CASES
    assert (
        grid.locator(".jp-llmops-rows-label").inner_text()
        == f"rows 1–{min(n, 25)} of {n} (filtered from {CASES} cases)"
    )
    rows = grid.locator("tbody tr")
    assert rows.count() == min(n, 25)
    for i in range(rows.count()):
        f1 = [
            float(t.split()[1])
            for t in rows.nth(i).locator(".jp-llmops-score[data-metric='token_f1']").all_inner_texts()
        ]
        assert len(f1) == 2 and max(f1) > 0.3, f1
    texts = grid.locator(".jp-llmops-score").all_inner_texts()
    score = re.compile(r"(token_f1|contains) \d\.\d\d( [+−]\d\.\d\d| ±0)?")  # rounded, no reprs
    assert all(score.fullmatch(t) for t in texts), texts[:6]
    answered(lambda: grid.locator(".jp-llmops-baseline-select").select_option("question-only"))
    deltas = grid.locator("td[data-column='with-context'] .jp-llmops-score[data-metric='token_f1'] .jp-llmops-delta")
    assert deltas.count() == min(n, 25) and all(d.strip().startswith("+") for d in deltas.all_inner_texts())
    page.screenshot("grid-filtered")

    answered(lambda: grid.locator(".jp-llmops-show").select_option("all"))
    answered(lambda: grid.locator(".jp-llmops-regex").check())
    search = grid.locator(".jp-llmops-search")
    search.fill("surg(ery|ical)")
    answered(lambda: search.press("Enter"))
    from workbench.demo import data_path

    cases = [json.loads(line) for line in data_path().read_text().splitlines() if line.strip()][:CASES]
    want = [c["pmid"] for c in cases if any(re.search("surg(ery|ical)", str(v)) for v in c.values())]
    assert 0 < len(want) < CASES
    assert grid.locator(".jp-llmops-case-id").all_inner_texts() == want[:25]
    assert label.inner_text() == f"Page 1 of 1 · {len(want)} cases"
    page.screenshot("grid-search")
    context = grid.locator("tbody tr").first.locator(".jp-llmops-input", has_text="context:")
    short = context.inner_text()
    assert short.endswith("more") and "…" in short  # clipped on the page, with a way to read it all
    context.locator(".jp-llmops-more-text").click()
    assert len(context.inner_text()) > len(short) + 100 and context.inner_text().endswith("less")
    answered(lambda: grid.locator(".jp-llmops-diff-select").select_option("expected"))
    marks = grid.locator("td[data-column='with-context'] mark.jp-llmops-diff-mark")
    assert marks.count() > 0  # words of the output not in the expected answer are highlighted
    page.screenshot("grid-diff")

    # --- a prompt diff -------------------------------------------------------------------------------
    sidebar.locator("details[data-section='prompts'] > summary").click()
    sidebar.locator("li[data-prompt='answer'] .jp-llmops-diff-open").click()
    diff = pg.locator(".jp-llmops-diff-body")
    diff.wait_for()
    assert "+[user] Context: {{ context }}" in diff.inner_text()
    assert pg.locator(".jp-llmops-diff-del").count() >= 1 and pg.locator(".jp-llmops-diff-add").count() >= 2
    page.screenshot("prompt-diff")

    # --- palette: insert a %llmops snippet into the active notebook ----------------------------------
    harness.write_notebook(llmops_lab.root_dir / "snip.ipynb", ["1 + 1"])
    page.open("snip.ipynb")
    page.eval("() => window.jupyterapp.commands.execute('llmops:insert-snippet', {key: 'list runs'})")
    pg.wait_for_function(
        "() => { const p = window.jupyterapp.shell.currentWidget; return p && p.content.widgets.length === 2; }"
    )
    src = page.eval("() => window.jupyterapp.shell.currentWidget.content.widgets[1].model.sharedModel.getSource()")
    assert src == "%llmops runs"
