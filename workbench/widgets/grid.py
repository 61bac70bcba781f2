"""EvalGrid: stored runs side by side in the notebook (``run.grid()``, ``ws.grid(run_a, run_b)``).

Thin face over ``workbench.gridview``: the widget keeps the view (filters, sort, baseline, diff,
page) as synced traits, so a saved notebook reopens where it was; the browser asks for a page with a
custom message and the kernel answers with only the visible rows, computed in DuckDB. No result
table is held in the kernel between requests.
"""

from __future__ import annotations

import asyncio
import html
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets as t

from workbench.errors import ValidationError, WorkbenchError
from workbench.gridview import GridQuery, ViewState

if TYPE_CHECKING:
    import pandas as pd

    from workbench.store import Store

_HERE = Path(__file__).parent
_log = logging.getLogger(__name__)
VIEW_TRAITS = tuple(ViewState.__dataclass_fields__)


class EvalGrid(anywidget.AnyWidget):
    """Rows are cases, columns are variants; filters, sorts and paging run as SQL in the kernel."""

    _esm = _HERE / "grid.js"
    _css = _HERE / "grid.css"

    # -- view state (synced, saved with the notebook) ----------------------------------------
    show = t.Unicode("all").tag(sync=True)
    failure_metric = t.Unicode("").tag(sync=True)
    failure_op = t.Unicode("<").tag(sync=True)
    failure_threshold = t.Float(0.5).tag(sync=True)
    disagree_metric = t.Unicode("").tag(sync=True)
    disagree_spread = t.Float(0.0).tag(sync=True)
    search = t.Unicode("").tag(sync=True)
    search_regex = t.Bool(False).tag(sync=True)
    feedback = t.Unicode("any").tag(sync=True)
    sort_by = t.Unicode("case").tag(sync=True)
    sort_metric = t.Unicode("").tag(sync=True)
    sort_column = t.Unicode("").tag(sync=True)
    sort_desc = t.Bool(False).tag(sync=True)
    baseline = t.Unicode("").tag(sync=True)
    diff = t.Unicode("off").tag(sync=True)
    expected_column = t.Unicode("").tag(sync=True)
    input_columns = t.List(t.Unicode()).tag(sync=True)
    page = t.Int(0).tag(sync=True)
    page_size = t.Int(20).tag(sync=True)

    # -- what the view can choose from (set once by the kernel) ------------------------------
    columns: t.List[Any] = t.List().tag(sync=True)
    metric_names = t.List(t.Unicode()).tag(sync=True)
    dataset_columns = t.List(t.Unicode()).tag(sync=True)
    #: the page saved with the widget state, what a viewer without a kernel renders: set here at display
    #: time; the browser then keeps its copy at the page on screen (grid.js fills it in place, sending
    #: nothing back), so a notebook saved later holds the view the user chose
    snapshot: t.Dict[str, Any] = t.Dict().tag(sync=True)

    def __init__(self, store: Store, run_ids: list[str], author: str | None = None, **view: Any) -> None:
        query = GridQuery(store, run_ids)
        state = query.default_state().as_dict()
        unknown = sorted(set(view) - set(VIEW_TRAITS))
        if unknown:
            raise ValidationError(f"grid: unknown setting(s) {unknown}; settings are {sorted(VIEW_TRAITS)}")
        state.update(view)
        query.check(ViewState.from_dict(state))
        super().__init__(
            columns=[{"key": c.key, "run_id": c.run_id, "variant": c.variant} for c in query.columns],
            metric_names=list(query.metrics),
            dataset_columns=list(query.dataset_columns),
            **state,
        )
        self._query = query
        self.author = author
        self._push_pending = False
        self._quiet = False
        #: size in bytes (JSON) and kernel seconds of the last page sent: what the benchmark reports
        self.last_page_bytes = 0
        self.last_page_seconds = 0.0
        #: the last message sent to the browser
        self.last_reply: dict[str, Any] | None = None
        self.on_msg(self._on_custom_msg)
        self.observe(self._on_view_change, names=list(VIEW_TRAITS))

    def __repr__(self) -> str:
        q = self._query
        return f"EvalGrid(runs={q.run_ids}, {len(q.columns)} variant columns, {q.n_cases} cases)"

    # -- Python API --------------------------------------------------------------------------

    @property
    def state(self) -> ViewState:
        return ViewState.from_dict({k: getattr(self, k) for k in VIEW_TRAITS})

    def current_page(self) -> dict[str, Any]:
        """The page the view shows now, as the browser receives it."""
        return self._query.page(self.state)

    def view(self) -> pd.DataFrame:
        """Every row the current filters keep, in the current order, as a DataFrame (all pages)."""
        return self._query.frame(self.state)

    def refresh(self) -> None:
        """Send the current page to the browser now (it also refreshes itself while a run writes)."""
        self._send_page(None)

    def handle_message(self, content: dict[str, Any]) -> dict[str, Any] | None:
        """Answer one message from the browser; returns the reply (also sent to the browser).

        Typed errors (a bad regex, an unknown column) come back as ``{"type": "error", "message": ...}``
        and show in the widget, never as a traceback.
        """
        kind = content.get("type")
        seq = content.get("seq")
        try:
            if kind == "page":
                return self._send_page(seq)
            if kind == "poll":  # the page shown is current unless cells, feedback or the view changed
                version = self._query.status()["version"] + "|" + self._view_key()
                if version != content.get("version"):
                    return self._send_page(seq)
                return self._reply({"type": "poll", "seq": seq, "version": version})
            if kind == "feedback":
                return self._feedback(content)
            if kind == "text":  # the whole of a text the page carried only the start of
                text = self._query.full_text(
                    str(content.get("field", "")),
                    str(content.get("case_id", "")),
                    column=content.get("column"),
                    repeat=content.get("repeat", 0),
                    name=content.get("name"),
                )
                return self._reply({"type": "text", "seq": seq, "key": content.get("key"), "text": text})
            raise ValidationError(f"grid: unknown message type {kind!r}")
        except WorkbenchError as exc:
            return self._reply({"type": "error", "seq": seq, "message": str(exc)})
        except Exception as exc:  # noqa: BLE001 - the widget shows the failure instead of a silent blank grid
            _log.exception("EvalGrid failed to answer %r", kind)
            return self._reply({"type": "error", "seq": seq, "message": f"internal error: {type(exc).__name__}: {exc}"})

    # -- messages ----------------------------------------------------------------------------

    def _reply(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.send(msg)
        self.last_reply = msg
        return msg

    def _send_page(self, seq: Any) -> dict[str, Any]:
        import json

        started = time.perf_counter()
        state = self.state
        page = self._query.page(state)
        if page["page"] != self.page:  # the filter shrank the result: keep the trait in step with what is shown
            self._quiet = True  # not a change to answer with another page
            try:
                self.page = page["page"]
            finally:
                self._quiet = False
        self.last_page_seconds = time.perf_counter() - started
        msg = {"type": "page", "seq": seq, "kernel_ms": round(self.last_page_seconds * 1000, 1), **page}
        msg["version"] = f"{page['version']}|{self._view_key()}"
        self.last_page_bytes = len(json.dumps(msg, separators=(",", ":")).encode())
        return self._reply(msg)

    def _view_key(self) -> str:
        import hashlib
        import json

        return hashlib.sha1(json.dumps(self.state.as_dict(), sort_keys=True).encode()).hexdigest()[:12]

    def _feedback(self, content: dict[str, Any]) -> dict[str, Any]:
        from workbench import feedback

        key = str(content.get("column", ""))
        column = self._query.column(key)
        case_id = str(content.get("case_id", ""))
        repeat = content.get("repeat", 0)
        if isinstance(repeat, bool) or not isinstance(repeat, int):
            raise ValidationError(f"feedback repeat must be an integer, got {repeat!r}")
        fb = feedback.add(
            self._query.store,
            column.run_id,
            case_id,
            column.variant,
            repeat=repeat,
            thumbs=content.get("thumbs"),
            rating=content.get("rating"),
            comment=content.get("comment"),
            author=self.author,
        )
        return self._reply(
            {
                "type": "feedback",
                "seq": content.get("seq"),
                "case_id": case_id,
                "column": key,
                "feedback_id": fb.feedback_id,
                "feedback": self._query.feedback_for(case_id, key),
            }
        )

    def _on_custom_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict):
            self.handle_message(content)

    def _on_view_change(self, change: dict[str, Any]) -> None:
        """A change made in Python (not by the browser, which asks for its own page) pushes a new page.

        Several changes in one notebook cell are answered once, when the cell finishes.
        """
        if change["name"] in getattr(self, "_property_lock", {}) or self._quiet or self._push_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:
            self.handle_message({"type": "page", "seq": None})
            return
        self._push_pending = True

        def push() -> None:
            self._push_pending = False
            self.handle_message({"type": "page", "seq": None})

        loop.call_soon(push)

    # -- static fallback ---------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The live widget, plus the current page for viewers without a kernel.

        Two fallbacks: ``text/html`` (a plain table, used when the notebook keeps no widget state:
        GitHub, nbconvert of a notebook saved without it) and the ``snapshot`` trait (saved with the
        widget state, rendered by the widget's own code when no kernel answers).
        """
        mime: Any = super()._repr_mimebundle_(**kwargs)
        data, meta = mime if isinstance(mime, tuple) else (dict(mime or {}), {})
        try:
            page = self.current_page()
            version = f"{page['version']}|{self._view_key()}"
            self.snapshot = {"type": "page", "seq": None, "snapshot": True, **page, "version": version}
            data["text/html"] = self.static_html(page)
        except WorkbenchError as exc:
            data["text/html"] = f"<p>EvalGrid: {html.escape(str(exc))}</p>"
        data["text/plain"] = repr(self)
        return data, meta

    def static_html(self, page: dict[str, Any] | None = None, max_chars: int = 300) -> str:
        """The current page as a plain HTML table (rounded numbers, clipped texts): what nbconvert shows."""
        page = page if page is not None else self.current_page()
        state = self.state
        keys = [c["key"] for c in self.columns]
        return page_html(page, keys, state.input_columns, state.page_size, max_chars=max_chars)


def page_html(
    page: dict[str, Any], keys: list[str], input_columns: list[str], page_size: int, max_chars: int = 300
) -> str:
    """One grid page as a plain HTML table; also drawn from a saved snapshot (``workbench.widgets.nbstatic``)."""
    esc = html.escape

    def clip(text: Any) -> str:
        s = "" if text is None else str(text)
        return esc(s if len(s) <= max_chars else s[:max_chars] + "…")

    # notebook and nbconvert styles right-align table cells: texts read better left-aligned, top first
    td = "<td style='text-align:left;vertical-align:top'>"
    head = "".join(f"<th style='text-align:left'>{esc(c)}</th>" for c in ["case", *input_columns, *keys])
    body = []
    for row in page["rows"]:
        tds = [f"<td>{esc(row['case_id'])}</td>"]
        tds += [f"{td}{clip(row['inputs'].get(c, {}).get('text'))}</td>" for c in input_columns]
        for k in keys:
            cell = row["cells"].get(k)
            if not cell or not cell["repeats"]:
                tds.append("<td></td>")
                continue
            r = cell["repeats"][0]
            text = f"<b>error:</b> {clip(r['error'])}" if r["error"] else clip(r["output"]) or "<i>(empty output)</i>"
            scores = ", ".join(f"{esc(m)} {_fmt(v)}" for m, v in r["scores"].items() if v is not None)
            more = f" (+{len(cell['repeats']) - 1} repeats)" if len(cell["repeats"]) > 1 else ""
            tds.append(f"{td}{text}<br><small>{scores}{esc(more)}</small></td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    runs = ", ".join(f"{esc(r['run_id'])} ({esc(r['status'])})" for r in page["runs"])
    caption = (
        f"EvalGrid of {runs}: rows {page['page'] * page_size + 1 if page['total'] else 0}-"
        f"{min(page['total'], (page['page'] + 1) * page_size)} of {page['total']} "
        "(static view: run the notebook for the interactive grid)"
    )
    return (
        f'<table class="lw-static"><caption>{caption}</caption><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
