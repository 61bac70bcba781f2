"""The browser harness itself: a notebook runs in a real JupyterLab and its outputs are readable."""

from __future__ import annotations

import pytest
from harness import write_notebook

pytestmark = pytest.mark.browser


def test_notebook_runs_in_jupyterlab(lab, notebook_page):
    cells = ["import os\nprint('ws=' + os.environ['LLMOPS_WORKSPACE'])", "6 * 7"]
    write_notebook(lab.root_dir / "harness.ipynb", cells)
    notebook_page.open("harness.ipynb")
    notebook_page.run_all()
    text = notebook_page.outputs_text()
    assert f"ws={lab.workspace}" in text
    assert "42" in text
    assert notebook_page.errors() == []
    shot = notebook_page.screenshot("notebook")
    assert shot.stat().st_size > 1000
