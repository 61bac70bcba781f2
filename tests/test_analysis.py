"""Comparisons, winner selection, human feedback, agreement, plugins and the CLI faces over them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy import stats as sps

import workbench as wb
from workbench.cli import build_parser
from workbench.errors import NotFoundError, ValidationError
from workbench.metrics import registry


def _dataset(n: int) -> list[dict[str, str]]:
    # gold appears in the question for the first third only
    return [{"qid": f"q{i:02d}", "query": f"case {i}" + (f" gold{i}" if i < n // 3 else ""), "gold": f"gold{i}"}
            for i in range(n)]


def _run(tmp_path, server, prompts, n=30, models=None):
    ws = wb.open(tmp_path / "ws")
    ds = ws.add_dataset("d", _dataset(n), id="qid")
    models = models or [{"name": "m", "model": "openai/test-model", "api_base": server.base_url}]
    exp = ws.experiment(ds, prompts, models, [{"name": "contains", "expected": "gold"}, "latency"])
    return ws, exp.run(progress=False)


# The echo server repeats the prompt, so a prompt that includes the gold answer always "contains" it.
LEAKY = wb.Prompt("leaky", "{{ query }} (answer: {{ gold }})")
PLAIN = wb.Prompt("plain", "{{ query }}")
PLAIN2 = wb.Prompt("plain2", "Q: {{ query }}")


def test_compare_finds_a_real_difference(tmp_path, fake_llm):
    _, run = _run(tmp_path, fake_llm, [LEAKY, PLAIN])
    c = run.compare("leaky", "plain", "contains")
    # by construction: leaky always 1, plain 1 on the first third only
    assert c.result.mean_a == 1.0 and c.result.mean_b == pytest.approx(1 / 3)
    assert c.result.diff == pytest.approx(2 / 3) and c.result.n == 30
    assert c.result.p_value < 0.001 and c.result.ci_low > 0
    same = run.compare("plain", "leaky", "contains")
    assert same.result.diff == pytest.approx(-2 / 3)
    with pytest.raises(NotFoundError, match="no variant 'nope'"):
        run.compare("leaky", "nope", "contains")


def test_winner_with_constraints_ties_and_no_qualifier(tmp_path, fake_llm):
    _, run = _run(tmp_path, fake_llm, [LEAKY, PLAIN, PLAIN2])
    d = run.winner("contains")
    assert d.winner == "leaky" and d.distinguishable is True
    assert "beats every other qualifying variant" in d.reason
    assert {c["b"] for c in d.comparisons} == {"plain", "plain2"}
    # plain and plain2 score identically: excluding leaky leaves a statistical tie
    d = run.winner("contains", ["contains<=0.9"])
    assert d.winner in {"plain", "plain2"} and d.distinguishable is False
    assert "not distinguishable" in d.reason and "excluded by constraints: leaky" in d.reason
    d = run.winner("contains", {"contains": ">=1.5"})
    assert d.winner is None and "No variant qualifies" in d.reason and "needs >= 1.5" in d.reason
    with pytest.raises(ValidationError, match="not a metric of this run"):
        run.winner("contains", ["faithfulness>=0.8"])
    # a latency constraint is checked against the leaderboard's p95
    board = run.leaderboard().set_index("variant")
    limit = float(board["latency_p95_ms"].min()) - 1e-6
    d = run.winner("contains", [f"latency_p95_ms<={limit}"])
    assert d.winner is None


def test_confidence_intervals_match_scipy_bootstrap(tmp_path, fake_llm):
    _, run = _run(tmp_path, fake_llm, [PLAIN])
    table = run.confidence_intervals("contains").set_index("variant")
    values = run.results()["contains"].to_numpy()
    ref = sps.bootstrap((values,), np.mean, n_resamples=2000, random_state=np.random.default_rng(0),
                        method="BCa", confidence_level=0.95)
    assert table.loc["plain", "ci_low"] == pytest.approx(ref.confidence_interval.low)
    assert table.loc["plain", "ci_high"] == pytest.approx(ref.confidence_interval.high)


def test_feedback_is_queryable_and_agreement_matches_scipy(tmp_path, fake_llm):
    ws, run = _run(tmp_path, fake_llm, [PLAIN], n=12)
    res = run.results()
    ratings = {}
    for i, row in enumerate(res.itertuples()):
        ratings[row.case_id] = 5 if row.contains == 1.0 else (1 + i % 3)
        run.add_feedback(row.case_id, "plain", rating=ratings[row.case_id], author="ann")
    run.add_feedback("q00", "plain", thumbs=True, comment="good", author="bob")
    with pytest.raises(ValidationError, match="rating must be a number from 1 to 5"):
        run.add_feedback("q01", "plain", rating=7)
    with pytest.raises(ValidationError, match="one of thumbs, rating or label"):
        run.add_feedback("q01", "plain", rating=3, thumbs=True)
    with pytest.raises(NotFoundError, match="no stored cell"):
        ws.add_feedback(run.run_id, "q99", "plain", rating=3)
    res = run.results().set_index("case_id")
    assert res.loc["q03", "human_rating"] == ratings["q03"]
    assert res.loc["q00", "human_thumbs"] == 1.0 and res.loc["q00", "human_n"] == 2
    board = run.leaderboard().set_index("variant")
    assert board.loc["plain", "human_rating"] == pytest.approx(np.mean(list(ratings.values())))
    agree = run.agreement("contains", "rating")
    rho = sps.spearmanr(res["contains"].to_numpy(), res["human_rating"].to_numpy()).statistic
    assert agree["n"] == 12 and agree["spearman"] == pytest.approx(rho)
    stored = ws.sql("SELECT count(*) AS n FROM feedback WHERE run_id = $1", [run.run_id])
    assert int(stored["n"][0]) == 13


def test_entry_point_plugins(tmp_path, monkeypatch):
    pkg = tmp_path / "site"
    pkg.mkdir()
    (pkg / "wb_shout_plugin.py").write_text(textwrap.dedent('''
        def shout(output: str) -> float:
            """1 when the output is all upper case."""
            return float(output.isupper())
    '''))
    dist = pkg / "wb_shout_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: wb-shout-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[workbench.metrics]\nshout = wb_shout_plugin:shout\nbroken = wb_missing_module:nothing\n")
    monkeypatch.syspath_prepend(str(pkg))
    with pytest.warns(UserWarning, match="metric plugin 'broken'"):
        loaded = registry.load_plugins()
    assert "shout" in loaded and "broken" not in loaded
    assert "broken" in registry.PLUGIN_ERRORS
    bound = wb.metrics.bind("shout")
    assert bound.definition.description == "1 when the output is all upper case."
    assert bound.definition.fn(**bound.call_kwargs(wb.metrics.CellView(case={}, output="LOUD"))) == 1.0
    assert "token_f1" in registry.all_metrics()  # built-ins survive a broken plugin


def _llmops(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, timeout=120)


def test_cli_compare_winner_metrics(tmp_path, fake_llm):
    ws, run = _run(tmp_path, fake_llm, [LEAKY, PLAIN])
    w = str(ws.path)
    out = _llmops("compare", run.run_id, "leaky", "plain", "-m", "contains", "-w", w, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["diff"] == pytest.approx(2 / 3) and data["p_value"] < 0.001
    out = _llmops("winner", run.run_id, "-m", "contains", "--max", "contains=0.5", "-w", w, "--json")
    data = json.loads(out.stdout)
    assert data["winner"] == "plain" and out.returncode == 0
    out = _llmops("winner", run.run_id, "-m", "contains", "--min", "contains=2", "-w", w)
    assert out.returncode == 1 and "winner: None" in out.stdout
    listing = json.loads(_llmops("metrics", "--json").stdout)
    by_name = {m["name"]: m for m in listing}
    assert by_name["token_f1"]["needs_judge"] is False and "expected" in by_name["token_f1"]["options"]
    assert all(m["description"] for m in listing)


def test_every_cli_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    helps = {a.dest: a.help for a in sub._choices_actions}
    assert set(helps) == set(sub.choices)
    for name, sp in sub.choices.items():
        assert helps[name], f"command {name} has no help"
        assert sp.description, f"command {name} has no description"
        for action in sp._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.dest} has no help"


@pytest.fixture
def slow_llm():
    """A second fake server that answers 250 ms later: latency decides between otherwise identical variants."""
    from openai_server import ServerProcess

    with ServerProcess(latency=0.25) as server:
        yield server


def _tied_run(tmp_path, fast, slow, model: str, client: str = "auto"):
    import asyncio

    from workbench.llm import Gateway, ModelConfig

    async def warm() -> None:  # the first call of a process pays litellm's import: not the model's latency
        gw = Gateway(2)
        for server in (fast, slow):
            await gw.complete(ModelConfig("w", model, api_base=server.base_url, client=client), [
                {"role": "user", "content": "warm up"}])

    asyncio.run(warm())
    models = [{"name": "fast", "model": model, "api_base": fast.base_url, "client": client},
              {"name": "slow", "model": model, "api_base": slow.base_url, "client": client}]
    return _run(tmp_path, fast, [PLAIN], n=6, models=models)[1]


def test_winner_reason_says_what_decided(tmp_path, fake_llm, slow_llm):
    # decided by score: no tie-break words at all
    _, run = _run(tmp_path / "score", fake_llm, [LEAKY, PLAIN], n=12)
    d = run.winner("contains")
    assert d.winner == "leaky" and "beats every other" in d.reason
    assert "cheapest" not in d.reason and "fastest" not in d.reason
    # decided by cost: same answers, different prices (gpt-4o costs more per token than gpt-4o-mini)
    ws = wb.open(tmp_path / "cost" / "ws")
    ds = ws.add_dataset("d", _dataset(6), id="qid")
    models = [{"name": "big", "model": "openai/gpt-4o", "api_base": fake_llm.base_url},
              {"name": "mini", "model": "openai/gpt-4o-mini", "api_base": fake_llm.base_url}]
    run = ws.experiment(ds, [PLAIN], models, [{"name": "contains", "expected": "gold"}]).run(progress=False)
    per_1k = run.leaderboard().set_index("variant")["cost"] / 6 * 1000
    assert 0 < per_1k["plain/mini"] < per_1k["plain/big"]
    d = run.winner("contains")
    assert d.winner == "plain/mini" and "fastest" not in d.reason, d.reason
    mini, big = per_1k["plain/mini"], per_1k["plain/big"]
    assert f"cheapest (${mini:.4f} per 1k cases vs ${big:.4f} for plain/big)" in d.reason, d.reason
    # decided by latency, both priced at $0 (codestral's table price, through litellm): never "cheapest"
    run = _tied_run(tmp_path / "free", fake_llm, slow_llm, "codestral/codestral-latest")
    board = run.leaderboard().set_index("variant")
    assert list(board["cost"]) == [0.0, 0.0]
    d = run.winner("contains")
    assert d.winner == "plain/fast" and "cheapest" not in d.reason, d.reason
    slow = "plain/slow"
    p95 = board["latency_p95_ms"]
    assert (f"tied on score and cost ($0.0000 per 1k cases); fastest (p95 latency {p95[d.winner]:.0f} ms vs "
            f"{p95[slow]:.0f} ms for {slow})") in d.reason, d.reason
    # decided by latency, unpriced models: says no price is known
    run = _tied_run(tmp_path / "unpriced", fake_llm, slow_llm, "openai/test-model")
    board = run.leaderboard().set_index("variant")
    assert board["cost"].isna().all()
    d = run.winner("contains")
    slow = "plain/slow"
    p95 = board["latency_p95_ms"]
    assert d.winner == "plain/fast" and "cheapest" not in d.reason, d.reason
    assert (f"tied on score, no price is known; fastest (p95 latency {p95[d.winner]:.0f} ms vs {p95[slow]:.0f} ms "
            f"for {slow})") in d.reason, d.reason
