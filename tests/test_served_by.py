"""Issue 13: what the provider says served each call (reply ``model`` id and ``system_fingerprint``), over real HTTP:
stored per response and per cell on both client routes, kept by the cache, carried by run archives, and named by
``ws.diff`` and the replay report when it changes. Old workspaces gain the columns without losing anything."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import duckdb
import pytest

import workbench as wb
from workbench import store as store_mod

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = ("openai", "litellm")


def _experiment(ws: wb.Workspace, server, client: str = "openai", n: int = 4):
    ds = ws.add_dataset("qa", [{"id": f"c{i}", "question": f"question {i}"} for i in range(n)], id="id")
    model = {"name": "m", "model": "openai/test-model", "api_base": server.base_url, "client": client}
    return ws.experiment(ds, [wb.Prompt("p", "Q: {{ question }}")], [model], metrics=[{"name": "contains",
                                                                                      "expected": "question"}])


def _stored(ws: wb.Workspace, table: str, run_id: str | None = None) -> list[tuple]:
    where = f" WHERE request_key IN (SELECT request_key FROM cells WHERE run_id='{run_id}')" if run_id else ""
    if table == "cells" and run_id:
        where = f" WHERE run_id='{run_id}'"
    return sorted(set(ws.store.sql(f"SELECT served_model, system_fingerprint FROM {table}{where}")
                      .itertuples(index=False, name=None)))


@pytest.mark.parametrize("client", CLIENTS)
def test_runs_store_the_ids_and_the_cache_keeps_the_original(tmp_path, fake_llm, client):
    fake_llm.configure(served_model="{model}-2024-08-06", system_fingerprint="fp_A")
    ws = wb.open(tmp_path / "ws")
    first = _experiment(ws, fake_llm, client).run(progress=False)
    assert first.last.model_calls == 4
    assert _stored(ws, "responses") == [("test-model-2024-08-06", "fp_A")]
    assert _stored(ws, "cells", first.run_id) == [("test-model-2024-08-06", "fp_A")]
    assert list(ws.store.served_by(first.run_id).values()) == [
        {"served_models": ["test-model-2024-08-06"], "system_fingerprints": ["fp_A"]}
    ]
    # the provider changes backend; the same grid is answered from the cache: its cells keep what served them
    fake_llm.configure(served_model="{model}-2025-01-01", system_fingerprint="fp_B")
    second = _experiment(ws, fake_llm, client).run(progress=False)
    assert second.last.cached == 4 and second.last.model_calls == 0
    assert _stored(ws, "cells", second.run_id) == [("test-model-2024-08-06", "fp_A")]
    assert ws.diff(first, second).changes == []
    # a replay without the cache asks again: the new cells say fp_B, the original's still say fp_A
    replayed, report = first.replay(use_cache=False)
    assert fake_llm.stats()["chat"] == 8
    assert _stored(ws, "cells", replayed.run_id) == [("test-model-2025-01-01", "fp_B")]
    assert _stored(ws, "cells", first.run_id) == [("test-model-2024-08-06", "fp_A")]
    (variant,) = ws.store.served_by(first.run_id)
    assert report.served_changes == [
        {"variant": variant, "field": "served_models", "original": ["test-model-2024-08-06"],
         "replayed": ["test-model-2025-01-01"]},
        {"variant": variant, "field": "system_fingerprints", "original": ["fp_A"], "replayed": ["fp_B"]},
    ]
    assert report.identical  # same answers (an echo), yet the backend changed: the report still says so
    assert f"{variant}: system fingerprint changed fp_A -> fp_B" in str(report)
    assert "likely cause of drift" in str(report)
    assert report.as_dict()["served_changes"] == report.served_changes
    # a cached replay is answered by the original responses: nothing changed
    assert first.replay()[1].served_changes == []
    # ws.diff names the change on the variant, as data and as text
    d = ws.diff(first, replayed)
    assert d.changes == [f"{variant}: served.served_models", f"{variant}: served.system_fingerprints"]
    assert d.as_dict()["variants"]["changed"][variant]["served"]["system_fingerprints"] == [["fp_A"], ["fp_B"]]
    assert "served.system_fingerprints: ['fp_A'] -> ['fp_B']" in str(d)


def test_cli_diff_and_replay_name_a_changed_fingerprint(tmp_path, fake_llm):
    fake_llm.configure(system_fingerprint="fp_old")
    ws = wb.open(tmp_path / "ws")
    run = _experiment(ws, fake_llm).run(progress=False)
    fake_llm.configure(system_fingerprint="fp_new")
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}

    def cli(*args: str) -> dict:
        out = subprocess.run([sys.executable, "-m", "workbench.cli", *args, "--json", "-w", str(ws.path)],
                             capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    rep = cli("replay", run.run_id, "--no-cache")
    assert [(c["field"], c["original"], c["replayed"]) for c in rep["served_changes"]] == [
        ("system_fingerprints", ["fp_old"], ["fp_new"])
    ]
    d = cli("diff", run.run_id, rep["replay"])
    assert [c.split(": ", 1)[1] for c in d["changes"]] == ["served.system_fingerprints"]


def test_run_archive_lists_the_ids_per_variant_and_import_keeps_them(tmp_path, fake_llm):
    fake_llm.configure(served_model="{model}-2024-08-06", system_fingerprint="fp_A")
    ws = wb.open(tmp_path / "ws")
    run = _experiment(ws, fake_llm).run(progress=False)
    path = run.archive(tmp_path / "run.zip")
    with zipfile.ZipFile(path) as zf:
        info = json.loads(zf.read("run.json"))
    assert list(info["served_by"].values()) == [
        {"served_models": ["test-model-2024-08-06"], "system_fingerprints": ["fp_A"]}
    ]
    other = wb.open(tmp_path / "other")
    imported = other.import_run(path)
    assert other.store.served_by(imported.run_id) == ws.store.served_by(run.run_id)
    # the imported run is comparable with a new run made in the importing workspace
    fake_llm.configure(system_fingerprint="fp_C")
    mine = _experiment(other, fake_llm).run(progress=False)  # cached by the imported responses: still fp_A
    assert other.diff(imported, mine).changes == []


def test_a_workspace_from_before_the_migration_keeps_working(tmp_path, fake_llm):
    ws = wb.open(tmp_path / "ws")
    old = _experiment(ws, fake_llm).run(progress=False)
    before = old.results()
    # back to the previous schema: no columns, migration not applied
    number = [n for n, _ in store_mod.MIGRATIONS].index("m131_i13_served_by") + 1
    con = duckdb.connect(str(ws.path / store_mod.DB_FILE))
    for table in ("responses", "cells"):
        con.execute(f"ALTER TABLE {table} DROP COLUMN served_model")
        con.execute(f"ALTER TABLE {table} DROP COLUMN system_fingerprint")
    con.execute("DELETE FROM _migrations WHERE id = $1", [number])
    con.close()
    ws = wb.open(tmp_path / "ws")
    assert ws.store.schema_version() == len(store_mod.MIGRATIONS)
    old = ws.get_run(old.run_id)
    assert old.results().equals(before)
    assert list(ws.store.served_by(old.run_id).values()) == [{"served_models": [], "system_fingerprints": []}]
    # a new run answered by the old cache has no ids to copy; a fresh call stores them; diff says nothing unknown
    fake_llm.configure(system_fingerprint="fp_new")
    cached = _experiment(ws, fake_llm).run(progress=False)
    assert cached.last.cached == 4 and _stored(ws, "cells", cached.run_id) == [(None, None)]
    replayed, report = old.replay(use_cache=False)
    assert _stored(ws, "cells", replayed.run_id) == [("test-model", "fp_new")]
    assert report.served_changes == [] and ws.diff(old, replayed).changes == []
