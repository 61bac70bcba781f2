"""A saved notebook reopens where it was: JupyterLab + Chromium, the grid's view, kernel gone.

The workbench's JupyterLab extension turns on the widget manager's ``saveState`` (the user had not set it),
so saving the notebook writes the widget state. The test runs a small grid (offline baseline plus a variant
served by the local OpenAI-compatible test server, whose first requests fail), changes the view (a filter,
a sort, a baseline, page 2), saves, shuts the kernel down, closes the page, and opens the file in a fresh
page: the grid must show the rows of the chosen view from its saved snapshot and say it is static; the
charts and the prompt editor must read as they did. Then nbconvert's HTML of the same file must carry the
grid's table. Screenshots land in the test-artifacts dir (prefix ``reopen-``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import nbformat
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]

N_CASES = 12
PAGE = 2
GRID = ".lw-grid"
PREFIX = "reopen-"
STATE_MIME = "application/vnd.jupyter.widget-state+json"


def _cells(base_url: str) -> list[str]:
    setup = harness.pubmed_grid_setup(base_url, N_CASES, progress=True)
    return [
        "%load_ext workbench",
        setup,
        f"grid = run.grid(page_size={PAGE})\ngrid",
        "run.charts()",
        'editor = wb.PromptEditor(ws, ds, name="reopened")\neditor.user = "Question: {{ question }}"\neditor',
    ]


@pytest.fixture(scope="module")
def lab_with_extension(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.JupyterServer]:
    """JupyterLab whose user settings start empty, with this checkout's built labextension on its path.

    An editable install builds the extension into ``workbench/labextension``; a JupyterLab started from a
    checkout finds it there through ``JUPYTER_PATH`` (an installed wheel finds its own copy anyway).
    """
    base = tmp_path_factory.mktemp("reopen-lab")
    env = {}
    built = harness.REPO / "workbench" / "labextension"
    if (built / "package.json").exists():
        data = base / "jupyter-data"
        (data / "labextensions").mkdir(parents=True)
        (data / "labextensions" / "llmops-workbench").symlink_to(built, target_is_directory=True)
        env["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(data), os.environ.get("JUPYTER_PATH", "")) if p)
    with harness.JupyterServer(base / "root", base / "workspace", app="lab", env=env) as server:
        yield server


@pytest.fixture(scope="module")
def failing_first(openai_server: Any) -> Iterator[Any]:
    openai_server.reset()
    openai_server.configure(script=[{"status": 400}, {"status": 400}, {"status": 400}])
    yield openai_server
    openai_server.reset()


def _new_page(chromium: Any, lab: harness.JupyterServer) -> tuple[Any, harness.NotebookPage]:
    context = chromium.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    return context, harness.NotebookPage(page, lab, harness.artifacts_dir(), prefix=PREFIX)


def _seq(nb: harness.NotebookPage) -> int:
    return int(nb.page.eval_on_selector(GRID, "g => Number(g.dataset.renderedSeq || 0)"))


def _wait_render(nb: harness.NotebookPage, after: int) -> None:
    nb.page.wait_for_function(
        "([sel, n]) => { const g = document.querySelector(sel);"
        " return g && Number(g.dataset.renderedSeq || -1) > n && !g.classList.contains('lw-loading'); }",
        arg=[GRID, after],
        timeout=30_000,
    )


def _choose(nb: harness.NotebookPage, label: str, value: str) -> None:
    before = _seq(nb)
    field = nb.page.locator(f'{GRID} label.lw-field:has(> span.lw-field-label:text-is("{label}"))')
    field.locator("select").first.select_option(value)
    _wait_render(nb, before)


def _rows(nb: harness.NotebookPage) -> list[str]:
    return nb.page.eval_on_selector_all(f"{GRID} tbody tr[data-case]", "rs => rs.map(r => r.dataset.case)")


def _grid_text(nb: harness.NotebookPage) -> str:
    return str(nb.page.eval_on_selector(GRID, "g => g.innerText"))


def _check_readable(text: str) -> None:
    for bad in ("NaN", "None", "null", "undefined", "{'", "[object", "Error displaying widget", "model not found"):
        assert bad not in text, f"{bad!r} shown"
    assert not re.search(r"\d\.\d{5,}", text), "unrounded number shown"


def test_saved_notebook_reopens_at_its_view_without_a_kernel(chromium, lab_with_extension, failing_first):
    lab = lab_with_extension
    harness.clean_artifacts(PREFIX)
    path = harness.write_notebook(lab.root_dir / "reopen.ipynb", _cells(failing_first.base_url))

    context, nb = _new_page(chromium, lab)
    try:
        nb.open("reopen.ipynb")
        assert nb.eval("() => window.jupyterapp.isPluginActivated('llmops-workbench:plugin')"), (
            "the llmops-workbench labextension is not loaded (build it: cd extension && jlpm build)"
        )
        # our extension turned saving on, in the user's settings (they had none)
        nb.page.wait_for_function(
            """async () => { const r = await window.jupyterapp.serviceManager.settings.fetch(
                   '@jupyter-widgets/jupyterlab-manager:plugin');
                 return r.settings && r.settings.saveState === true; }""",
            timeout=30_000,
        )
        nb.run_all(timeout=300)
        assert nb.errors() == []
        nb.page.wait_for_selector(f"{GRID} tbody tr[data-case]", timeout=30_000)

        # the view: only the 3 cases with an error, sorted by token_f1, baseline question-only, page 2
        _choose(nb, "Show", "errors")
        _choose(nb, "Sort", "metric")
        _choose(nb, "Baseline", "question-only")
        total = int(nb.page.locator(GRID).get_attribute("data-total"))
        assert total == 3, f"the errors filter left {total} rows, not the 3 the test server failed"
        before = _seq(nb)
        nb.page.locator(f"{GRID} button[data-action=next]").click()
        _wait_render(nb, before)
        live_rows = _rows(nb)
        assert "page 2 of" in _grid_text(nb)
        nb.screenshot("live-view", nb.page.locator(GRID))

        # the kernel agrees on what the view is (the oracle: SQL over the workspace, not the browser's page)
        nb.execute(
            "print('VIEW', json.dumps({'page': grid.page, 'show': grid.show, 'sort': grid.sort_by,"
            " 'baseline': grid.baseline, 'rows': [r['case_id'] for r in grid.current_page()['rows']]}))"
        )
        view = json.loads(re.search(r"VIEW (\{.*\})", nb.outputs_text()).group(1))
        assert view["page"] == 1 and view["show"] == "errors" and view["sort"] == "metric"
        assert view["baseline"] == "question-only"
        assert view["rows"] == live_rows

        nb.save()
        nb.eval(f"async () => {{ const p = {harness._PANEL}; await p.sessionContext.shutdown(); }}")
        nb.page.wait_for_function("async () => (await fetch('/api/kernels').then(r => r.json())).length === 0")
    finally:
        context.close()
    assert lab.api("/api/kernels") == []

    _check_saved_snapshot(path, live_rows)

    # reopen in a fresh page: a new kernel that never ran the notebook
    context, nb = _new_page(chromium, lab)
    try:
        nb.open("reopen.ipynb")
        nb.page.wait_for_selector(f"{GRID} tbody tr[data-case]", timeout=30_000)
        assert _rows(nb) == live_rows
        nb.page.wait_for_function(
            f"() => document.querySelector('{GRID}').innerText.includes('static snapshot: no live kernel')",
            timeout=15_000,
        )
        text = _grid_text(nb)
        assert "page 2 of" in text
        baseline = nb.page.locator(f'{GRID} label.lw-field:has(> span.lw-field-label:text-is("Baseline")) select')
        assert baseline.first.input_value() == "question-only"
        _check_readable(text)
        nb.screenshot("reopened-grid", nb.page.locator(GRID))
        # changing the view needs a kernel: the grid says so and keeps the saved view and its toolbar
        show = nb.page.locator(f'{GRID} label.lw-field:has(> span.lw-field-label:text-is("Show")) select').first
        show.select_option("all")
        nb.page.wait_for_selector(f"{GRID} .lw-banner.lw-show")
        assert "no live kernel" in nb.page.locator(f"{GRID} .lw-banner").inner_text()
        assert _rows(nb) == live_rows and "page 2 of" in _grid_text(nb)
        assert show.input_value() == "errors"

        # the charts: JupyterLab draws the saved Vega-Lite spec (no kernel involved)
        chart = nb.page.locator(".jp-RenderedVegaLite").first
        chart.wait_for(state="visible", timeout=60_000)
        nb.page.wait_for_function(
            "() => { const c = document.querySelector('.jp-RenderedVegaLite canvas, .jp-RenderedVegaLite svg');"
            " return c && c.getBoundingClientRect().width > 300; }",
            timeout=60_000,
        )
        chart.scroll_into_view_if_needed()
        nb.screenshot("reopened-charts", chart)

        # the prompt editor: its saved text and preview
        editor = nb.page.locator(".llmops-pe").first
        editor.wait_for(state="visible", timeout=30_000)
        assert editor.locator("textarea.pe-user").input_value() == "Question: {{ question }}"
        assert "Question:" in editor.locator(".pe-preview").inner_text()
        editor.locator("button.pe-save").click()  # nothing can answer: the editor says so
        nb.page.wait_for_function(
            "() => document.querySelector('.llmops-pe .saved').innerText.includes('no live kernel')", timeout=15_000
        )
        editor.scroll_into_view_if_needed()
        nb.screenshot("reopened-editor", editor)

        all_text = nb.outputs_text()
        assert "Error displaying widget" not in all_text and "model not found" not in all_text
        assert nb.errors() == []
        nb.page.locator(GRID).scroll_into_view_if_needed()
        nb.page.wait_for_timeout(500)  # cells scrolled back into view paint again (content-visibility)
        nb.screenshot("reopened-notebook")
        # saving the reopened notebook (JupyterLab autosaves it: reopening marks it changed) keeps the saved
        # views, though the widget manager writes only widgets a kernel owns
        nb.save()
    finally:
        context.close()

    _check_saved_snapshot(path, live_rows)
    _check_nbconvert(chromium, path, live_rows)


def _check_saved_snapshot(path: Path, rows: list[str]) -> None:
    """The file holds the widget state, and the grid's snapshot is the page of the chosen view."""
    saved = nbformat.read(str(path), as_version=4)
    state = saved.metadata["widgets"][STATE_MIME]["state"]
    grids = [m["state"] for m in state.values() if m["state"].get("snapshot", {}).get("rows")]
    assert len(grids) == 1
    snap = grids[0]["snapshot"]
    assert [r["case_id"] for r in snap["rows"]] == rows and snap["page"] == 1 and snap["snapshot"] is True
    assert grids[0]["show"] == "errors" and grids[0]["page"] == 1 and grids[0]["baseline"] == "question-only"
    assert any(m["state"].get("_anywidget_id", "").endswith("PromptEditor") for m in state.values())


def _check_nbconvert(chromium: Any, path: Path, rows: list[str]) -> None:
    """The README's nbconvert command on the saved notebook: the grid's table at the saved view, the editor's
    text and the charts' picture, readable in Chromium with no network."""
    out_dir = path.parent / "html"
    pythonpath = os.pathsep.join(filter(None, [str(harness.REPO), os.environ.get("PYTHONPATH")]))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter",
            "nbconvert",
            "--to",
            "html",
            "--HTMLExporter.preprocessors=workbench.widgets.nbstatic.StaticWidgets",
            str(path),
            "--output-dir",
            str(out_dir),
        ],
        check=True,
        timeout=300,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": pythonpath},
    )
    html_path = out_dir / "reopen.html"
    body = html_path.read_text(encoding="utf-8")
    tables = re.findall(r'<table class="lw-static">.*?</table>', body, flags=re.S)
    assert len(tables) == 1, "the grid's static table is missing from nbconvert's HTML"
    assert re.findall(r"<tr><td>([^<]+)</td>", tables[0]) == rows  # the saved view's page, not the first one
    assert "rows 3-3 of 3" in tables[0] and "HTTP 400" in tables[0]
    assert "Prompt editor: reopened" in body and "[user] Question: {{ question }}" in body
    assert "data:image/png;base64," in body  # the charts' static picture
    _check_readable(re.sub(r"<[^>]+>", " ", tables[0]))

    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.route("http*://**", lambda route: route.abort())  # offline, as a reader without network would be
        page.goto(html_path.as_uri())
        table = page.locator("table.lw-static")
        table.wait_for(state="visible")
        assert page.locator("table.lw-static tbody tr").count() == len(rows)
        table.screenshot(path=str(harness.artifacts_dir() / f"{PREFIX}nbconvert-grid.png"))
    finally:
        context.close()


_SAVE_STATE_JS = """async () => { const r = await window.jupyterapp.serviceManager.settings.fetch(
    '@jupyter-widgets/jupyterlab-manager:plugin'); return r.settings ? r.settings.saveState : undefined; }"""


def test_notebook7_turns_saving_on_once_and_keeps_the_users_choice(chromium, tmp_path):
    """Notebook 7 loads the same extension: saving is turned on when unset, and a user's "off" stays off."""
    data = tmp_path / "jupyter-data"
    (data / "labextensions").mkdir(parents=True)
    built = harness.REPO / "workbench" / "labextension"
    assert (built / "package.json").exists(), "build the labextension first: cd extension && jlpm build"
    (data / "labextensions" / "llmops-workbench").symlink_to(built, target_is_directory=True)
    env = {"JUPYTER_PATH": os.pathsep.join(p for p in (str(data), os.environ.get("JUPYTER_PATH", "")) if p)}
    with harness.JupyterServer(tmp_path / "root", tmp_path / "workspace", app="notebook", env=env) as server:
        harness.write_notebook(server.root_dir / "empty.ipynb", ["1 + 1"])
        context = chromium.new_context(viewport={"width": 1200, "height": 800})
        try:
            nb = harness.NotebookPage(context.new_page(), server, harness.artifacts_dir(), prefix=PREFIX)
            nb.page.set_default_timeout(60_000)
            nb.open("empty.ipynb")
            assert nb.eval("() => window.jupyterapp.isPluginActivated('llmops-workbench:plugin')")
            nb.page.wait_for_function(f"async () => (await ({_SAVE_STATE_JS})()) === true", timeout=30_000)
            # the user turns it off; the extension, activated again on the next page load, leaves it off
            nb.eval(
                """() => window.jupyterapp.serviceManager.settings.save(
                    '@jupyter-widgets/jupyterlab-manager:plugin', '{"saveState": false}')"""
            )
            nb.open("empty.ipynb")
            assert nb.eval("() => window.jupyterapp.isPluginActivated('llmops-workbench:plugin')")
            nb.page.wait_for_timeout(2000)  # activation's settings write, were there one, is long done
            assert nb.eval(_SAVE_STATE_JS) is False
        finally:
            context.close()
