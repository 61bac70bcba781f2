"""EvalGrid in a real JupyterLab and Notebook 7 with Chromium: render, filter, baseline, diff, page, rate.

The notebook runs the offline baseline (local/extractive) on 12 PubMedQA cases, plus one variant served
by the local OpenAI-compatible test server whose first requests fail, so the grid has errors to filter.
Screenshots land in the test-artifacts dir.
"""

from __future__ import annotations

import re

import pytest
from harness import (
    JupyterServer,
    NotebookPage,
    artifacts_dir,
    clean_artifacts,
    pubmed_grid_setup,
    write_notebook,
)

import workbench as wb

pytestmark = [pytest.mark.browser, pytest.mark.slow]

N_CASES = 12
PAGE = 5
GRID = ".lw-grid"


def _cells(base_url: str) -> list[str]:
    setup = pubmed_grid_setup(base_url, N_CASES)
    return ["%load_ext workbench", setup, f"grid = run.grid(page_size={PAGE})\ngrid"]


def _wait_render(nb: NotebookPage, after: int) -> None:
    nb.page.wait_for_function(
        "([sel, n]) => { const g = document.querySelector(sel);"
        " return g && Number(g.dataset.renderedSeq || -1) > n && !g.classList.contains('lw-loading'); }",
        arg=[GRID, after],
        timeout=30_000,
    )


def _seq(nb: NotebookPage) -> int:
    return int(nb.page.eval_on_selector(GRID, "g => Number(g.dataset.renderedSeq || 0)"))


def _choose(nb: NotebookPage, label: str, value: str) -> None:
    """Pick ``value`` in the toolbar select labelled ``label`` and wait for the new page."""
    before = _seq(nb)
    field = nb.page.locator(f'{GRID} label.lw-field:has(> span.lw-field-label:text-is("{label}"))')
    field.locator("select").first.select_option(value)
    _wait_render(nb, before)


def _rows(nb: NotebookPage) -> list[str]:
    return nb.page.eval_on_selector_all(f"{GRID} tbody tr[data-case]", "rs => rs.map(r => r.dataset.case)")


def _grid_text(nb: NotebookPage) -> str:
    return str(nb.page.eval_on_selector(GRID, "g => g.innerText"))


def _check_clean(nb: NotebookPage) -> None:
    """No raw reprs, NaN/None or long decimals in the grid; no red blocks in the notebook."""
    text = _grid_text(nb)
    for bad in ("NaN", "None", "null", "undefined", "{'", "[object"):
        assert bad not in text, f"{bad!r} shown in the grid"
    assert not re.search(r"\d\.\d{4,}", text), "unrounded number shown in the grid"
    assert nb.errors() == []


@pytest.fixture(scope="module")
def server_script(openai_server):
    openai_server.reset()
    # the first three requests to the test server fail (HTTP 400): three error cells in the first rows
    openai_server.configure(script=[{"status": 400}, {"status": 400}, {"status": 400}])
    yield openai_server
    openai_server.reset()


def test_grid_in_jupyterlab(lab, notebook_page, server_script):
    nb = notebook_page
    write_notebook(lab.root_dir / "grid.ipynb", _cells(server_script.base_url))
    nb.open("grid.ipynb")
    nb.run_all(timeout=240)
    assert "RUN" in nb.outputs_text() and "completed" in nb.outputs_text()
    nb.page.wait_for_selector(f"{GRID} tbody tr[data-case]", timeout=30_000)
    grid = nb.page.locator(GRID)
    assert len(_rows(nb)) == PAGE
    heads = nb.page.eval_on_selector_all(f"{GRID} th.lw-variant", "hs => hs.map(h => h.firstChild.textContent)")
    assert heads == ["gold-context", "question-only", "server"]
    assert "rows 1–5 of 12" in _grid_text(nb)
    _check_clean(nb)
    nb.screenshot("grid", grid)

    ws = wb.open(lab.workspace)
    run = ws.get_run(ws.runs()["run_id"][0])
    res = run.results()
    error_cases = sorted(res[res.error.notna()].case_id.unique())
    assert len(error_cases) == 3

    _choose(nb, "Show", "errors")
    assert sorted(_rows(nb)) == error_cases
    assert nb.page.locator(f"{GRID} td.lw-has-error").count() == 3
    assert "HTTP 400" in _grid_text(nb)
    _check_clean(nb)
    nb.screenshot("errors", grid)

    _choose(nb, "Show", "disagree")
    first = res[res.repeat == 0]
    differ = first.groupby("case_id")["output"].nunique() > 1
    assert int(grid.get_attribute("data-total")) == int(differ.sum())

    _choose(nb, "Show", "all")
    _choose(nb, "Baseline", "question-only")
    assert nb.page.locator(f"{GRID} th.lw-baseline").inner_text().startswith("question-only")
    assert nb.page.locator(f"{GRID} .lw-delta").count() > 0  # deltas to the baseline on the other variants
    _choose(nb, "Diff", "baseline")
    assert nb.page.locator(f"{GRID} mark.lw-diff").count() > 0
    _check_clean(nb)
    nb.screenshot("baseline-diff", grid)

    before = _seq(nb)
    nb.page.locator(f"{GRID} button[data-action=next]").click()
    _wait_render(nb, before)
    assert _rows(nb) == list(ds_order(res))[PAGE : 2 * PAGE]
    assert "page 2 of 3" in _grid_text(nb)

    target = _rows(nb)[0]
    cell = nb.page.locator(f"{GRID} tr[data-case='{target}'] td.lw-cell").first
    cell.locator("button[data-action=thumbs-up]").click()
    nb.page.wait_for_function(f"() => document.querySelector('{GRID}').dataset.feedbackSaved")
    fb = run.feedback()
    assert fb[["case_id", "variant", "kind", "value"]].values.tolist() == [[target, "gold-context", "thumbs", 1.0]]
    assert "lw-on" in cell.locator("button[data-action=thumbs-up]").get_attribute("class")
    nb.screenshot("feedback", grid)

    # an invalid regex is a message in the widget, not a traceback
    nb.page.locator(f"{GRID} .lw-check", has_text="regex").locator("input").check()
    nb.page.locator(f"{GRID} input.lw-search").fill("canc(er")
    nb.page.locator(f"{GRID} input.lw-search").press("Enter")
    nb.page.wait_for_selector(f"{GRID} .lw-banner.lw-show")
    banner = nb.page.locator(f"{GRID} .lw-banner").inner_text()
    assert "not a valid regular expression" in banner and "Traceback" not in banner
    assert nb.errors() == []
    nb.screenshot("bad-regex", grid)
    # the view is widget state: the kernel sees what the browser chose
    nb.execute("print('STATE', grid.baseline, grid.diff, grid.search_regex)")
    assert "STATE question-only baseline True" in nb.outputs_text()


def ds_order(res):
    """Case ids in dataset order (results() is ordered by case position)."""
    return list(dict.fromkeys(res["case_id"]))


def test_grid_in_notebook7(chromium, tmp_path, server_script):
    """The same widget renders in Notebook 7 (its own front end, same widget manager)."""
    prefix = "test_grid_in_notebook7-"
    clean_artifacts(prefix)
    server_script.configure(script=[{"status": 400}, {"status": 400}, {"status": 400}])
    with JupyterServer(tmp_path / "root", tmp_path / "workspace", app="notebook") as server:
        write_notebook(server.root_dir / "grid.ipynb", _cells(server_script.base_url))
        context = chromium.new_context(viewport={"width": 1600, "height": 1000})
        try:
            nb = NotebookPage(context.new_page(), server, artifacts_dir(), prefix=prefix)
            nb.page.set_default_timeout(60_000)
            nb.open("grid.ipynb")
            nb.run_all(timeout=240)
            nb.page.wait_for_selector(f"{GRID} tbody tr[data-case]", timeout=30_000)
            assert len(_rows(nb)) == PAGE
            _check_clean(nb)
            _choose(nb, "Show", "errors")
            assert len(_rows(nb)) == 3
            nb.screenshot("grid", nb.page.locator(GRID))
        finally:
            context.close()
