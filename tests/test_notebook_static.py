"""Outside a live front-end (nbconvert HTML, GitHub): the charts, the live panel and the prompt editor still read."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_nbconvert_html_shows_static_fallbacks(tmp_path):
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    rows = [
        {"key": f"k{i}", "q": f"Is item {i} fine?", "passage": f"Item {i} is fine. Item {i} was tested."}
        for i in range(10)
    ]
    cells = [
        f"""import json, workbench as wb
ws = wb.open({str(tmp_path / "ws")!r})
ws.add_dataset("qa", json.loads({json.dumps(json.dumps(rows))}), id="key")
run = ws.experiment("qa", [wb.Prompt("a", "Context: {{{{ passage }}}}\\nQuestion: {{{{ q }}}}"),
                           wb.Prompt("b", "Context: {{{{ passage[:12] }}}}\\nQuestion: {{{{ q }}}}")],
                    "local/extractive", [{{"name": "token_f1", "expected": "passage"}}]).run()""",
        "run.charts()",
        'wb.PromptEditor(ws, "qa", name="draft", user="Question: {{ q }}")',
    ]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    with_state, _ = HTMLExporter().from_notebook_node(nb)
    assert "application/vnd.jupyter.widget-state+json" in with_state  # a page with widget state renders the widget
    nb.metadata.pop("widgets", None)  # what JupyterLab saves with saveState off: no widget state
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert "completed: 20/20 cells" in html  # the live panel's last state is plain HTML
    assert html.count('src="data:image/png;base64,') >= 1  # the charts as a picture
    assert "Prompt editor: draft" in html and "Question: Is item 0 fine?" in html  # the editor's static view
    saved = tmp_path / "static.ipynb"
    nbformat.write(nb, str(saved))
    outputs = [o for c in nbformat.read(str(saved), 4).cells for o in c.get("outputs", [])]
    chart = next(o for o in outputs if "application/vnd.vegalite.v5+json" in o.get("data", {}))
    assert "image/png" in chart["data"]  # GitHub's viewer shows this one
