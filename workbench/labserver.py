"""The jupyter-server extension: a read-only, authenticated JSON API over the workspaces under the server root.

Routes (all GET, all ``@tornado.web.authenticated``, under ``<base_url>/llmops/api/``)::

    workspaces                               workspaces found under the server root, with a change stamp
    stamp?ws=                                the change stamp alone (file sizes and mtimes: no database open)
    datasets?ws=  datasets/rows?ws=&name=&version=
    prompts?ws=   prompts/diff?ws=&name=&a=&b=
    retrievers?ws=                           corpora and the retrievers runs used
    overview?ws=                             datasets, prompts, retrievers and a page of runs in one request
    runs?ws=      runs/<id>/leaderboard?ws=  runs/<id>/grid?ws=&view=

``ws`` is a workspace folder relative to the server root; a path that resolves outside it is refused (403).
Every read opens DuckDB read-only for the length of one request and closes it, so a kernel writing the
same workspace is never locked out for longer than that (the store retries on lock; so does the kernel).
Lists are paged with ``offset``/``limit``; errors are JSON ``{"message", "type", "status"}``.
The handlers are thin: everything they return comes from the Workspace API, ``gridview`` (the
notebook grid's query) and ``prompts``.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from workbench.errors import NotFoundError, SchemaVersionError, ValidationError, WorkbenchError, WorkspaceLockedError
from workbench.store import DB_FILE

NAMESPACE = "llmops"
MAX_LIMIT = 1000
LOCK_TIMEOUT = 10.0  # seconds an HTTP request waits for a kernel's write batches before answering 503
_SKIP_DIRS = {"node_modules", "__pycache__", "site-packages", ".git", ".ipynb_checkpoints", ".venv", "venv"}
MAX_DEPTH = 4
MAX_DIRS = 5000


class Forbidden(WorkbenchError):
    """A path outside the server root was asked for."""


# ---------------------------------------------------------------------------------------------
# workspace discovery and path safety


def resolve_workspace(root: Path, ws: str) -> Path:
    """The workspace folder ``ws`` (relative to ``root``); refuses anything that resolves outside ``root``."""
    if not ws:
        raise ValidationError(
            "missing `ws`: the workspace folder relative to the server root (see /llmops/api/workspaces)"
        )
    if os.path.isabs(ws) or "\x00" in ws:
        raise Forbidden(f"workspace {ws!r}: give a path relative to the server root, not an absolute one")
    root = root.resolve()
    path = (root / ws).resolve()
    if path != root and root not in path.parents:
        raise Forbidden(f"workspace {ws!r} is outside the server root; only workspaces under it can be read")
    if not (path / DB_FILE).is_file():
        raise NotFoundError(f"no workspace at {ws!r} (no {DB_FILE} there); list them with /llmops/api/workspaces")
    return path


def stamp(path: Path) -> str:
    """A cheap change stamp: sizes and mtimes of the database and its WAL, read without opening DuckDB."""
    parts = []
    for name in (DB_FILE, DB_FILE + ".wal"):
        try:
            st = (path / name).stat()
            parts.append(f"{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append("-")
    return "/".join(parts)


def discover(root: Path, env: str | None = None) -> list[dict[str, Any]]:
    """Workspaces under ``root``: ``.llmops`` folders (a bounded walk) and ``$LLMOPS_WORKSPACE`` if it is inside."""
    root = root.resolve()
    found: dict[Path, str] = {}
    if env:
        p = (root / env).resolve() if not os.path.isabs(env) else Path(env).resolve()
        if (p == root or root in p.parents) and (p / DB_FILE).is_file():
            found[p] = "LLMOPS_WORKSPACE"
    seen = 0
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        depth = len(here.relative_to(root).parts)
        seen += 1
        if (here / ".llmops" / DB_FILE).is_file():
            found.setdefault((here / ".llmops").resolve(), "folder")
        if depth >= MAX_DEPTH or seen >= MAX_DIRS:
            dirnames[:] = []
            continue
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".") and d not in _SKIP_DIRS and not (here / d / "pyvenv.cfg").exists()
        )
    out = []
    for p, source in sorted(found.items(), key=lambda kv: (len(kv[0].parts), str(kv[0]))):
        rel = p.relative_to(root).as_posix() if p != root else "."
        out.append(
            {
                "id": rel,
                "name": rel,  # relative to the server root: what the user sees in the file browser
                "source": source,
                "stamp": stamp(p),
            }
        )
    return out


_OPEN: dict[Path, Any] = {}
_OPEN_LOCK = threading.Lock()


def open_workspace(path: Path) -> Any:
    """A read-only Workspace per folder, kept (it holds no connection; its schema is checked once)."""
    from workbench.workspace import Workspace

    with _OPEN_LOCK:
        ws = _OPEN.get(path)
        if ws is None or not ws.store.db_path.is_file():
            ws = _OPEN[path] = Workspace(path, read_only=True, lock_timeout=LOCK_TIMEOUT)
        return ws


# ---------------------------------------------------------------------------------------------
# JSON


def _clean(value: Any) -> Any:
    """JSON-safe values: NaN -> null, timestamps -> ISO strings, numpy scalars -> Python."""
    if value is None or isinstance(value, (str, int)):  # most values: no further checks
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalar
        return _clean(value.item())
    pd = sys.modules.get("pandas")  # only a loaded pandas can have made a NaT (importing it costs ~0.5 s)
    if pd is None:
        return value
    try:
        if value is pd.NaT or (not isinstance(value, (str, bytes)) and pd.isna(value)):
            return None
    except (TypeError, ValueError):
        pass
    return value


def records(df: Any) -> list[dict[str, Any]]:
    return [_clean(r) for r in df.to_dict(orient="records")]


def paged(items: list[Any], offset: int, limit: int) -> dict[str, Any]:
    return {"items": items[offset : offset + limit], "total": len(items), "offset": offset, "limit": limit}


# ---------------------------------------------------------------------------------------------
# handlers


_STATUS = (
    (Forbidden, 403),
    (NotFoundError, 404),
    (WorkspaceLockedError, 503),
    (SchemaVersionError, 409),
    (ValidationError, 400),
    (WorkbenchError, 404),
)


class _Base(APIHandler):
    """Shared: the server root, the workspace parameter, paging, running blocking reads off the event loop."""

    @property
    def root(self) -> Path:
        return Path(os.path.expanduser(self.settings.get("server_root_dir") or os.getcwd()))

    def workspace(self) -> Any:
        return open_workspace(resolve_workspace(self.root, self.get_argument("ws", "")))

    def int_arg(self, name: str, default: int, low: int = 0, high: int | None = None) -> int:
        raw = self.get_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ValidationError(f"query parameter `{name}` must be an integer, got {raw!r}") from None
        if value < low or (high is not None and value > high):
            raise ValidationError(f"query parameter `{name}` must be in {low}..{high if high is not None else ''}")
        return value

    def page_args(self) -> tuple[int, int]:
        return self.int_arg("offset", 0), self.int_arg("limit", 200, 1, MAX_LIMIT)

    async def answer(self, fn: Callable[[], Any], ws: bool = True) -> None:
        """Run ``fn`` in a worker thread (DuckDB blocks) inside one read-only connection, and write its result,
        or the error, as JSON."""

        def call() -> Any:
            if not ws:
                return fn()
            with self.workspace().store.session():
                return fn()

        result = await asyncio.get_running_loop().run_in_executor(None, call)
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(_clean(result)))

    def _handle_request_exception(self, e: BaseException) -> None:
        """Our typed errors (bad parameters too) become JSON with a status code; anything else stays a 500."""
        if not isinstance(e, WorkbenchError) or self._finished:
            return super()._handle_request_exception(e)
        status = next(code for cls, code in _STATUS if isinstance(e, cls))
        self.clear()
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        if status == 503:
            self.set_header("Retry-After", "1")
        self.finish(json.dumps({"message": str(e), "type": type(e).__name__, "status": status}))


class WorkspacesHandler(_Base):
    @tornado.web.authenticated
    async def get(self) -> None:
        root = self.root
        await self.answer(
            lambda: {"root": root.name, "items": discover(root, os.environ.get("LLMOPS_WORKSPACE"))}, ws=False
        )


class StampHandler(_Base):
    @tornado.web.authenticated
    async def get(self) -> None:
        root, ws = self.root, self.get_argument("ws", "")
        await self.answer(lambda: {"stamp": stamp(resolve_workspace(root, ws))}, ws=False)


class DatasetsHandler(_Base):
    @tornado.web.authenticated
    async def get(self) -> None:
        offset, limit = self.page_args()
        await self.answer(lambda: paged(_clean(self.workspace().store.catalog()["datasets"]), offset, limit))


class DatasetRowsHandler(_Base):
    @tornado.web.authenticated
    async def get(self) -> None:
        offset, limit = self.page_args()
        name = self.get_argument("name", "")
        version = self.int_arg("version", 0) or None

        def rows() -> dict[str, Any]:
            ds = self.workspace().dataset(name, version)
            cases = ds.cases()
            items = [{"case_id": cid, **row} for cid, row in cases[offset : offset + limit]]
            return {
                "name": name,
                "version": ds.version,
                "columns": ["case_id", *ds.columns],
                "items": items,
                "total": len(cases),
                "offset": offset,
                "limit": limit,
            }

        await self.answer(rows)


class PromptsHandler(_Base):
    @tornado.web.authenticated
    async def get(self) -> None:
        offset, limit = self.page_args()
        await self.answer(lambda: paged(_clean(self.workspace().store.catalog()["prompts"]), offset, limit))


class PromptDiffHandler(_Base):
    @tornado.web.authenticated
    async def get(self) -> None:
        name = self.get_argument("name", "")
        a, b = self.int_arg("a", 0, 1), self.int_arg("b", 0, 1)

        def diff() -> dict[str, Any]:
            from workbench import prompts

            if not a or not b:
                raise ValidationError("prompt diff needs two versions: ?name=...&a=1&b=2")
            ws = self.workspace()
            old, new = ws.prompt(name, a), ws.prompt(name, b)
            if old.version != a or new.version != b:
                raise NotFoundError(f"prompt {name!r} has no version {a if old.version != a else b}")
            return {
                "name": name,
                "a": a,
                "b": b,
                "diff": "\n".join(prompts.PromptDiff(name, old, new).lines()),
                "old": "\n".join(prompts.prompt_lines(old)),
                "new": "\n".join(prompts.prompt_lines(new)),
            }

        await self.answer(diff)


class RetrieversHandler(_Base):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self.answer(lambda: retrievers(self.workspace().store.catalog()))


def runs_page(ws: Any, offset: int, limit: int) -> dict[str, Any]:
    items, total = ws.store.runs_page(limit, offset)
    for r in items:
        r["progress"] = (r["done"] / r["n_cells"]) if r.get("n_cells") else None
    return {"items": items, "total": total, "offset": offset, "limit": limit}


def retrievers(catalog: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {"corpora": _clean(catalog["corpora"]), "retrievers": _clean(catalog["retrievers"])}


class RunsHandler(_Base):
    @tornado.web.authenticated
    async def get(self) -> None:
        offset, limit = self.page_args()
        await self.answer(lambda: runs_page(self.workspace(), offset, limit))


class OverviewHandler(_Base):
    """What the sidebar shows, in one request and one database open: datasets, prompts, retrievers, runs."""

    @tornado.web.authenticated
    async def get(self) -> None:
        offset, limit = self.page_args()

        def overview() -> dict[str, Any]:
            ws = self.workspace()
            catalog = ws.store.catalog()  # plain records, no pandas: the sidebar's first load stays quick
            return {
                "datasets": paged(_clean(catalog["datasets"]), 0, MAX_LIMIT),
                "prompts": paged(_clean(catalog["prompts"]), 0, MAX_LIMIT),
                "retrievers": retrievers(catalog),
                "runs": runs_page(ws, offset, limit),
            }

        await self.answer(overview)


class LeaderboardHandler(_Base):
    @tornado.web.authenticated
    async def get(self, run_id: str) -> None:
        def board() -> dict[str, Any]:
            run = self.workspace().get_run(run_id)
            return {"run_id": run.run_id, "items": records(run.leaderboard())}

        await self.answer(board)


def grid_page(store: Any, run_id: str, raw_state: str) -> dict[str, Any]:
    """One page of a run's grid, exactly as the notebook's EvalGrid gets it from ``GridQuery.page``.

    ``raw_state`` is the widget's view state as JSON (any subset of ``ViewState``; the rest are the
    widget's defaults for this run). The answer adds what the controls choose from and the state used.
    """
    from workbench.gridview import GridQuery, ViewState

    try:
        given = json.loads(raw_state or "{}")
    except json.JSONDecodeError as exc:
        raise ValidationError(f"query parameter `view` is not JSON: {exc}") from None
    if not isinstance(given, dict):
        raise ValidationError("query parameter `view` must be a JSON object (the grid's view state)")
    query = GridQuery(store, [run_id])
    state = ViewState.from_dict({**query.default_state().as_dict(), **given})
    page = query.page(state)
    return {
        **page,
        "state": {**state.as_dict(), "page": page["page"]},
        "columns": [{"key": c.key, "run_id": c.run_id, "variant": c.variant} for c in query.columns],
        "metric_names": list(query.metrics),
        "dataset_columns": list(query.dataset_columns),
        "id_column": query.id_column,
    }


class GridHandler(_Base):
    """``runs/<id>/grid?ws=&view=<JSON view state>``: the notebook grid's page (same filters, sort, baseline)."""

    @tornado.web.authenticated
    async def get(self, run_id: str) -> None:
        raw_state = self.get_argument("view", "")  # not "state": Jupyter scrubs that from its logs
        await self.answer(lambda: grid_page(self.workspace().store, run_id, raw_state))


ROUTES: list[tuple[str, type[_Base]]] = [
    ("workspaces", WorkspacesHandler),
    ("stamp", StampHandler),
    ("datasets", DatasetsHandler),
    ("datasets/rows", DatasetRowsHandler),
    ("prompts", PromptsHandler),
    ("prompts/diff", PromptDiffHandler),
    ("retrievers", RetrieversHandler),
    ("runs", RunsHandler),
    ("overview", OverviewHandler),
    (r"runs/([^/]+)/leaderboard", LeaderboardHandler),
    (r"runs/([^/]+)/grid", GridHandler),
]


def setup_handlers(web_app: Any) -> None:
    base = web_app.settings["base_url"]
    web_app.add_handlers(".*$", [(url_path_join(base, NAMESPACE, "api", path), h) for path, h in ROUTES])


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "workbench.labserver"}]


def _warm() -> None:
    """Import what the sidebar's first request needs (DuckDB, the Workspace API: ~0.3 s of CPU) while the
    browser is still loading JupyterLab, so the first load does not pay for it."""
    import duckdb  # noqa: F401

    import workbench.gridview
    import workbench.workspace  # noqa: F401


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Register the read-only API (``jupyter server extension list`` shows ``workbench.labserver``)."""
    setup_handlers(server_app.web_app)
    # Not a daemon: a server stopped within its first second would otherwise finalise the interpreter while this
    # thread is inside DuckDB's module init, which aborts the process (nanobind, seen in CI). Shutdown waits for it.
    threading.Thread(target=_warm, name="llmops-warm", daemon=False).start()
    server_app.log.info("LLMOps Workbench API registered under /%s/api", NAMESPACE)
