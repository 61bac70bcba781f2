"""Serving over real HTTP: `llmops serve` subprocesses on 127.0.0.1 (free ports), the request log, A/B, auth, limits."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from served import BundleServer, demo_run, get, post

import workbench as wb
from workbench.requestlog import read_feedback, read_requests
from workbench.serving import assign_arm


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("serving")
    run = demo_run(folder, n_cases=30)
    rag = run.export(folder / "rag", "rag-hybrid128")
    qonly = run.export(folder / "qonly", "rag-dense32", zip=True)
    return folder, run, rag, qonly


@pytest.fixture(scope="module")
def server(bundles, tmp_path_factory):
    """One shared server on the RAG bundle (embedded defaults) with its log in a temp folder."""
    log_dir = tmp_path_factory.mktemp("log")
    with BundleServer(bundles[2], "--log-dir", log_dir) as srv:
        srv.log_dir = log_dir  # type: ignore[attr-defined]
        yield srv


def test_endpoints_and_log(bundles, tmp_path):
    import openai

    _, _, rag, _ = bundles
    log_dir = tmp_path / "log"
    with BundleServer(rag, "--log-dir", log_dir) as srv:
        status, one = post(srv.url + "/v1/answer", {"question": "Does smoking cause lung cancer?", "user": "ann"})
        assert status == 200 and one["answer"] and one["arm"] is None and len(one["retrieved"]) == 3
        assert one["bundle_hash"] == wb.load_bundle(rag).hash and one["latency_ms"] > 0 and one["prompt_tokens"]
        status, many = post(
            srv.url + "/v1/answer", {"items": [{"question": "What is aspirin?"}, {"question": "Is tea healthy?"}]}
        )
        assert status == 200 and len(many["results"]) == 2
        assert len({r["request_id"] for r in many["results"]}) == 2
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused")
        chat = client.chat.completions.create(
            model="rag",
            messages=[
                {"role": "system", "content": "ignored"},
                {"role": "user", "content": "first question?"},
                {"role": "assistant", "content": "..."},
                {"role": "user", "content": "Does smoking cause lung cancer?"},
            ],
        )
        assert chat.choices[0].message.content == one["answer"]  # the last user message is the question
        assert chat.usage.prompt_tokens == one["prompt_tokens"]
        status, ok = post(srv.url + "/v1/feedback", {"request_id": one["request_id"], "rating": 4, "label": "good"})
        assert status == 200 and ok["ok"] is True
        status, version = get(srv.url + "/version")
        assert status == 200 and version["bundles"][0]["variant"] == "rag-hybrid128"
        assert version["bundles"][0]["eval"]["leaderboard"]["n"] == 30
        status, text = get(srv.url + "/metrics")
        assert status == 200 and 'llmops_requests_total{arm="-",endpoint="answer",status="200"} 3.0' in text
        assert 'llmops_requests_total{arm="-",endpoint="chat",status="200"} 1.0' in text
        assert "llmops_request_latency_seconds_bucket" in text and "llmops_tokens_total" in text
        status, spec = get(srv.url + "/openapi.json")
        assert status == 200 and {"/v1/answer", "/v1/chat/completions", "/v1/feedback"} <= set(spec["paths"])
        assert srv.stop() in (0, -15)  # graceful: SIGTERM (uvicorn re-raises it after shutdown)
    rows = read_requests(log_dir)
    assert len(rows) == 4 and set(rows["status"]) == {200}
    first = rows[rows["request_id"] == one["request_id"]].iloc[0]
    assert first["user"] == "ann" and json.loads(first["input"])["question"] == "Does smoking cause lung cancer?"
    assert first["question"] == "Does smoking cause lung cancer?"
    retrieved = json.loads(first["retrieved"])
    assert first["output"] == one["answer"] and len(retrieved) == 3
    assert {"chunk_id", "doc_id", "score"} == set(retrieved[0])
    assert first["top_score"] == max(h["score"] for h in retrieved) and first["rating"] == 4.0
    assert first["bundle_hash"] == one["bundle_hash"]
    raw = json.loads(next(Path(log_dir).glob("requests-*.jsonl")).read_text().splitlines()[0])
    assert raw["ts"].endswith("Z") and set(raw) >= {"ts", "request_id", "input", "retrieved", "status", "user"}
    for column in ("latency_ms", "prompt_tokens", "completion_tokens", "cost", "error", "arm"):
        assert column in rows.columns
    fb = read_feedback(log_dir, latest=False)
    assert fb.to_dict("records")[0] | {"ts": None} == {
        "ts": None,
        "request_id": one["request_id"],
        "rating": 4.0,
        "label": "good",
        "comment": None,
    }
    names = sorted(p.name for p in Path(log_dir).iterdir())
    assert names[0].startswith("feedback-") and names[1].startswith("requests-") and names[1].endswith("-0000.jsonl")


def test_bad_requests_get_4xx_json(server):
    url = server.url
    cases = [
        (b"{not json", 422),
        (json.dumps({"questio": "typo"}).encode(), 422),
        (json.dumps({"question": 42}).encode(), 422),
        (json.dumps({"question": ""}).encode(), 422),
        (json.dumps({"items": []}).encode(), 422),
        (json.dumps({"question": "x" * 2_000_000}).encode(), 413),
    ]
    for body, expected in cases:
        status, payload = post(url + "/v1/answer", None, raw=body)
        assert status == expected, (body[:40], status, payload)
        assert isinstance(payload, dict) and payload["error"]["message"], payload
    status, payload = post(
        url + "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    )
    assert status == 400 and "streaming" in payload["error"]["message"]
    status, payload = post(url + "/v1/chat/completions", {"messages": [{"role": "system", "content": "no user"}]})
    assert status == 422
    status, payload = post(url + "/v1/feedback", {"request_id": "x", "rating": "great"})
    assert status == 422
    status, _ = get(url + "/nope")
    assert status == 404
    # a chunked body (no Content-Length) over the limit is cut off while it streams in
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    conn.putrequest("POST", "/v1/answer")
    conn.putheader("content-type", "application/json")
    conn.putheader("transfer-encoding", "chunked")
    conn.endheaders()
    piece = b"x" * 65536

    def chunk(data: bytes) -> bytes:
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    try:
        conn.send(chunk(b'{"question": "'))
        for _ in range(40):
            conn.send(chunk(piece))
        conn.send(chunk(b'"}') + b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert conn.getresponse().status == 413
    conn.close()
    status, _ = get(url + "/health")
    assert status == 200  # and the server is still fine


def test_bearer_token(bundles):
    _, _, rag, _ = bundles
    with BundleServer(rag, "--no-log", env={"LLMOPS_SERVE_TOKEN": "s3cret-token"}) as srv:
        assert post(srv.url + "/v1/answer", {"question": "hi?"})[0] == 401
        assert post(srv.url + "/v1/answer", {"question": "hi?"}, token="wrong")[0] == 401
        assert post(srv.url + "/v1/answer", {"question": "hi?"}, token="s3cret-token")[0] == 200
        assert get(srv.url + "/version")[0] == 401 and get(srv.url + "/metrics")[0] == 401
        assert get(srv.url + "/health")[0] == 200


def test_ab_sticky_assignment_and_logged_arms(bundles, tmp_path):
    _, _, rag, qonly = bundles
    a_hash, b_hash = wb.load_bundle(rag).hash, wb.load_bundle(qonly).hash
    log_dir = tmp_path / "ab"
    seen: dict[str, set[str]] = {}
    with BundleServer(rag, qonly, "--split", "50", "--log-dir", log_dir) as srv:
        version = get(srv.url + "/version")[1]
        assert [b["arm"] for b in version["bundles"]] == ["A", "B"] and version["split_to_b_percent"] == 50
        for i in range(30):
            user = f"user-{i}"
            for _ in range(3):
                status, r = post(srv.url + "/v1/answer", {"question": "Is coffee harmful?", "user": user})
                assert status == 200
                assert r["bundle_hash"] == (a_hash if r["arm"] == "A" else b_hash)
                seen.setdefault(user, set()).add(r["arm"])
                assert r["arm"] == assign_arm(user, 50)
        anonymous = [post(srv.url + "/v1/answer", {"question": "Is coffee harmful?"})[1]["arm"] for _ in range(40)]
        chat = post(
            srv.url + "/v1/chat/completions", {"messages": [{"role": "user", "content": "x?"}], "user": "user-0"}
        )
        assert chat[1]["workbench"]["arm"] == assign_arm("user-0", 50)
    assert all(len(arms) == 1 for arms in seen.values())  # sticky
    assert {"A", "B"} == {next(iter(a)) for a in seen.values()}
    assert {"A", "B"} == set(anonymous)  # random without an id (P(one arm 40 times) = 2**-39)
    rows = read_requests(log_dir)
    assert len(rows) == 90 + 40 + 1
    assert set(rows["arm"]) == {"A", "B"}
    for r in rows.itertuples():
        assert r.bundle_hash == (a_hash if r.arm == "A" else b_hash)
    assert (log_dir.name, log_dir.exists()) == ("ab", True)


def test_split_extremes_and_default_log_dir(bundles):
    _, _, rag, qonly = bundles
    assert all(assign_arm(f"u{i}", 0) == "A" for i in range(200))
    assert all(assign_arm(f"u{i}", 100) == "B" for i in range(200))
    share = sum(assign_arm(f"u{i}", 20) == "B" for i in range(5000)) / 5000
    assert 0.17 < share < 0.23
    from workbench.serving import default_log_dir

    assert default_log_dir([rag], ["abcdef0123456789"]) == rag.parent / "logs" / "abcdef012345"


def test_served_bundle_reproduces_recorded_scores_through_litellm(bundles, server):
    """The workbench evaluates what it deployed: model `openai/<bundle>` with api_base at the server."""
    folder, run, rag, _ = bundles
    ws = wb.open(folder / "ws")
    metrics = [m for m in run.info["spec"]["metrics"] if m["name"] != "recall_at_k"]
    exp = ws.experiment(
        run.experiment.dataset,
        [wb.Prompt("as-is", "{{ question }}")],
        [{"name": "served", "model": "openai/rag-hybrid128", "api_base": server.url + "/v1"}],
        [{"name": m["name"], **m["options"]} for m in metrics],
    )
    served = exp.run(progress=False).results().set_index("case_id")
    recorded = wb.load_bundle(rag).cases().set_index("case_id")
    assert len(served) == len(recorded) == 30
    assert served["error"].isna().all()
    for m in metrics:
        label = m["label"]
        diff = (served[label] - recorded.loc[served.index, label]).abs()
        assert diff.max() < 1e-12, (label, diff.max())
    assert (served["output"] == recorded.loc[served.index, "output"]).all()


def test_schemathesis_against_openapi(server):
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    failures = []
    ran = 0

    def make_test(operation):  # type: ignore[no-untyped-def]
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(operation.as_strategy())
        def check(case):  # type: ignore[no-untyped-def]
            response = case.call(base_url=server.url)
            case.validate_response(
                response, checks=[not_a_server_error, content_type_conformance, response_schema_conformance]
            )

        return check

    for result in schema.get_all_operations():
        operation = result.ok()
        try:
            make_test(operation)()
            ran += 1
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, report them together
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert ran >= 6 or failures
    assert not failures, "\n".join(failures)


def _load(url: str, n: int, concurrency: int, stop_after: float | None = None) -> tuple[dict[int, int], list[float]]:
    """n POSTs to /v1/answer with `concurrency` in flight; returns (status counts, completion times)."""
    import aiohttp

    statuses: dict[int, int] = {}
    done_at: list[float] = []
    questions = [f"Does treatment {i % 97} reduce mortality in patients with condition {i % 13}?" for i in range(n)]

    async def main() -> None:
        queue = list(reversed(questions))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:

            async def worker() -> None:
                while queue:
                    q = queue.pop()
                    try:
                        async with session.post(url + "/v1/answer", json={"question": q, "user": q[-3:]}) as resp:
                            await resp.read()
                            statuses[resp.status] = statuses.get(resp.status, 0) + 1
                            if resp.status == 200:
                                done_at.append(time.time())
                    except aiohttp.ClientError:
                        statuses[-1] = statuses.get(-1, 0) + 1
                        if stop_after is not None:
                            return

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    asyncio.run(main())
    return statuses, done_at


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_load_2000_requests_no_lost_rows_no_5xx(bundles, tmp_path):
    _, _, rag, _ = bundles
    log_dir = tmp_path / "load"
    with BundleServer(rag, "--log-dir", log_dir) as srv:
        statuses, _ = _load(srv.url, 2000, 32)
        assert srv.stop() in (0, -15)
    assert statuses == {200: 2000}, statuses
    rows = read_requests(log_dir)
    assert len(rows) == 2000 and rows["request_id"].nunique() == 2000
    assert set(rows["status"]) == {200} and rows["error"].isna().all()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill_9_mid_load_leaves_a_readable_log(bundles, tmp_path):
    _, _, rag, _ = bundles
    log_dir = tmp_path / "killed"
    srv = BundleServer(rag, "--log-dir", log_dir).start()
    result: dict[str, object] = {}
    t = threading.Thread(target=lambda: result.update(zip(("statuses", "done"), _load(srv.url, 5000, 16, 0))))
    t.start()
    time.sleep(4.0)
    killed_at = time.time()
    srv.stop(kill=True)
    t.join(120)
    done = result["done"]
    assert isinstance(done, list) and len(done) > 20
    rows = read_requests(log_dir)
    # everything answered more than ~2 s before the kill (1 s flush interval + slack on a busy machine) is there
    assert len(rows) >= sum(ts < killed_at - 2.0 for ts in done) and len(rows) <= len(done)
    # a torn last line (what kill -9 in the middle of a write leaves) is skipped by readers
    segment = sorted(log_dir.glob("requests-*.jsonl"))[-1]
    with segment.open("a") as fh:
        fh.write('{"ts": "2026-01-01T00:00:00Z", "request_id": "torn", "inp')
    again = read_requests(log_dir)
    assert len(again) == len(rows) and "torn" not in set(again["request_id"])
