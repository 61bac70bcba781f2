"""``wb.PromptEditor(ws, dataset)``: edit a prompt's system and user templates with a live preview.

As you type, the kernel renders the template on the chosen case (the same sandboxed Jinja with
StrictUndefined the runner uses) and flags every variable the dataset does not have; "Save version"
stores the text as a new prompt version and shows the diff to the previous one. All logic is the Python
API (``ws.add_prompt``, ``ws.prompt_diff``); the browser only edits text and shows what comes back.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from workbench.prompts import Prompt, render_error_text, template_vars, undeclared_variables

# Names a template may use besides the dataset's columns (see workbench.prompts.template_vars).
ALWAYS = frozenset({"case"})
WITH_RETRIEVER = frozenset({"context", "chunks"})
MAX_PREVIEW_CASES = 500


class PromptEditor(anywidget.AnyWidget):  # type: ignore[misc]
    """Prompt editor widget; ``editor.save()`` does what the Save button does."""

    _esm = Path(__file__).parent / "static" / "prompt_editor.js"
    _css = Path(__file__).parent / "static" / "prompt_editor.css"

    name = traitlets.Unicode("draft").tag(sync=True)
    system = traitlets.Unicode("").tag(sync=True)
    user = traitlets.Unicode("").tag(sync=True)
    case_ids = traitlets.List(traitlets.Unicode()).tag(sync=True)
    case_index = traitlets.Int(0).tag(sync=True)
    columns = traitlets.List(traitlets.Unicode()).tag(sync=True)
    variables = traitlets.List(traitlets.Unicode()).tag(sync=True)
    undefined = traitlets.List(traitlets.Unicode()).tag(sync=True)
    preview = traitlets.List(traitlets.Dict()).tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    saved = traitlets.Dict().tag(sync=True)

    def __init__(self, ws: Any, dataset: Any, name: str = "draft", *, retriever: bool = False, **kwargs: Any) -> None:
        ds = ws.dataset(dataset) if isinstance(dataset, str) else dataset
        cases = ds.cases()[:MAX_PREVIEW_CASES]
        start: dict[str, Any] = {}
        found = ws.store.find_prompt(name)
        if found is not None:  # continue from the stored latest version
            start = {"system": found["system"] or "", "user": found["user"]}
        super().__init__(
            name=name,
            case_ids=[cid for cid, _ in cases],
            columns=list(ds.columns),
            **{**start, **kwargs},
        )
        self._ws = ws
        self._cases = cases
        self._retriever = retriever
        self.on_msg(self._on_msg)
        self._refresh()

    @traitlets.observe("system", "user", "case_index")
    def _changed(self, change: dict[str, Any]) -> None:
        if hasattr(self, "_cases"):
            self._refresh()

    def _known(self) -> set[str]:
        return set(self.columns) | ALWAYS | (WITH_RETRIEVER if self._retriever else set())

    def _refresh(self) -> None:
        """Flag undefined variables and render the preview on the chosen case."""
        texts = [self.system or None, self.user]
        try:
            used = undeclared_variables(texts)
        except Exception as exc:  # noqa: BLE001 - a syntax error while typing is shown, not raised
            self.variables, self.undefined, self.preview = [], [], []
            self.error = f"template syntax error: {getattr(exc, 'message', None) or exc}"
            return
        self.variables = sorted(used)
        missing = sorted(used - self._known())
        self.undefined = missing
        if not self.user.strip():
            self.preview, self.error = [], "the user template is empty"
            return
        if not self._cases:
            self.preview, self.error = [], "the dataset has no cases to preview"
            return
        index = min(max(self.case_index, 0), len(self._cases) - 1)
        _, case = self._cases[index]
        extra = {"context": "(retrieved passages appear here during a run)", "chunks": []} if self._retriever else None
        try:
            messages = Prompt(self.name or "draft", self.user, self.system or None).render(template_vars(case, extra))
        except Exception as exc:  # noqa: BLE001 - shown in the editor; the runner reports the same error
            self.preview = []
            hint = ""
            if missing:
                import difflib

                close = [m for v in missing for m in difflib.get_close_matches(v, self.columns, n=1)]
                hint = f" (not a column; columns: {', '.join(self.columns)})"
                hint += f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            self.error = render_error_text(exc) + hint
            return
        self.preview = messages
        self.error = ""

    def save(self) -> Any:
        """Store the current text as a new version of ``name``; returns the diff to the previous version."""
        diff = self._ws.save_prompt(self.name, self.user, system=self.system or None)
        self.saved = {"name": self.name, "version": diff.new.version, "changed": diff.changed, "diff": str(diff)}
        return diff

    def _on_msg(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        if content.get("type") != "save":
            return
        try:
            self.save()
        except Exception as exc:  # noqa: BLE001 - the widget shows why it could not save
            self.saved = {"error": f"{type(exc).__name__}: {exc}"}

    # -- static fallback (nbconvert, GitHub, a notebook reopened without its kernel) -------------

    def _static_html(self) -> str:
        return editor_html(
            {k: getattr(self, k) for k in ("name", "system", "user", "undefined", "preview")}
            | {"case_ids": self.case_ids, "case_index": self.case_index}
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        mimes = super()._repr_mimebundle_(**kwargs)
        data = mimes[0] if isinstance(mimes, tuple) else mimes
        if isinstance(data, dict):
            data["text/html"] = self._static_html()
        return mimes


def editor_html(state: dict[str, Any]) -> str:
    """The editor's text, flags and preview as plain HTML, from its traits or its saved widget state."""
    e = html.escape
    preview = state.get("preview") or []
    msgs = "".join(
        f"<div><b>{e(str(m.get('role', '')))}</b>"
        f"<pre style='white-space:pre-wrap;margin:0'>{e(str(m.get('content', '')))}</pre></div>"
        for m in preview
    )
    undefined = state.get("undefined") or []
    flags = f"<p style='color:#b00'>undefined: {e(', '.join(undefined))}</p>" if undefined else ""
    case_ids = state.get("case_ids") or []
    index = state.get("case_index") or 0
    case = case_ids[index] if 0 <= index < len(case_ids) else "-"
    return (
        f"<div class='llmops-prompt-static'><b>Prompt editor: {e(str(state.get('name', '')))}</b>"
        f"<pre style='white-space:pre-wrap'>[system] {e(str(state.get('system') or ''))}\n"
        f"[user] {e(str(state.get('user') or ''))}</pre>{flags}"
        f"<p>Preview on case {e(str(case))}:</p>{msgs}</div>"
    )
