"""Provider faults (429 with Retry-After, 500, timeouts, malformed bodies, connection resets) and two kernels
plus a reader on one workspace: every cell once, no paid response lost, totals reported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import workbench as wb

from .helpers import db_rows, echo_of

pytestmark = pytest.mark.slow

CHAOS = {"seed": 7, "rate_limit": 0.08, "retry_after": 0.05, "server_error": 0.06, "hang": 0.03,
         "hang_seconds": 2.5, "malformed": 0.04, "reset": 0.04}


@pytest.mark.timeout(600)
def test_a_grid_under_every_provider_fault_stores_each_cell_once_and_loses_nothing(tmp_path, fake_llm):
    fake_llm.configure(chaos=CHAOS)
    ws = wb.open(tmp_path / "ws")
    ds = ws.add_dataset("qs", [{"id": f"c{i}", "q": f"question {i}"} for i in range(240)], id="id")
    model = {"name": "m", "model": "openai/chaos", "api_base": fake_llm.base_url, "timeout": 1.0,
             "max_retries": 8, "retry_base": 0.02}
    run = ws.experiment(ds, [wb.Prompt("p", "Q: {{ q }}")], [model], concurrency=12).run(progress=False)
    stats = fake_llm.stats()
    res = run.results()
    assert len(res) == 240 and res["case_id"].is_unique
    ok = res[res["error"].isna()]
    assert all(out == echo_of(m) for out, m in zip(ok["output"], ok["messages"]))
    faults = stats["faults"]
    assert {"429", "500", "hang", "malformed", "reset"} <= set(faults), faults
    # every answer the server gave was stored (a timed-out call is not answered: the client left)
    stored = ws.sql("SELECT count(*) AS n FROM responses")["n"][0]
    assert stored == stats["answered"] == len(ok)
    assert run.last.retries >= sum(faults.values()) - 8 * len(res[res["error"].notna()]) - 12
    print(f"\nfaults injected: {sum(faults.values())} {faults}; retries {run.last.retries}; "
          f"cells failed after retries: {len(res) - len(ok)}; paid {stats['answered']}, stored {stored}")


READER = """
import sys, time, workbench as wb
ws = wb.open(sys.argv[1]); end = time.monotonic() + float(sys.argv[2]); n = errors = 0; last = 0
while time.monotonic() < end:
    try:
        count = int(ws.sql("SELECT count(*) AS n FROM cells")["n"][0]); ws.runs()
        assert count >= last, "rows went missing"; last = count; n += 1
    except Exception as exc:
        errors += 1; print(repr(exc), file=sys.stderr)
print(n, errors)
"""


@pytest.mark.timeout(600)
def test_two_kernels_and_a_reader_on_one_workspace_lose_and_duplicate_nothing(tmp_path, fake_llm):
    fake_llm.configure(latency=0.01)
    ws_dir = tmp_path / "ws"
    ws = wb.open(ws_dir)
    ws.add_dataset("qs", [{"id": f"c{i}", "q": f"question {i}"} for i in range(150)], id="id")
    specs = []
    for k, user in enumerate(["Q: {{ q }}", "Question: {{ q }}"]):
        spec = tmp_path / f"s{k}.yaml"
        spec.write_text(json.dumps({
            "dataset": {"name": "qs"},
            "prompts": [{"name": f"p{k}", "user": user}, {"name": "shared", "user": "Shared: {{ q }}"}],
            "models": [{"name": "m", "model": "openai/k", "api_base": fake_llm.base_url}], "concurrency": 6,
        }))
        specs.append(spec)
    reader = subprocess.Popen([sys.executable, "-c", READER, str(ws_dir), "25"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    kernels = [subprocess.Popen([sys.executable, "-m", "workbench.cli", "run", str(s), "-w", str(ws_dir),
                                 "--no-progress", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for s in specs]
    outs = [k.communicate(timeout=400) for k in kernels]
    for k, (_, err) in zip(kernels, outs):
        assert k.returncode == 0, err[-2000:]
    r_out, r_err = reader.communicate(timeout=120)
    reads, errors = map(int, r_out.split())
    assert reads > 0 and errors == 0, r_err[-2000:]
    query = "SELECT count(*), count(DISTINCT (run_id, case_id, variant, repeat)) FROM cells"
    total, distinct = db_rows(ws_dir, query)[0]
    assert total == distinct == 2 * 300
    keys = db_rows(ws_dir, "SELECT count(*), count(DISTINCT request_key) FROM responses")[0]
    assert keys[0] == keys[1] == 450  # 150 x (p0, p1, shared): the shared prompt stored once
    for run_id in [json.loads(o)["run_id"] for o, _ in outs]:
        assert ws.get_run(run_id).status == "completed"
    print(f"\nreader queries: {reads}, errors: {errors}; cells {total}; responses {keys[0]}")
