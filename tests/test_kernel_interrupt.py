"""Interrupting a run in a real Jupyter kernel (the notebook's stop button) leaves it stored and resumable."""

from __future__ import annotations

import json
import time

import pytest

import workbench as wb


@pytest.mark.slow
def test_kernel_interrupt_stops_the_run_cleanly(tmp_path, fake_llm):
    from jupyter_client.manager import start_new_kernel

    fake_llm.configure(latency=0.25)
    ws_dir = tmp_path / "ws"
    rows = [{"id": f"c{i}", "question": f"question {i}"} for i in range(30)]
    code = f"""
import json, workbench as wb
ws = wb.open({str(ws_dir)!r})
ds = ws.add_dataset("qa", json.loads({json.dumps(json.dumps(rows))}), id="id")
exp = ws.experiment(ds, [wb.Prompt("p", "{{{{ question }}}}")],
                    [{{"name": "m", "model": "openai/test-model", "api_base": {fake_llm.base_url!r}}}], concurrency=2)
run = exp.run(progress=False)
print("STATUS", run.status)
"""
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        msg_id = kc.execute(code)
        deadline = time.monotonic() + 60
        while fake_llm.stats()["chat"] < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        km.interrupt_kernel()
        outputs = []
        while True:
            msg = kc.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                outputs.append(msg["content"]["text"])
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        text = "".join(outputs)
        assert "STATUS interrupted" in text, text
        assert "Resume it with run.resume()" in text
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    ws = wb.open(ws_dir)
    run = ws.get_run(ws.runs()["run_id"][0])
    assert run.status == "interrupted"
    stored = len(run.results())
    assert 0 < stored < 30
    fake_llm.configure(latency=0.0)
    before = fake_llm.stats()["requests"]
    run.resume(progress=False)
    assert run.status == "completed" and len(run.results()) == 30
    assert fake_llm.stats()["requests"] - before <= 30 - stored + 2  # at most the in-flight pair is asked again
