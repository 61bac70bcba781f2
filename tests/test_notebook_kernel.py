"""Runs in a real Jupyter kernel: the live panel updates in place, and the stop button leaves a clean notice."""

from __future__ import annotations

import json
import re
import time

import pytest

import workbench as wb


def _start_kernel():
    from jupyter_client.manager import start_new_kernel

    return start_new_kernel(kernel_name="python3")


def _collect(kc, msg_id, on_message=None, timeout=180):
    """Every iopub message of one execution, until the kernel is idle again."""
    messages = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append(msg)
        if on_message is not None:
            on_message(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return messages
    raise AssertionError("the kernel did not finish in time")


def _html(msg):
    return msg["content"].get("data", {}).get("text/html", "")


@pytest.mark.slow
def test_live_panel_updates_in_place_in_a_kernel(tmp_path, fake_llm):
    fake_llm.configure(latency=0.05)
    code = f"""
import workbench as wb
ws = wb.open({str(tmp_path / "ws")!r})
ws.add_dataset("d", [{{"id": f"c{{i}}", "q": f"question {{i}}"}} for i in range(60)], id="id")
exp = ws.experiment("d", [wb.Prompt("a", "A {{{{ q }}}}"), wb.Prompt("b", "B {{{{ q }}}}")],
                    [{{"name": "m", "model": "openai/test-model", "api_base": {fake_llm.base_url!r}}}],
                    [{{"name": "contains", "expected": "q"}}], concurrency=2)
run = exp.run()
"""
    km, kc = _start_kernel()
    try:
        messages = _collect(kc, kc.execute(code))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    shown = [m for m in messages if m["msg_type"] == "display_data"]
    updates = [m for m in messages if m["msg_type"] == "update_display_data"]
    assert len(shown) == 1 and "llmops-live" in _html(shown[0]), [m["msg_type"] for m in messages]
    display_id = shown[0]["content"]["transient"]["display_id"]
    assert len(updates) >= 2 and all(u["content"]["transient"]["display_id"] == display_id for u in updates)
    final = _html(updates[-1])
    assert "completed: 120/120 cells" in final and "llmops-live-board" in final
    assert ">a<" in final and ">b<" in final  # the leaderboard so far, one row per variant
    running = [_html(u) for u in updates[:-1]]
    assert any("running" in h and "ETA" in h for h in running)
    assert not [m for m in messages if m["msg_type"] == "stream" and m["content"]["name"] == "stderr"]


@pytest.mark.slow
def test_stop_button_in_a_magic_run_leaves_a_clean_notice(tmp_path, fake_llm):
    """%%llmops run interrupted mid-run: no red warnings, true counts, a hint a magic user can follow."""
    fake_llm.configure(latency=0.1)
    ws_dir = tmp_path / "ws"
    rows = [
        {"id": f"c{i}", "question": f"What about item {i}?", "context": f"Item {i} is fine. Others vary."}
        for i in range(300)
    ]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cell = f"""%%llmops run -w {ws_dir}
dataset: {{name: d, path: {data}, id: id}}
prompts: [{{name: p, user: "Context: {{{{ context }}}}\\nQuestion: {{{{ question }}}}"}}]
models: [{{name: m, model: openai/test-model, api_base: "{fake_llm.base_url}"}}]
metrics: [{{name: token_f1, expected: context}}]
concurrency: 2
"""
    km, kc = _start_kernel()
    interrupted = []

    def stop_when_running(msg):
        if interrupted or msg["msg_type"] != "update_display_data":
            return
        done = re.search(r"running: (\d+)/300", _html(msg))
        if done and int(done.group(1)) > 0:
            km.interrupt_kernel()
            interrupted.append(int(done.group(1)))

    try:
        kc.execute("%load_ext workbench", silent=True)
        messages = _collect(kc, kc.execute(cell), stop_when_running, timeout=300)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert interrupted, "the run finished before the test could press stop"
    streams = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")
    assert "never awaited" not in streams and "Warning" not in streams, streams
    assert "Resume it with %llmops resume " in streams and "run.resume()" not in streams
    result = [m for m in messages if m["msg_type"] == "execute_result"]
    assert len(result) == 1, [m["msg_type"] for m in messages]
    run = wb.open(ws_dir).get_run(wb.open(ws_dir).runs()["run_id"][0])
    stored = len(run.results())
    assert run.status == "interrupted" and 0 < stored < 300
    assert f"interrupted, {stored}/300 cells stored" in _html(result[0])
    assert f"interrupted: {stored}/300 cells stored" in streams
