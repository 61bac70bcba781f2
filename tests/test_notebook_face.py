"""The notebook face in a real IPython shell: every %llmops subcommand, help, completion and displays.

The magics run here on a dataset shaped unlike the demo (columns ``input`` / ``target`` / ``gold``
instead of question / answer), so nothing depends on the demo's column names.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import html
import json
import re
import warnings
from pathlib import Path

import pytest

import workbench as wb

DATA = Path(__file__).parent / "data" / "pubmedqa_corpus_small.jsonl"


@pytest.fixture(scope="module")
def ip():
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython() or get_ipython()  # one global test shell per process
    shell.run_line_magic("load_ext", "workbench")
    return shell


def magic(ip, line: str, cell: str | None = None):
    return ip.run_cell_magic("llmops", line, cell) if cell is not None else ip.run_line_magic("llmops", line)


@pytest.fixture
def files(tmp_path):
    """A dataset with input/target/gold columns and the corpus its gold ids point into."""
    rows = [json.loads(line) for line in DATA.read_text().splitlines()[:12]]
    data = tmp_path / "qa.jsonl"
    data.write_text(
        "".join(
            json.dumps({"key": r["doc_id"], "input": r["question"], "target": r["decision"], "gold": r["doc_id"]})
            + "\n"
            for r in rows
        )
    )
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"doc_id": r["doc_id"], "text": r["text"]}) + "\n" for r in rows))
    return data, corpus


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every (command path, subparser, help text of its choice) in the tree."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield (*path, name), sub, helps.get(name)
                yield from _walk(sub, (*path, name))


def test_every_command_has_help_in_both_faces(ip, capsys):
    from workbench.cli import build_parser
    from workbench.magics import _Parser

    for parser, prog in ((build_parser(), "llmops"), (build_parser(_Parser, magic=True), "%llmops")):
        commands = list(_walk(parser))
        assert len(commands) >= 25
        for path, sub, help_text in commands:
            assert help_text, f"{prog} {' '.join(path)} has no help line in its parent's list"
            assert sub.description, f"{prog} {' '.join(path)} has no description"
            for action in sub._actions:
                if action.option_strings or action.dest not in ("command", "action"):
                    assert action.help, f"{prog} {' '.join(path)}: argument {action.dest} has no help"
    for path, _, _ in _walk(build_parser(_Parser, magic=True)):
        assert magic(ip, " ".join(path) + " --help") is None
        out = capsys.readouterr().out
        assert out.startswith(f"usage: %llmops {' '.join(path)}"), out[:200]
        assert "--json" not in out and "usage: llmops" not in out


def test_sql_cell_form_and_line_form(ip, tmp_path, capsys):
    w = tmp_path / "ws"
    wb.open(w)
    frame = magic(ip, f"sql -w {w}", "SELECT 40 + 2 AS answer")
    assert int(frame["answer"][0]) == 42
    frame = magic(ip, f"sql -w {w} 'SELECT 7 AS x'")
    assert int(frame["x"][0]) == 7
    assert magic(ip, f"sql -w {w}") is None
    assert "needs a query" in capsys.readouterr().out


def test_manage_names_and_run_from_them(ip, tmp_path, files, capsys):
    data, corpus = files
    w = tmp_path / "ws"
    ds = magic(ip, f"dataset add qa {data} --id key -w {w}")
    assert isinstance(ds, wb.Dataset) and ds.columns == ("key", "input", "target", "gold")
    assert list(magic(ip, f"dataset list -w {w}")["name"]) == ["qa"]
    assert magic(ip, f"dataset show qa -w {w}").n_cases == 12
    profile = magic(ip, f"dataset profile qa --version 1 -w {w}")
    assert list(profile["column"]) == ["key", "input", "target", "gold"]

    first = magic(ip, f"prompt terse --system 'Answer yes, no or maybe.' -w {w}", "Question: {{ input }}")
    assert first.new.version == 1 and first.old is None and "first version" in str(first)
    second = magic(ip, f"prompt terse -w {w} --system 'Answer yes, no or maybe.'", "Question: {{ input }}\nAnswer:")
    assert second.new.version == 2 and "+[user] Answer:" in str(second)
    assert "#e6ffec" in second._repr_html_()  # the added line is highlighted
    same = magic(ip, f"prompt terse -w {w} --system 'Answer yes, no or maybe.'", "Question: {{ input }}\nAnswer:")
    assert same.new.version == 2 and not same.changed
    magic(ip, f"prompt rag -w {w}", "Context: {{ context }}\nQuestion: {{ input }}")
    assert sorted(set(magic(ip, f"prompt list -w {w}")["name"])) == ["rag", "terse"]
    assert magic(ip, f"prompt show terse --version 1 -w {w}").user == "Question: {{ input }}"
    assert "-[user] Question: {{ input }}" not in str(magic(ip, f"prompt diff terse 1 2 -w {w}"))
    assert "+[user] Answer:" in str(magic(ip, f"prompt diff terse 1 2 -w {w}"))

    body = f"corpus: {{path: {corpus}, id: doc_id, text: text}}\nchunker: {{size: SIZE, overlap: 4}}\n"
    body += "top_k: 2\nquery: input\n"
    small = magic(ip, f"retriever small -w {w}", body.replace("SIZE", "24"))
    assert small.version == 1 and "size: 24" in repr(small)
    magic(ip, f"retriever big -w {w}", body.replace("SIZE", "200"))
    assert list(magic(ip, f"retriever list -w {w}")["name"]) == ["big", "small"]
    assert magic(ip, f"retriever show big -w {w}").config["chunker"]["size"] == 200
    board = magic(ip, f"retrieval-eval --dataset qa --retrievers small,big --gold gold --question input -w {w}")
    assert sorted(board["config"]) == ["big", "small"] and (board["recall@k"] > 0).all()

    run = magic(
        ip,
        f"run -w {w} --no-progress --dataset qa --prompts terse,rag --models local/extractive "
        "--retrievers small,big --metrics token_f1:expected=target,recall_at_k:gold=gold",
    )
    assert isinstance(run, wb.Run) and run.status == "completed", capsys.readouterr().out
    variants = list(run.leaderboard()["variant"])
    assert len(variants) == 4 and "rag/extractive/big" in variants
    results = magic(ip, f"results {run.run_id} -w {w}")
    assert len(results) == 48
    assert not {"messages", "retrieved", "request_key"} & set(results.columns)
    assert {"messages", "retrieved"} <= set(run.results().columns)  # the Python API keeps everything
    board = magic(ip, f"leaderboard {run.run_id} -w {w}")
    shown = re.findall(r"\d+\.\d+", repr(board) + board._repr_html_())
    assert shown and max(len(x.replace(".", "").lstrip("0")) for x in shown) <= 5  # rounded for reading
    assert board["token_f1"].map(lambda x: len(repr(x)) > 8).any()  # ... but the values are not rounded
    charts = magic(ip, f"leaderboard {run.run_id} --plot -w {w}")
    bundle = charts._repr_mimebundle_()
    assert {"application/vnd.vegalite.v5+json", "image/png", "text/plain"} <= set(bundle)
    assert magic(ip, f"compare {run.run_id} rag/extractive/big rag/extractive/small -m token_f1 -w {w}").result.n == 12
    decision = magic(ip, f"winner {run.run_id} -m token_f1 --max latency_p95_ms=100000 -w {w}")
    assert decision.winner in variants
    again = magic(ip, f"resume {run.run_id} --no-progress -w {w}")
    assert again.status == "completed" and again.last.done == 0
    runs = magic(ip, f"runs -w {w}")
    page = runs._repr_html_()
    assert run.run_id in page and not re.search(r">(None|NaN|NaT|nan)<", page)


def test_run_by_stored_model_name_over_http(ip, tmp_path, files, fake_llm):
    data, _ = files
    w = tmp_path / "ws"
    spec = f"""
dataset: {{name: qa, path: {data}, id: key}}
prompts: [{{name: p, user: "Q {{{{ input }}}}"}}]
models: [{{name: served, model: openai/test-model, api_base: "{fake_llm.base_url}"}}]
metrics: [{{name: contains, expected: target}}]
"""
    first = magic(ip, f"run -w {w} --no-progress", spec)
    assert first.status == "completed" and fake_llm.stats()["chat"] == 12
    magic(ip, f"prompt p2 -w {w}", "Again: {{ input }}")
    run = magic(
        ip, f"run -w {w} --no-progress --dataset qa --prompts p2 --models served --metrics contains:expected=target"
    )
    assert run.status == "completed" and fake_llm.stats()["chat"] == 24  # "served" is the stored config: same server


def test_yaml_cell_takes_a_bare_model_string_and_plans(ip, tmp_path, files, capsys):
    data, _ = files
    w = tmp_path / "ws"
    spec = f"""
dataset: {{name: qa, path: {data}, id: key}}
prompts: [{{name: p, user: "Context: {{{{ input }}}}\\nQuestion: {{{{ input }}}}"}}]
models: [local/extractive]
metrics: [{{name: token_f1, expected: input}}]
"""
    plan = magic(ip, f"run -w {w} --dry-run", spec)
    assert repr(plan).startswith("<Plan: 12 cells = 12 cases x 1 variants") and "no model called" in repr(plan)
    assert "<table>" in plan._repr_html_()
    run = magic(ip, f"run -w {w} --no-progress", spec)
    assert isinstance(run, wb.Run) and run.status == "completed", capsys.readouterr().out
    assert run.leaderboard()["token_f1"][0] > 0.5


def test_metrics_table_shows_whole_descriptions(ip):
    from workbench.metrics.registry import all_metrics

    table = magic(ip, "metrics")
    longest = max((d.description for d in all_metrics().values()), key=len)
    assert len(longest) > 50 and longest in html.unescape(table._repr_html_())


def test_tab_completion_offers_commands_run_ids_and_names(ip, tmp_path, files, monkeypatch):
    from IPython.core.completer import provisionalcompleter

    data, _ = files
    w = tmp_path / "ws"
    ws = wb.open(w)
    ws.add_dataset("qa", data, id="key")
    ws.add_prompt("terse", "Q: {{ input }}")
    run = ws.experiment("qa", ["terse"], "local/extractive").run(progress=False)
    monkeypatch.setenv("LLMOPS_WORKSPACE", str(w))

    def complete(code: str) -> list[str]:
        with provisionalcompleter():
            return [c.text for c in ip.Completer.completions(code, len(code))]

    assert "prompt" in complete("%llmops pro") and "retrieval-eval" in complete("%llmops retr")
    assert set(complete("%llmops prompt ")) >= {"save", "list", "show", "diff"}
    assert "terse" in complete("%llmops prompt show te")
    assert run.run_id in complete(f"%llmops results {run.run_id[:6]}")
    assert "qa" in complete("%llmops run --dataset q")
    assert "--plot" in complete("%llmops leaderboard x --pl")
    assert complete(f"%llmops results -w {tmp_path / 'nowhere'} 2") == []  # no workspace is created by typing
    assert not (tmp_path / "nowhere").exists()


def test_workspace_and_plan_display(tmp_path, files):
    data, _ = files
    ws = wb.open(tmp_path / "ws")
    ws.add_dataset("qa", data, id="key")
    page = ws._repr_html_()
    assert "Workspace" in page and str(ws.path) in page and "<td style='text-align:left'>1</td>" in page
    plan = ws.experiment("qa", [wb.Prompt("p", "Q: {{ input }}")], "local/extractive").plan()
    assert "Plan({" not in repr(plan) and "12 cells" in repr(plan)


def test_experiment_takes_retriever_dicts_and_stored_names(tmp_path, files):
    data, corpus = files
    ws = wb.open(tmp_path / "ws")
    ws.add_dataset("qa", data, id="key")
    cfg = {"corpus": {"path": str(corpus), "id": "doc_id", "text": "text"}, "top_k": 2, "query": "input"}
    ws.add_retriever("stored", {**cfg, "chunker": {"size": 40, "overlap": 4}})
    exp = ws.experiment(
        "qa",
        [wb.Prompt("rag", "Context: {{ context }}\nQuestion: {{ input }}")],
        "local/extractive",
        [{"name": "recall_at_k", "gold": "gold"}],
        retrievers=[{"name": "inline", **cfg}, "stored"],
    )
    assert [v.name for v in exp.variants] == ["rag/extractive/inline", "rag/extractive/stored"]
    run = exp.run(progress=False)
    assert (run.leaderboard()["recall_at_k"] > 0.5).all()
    with pytest.raises(wb.NotFoundError, match="known: \\['stored'\\]"):
        ws.experiment("qa", [wb.Prompt("rag", "{{ input }}")], "local/extractive", retrievers=["nope"])


def test_baseline_without_context_answers_nothing_and_cancel_leaves_no_warning(tmp_path):
    from workbench.baseline import answer

    assert answer([{"role": "user", "content": "Question: is aspirin useful?"}]) == ""
    ws = wb.open(tmp_path / "ws")
    rows = [{"id": f"c{i}", "q": f"Fact number {i} is true. Other text {i}."} for i in range(400)]
    ws.add_dataset("d", rows, id="id")
    exp = ws.experiment(
        "d", [wb.Prompt("p", "Context: {{ q }}\nQuestion: fact {{ id }}?")], "local/extractive", concurrency=16
    )

    async def start_and_cancel():
        task = asyncio.ensure_future(exp.arun(progress=False))
        await asyncio.sleep(1.0)
        task.cancel()
        try:
            return await task
        except asyncio.CancelledError:
            return None

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(start_and_cancel())
        gc.collect()
    texts = [str(w.message) for w in caught]
    assert not [t for t in texts if "never awaited" in t], texts
    run = ws.get_run(ws.runs()["run_id"][0])
    assert run.status in ("interrupted", "completed")


def test_live_progress_snapshots_and_first_eta(tmp_path, fake_llm):
    """The reporter is fed about once a second; its first ETA leaves out the model client's import and warm-up."""
    import subprocess
    import sys

    fake_llm.configure(latency=0.05)
    code = f"""
import json, sys, time
import workbench as wb
seen = []
class Recorder:
    def __init__(self, snap):
        self.imported = "openai" in sys.modules
        seen.append(("start", time.perf_counter(), snap.eta, snap.done, self.imported))
    def update(self, snap):
        seen.append(("update", time.perf_counter(), snap.eta, snap.done, [r["n"] for r in snap.board]))
    def close(self, snap):
        seen.append(("close", time.perf_counter(), snap.eta, snap.done, snap.status))
ws = wb.open({str(tmp_path / "ws")!r})
ws.add_dataset("d", [{{"id": f"c{{i}}", "q": f"question {{i}}"}} for i in range(160)], id="id")
exp = ws.experiment("d", [wb.Prompt("a", "A {{{{ q }}}}"), wb.Prompt("b", "B {{{{ q }}}}")],
                    [{{"name": "m", "model": "openai/test-model", "api_base": {fake_llm.base_url!r}}}],
                    [{{"name": "contains", "expected": "q"}}], concurrency=4)
t0 = time.perf_counter()
run = exp.run(progress=Recorder)
print(json.dumps({{"seen": seen, "t0": t0, "end": time.perf_counter()}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout.strip().splitlines()[-1])
    seen = data["seen"]
    assert seen[0][0] == "start" and seen[0][2] is None  # no ETA before anything finished
    updates = [s for s in seen if s[0] == "update"]
    assert len(updates) >= 2 and seen[-1][0] == "close" and seen[-1][4] == "completed" and seen[-1][3] == 320
    assert sum(updates[-1][4]) == updates[-1][3]  # the board so far counts every finished cell
    etas = [(t, eta) for _, t, eta, _, _ in updates if eta is not None]
    assert etas, updates
    first_t, first_eta = etas[0]
    actual_left = data["end"] - first_t
    assert first_eta < 4 * actual_left + 5, (first_eta, actual_left)  # not minutes off like the import made it


def test_cli_saves_the_charts(tmp_path, files, capsys):
    from workbench.cli import main

    data, _ = files
    ws = wb.open(tmp_path / "ws")
    ws.add_dataset("qa", data, id="key")
    prompts = [wb.Prompt("a", "Context: {{ input }}\nQuestion: {{ input }}"), wb.Prompt("b", "Question: {{ input }}")]
    run = ws.experiment("qa", prompts, "local/extractive", [{"name": "token_f1", "expected": "input"}]).run(
        progress=False
    )
    for name in ("board.png", "board.json", "board.html", "board.svg"):
        assert main(["leaderboard", run.run_id, "-w", str(tmp_path / "ws"), "--plot", str(tmp_path / name)]) == 0
    assert (tmp_path / "board.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    spec = json.loads((tmp_path / "board.json").read_text())
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/v5")
    assert "Winner on token_f1: a" in json.dumps(spec["title"])
    assert "<svg" in (tmp_path / "board.svg").read_text()
    page = (tmp_path / "board.html").read_text()
    assert "vegaEmbed" in page and "cdn.jsdelivr" not in page  # self-contained: opens offline
    assert main(["leaderboard", run.run_id, "-w", str(tmp_path / "ws"), "--plot", str(tmp_path / "x.gif")]) == 2
    assert "cannot save charts as .gif" in capsys.readouterr().err
    from workbench.widgets.charts import pareto_front

    assert pareto_front([("cheap", 1, 0.5), ("good", 2, 0.9), ("worse", 3, 0.8), ("tie", 1, 0.4)]) == ["cheap", "good"]


def test_a_stop_after_the_last_cell_is_not_an_interrupted_run(tmp_path, files):
    data, _ = files
    ws = wb.open(tmp_path / "ws")
    ws.add_dataset("qa", data, id="key")
    run = ws.experiment("qa", [wb.Prompt("p", "Q: {{ input }}")], "local/extractive").run(progress=False)
    assert ws.store.finish_run(run.run_id, "interrupted", [])[2] == "completed"
    assert run.status == "completed"


def test_management_commands_on_the_command_line(tmp_path, files, capsys):
    from workbench.cli import main

    data, corpus = files
    w = ["-w", str(tmp_path / "ws")]
    assert main(["dataset", "add", "qa", str(data), "--id", "key", *w]) == 0
    assert "dataset qa@v1 (12 cases" in capsys.readouterr().out
    assert main(["prompt", "save", "p", "--user", "Q: {{ input }}", *w]) == 0
    assert "prompt 'p': nothing -> v1 (first version)" in capsys.readouterr().out
    assert main(["prompt", "save", "p", "--user", "Question: {{ input }}", "--json", *w]) == 0
    saved = json.loads(capsys.readouterr().out)
    assert saved["new_version"] == 2 and saved["changed"]
    assert main(["prompt", "diff", "p", "1", "2", "--json", *w]) == 0
    diff = json.loads(capsys.readouterr().out)
    assert diff["old_version"] == 1 and diff["new_version"] == 2 and "+[user] Question: {{ input }}" in diff["diff"]
    assert main(["prompt", "show", "p", "--json", *w]) == 0
    assert json.loads(capsys.readouterr().out)["user"] == "Question: {{ input }}"
    config = tmp_path / "r.yaml"
    config.write_text(f"corpus: {{path: {corpus.name}, id: doc_id, text: text}}\nchunker: 48\ntop_k: 2\nquery: input\n")
    assert main(["retriever", "save", "r48", "--file", str(config), *w]) == 0
    assert main(["retriever", "list", *w]) == 0
    assert "fixed 48/32 tokens" in capsys.readouterr().out
    assert (
        main(
            [
                "retrieval-eval",
                "--dataset",
                "qa",
                "--retrievers",
                "r48",
                "--gold",
                "gold",
                "--question",
                "input",
                "--json",
                *w,
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)[0]["config"] == "r48"
    assert (
        main(
            [
                "run",
                "--dataset",
                "qa",
                "--prompts",
                "p",
                "--models",
                "local/extractive",
                "--retrievers",
                "r48",
                "--metrics",
                "recall_at_k:gold=gold",
                "--no-progress",
                "--json",
                *w,
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "completed" and summary["leaderboard"][0]["recall_at_k"] > 0.5


def test_demo_and_spec_forms_in_the_shell(ip, tmp_path, files):
    """The remaining magic forms: %llmops demo, run SPEC and retrieval-eval SPEC (paths, not cells)."""
    data, corpus = files
    w = tmp_path / "ws"
    run = magic(ip, f"demo --no-progress -w {w}")
    assert isinstance(run, wb.Run) and run.status == "completed"
    assert list(run.leaderboard()["variant"]) == ["gold-context", "rag-hybrid128", "rag-dense32"]
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"dataset: {{name: qa, path: {data.name}, id: key}}\n"
        'prompts: [{name: p, user: "Question: {{ input }}"}]\n'
        "models: [local/extractive]\n"
        f"retrievers: [{{name: r, corpus: {{path: {corpus.name}, id: doc_id, text: text}}, top_k: 2, query: input}}]\n"
        "metrics: [{name: recall_at_k, gold: gold}]\n"
    )
    assert magic(ip, f"run {spec} --no-progress -w {w}").status == "completed"
    only_retrieval = tmp_path / "retrieval.yaml"
    only_retrieval.write_text(spec.read_text())  # the question column comes from the retriever's `query:`
    board = magic(ip, f"retrieval-eval {only_retrieval} -w {w}")
    assert list(board["config"]) == ["r"] and board["recall@k"][0] > 0.5
