"""`llmops demo` is the README's first command: it must run offline on a fresh workspace."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_demo_runs_offline_with_a_rag_variant(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LLMOPS_WORKSPACE": str(tmp_path / "ws")}
    env.pop("OPENAI_API_KEY", None)
    # the same entry point as `llmops demo`, plus a look at sys.modules: the baseline runs in-process, so the
    # demo never pays litellm's seconds-long import
    probe = ("import sys; from workbench.cli import main; rc = main(['demo', '--json']); "
             "print('litellm imported:', 'litellm' in sys.modules, file=sys.stderr); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=600, env=env,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "litellm imported: False" in out.stderr
    summary = json.loads(out.stdout)
    assert summary["clients"] == {"extractive": "local"}
    assert summary["status"] == "completed" and summary["failed"] == 0 and summary["stored"] == 600
    assert summary["metric_errors"] == {}  # every metric's dependencies are installed by `pip install .`
    board = {row["variant"]: row for row in summary["leaderboard"]}
    assert set(board) == {"gold-context", "rag-hybrid128", "question-only"}
    # retrieval finds the question's own abstract most of the time; answers need context to overlap the gold
    assert board["rag-hybrid128"]["recall_at_k"] > 0.8
    assert board["gold-context"]["rouge_l"] > 5 * board["question-only"]["rouge_l"]
    assert (tmp_path / "ws" / "workspace.duckdb").exists()
    again = json.loads(subprocess.run([sys.executable, "-m", "workbench.cli", "demo", "--json"], capture_output=True,
                                      text=True, timeout=600, env=env, cwd=tmp_path).stdout)
    assert again["model_calls"] == 0 and again["cached"] == 600
