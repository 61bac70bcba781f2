"""The JupyterLab server extension's API, on a real jupyter-server (pytest-jupyter) over a real workspace.

Covers: authentication on every route, paging, the grid's filters/sort/baseline/paging, the prompt diff,
JSON errors with status codes, path traversal refused, and a kernel-like subprocess writing the workspace
while the API reads it (neither side locked out).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jupyter_server")
pytest.importorskip("pytest_jupyter")

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

pytest_plugins = ["pytest_jupyter.jupyter_server"]

HERE = Path(__file__).resolve().parent
WRITER = HERE / "labserver_writer.py"


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"workbench.labserver": True}}}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One seeded workspace (dataset, two prompt versions, a finished run), copied into each server root."""
    root = tmp_path_factory.mktemp("seed")
    subprocess.run(
        [sys.executable, str(WRITER), str(root / ".llmops"), "--seed-only", "--cases", "30"],
        check=True,
        timeout=600,
        capture_output=True,
    )
    return root / ".llmops"


@pytest.fixture
def root(jp_root_dir: Path, seeded: Path) -> Path:
    import shutil

    shutil.copytree(seeded, jp_root_dir / ".llmops")
    return jp_root_dir


async def get(jp_fetch: Any, path: str, **params: Any) -> Any:
    r = await jp_fetch("llmops", "api", *path.split("/"), params={k: str(v) for k, v in params.items()})
    assert r.code == 200
    return json.loads(r.body)


async def error(jp_fetch: Any, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("llmops", "api", *path.split("/"), params={k: str(v) for k, v in params.items()})
    return info.value.code, json.loads(info.value.response.body)


async def test_every_route_needs_authentication(jp_fetch: Any, jp_base_url: str, jp_http_port: int, root: Path) -> None:
    from workbench.labserver import ROUTES

    client = AsyncHTTPClient()
    base = f"http://127.0.0.1:{jp_http_port}{jp_base_url}llmops/api/"
    for path, _ in ROUTES:
        url = base + path.replace("([^/]+)", "x") + "?ws=.llmops"
        with pytest.raises(HTTPClientError) as info:
            await client.fetch(url, headers={"Authorization": "token wrong"})
        assert info.value.code in (401, 403), path
        with pytest.raises(HTTPClientError) as info:
            await client.fetch(url)
        assert info.value.code in (401, 403), path
    ok = await get(jp_fetch, "workspaces")  # jp_fetch sends the server's token
    assert [w["id"] for w in ok["items"]] == [".llmops"]


def test_server_passes_the_template_auth_check(tmp_path: Path) -> None:
    """The extension template's check: a server with allow_unauthenticated_access=False warns about nothing."""
    code = """
import warnings, sys
from jupyter_server.serverapp import ServerApp
from jupyter_server.utils import JupyterServerAuthWarning
app = ServerApp(allow_unauthenticated_access=False, jpserver_extensions={"workbench.labserver": True},
                reraise_server_extension_failures=True, root_dir=sys.argv[1])
with warnings.catch_warnings(record=True) as records:
    warnings.simplefilter("always")
    app.initialize(argv=[], find_extensions=False, new_httpserver=False)
bad = [str(r.message) for r in records if issubclass(r.category, JupyterServerAuthWarning)]
routes = [r for r in app.web_app.default_router.rules for r in getattr(r.target, "rules", [r])]
print("PROBLEMS", bad)
assert not bad, bad
assert any("llmops/api/runs" in str(getattr(r.matcher, "regex", "").pattern) for r in routes), "routes missing"
print("OK")
"""
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK" in out.stdout


async def test_lists_are_paged(jp_fetch: Any, root: Path) -> None:
    datasets = await get(jp_fetch, "datasets", ws=".llmops")
    assert [(d["name"], d["version"], d["n_cases"]) for d in datasets["items"]] == [("pubmedqa", 1, 30)]
    rows = await get(jp_fetch, "datasets/rows", ws=".llmops", name="pubmedqa", offset=10, limit=5)
    assert rows["total"] == 30 and len(rows["items"]) == 5
    first = await get(jp_fetch, "datasets/rows", ws=".llmops", name="pubmedqa", limit=30)
    assert [r["case_id"] for r in rows["items"]] == [r["case_id"] for r in first["items"][10:15]]
    prompts = await get(jp_fetch, "prompts", ws=".llmops", limit=1)
    assert prompts["total"] >= 3 and len(prompts["items"]) == 1
    runs = await get(jp_fetch, "runs", ws=".llmops")
    (run,) = runs["items"]
    assert run["status"] == "completed" and run["done"] == run["n_cells"] == 60 and run["progress"] == 1.0
    board = await get(jp_fetch, f"runs/{run['run_id']}/leaderboard", ws=".llmops")
    assert {b["variant"] for b in board["items"]} == {"with-context", "question-only"}
    assert all(0 <= b["token_f1"] <= 1 for b in board["items"])
    retr = await get(jp_fetch, "retrievers", ws=".llmops")
    assert retr == {"corpora": [], "retrievers": []}
    overview = await get(jp_fetch, "overview", ws=".llmops", limit=5)
    assert overview["runs"] == {**runs, "limit": 5} and overview["retrievers"] == retr
    assert overview["datasets"]["items"] == datasets["items"] and overview["prompts"]["total"] == prompts["total"]
    code, body = await error(jp_fetch, "runs", ws=".llmops", limit=0)
    assert code == 400 and "limit" in body["message"]


def _state(**kw: Any) -> dict[str, str]:
    return {"view": json.dumps(kw)}


async def test_grid_filters_sort_baseline_and_pages(jp_fetch: Any, root: Path) -> None:
    """The sidebar's grid speaks the notebook grid's view state (ViewState) and gets its page shape."""
    (run,) = (await get(jp_fetch, "runs", ws=".llmops"))["items"]
    url = f"runs/{run['run_id']}/grid"
    page0 = await get(jp_fetch, url, ws=".llmops", **_state(page_size=7))
    assert page0["total"] == 30 and len(page0["rows"]) == 7 and page0["pages"] == 5
    assert page0["metric_names"] == ["token_f1", "contains"]
    assert [c["key"] for c in page0["columns"]] == ["with-context", "question-only"]
    assert page0["state"]["baseline"] == "with-context" and page0["state"]["page_size"] == 7  # widget defaults
    cell = page0["rows"][0]["cells"]["with-context"]["repeats"][0]
    assert set(cell) >= {"output", "error", "latency_ms", "cost", "scores", "chunks", "cached", "tokens"}
    last = await get(jp_fetch, url, ws=".llmops", **_state(page_size=7, page=4))
    assert len(last["rows"]) == 2 and last["total"] == 30
    seen = {
        r["case_id"]
        for p in range(5)
        for r in (await get(jp_fetch, url, ws=".llmops", **_state(page_size=7, page=p)))["rows"]
    }
    assert len(seen) == 30
    beyond = await get(jp_fetch, url, ws=".llmops", **_state(page_size=7, page=99))  # clamps to the last page
    assert beyond["page"] == 4 and beyond["state"]["page"] == 4

    ctx, qonly = "with-context", "question-only"

    def f1(row: dict[str, Any], key: str) -> float:
        return float(row["cells"][key]["repeats"][0]["scores"]["token_f1"])

    by_f1 = await get(
        jp_fetch,
        url,
        ws=".llmops",
        **_state(page_size=30, sort_by="metric", sort_metric="token_f1", sort_column=ctx, sort_desc=True),
    )
    values = [f1(r, ctx) for r in by_f1["rows"]]
    assert values == sorted(values, reverse=True) and len(set(values)) > 3

    delta = await get(
        jp_fetch,
        url,
        ws=".llmops",
        **_state(
            page_size=30, sort_by="delta", sort_metric="token_f1", sort_column=ctx, baseline=qonly, sort_desc=True
        ),
    )
    d = [f1(r, ctx) - f1(r, qonly) for r in delta["rows"]]
    assert d == sorted(d, reverse=True)

    low = await get(
        jp_fetch,
        url,
        ws=".llmops",
        **_state(page_size=30, show="failures", failure_metric="token_f1", failure_op=">", failure_threshold=0.3),
    )
    assert 0 < low["total"] < 30  # a case fails when any variant's score is beyond the threshold
    assert all(max(f1(r, ctx), f1(r, qonly)) > 0.3 for r in low["rows"])
    word = by_f1["rows"][0]["inputs"]["question"]["text"].split()[2]
    found = await get(jp_fetch, url, ws=".llmops", **_state(search=word.upper()))
    assert found["total"] >= 1
    assert all(word.lower() in json.dumps(r).lower() for r in found["rows"])

    code, body = await error(jp_fetch, url, ws=".llmops", **_state(sort_by="nope"))
    assert code == 400 and "nope" in body["message"] and body["type"] == "ValidationError"
    code, body = await error(jp_fetch, url, ws=".llmops", **_state(colour="red"))
    assert code == 400 and "colour" in body["message"]
    code, body = await error(jp_fetch, url, ws=".llmops", **_state(search="(", search_regex=True))
    assert code == 400 and "regular expression" in body["message"]
    code, body = await error(jp_fetch, url, ws=".llmops", view="{bad json")
    assert code == 400 and "view" in body["message"]
    code, body = await error(jp_fetch, "runs/does-not-exist/grid", ws=".llmops")
    assert code == 404 and body["type"] == "NotFoundError"


async def test_sidebar_grid_and_notebook_grid_give_the_same_pages(jp_fetch: Any, root: Path) -> None:
    """One query for both faces: for several view states the HTTP route returns exactly GridQuery.page's rows."""
    from workbench.gridview import GridQuery
    from workbench.store import Store

    (run,) = (await get(jp_fetch, "runs", ws=".llmops"))["items"]
    url = f"runs/{run['run_id']}/grid"
    ctx, qonly = "with-context", "question-only"
    states: list[dict[str, Any]] = [
        {},
        {"page": 1, "page_size": 8},
        {"show": "failures", "failure_metric": "token_f1", "failure_op": ">", "failure_threshold": 0.3},
        {"show": "passes", "failure_metric": "contains", "failure_threshold": 0.5, "sort_desc": True},
        {"show": "disagree", "sort_by": "disagreement", "page_size": 10},
        {"sort_by": "delta", "sort_metric": "token_f1", "baseline": qonly, "sort_desc": True, "diff": "baseline"},
        {"sort_by": "metric", "sort_metric": "contains", "sort_column": qonly, "page": 2, "page_size": 5},
        {"search": "cancer|tumou?r", "search_regex": True, "sort_by": "latency", "diff": "expected"},
        {"search": "the", "show": "errors"},
        {"baseline": ctx, "input_columns": ["question"], "expected_column": "final_decision", "page": 40},
    ]
    for state in states:
        http = await get(jp_fetch, url, ws=".llmops", **_state(**state))
        store = Store(root / ".llmops", read_only=True)
        query = GridQuery(store, [run["run_id"]])
        full = {**query.default_state().as_dict(), **state}
        direct = json.loads(json.dumps(query.page(full)))
        assert http["rows"] == direct["rows"], state
        for key in ("total", "page", "pages", "n_cases", "metrics", "runs"):
            assert http[key] == direct[key], (state, key)
        assert http["state"] == {**full, "page": direct["page"]}
    totals = [(await get(jp_fetch, url, ws=".llmops", **_state(**s)))["total"] for s in states]
    assert len(set(totals)) >= 3, totals  # the states select different rows: the comparison is not vacuous


async def test_prompt_diff(jp_fetch: Any, root: Path) -> None:
    res = await get(jp_fetch, "prompts/diff", ws=".llmops", name="answer", a=1, b=2)
    lines = res["diff"].splitlines()
    assert " [user] Question: {{ question }}" in lines
    assert "+[user] Context: {{ context }}" in lines
    assert "-[system] You answer biomedical questions." in lines and "+[system] Answer from the abstract." in lines
    same = await get(jp_fetch, "prompts/diff", ws=".llmops", name="answer", a=2, b=2)
    assert same["diff"] == ""
    code, _ = await error(jp_fetch, "prompts/diff", ws=".llmops", name="answer", a=1, b=9)
    assert code == 404


async def test_paths_outside_the_root_are_refused(jp_fetch: Any, root: Path, tmp_path_factory: Any) -> None:
    import shutil

    outside = tmp_path_factory.mktemp("outside")
    shutil.copytree(root / ".llmops", outside / ".llmops")
    rel = os.path.relpath(outside / ".llmops", root)  # ../../outside0/.llmops
    for ws in ["../.llmops", str(rel), str(outside / ".llmops"), ".llmops/../../" + outside.name + "/.llmops"]:
        code, body = await error(jp_fetch, "runs", ws=ws)
        assert code in (400, 403), ws
        assert "root" in body["message"], body
    (root / "link").symlink_to(outside)
    code, _ = await error(jp_fetch, "runs", ws="link/.llmops")
    assert code == 403
    code, _ = await error(jp_fetch, "runs", ws="nowhere")
    assert code == 404
    code, _ = await error(jp_fetch, "runs")
    assert code == 400


async def test_workspaces_discovered_and_env(jp_fetch: Any, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    shutil.copytree(root / ".llmops", root / "proj" / "a" / ".llmops")
    shutil.copytree(root / ".llmops", root / "custom-ws")
    monkeypatch.setenv("LLMOPS_WORKSPACE", str(root / "custom-ws"))
    res = await get(jp_fetch, "workspaces")
    ids = [w["id"] for w in res["items"]]
    assert ids == ["custom-ws", ".llmops", "proj/a/.llmops"] or sorted(ids) == sorted(
        ["custom-ws", ".llmops", "proj/a/.llmops"]
    )
    assert all(w["stamp"] for w in res["items"])


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_api_reads_while_a_kernel_process_writes(jp_fetch: Any, root: Path, openai_server: Any) -> None:
    """A kernel-like subprocess runs a real grid in the workspace; the API keeps answering, the run finishes."""
    openai_server.reset()
    openai_server.configure(latency=0.02)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(WRITER),
            str(root / ".llmops"),
            "--api-base",
            openai_server.base_url,
            "--cases",
            "30",
            "--concurrency",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stamps, progress, reads = set(), [], 0
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            stamps.add((await get(jp_fetch, "stamp", ws=".llmops"))["stamp"])
            runs = (await get(jp_fetch, "runs", ws=".llmops"))["items"]
            live = [r for r in runs if r["name"] == "live"]
            if live:
                progress.append(live[0]["done"])
                await get(jp_fetch, f"runs/{live[0]['run_id']}/grid", ws=".llmops", **_state(page_size=10))
            reads += 1
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "DONE" in out and out.strip().endswith("completed"), out
    assert reads >= 3 and len(stamps) >= 2
    final = [r for r in (await get(jp_fetch, "runs", ws=".llmops"))["items"] if r["name"] == "live"][0]
    assert final["done"] == final["n_cells"] == 60 and final["status"] == "completed"
    assert progress == sorted(progress)


def test_read_only_store_pages_runs_and_writes_nothing(seeded: Path, tmp_path: Path) -> None:
    import shutil

    from workbench.errors import WorkspaceError
    from workbench.store import Store
    from workbench.workspace import Workspace

    with pytest.raises(WorkspaceError, match="no workspace database"):
        Workspace(tmp_path / "missing", read_only=True)
    assert not (tmp_path / "missing").exists()
    path = tmp_path / "ws"
    shutil.copytree(seeded, path)
    with Store(path).transaction() as con:  # 25 runs: the seeded one copied in SQL
        con.execute(
            "INSERT INTO runs SELECT run_id || '-' || i, name, status, dataset_name, dataset_hash, spec, repeats, "
            "n_cells, created_at - to_seconds(i), finished_at FROM runs, range(1, 25) t(i)"
        )
    before = (path / "workspace.duckdb").stat().st_mtime_ns
    ro = Workspace(path, read_only=True)
    full = ro.runs()
    with ro.store.session():
        pages = [ro.store.runs_page(10, off) for off in (0, 10, 20)]
    assert [t for _, t in pages] == [25, 25, 25]
    ids = [r["run_id"] for rows, _ in pages for r in rows]
    assert ids == list(full["run_id"]) and len(set(ids)) == 25
    assert [r["done"] for rows, _ in pages for r in rows] == list(full["done"])
    assert (path / "workspace.duckdb").stat().st_mtime_ns == before
    with pytest.raises(Exception, match="read-only"):
        with ro.store.connect() as con:
            con.execute("DELETE FROM runs")


def test_catalog_records_match_the_workspace_listings(seeded: Path) -> None:
    """The sidebar's pandas-free catalog gives the JSON the Workspace's DataFrame listings would give."""
    from workbench.labserver import _clean, records
    from workbench.workspace import Workspace

    ws = Workspace(seeded, read_only=True)
    cat = ws.store.catalog()
    assert _clean(cat["datasets"]) == records(ws.datasets()) and len(cat["datasets"]) == 1
    assert _clean(cat["prompts"]) == records(ws.prompts()) and len(cat["prompts"]) >= 3
    assert _clean(cat["corpora"]) == records(ws.corpora())
    assert cat["retrievers"] == []
