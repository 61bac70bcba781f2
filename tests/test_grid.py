"""EvalGrid from Python: pages, filters, sorts, diffs and feedback through the widget's message handler.

Expected rows are computed independently from ``run.results()`` (pandas) and compared with what the
grid's SQL returns, so a wrong filter or order fails here.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time

import pandas as pd
import pytest

import workbench as wb
from workbench.gridview import GridQuery, ViewState, word_diff

INJECTION = "'; DROP TABLE cells; --"
N_CASES = 23


def _cases() -> list[dict[str, str]]:
    rows = []
    for i in range(N_CASES):
        q = f"what is item {i} made of?"
        if i == 5:
            q = f"is {INJECTION} safe?"
        if i == 7:
            q = "colour of the sky at noon"
        rows.append({"id": f"c{i:02d}", "question": q, "answer": "blue sky" if i % 3 == 0 else f"item {i} steel"})
    return rows


@pytest.fixture(scope="module")
def grid_env(tmp_path_factory, openai_server):
    """One run: 23 cases x 2 variants x 2 repeats over the fake server; the first 2 requests fail (HTTP 400)."""
    openai_server.reset()
    openai_server.configure(
        replies=[
            {"pattern": "item 1[0-4] ", "reply": "blue sky today"},  # both variants agree on cases 10-14
            {"pattern": "Please.*item 2 ", "reply": "item 2 steel and stone"},
            {"pattern": "item 9 ", "reply": "long " * 1000},  # longer than a page carries
        ],
        script=[{"status": 400}, {"status": 400}],
    )
    ws = wb.open(tmp_path_factory.mktemp("grid") / "ws")
    ds = ws.add_dataset("items", _cases(), id="id")
    model = {"name": "m", "model": "openai/test-model", "api_base": openai_server.base_url, "max_retries": 0}
    exp = ws.experiment(
        ds,
        [wb.Prompt("plain", "Q: {{ question }}"), wb.Prompt("polite", "Please answer: {{ question }}")],
        [model],
        [{"name": "token_f1", "expected": "answer"}, {"name": "contains", "expected": "answer"}],
        repeats=2,
        concurrency=1,
    )
    run = exp.run(progress=False)
    openai_server.reset()
    return ws, run


def _results(run: wb.Run) -> pd.DataFrame:
    return run.results()


def _page(grid, **view) -> dict:
    for k, v in view.items():
        setattr(grid, k, v)
    reply = grid.handle_message({"type": "page", "seq": 1})
    assert reply is not None
    assert reply["type"] == "page", reply
    return reply


def _all_ids(grid, **view) -> list[str]:
    """Case ids over every page of the view."""
    view = {"page_size": 200, **view}
    return [r["case_id"] for r in _page(grid, page=0, **view)["rows"]]


def test_first_page_rows_cells_repeats_and_size(grid_env):
    ws, run = grid_env
    grid = run.grid(page_size=7)
    page = _page(grid)
    assert page["total"] == N_CASES and page["pages"] == math.ceil(N_CASES / 7)
    assert [r["case_id"] for r in page["rows"]] == [f"c{i:02d}" for i in range(7)]
    row = page["rows"][3]
    assert set(row["cells"]) == {"plain", "polite"}
    assert [r["repeat"] for r in row["cells"]["plain"]["repeats"]] == [0, 1]  # repeats folded into one cell
    rep = row["cells"]["plain"]["repeats"][0]
    assert rep["output"] == "echo: Q: what is item 3 made of?"
    assert row["inputs"]["question"]["text"] == "what is item 3 made of?"
    assert row["expected"]["text"] == "blue sky"  # the metrics' expected column is found by default
    res = _results(run)
    truth = res[(res.case_id == "c03") & (res.variant == "plain") & (res.repeat == 0)].iloc[0]
    assert rep["scores"]["token_f1"] == round(truth["token_f1"], 4)
    assert rep["latency_ms"] == round(truth["latency_ms"], 1)
    assert {m["name"] for m in page["metrics"]} == {"token_f1", "contains"}
    assert page["runs"][0]["status"] == "completed" and not page["live"]
    last = _page(grid, page=3)
    assert [r["case_id"] for r in last["rows"]] == ["c21", "c22"]
    assert grid.last_page_bytes == len(json.dumps(last, separators=(",", ":")).encode()) < 1_000_000
    # a page past the end (the filter shrank the result) shows the last page and says so
    assert _page(grid, page=9)["page"] == 3 and grid.page == 3


def test_errors_filter_matches_the_stored_errors(grid_env):
    _ws, run = grid_env
    res = _results(run)
    expected = sorted(res[res.error.notna()].case_id.unique())
    assert expected  # the failure script made some
    grid = run.grid()
    assert _all_ids(grid, show="errors") == expected
    row = _page(grid, show="errors")["rows"][0]
    errs = [r for c in row["cells"].values() for r in c["repeats"] if r["error"]]
    assert errs and "HTTP 400" in errs[0]["error"]


@pytest.mark.parametrize("op,threshold", [("<", 0.3), (">", 0.6)])
def test_failures_and_passes_filters(grid_env, op, threshold):
    _ws, run = grid_env
    res = _results(run)
    per = res.groupby(["case_id", "variant"])["token_f1"].mean().unstack()
    fails = per.min(axis=1) < threshold if op == "<" else per.max(axis=1) > threshold
    grid = run.grid(failure_metric="token_f1", failure_op=op, failure_threshold=threshold)
    assert _all_ids(grid, show="failures") == sorted(per.index[fails.fillna(False)])
    assert _all_ids(grid, show="passes") == sorted(per.index[~fails & per.notna().any(axis=1)])


def test_disagreement_filter_on_outputs_and_on_a_metric(grid_env):
    _ws, run = grid_env
    res = _results(run)
    first = res[res.repeat == 0]
    differ = first.groupby("case_id")["output"].nunique() > 1
    grid = run.grid()
    assert _all_ids(grid, show="disagree") == sorted(differ.index[differ])
    assert {f"c{i}" for i in range(10, 15)}.isdisjoint(_all_ids(grid, show="disagree"))
    per = res.groupby(["case_id", "variant"])["token_f1"].mean().unstack()
    spread = (per.max(axis=1) - per.min(axis=1)) > 0.1
    assert _all_ids(grid, show="disagree", disagree_metric="token_f1", disagree_spread=0.1) == sorted(
        per.index[spread.fillna(False)]
    )


def test_search_text_regex_and_injection_is_only_text(grid_env):
    ws, run = grid_env
    grid = run.grid()
    assert _all_ids(grid, search="SKY AT NOON") == ["c07"]  # inputs, case-insensitive
    assert _all_ids(grid, search="stone") == ["c02"]  # outputs
    assert _all_ids(grid, search=r"item 1\d ", search_regex=True) == [f"c{i}" for i in range(10, 20)]
    # plain text means plain text: LIKE's wildcards and its escape character match only themselves
    assert _all_ids(grid, search="item _ ", search_regex=False) == [] and _all_ids(grid, search="item 1%") == []
    assert _all_ids(grid, search="ITEM 2 STEEL") == ["c02"]
    before = int(ws.sql("SELECT count(*) AS n FROM cells")["n"][0])
    assert _all_ids(grid, search=INJECTION, search_regex=False) == ["c05"]
    assert _all_ids(grid, search="\\") == []
    assert int(ws.sql("SELECT count(*) AS n FROM cells")["n"][0]) == before
    grid.search, grid.search_regex = "item (", True
    reply = grid.handle_message({"type": "page", "seq": 4})
    assert reply["type"] == "error" and reply["seq"] == 4
    assert "not a valid regular expression" in reply["message"] and "Traceback" not in reply["message"]


def test_sorts_match_pandas(grid_env):
    _ws, run = grid_env
    res = _results(run)
    per = res.groupby(["case_id", "variant"])["token_f1"].mean().unstack()
    order = [f"c{i:02d}" for i in range(N_CASES)]
    pos = {c: i for i, c in enumerate(order)}

    def ranked(series: pd.Series, desc: bool) -> list[str]:
        frame = pd.DataFrame({"v": series, "pos": [pos[c] for c in series.index]}, index=series.index)
        frame = frame.sort_values(["v", "pos"], ascending=[not desc, True], na_position="last")
        return list(frame.index)

    grid = run.grid()
    assert _all_ids(grid, sort_by="metric", sort_metric="token_f1", sort_desc=True) == ranked(per.mean(axis=1), True)
    assert _all_ids(grid, sort_by="metric", sort_column="polite", sort_desc=False) == ranked(per["polite"], False)
    delta = per["polite"] - per["plain"]
    assert _all_ids(grid, sort_by="delta", baseline="plain", sort_column="", sort_desc=True) == ranked(delta, True)
    spread = per.max(axis=1) - per.min(axis=1)
    assert _all_ids(grid, sort_by="disagreement", sort_metric="token_f1", sort_desc=True) == ranked(spread, True)
    assert _all_ids(grid, sort_by="case", sort_desc=True) == order[::-1]


def test_word_diff_vs_baseline_and_expected(grid_env):
    assert word_diff("the dog sat", "the cat sat") == [["the ", False], ["dog", True], [" sat", False]]
    assert word_diff("same words", "same words") == [["same words", False]]
    assert word_diff("a big red dog", "a dog") == [["a ", False], ["big red", True], [" dog", False]]
    _ws, run = grid_env
    grid = run.grid(diff="baseline", baseline="plain")
    row = _page(grid)["rows"][4]
    assert "diff" not in row["cells"]["plain"]["repeats"][0]
    segs = row["cells"]["polite"]["repeats"][0]["diff"]
    assert "".join(s for s, _ in segs) == row["cells"]["polite"]["repeats"][0]["output"]
    assert [s for s, changed in segs if changed] == ["Please answer"]
    grid.diff = "expected"
    row = _page(grid)["rows"][4]
    assert all("diff" in r for c in row["cells"].values() for r in c["repeats"] if not r["error"])


def test_feedback_round_trip_to_the_table_and_agreement(grid_env):
    _ws, run = grid_env
    grid = run.grid()
    before = len(run.feedback())
    reply = grid.handle_message(
        {"type": "feedback", "seq": 9, "case_id": "c03", "column": "polite", "repeat": 0, "thumbs": True}
    )
    assert reply["type"] == "feedback" and reply["feedback"]["thumbs"] is True and reply["feedback"]["n"] == 1
    fb = run.feedback()
    assert len(fb) == before + 1
    last = fb.iloc[-1]
    assert (last.case_id, last.variant, last.kind, last.value) == ("c03", "polite", "thumbs", 1.0)
    grid.handle_message({"type": "feedback", "case_id": "c03", "column": "polite", "repeat": 1, "rating": 4})
    grid.handle_message({"type": "feedback", "case_id": "c04", "column": "plain", "comment": "too literal"})
    grid.handle_message({"type": "feedback", "case_id": "c06", "column": "plain", "thumbs": False})
    row = _page(grid)["rows"][3]
    assert row["cells"]["polite"]["feedback"]["rating"] == 4.0
    assert _all_ids(grid, feedback="has") == ["c03", "c04", "c06"]
    assert len(_all_ids(grid, feedback="none")) == N_CASES - 3
    agreement = run.agreement("token_f1", human="thumbs")
    assert agreement["n"] == 2
    bad = grid.handle_message({"type": "feedback", "case_id": "c03", "column": "polite", "rating": 9})
    assert bad["type"] == "error" and "rating must be a number from 1 to 5" in bad["message"]
    bad = grid.handle_message({"type": "feedback", "case_id": INJECTION, "column": "polite", "thumbs": True})
    assert bad["type"] == "error" and "no stored cell" in bad["message"]


def test_python_changes_push_a_page_and_view_returns_all_filtered_rows(grid_env):
    _ws, run = grid_env
    grid = run.grid(page_size=3)
    grid.last_reply = None
    grid.show = "disagree"  # no event loop here: answered at once
    assert grid.last_reply is not None and grid.last_reply["type"] == "page"
    total = grid.last_reply["total"]
    frame = grid.view()
    assert len(frame) == total > 3  # every filtered row, not one page
    assert list(frame[("case", "case_id")]) == _all_ids(run.grid(), show="disagree")
    assert ("polite", "token_f1") in frame.columns and ("case", "question") in frame.columns


def test_static_fallback_and_state(grid_env):
    _ws, run = grid_env
    grid = run.grid(page_size=5, show="errors")
    data, _meta = grid._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    html = data["text/html"]
    assert html.count("<tr>") == 1 + min(5, len(_all_ids(run.grid(), show="errors")))
    assert "HTTP 400" in html and "Traceback" not in html
    ok = run.grid(page_size=5)._repr_mimebundle_()[0]["text/html"]
    assert "echo: Q: what is item 3 made of?" in ok
    assert not re.search(r"\d\.\d{5,}", ok)  # numbers rounded
    assert "EvalGrid(runs=" in data["text/plain"]


def test_bad_settings_are_typed_errors(grid_env):
    _ws, run = grid_env
    with pytest.raises(wb.ValidationError, match="unknown setting"):
        run.grid(colour="red")
    with pytest.raises(wb.ValidationError, match="baseline"):
        run.grid(baseline="nope")
    grid = run.grid()
    grid.sort_metric = "nope"
    reply = grid.handle_message({"type": "page", "seq": 2})
    assert reply["type"] == "error" and "sort_metric" in reply["message"]
    assert grid.handle_message({"type": "what"})["type"] == "error"


def test_two_runs_side_by_side(grid_env):
    ws, run = grid_env
    other = ws.experiment(
        ws.dataset("items"),
        [wb.Prompt("plain", "Q: {{ question }}")],
        ["local/extractive"],
        [{"name": "token_f1", "expected": "answer"}],
        name="baseline",
    ).run(progress=False)
    grid = ws.grid(run, other.run_id)
    keys = [c["key"] for c in grid.columns]
    assert len(keys) == 3 and keys[-1].endswith(":plain") and keys[0].endswith(":plain") and keys[0] != keys[-1]
    page = _page(grid, baseline=keys[-1], diff="baseline")
    assert set(page["rows"][0]["cells"]) == set(keys)
    assert {r["run_id"] for r in page["runs"]} == {run.run_id, other.run_id}
    ds2 = ws.add_dataset("items", _cases()[:4], id="id")
    elsewhere = ws.experiment(ds2, [wb.Prompt("p", "{{ question }}")], ["local/extractive"]).run(progress=False)
    with pytest.raises(wb.ValidationError, match="different dataset versions"):
        ws.grid(run, elsewhere)


def test_grid_refreshes_while_a_run_writes(tmp_path, fake_llm):
    fake_llm.configure(latency=0.05)
    ws = wb.open(tmp_path / "ws")
    ds = ws.add_dataset("q", [{"id": f"k{i}", "q": f"question {i}"} for i in range(40)], id="id")
    model = {"name": "m", "model": "openai/test-model", "api_base": fake_llm.base_url}
    exp = ws.experiment(ds, [wb.Prompt("p", "{{ q }}")], [model], concurrency=1)
    run_box: list[wb.Run] = []
    thread = threading.Thread(target=lambda: run_box.append(exp.run(progress=False)))
    thread.start()
    deadline = time.monotonic() + 30
    while not ws.runs().shape[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    grid = ws.grid(ws.runs()["run_id"][0])
    first = _page(grid)
    seen_live = first["live"]
    version = first["version"]
    changed = 0
    while thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.3)
        reply = grid.handle_message({"type": "poll", "seq": 5, "version": version})
        if reply["type"] == "page":  # the run stored more cells: a fresh page comes back
            changed += 1
            version = reply["version"]
            seen_live = seen_live or reply["live"]
    thread.join()
    assert seen_live and changed >= 1
    final = grid.handle_message({"type": "poll", "version": version})
    if final["type"] == "page":
        version = final["version"]
        assert not final["live"]
    assert grid.handle_message({"type": "poll", "version": version})["type"] == "poll"  # nothing new: no page


def test_grid_query_parameterises_every_user_value(grid_env):
    ws, run = grid_env
    query = GridQuery(ws.store, [run.run_id])
    from workbench.gridview import _Params

    state = ViewState.from_dict(
        {
            **query.default_state().as_dict(),
            "search": INJECTION,
            "show": "failures",
            "failure_metric": "token_f1",
            "sort_by": "delta",
            "sort_metric": "token_f1",
        }
    )
    p = _Params()
    sql, _ = query._rows_sql(state, p)
    assert INJECTION not in sql and f"%{INJECTION}%" in p.values  # bound as a LIKE pattern, never in the SQL
    assert "token_f1" not in sql and run.run_id not in sql


def test_magic_grid_returns_the_widget(grid_env, capsys):
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    from workbench.widgets.grid import EvalGrid

    ws, run = grid_env
    ip = start_ipython() or get_ipython()
    ip.run_line_magic("load_ext", "workbench")
    grid = ip.run_line_magic("llmops", f"grid {run.run_id} -w {ws.path} --page-size 4")
    assert isinstance(grid, EvalGrid) and grid.page_size == 4
    assert ip.run_line_magic("llmops", "grid --help") is None
    assert "--page-size" in capsys.readouterr().out


@pytest.mark.slow
def test_nbconvert_html_shows_the_static_page(tmp_path, monkeypatch):
    """Executed without saving widget state (as nbclient, GitHub, nbviewer see it): HTML shows the first page."""
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    monkeypatch.setenv("LLMOPS_WORKSPACE", str(tmp_path / "ws"))
    code = """
import json, workbench as wb
from workbench.demo import data_path
ws = wb.open()
rows = [json.loads(line) for line in open(data_path(), encoding="utf-8")][:4]
ds = ws.add_dataset("four", rows, id="pmid")
run = ws.experiment(ds, [wb.Prompt("gold", "Context: {{ context }}\\nQuestion: {{ question }}")], ["local/extractive"],
                    [{"name": "token_f1", "expected": "long_answer"}]).run(progress=False)
run.grid(page_size=3)
"""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    resources = {"metadata": {"path": str(tmp_path)}}
    NotebookClient(nb, timeout=300, kernel_name="python3", resources=resources, store_widget_state=False).execute()
    data = nb.cells[0].outputs[-1]["data"]
    assert "application/vnd.jupyter.widget-view+json" in data and "text/html" in data
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert '<table class="lw-static">' in html and "rows 1-3 of 4" in html
    assert re.search(r"token_f1 0\.\d\d<", html) and not re.search(r"token_f1 0\.\d{3}", html)
    # with the widget state saved, the state carries the page the widget renders without a kernel
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code.replace('"four"', '"four-b"'))])
    NotebookClient(nb, timeout=300, kernel_name="python3", resources=resources).execute()
    states = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"].values()
    snaps = [s["state"]["snapshot"] for s in states if s["state"].get("snapshot")]
    assert len(snaps) == 1 and len(snaps[0]["rows"]) == 3 and snaps[0]["total"] == 4
    # nbconvert embeds a widget whose state is saved (blank without the CDN); our preprocessor draws it instead
    from workbench.widgets.nbstatic import StaticWidgets

    plain, _ = HTMLExporter().from_notebook_node(nb)
    assert '<table class="lw-static">' not in plain
    exporter = HTMLExporter(preprocessors=[StaticWidgets])
    static, _ = exporter.from_notebook_node(nb)
    rows = re.findall(r'<tr><td>([^<]+)</td>', static.split('<table class="lw-static">')[1].split("</table>")[0])
    assert rows == [r["case_id"] for r in snaps[0]["rows"]] and "rows 1-3 of 4" in static
    assert '<script type="application/vnd.jupyter.widget-view+json">' not in static  # no blank embed left
    assert '"snapshot"' not in static  # nor the grid's state (its page, JS and CSS) in the page


def test_cli_grid_prints_the_first_page(grid_env):
    import subprocess
    import sys

    ws, run = grid_env
    cmd = [sys.executable, "-m", "workbench.cli", "grid", run.run_id, "-w", str(ws.path), "--page-size", "4"]
    out = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["case_id"] for r in rows] == ["c00", "c01", "c02", "c03"]
    assert rows[3]["plain:output"] == "echo: Q: what is item 3 made of?"
    text = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert text.returncode == 0 and "polite:token_f1" in text.stdout


def test_long_texts_are_cut_in_the_page_and_come_whole_on_request(grid_env):
    from workbench.gridview import MAX_TEXT

    _ws, run = grid_env
    grid = run.grid()
    row = next(r for r in _page(grid)["rows"] if r["case_id"] == "c09")
    rep = row["cells"]["plain"]["repeats"][0]
    assert len(rep["output"]) == MAX_TEXT and rep["cut"] == 5000 - MAX_TEXT
    msg = {"type": "text", "seq": 3, "key": "k", "field": "output", "case_id": "c09", "column": "plain", "repeat": 0}
    reply = grid.handle_message(msg)
    assert reply["type"] == "text" and reply["key"] == "k" and reply["text"] == "long " * 1000
    q = {"type": "text", "field": "input", "case_id": "c05", "name": "question"}
    assert grid.handle_message(q)["text"] == f"is {INJECTION} safe?"
    bad = grid.handle_message({"type": "text", "field": "input", "case_id": "c05", "name": "nope"})
    assert bad["type"] == "error" and "no column 'nope'" in bad["message"]
