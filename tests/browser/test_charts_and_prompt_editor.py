"""In a real JupyterLab with Chromium: the leaderboard charts render, the live panel ends completed, and a
prompt edited in the editor is flagged, previewed and saved as a version in the workspace."""

from __future__ import annotations

import json

import pytest
from harness import write_notebook

import workbench as wb

pytestmark = pytest.mark.browser

ROWS = [
    {
        "key": f"k{i}",
        "input": f"Does treatment {i} reduce symptom {i}?",
        "passage": f"Treatment {i} was tested in {10 + i} patients. Treatment {i} reduced symptom {i} in most of them. "
        f"Side effects were rare.",
        "target": "yes" if i % 3 else "no",
    }
    for i in range(24)
]

SETUP = f"""%load_ext workbench
import json, workbench as wb
ws = wb.open()
ws.add_dataset("qa", json.loads({json.dumps(json.dumps(ROWS))}), id="key")"""


def test_leaderboard_chart_renders(lab, notebook_page):
    cells = [
        SETUP,
        """exp = ws.experiment("qa", [wb.Prompt("with-passage", "Context: {{ passage }}\\nQuestion: {{ input }}"),
                          wb.Prompt("short", "Context: {{ passage[:60] }}\\nQuestion: {{ input }}")],
                    "local/extractive",
                    [{"name": "token_f1", "expected": "passage"}, {"name": "contains", "expected": "target"}])
run = exp.run()""",
        "%llmops leaderboard {run.run_id} --plot",
    ]
    write_notebook(lab.root_dir / "charts.ipynb", cells)
    page = notebook_page
    page.open("charts.ipynb")
    page.run_all(timeout=240)
    assert page.errors() == []
    text = page.outputs_text()
    assert "completed: 48/48 cells" in text  # the live panel's final state
    chart = page.page.locator(".jp-RenderedVegaLite").first
    chart.wait_for(state="visible", timeout=60_000)
    page.page.wait_for_function(
        "() => { const c = document.querySelector('.jp-RenderedVegaLite canvas, .jp-RenderedVegaLite svg');"
        " return c && c.getBoundingClientRect().width > 400 && c.getBoundingClientRect().height > 300; }",
        timeout=60_000,
    )
    chart.scroll_into_view_if_needed()
    shot = page.screenshot("leaderboard-chart", chart)
    assert shot.stat().st_size > 20_000
    page.screenshot("notebook")
    live = page.page.locator(".llmops-live").first
    page.screenshot("live-panel", live)


def test_prompt_editor_flags_previews_and_saves_a_version(lab, notebook_page):
    cells = [SETUP, 'editor = wb.PromptEditor(ws, "qa", name="draft")\neditor']
    write_notebook(lab.root_dir / "editor.ipynb", cells)
    page = notebook_page
    page.open("editor.ipynb")
    page.run_all(timeout=180)
    assert page.errors() == []
    user = page.page.locator(".llmops-pe textarea.pe-user")
    user.wait_for(state="visible", timeout=60_000)
    user.fill("Question: {{ input }}\nKnown facts: {{ pasage }}")
    page.page.locator(".llmops-pe .vars span.undefined", has_text="pasage").wait_for(timeout=30_000)
    page.page.locator(".llmops-pe .error", has_text="did you mean 'passage'?").wait_for(timeout=30_000)
    page.screenshot("editor-flagged", page.page.locator(".llmops-pe"))

    page.page.locator(".llmops-pe textarea.pe-system").fill("Answer yes or no.")
    user.fill("Question: {{ input }}\nKnown facts: {{ passage }}")
    page.page.locator(".llmops-pe .pe-next").click()
    preview = page.page.locator(".llmops-pe .pe-preview")
    preview.get_by_text("Does treatment 1 reduce symptom 1?").wait_for(timeout=30_000)
    assert page.page.locator(".llmops-pe .vars span.undefined").count() == 0
    page.page.locator(".llmops-pe .pe-save").click()
    page.page.locator(".llmops-pe .saved", has_text="v1").wait_for(timeout=30_000)
    page.screenshot("editor-saved", page.page.locator(".llmops-pe"))

    user.fill("Question: {{ input }}\nFacts: {{ passage }}")
    page.page.locator(".llmops-pe .pe-save").click()
    page.page.locator(".llmops-pe .saved", has_text="v1 -> v2").wait_for(timeout=30_000)
    assert "+[user] Facts: {{ passage }}" in page.page.locator(".llmops-pe .saved").inner_text()
    page.screenshot("editor-diff", page.page.locator(".llmops-pe"))

    ws = wb.open(lab.workspace)
    assert ws.prompt("draft", 1).user == "Question: {{ input }}\nKnown facts: {{ passage }}"
    assert ws.prompt("draft", 1).system == "Answer yes or no."
    assert ws.prompt("draft").version == 2 and ws.prompt("draft").user == "Question: {{ input }}\nFacts: {{ passage }}"


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory):
    import harness

    base = tmp_path_factory.mktemp("nb7")
    with harness.JupyterServer(base / "root", base / "workspace", app="notebook") as server:
        yield server


def test_charts_and_editor_render_in_notebook_7(chromium, notebook7, request):
    import harness

    prefix = "notebook7-"
    harness.clean_artifacts(prefix)
    cells = [
        SETUP,
        """run = ws.experiment("qa", [wb.Prompt("a", "Context: {{ passage }}\\nQuestion: {{ input }}"),
                           wb.Prompt("b", "Question: {{ input }}")],
                    "local/extractive", [{"name": "token_f1", "expected": "passage"}]).run()
run.charts()""",
        'wb.PromptEditor(ws, "qa", name="nb7", user="Question: {{ input }}")',
    ]
    write_notebook(notebook7.root_dir / "nb7.ipynb", cells)
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = harness.NotebookPage(context.new_page(), notebook7, harness.artifacts_dir(), prefix=prefix)
        page.page.set_default_timeout(60_000)
        page.open("nb7.ipynb")
        page.run_all(timeout=240)
        assert page.errors() == []
        page.page.wait_for_function(
            "() => { const c = document.querySelector('.jp-RenderedVegaLite canvas, .jp-RenderedVegaLite svg');"
            " return c && c.getBoundingClientRect().width > 400; }",
            timeout=60_000,
        )
        preview = page.page.locator(".llmops-pe .pe-preview")
        preview.get_by_text("Question: Does treatment 0 reduce symptom 0?").wait_for(timeout=60_000)
        page.page.locator(".jp-RenderedVegaLite").first.scroll_into_view_if_needed()
        page.screenshot("charts", page.page.locator(".jp-RenderedVegaLite").first)
        page.page.locator(".llmops-pe").scroll_into_view_if_needed()
        page.screenshot("editor", page.page.locator(".llmops-pe"))
    finally:
        context.close()
