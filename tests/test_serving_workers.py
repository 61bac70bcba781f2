"""``llmops serve --workers 2``: /metrics counts every worker's requests, whichever worker answers the scrape.

Real HTTP against a real two-process server on 127.0.0.1 (port 0). Which worker takes a connection is up
to the kernel, so the test keeps sending until the request log shows segments from both worker pids,
then checks that several scrapes all report the total (one worker's registry would report only its part).
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from served import BundleServer, demo_run, get, post

from workbench.requestlog import read_requests


def _requests_total(text: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "llmops_requests_total"
    )


def _pids(log_dir: Path) -> set[str]:
    return {m.group(1) for p in log_dir.glob("requests-*.jsonl") if (m := re.search(r"-(\d+)-\d{4}\.jsonl$", p.name))}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_metrics_add_up_every_worker(tmp_path: Path) -> None:
    run = demo_run(tmp_path, n_cases=10)
    bundle = run.export(tmp_path / "bundle", "rag-hybrid128")
    log_dir = tmp_path / "log"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    srv = BundleServer(
        bundle, "--workers", "2", "--log-dir", log_dir, env={"TMPDIR": str(scratch)}, startup_timeout=300
    )
    with srv:
        deadline = time.monotonic() + 240
        while sum("llmops serve: ready" in line for line in srv.output) < 2:  # both workers loaded the bundle
            assert time.monotonic() < deadline, "\n".join(srv.output)
            time.sleep(0.2)
        assert any(p.name.startswith("llmops-metrics-") for p in scratch.iterdir())  # the multiprocess folder
        sent = 0

        def ask(i: int) -> int:
            return post(srv.url + "/v1/answer", {"question": f"Does aspirin help {i}?"})[0]

        with ThreadPoolExecutor(8) as pool:
            while len(_pids(log_dir)) < 2 and sent < 800:
                statuses = list(pool.map(ask, range(sent, sent + 40)))
                assert statuses == [200] * 40
                sent += 40
                time.sleep(1.5)  # the log writers flush about every second
        assert len(_pids(log_dir)) == 2, f"one worker took all {sent} requests"
        for _ in range(8):  # scrapes land on either worker: each must report the server's total
            status, text = get(srv.url + "/metrics")
            assert status == 200 and _requests_total(text) == sent
            assert f'llmops_requests_total{{arm="-",endpoint="answer",status="200"}} {float(sent)}' in text
            assert "llmops_request_latency_seconds_count" in text
    assert len(read_requests(log_dir)) == sent
    assert not any(p.name.startswith("llmops-metrics-") for p in scratch.iterdir())  # removed at shutdown
