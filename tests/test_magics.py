"""The %llmops magics in a real IPython shell: same commands as the CLI, never exiting the kernel."""

from __future__ import annotations

import pandas as pd
import pytest

import workbench as wb


@pytest.fixture(scope="module")
def ip():
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython() or get_ipython()  # one global test shell per process
    shell.run_line_magic("load_ext", "workbench")
    return shell


def test_magics_run_a_spec_from_the_cell_and_query_it(ip, tmp_path, fake_llm, capsys):
    w = str(tmp_path / "ws")
    data = tmp_path / "qa.jsonl"
    data.write_text('{"id": "a", "q": "alpha"}\n{"id": "b", "q": "beta"}\n')
    spec = f"""
dataset: {{name: d, path: {data}, id: id}}
prompts: [{{name: p, user: "Q {{{{ q }}}}"}}]
models: [{{name: m, model: openai/test-model, api_base: "{fake_llm.base_url}"}}]
metrics: [{{name: contains, expected: q}}]
"""
    run = ip.run_cell_magic("llmops", f"run -w {w} --no-progress", spec)
    assert isinstance(run, wb.Run) and run.status == "completed"
    assert fake_llm.stats()["chat"] == 2
    board = ip.run_line_magic("llmops", f"leaderboard {run.run_id} -w {w}")
    assert isinstance(board, pd.DataFrame) and board.loc[0, "contains"] == 1.0
    runs = ip.run_line_magic("llmops", f"runs -w {w}")
    assert list(runs["run_id"]) == [run.run_id]
    rows = ip.run_cell_magic("llmops", f"sql -w {w} ignored", "SELECT count(*) AS n FROM cells")
    assert int(rows["n"][0]) == 2


def test_magic_errors_and_help_do_not_exit(ip, tmp_path, capsys):
    assert ip.run_line_magic("llmops", "--help") is None
    assert "COMMAND" in capsys.readouterr().out
    assert ip.run_line_magic("llmops", "run --help") is None
    assert "--dry-run" in capsys.readouterr().out
    assert ip.run_line_magic("llmops", "nonsense") is None
    assert "invalid choice" in capsys.readouterr().out
    assert ip.run_line_magic("llmops", f"results nope -w {tmp_path / 'ws'}") is None
    assert "error: no run 'nope'" in capsys.readouterr().out
    assert ip.run_cell_magic("llmops", f"run -w {tmp_path / 'ws'}", "prompts: []\nbogus: 1\n") is None
    out = capsys.readouterr().out
    assert "bogus: unknown key" in out and "dataset: required key is missing" in out
