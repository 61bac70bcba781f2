"""nbconvert: the workbench widgets as static HTML at the view the notebook was saved with.

A notebook saved with its widget state (the workbench's JupyterLab extension turns that on) makes nbconvert
embed each widget for the online ipywidgets HTML manager, which needs a CDN and shows nothing offline. This
preprocessor swaps our widgets' outputs for plain HTML drawn from that saved state instead: the EvalGrid's
page at its saved filters, sort, baseline and page; the PromptEditor's text and preview. Other widgets are
left as they are (their saved state stays for the HTML manager). Use it with::

    jupyter nbconvert --to html --HTMLExporter.preprocessors=workbench.widgets.nbstatic.StaticWidgets nb.ipynb
"""

from __future__ import annotations

from typing import Any

from nbconvert.preprocessors import Preprocessor

VIEW_MIME = "application/vnd.jupyter.widget-view+json"
STATE_MIME = "application/vnd.jupyter.widget-state+json"
GRID_ID = "workbench.widgets.grid.EvalGrid"
EDITOR_ID = "workbench.widgets.prompt_editor.PromptEditor"


def widget_html(state: dict[str, Any]) -> str | None:
    """Plain HTML for one saved widget model's state, or None when it is not one of ours (or has nothing)."""
    kind = state.get("_anywidget_id")
    if kind == GRID_ID:
        from workbench.widgets.grid import page_html

        snap = state.get("snapshot") or {}
        if not isinstance(snap.get("rows"), list):
            return None
        keys = [c["key"] for c in state.get("columns") or []]
        return page_html(snap, keys, list(state.get("input_columns") or []), int(state.get("page_size") or 20))
    if kind == EDITOR_ID:
        from workbench.widgets.prompt_editor import editor_html

        return editor_html(state)
    return None


class StaticWidgets(Preprocessor):
    """Replace EvalGrid and PromptEditor outputs with their saved view as HTML (see the module docstring)."""

    def preprocess(self, nb: Any, resources: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        models = ((nb.metadata.get("widgets") or {}).get(STATE_MIME) or {}).get("state") or {}
        drawn: set[str] = set()
        for cell in nb.cells:
            for output in cell.get("outputs", []):
                data = output.get("data") or {}
                view = data.get(VIEW_MIME)
                if not isinstance(view, dict):
                    continue
                model = models.get(view.get("model_id"), {})
                html = widget_html(model.get("state") or {})
                if html is None:
                    continue
                data["text/html"] = html
                del data[VIEW_MIME]
                drawn.add(str(view.get("model_id")))
        for model_id in drawn:  # their state (page, JS, CSS) is no longer needed in the page
            models.pop(model_id, None)
        return nb, resources
