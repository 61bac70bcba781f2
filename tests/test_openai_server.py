"""Tests for the fake OpenAI server, driven through real litellm calls over HTTP.

They also pin down how litellm (1.106.x, openai SDK 2.x) surfaces each failure, because the gateway relies on it:

====================  ==================================  ===========  =========================================
server answer         exception class (litellm.*)         status_code  notes
====================  ==================================  ===========  =========================================
429 + Retry-After     RateLimitError                      429          ``exc.litellm_response_headers`` (httpx.Headers,
                                                                       case-insensitive) has "retry-after";
                                                                       ``exc.response.headers`` is EMPTY (litellm
                                                                       builds a synthetic response), ``exc.headers``
                                                                       is None.
500                   InternalServerError                 500          litellm_response_headers set
503                   ServiceUnavailableError             503
401                   AuthenticationError                 401
404 model_not_found   NotFoundError                       404
client timeout        Timeout (an openai.APITimeoutError) 408          litellm_response_headers None
200 + malformed body  InternalServerError                 500          litellm_response_headers None (the only way to
                                                                       tell it from a real 500)
====================  ==================================  ===========  =========================================

Retries: ``acompletion`` without ``max_retries`` retries twice inside the openai SDK (3 requests);
``max_retries=0`` gives exactly 1 request. ``aembedding`` IGNORES ``max_retries=0`` (litellm does
``max_retries or litellm.DEFAULT_MAX_RETRIES``) and always sends 3 requests, unless the env var
``DEFAULT_MAX_RETRIES=0`` is set before litellm is imported.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import litellm
import pytest
from openai_server import ServerProcess  # importable via conftest.py, which also sets LITELLM_LOCAL_MODEL_COST_MAP

litellm.suppress_debug_info = True  # no "Give Feedback" banner on every expected exception

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there world"}]


def chat(server: ServerProcess, **kw: Any) -> Any:
    """One litellm chat call over real HTTP, without SDK retries unless the test asks for them."""
    kw.setdefault("model", "openai/test-model")
    kw.setdefault("messages", MESSAGES)
    kw.setdefault("api_key", "sk-test")
    kw.setdefault("max_retries", 0)
    return asyncio.run(litellm.acompletion(api_base=server.base_url, **kw))


def embed(server: ServerProcess, inputs: Any, **kw: Any) -> Any:
    return asyncio.run(
        litellm.aembedding(model="openai/test-embed", api_base=server.base_url, api_key="sk-test", input=inputs, **kw)
    )


def test_echo_content_usage_and_stats(fake_llm: ServerProcess) -> None:
    resp = chat(fake_llm)
    assert resp.choices[0].message.content == "echo: hello there world"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].finish_reason == "stop"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (5, 4, 9)
    stats = fake_llm.stats()
    assert stats["requests"] == 1 and stats["chat"] == 1 and stats["embeddings"] == 0
    assert stats["by_model"] == {"test-model": 1}


def test_echo_is_truncated(fake_llm: ServerProcess) -> None:
    resp = chat(fake_llm, messages=[{"role": "user", "content": "x" * 1000}])
    assert resp.choices[0].message.content == ("echo: " + "x" * 1000)[:200]


def test_scripted_replies_first_match_wins(fake_llm: ServerProcess) -> None:
    fake_llm.configure(
        replies=[
            {"pattern": r"Rate the answer.*\n.*hello", "reply": "SCORE: 4"},
            {"pattern": "hello", "reply": "second"},
        ]
    )
    judge = [{"role": "system", "content": "Rate the answer from 1 to 5"}, {"role": "user", "content": "hello"}]
    assert chat(fake_llm, messages=judge).choices[0].message.content == "SCORE: 4"
    assert chat(fake_llm).choices[0].message.content == "second"
    other = chat(fake_llm, messages=[{"role": "user", "content": "nothing"}])
    assert other.choices[0].message.content == "echo: nothing"


def test_streaming(fake_llm: ServerProcess) -> None:
    async def go() -> str:
        stream = await litellm.acompletion(
            model="openai/test-model",
            api_base=fake_llm.base_url,
            api_key="sk-test",
            messages=MESSAGES,
            max_retries=0,
            stream=True,
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert asyncio.run(go()) == "echo: hello there world"


def test_429_rate_limit_exposes_retry_after(fake_llm: ServerProcess) -> None:
    fake_llm.configure(script=[{"status": 429, "retry_after": 1.5}])
    with pytest.raises(litellm.RateLimitError) as info:
        chat(fake_llm)
    exc = info.value
    assert exc.status_code == 429
    # The Retry-After value lives on `exc.litellm_response_headers` (an httpx.Headers, case-insensitive).
    # `exc.response.headers` is empty (litellm re-creates the response) and `exc.headers` is None.
    assert exc.litellm_response_headers is not None
    assert float(exc.litellm_response_headers["retry-after"]) == 1.5
    assert fake_llm.stats()["requests"] == 1  # max_retries=0 -> no retry
    assert chat(fake_llm).choices[0].message.content.startswith("echo:")  # script consumed


def test_script_count_and_fifo(fake_llm: ServerProcess) -> None:
    fake_llm.configure(script=[{"status": 500, "count": 2}, {"status": 429, "retry_after": 1}])
    for expected in (litellm.InternalServerError, litellm.InternalServerError, litellm.RateLimitError):
        with pytest.raises(expected):
            chat(fake_llm)
    assert chat(fake_llm).choices[0].message.content.startswith("echo:")
    assert fake_llm.stats()["requests"] == 4


def test_500_and_503(fake_llm: ServerProcess) -> None:
    fake_llm.configure(script=[{"status": 500}, {"status": 503}])
    with pytest.raises(litellm.InternalServerError) as info:
        chat(fake_llm)
    assert info.value.status_code == 500
    assert info.value.litellm_response_headers is not None
    with pytest.raises(litellm.ServiceUnavailableError) as info503:
        chat(fake_llm)
    assert info503.value.status_code == 503
    assert fake_llm.stats()["requests"] == 2


def test_auth_key_mismatch(fake_llm: ServerProcess) -> None:
    fake_llm.configure(auth_key="sk-right")
    with pytest.raises(litellm.AuthenticationError) as info:
        chat(fake_llm, api_key="sk-wrong")
    assert info.value.status_code == 401
    assert "Incorrect API key" in str(info.value)
    assert chat(fake_llm, api_key="sk-right").choices[0].message.content.startswith("echo:")
    assert fake_llm.stats()["requests"] == 2


def test_unknown_model_is_not_found(fake_llm: ServerProcess) -> None:
    fake_llm.configure(unknown_models=["gpt-nope"])
    with pytest.raises(litellm.NotFoundError) as info:
        chat(fake_llm, model="openai/gpt-nope")
    assert info.value.status_code == 404
    assert fake_llm.stats()["by_model"] == {"gpt-nope": 1}


def test_fail_models_per_model(fake_llm: ServerProcess) -> None:
    fake_llm.configure(fail_models={"flaky": 503})
    with pytest.raises(litellm.ServiceUnavailableError):
        chat(fake_llm, model="openai/flaky")
    assert chat(fake_llm).choices[0].message.content.startswith("echo:")
    assert fake_llm.stats()["by_model"] == {"flaky": 1, "test-model": 1}


def test_hang_triggers_client_timeout(fake_llm: ServerProcess) -> None:
    fake_llm.configure(script=[{"hang": 5.0}])
    start = time.monotonic()
    with pytest.raises(litellm.Timeout) as info:
        chat(fake_llm, timeout=0.5)
    assert time.monotonic() - start < 4.5  # gave up well before the server would have answered
    assert info.value.status_code == 408
    assert fake_llm.stats()["requests"] == 1


@pytest.mark.parametrize("kind", [True, "shape"])
def test_malformed_body(fake_llm: ServerProcess, kind: Any) -> None:
    # A 200 whose body is not JSON (or lacks `choices`) surfaces as InternalServerError(500) without headers.
    fake_llm.configure(script=[{"malformed": kind}])
    with pytest.raises(litellm.InternalServerError) as info:
        chat(fake_llm)
    assert info.value.status_code == 500
    assert info.value.litellm_response_headers is None
    assert fake_llm.stats()["requests"] == 1


def test_chat_without_max_retries_retries_twice(fake_llm: ServerProcess) -> None:
    # litellm itself does not retry, but the openai SDK under it does (2 retries, honouring Retry-After).
    fake_llm.configure(script=[{"status": 429, "retry_after": 0.05, "count": 5}])
    with pytest.raises(litellm.RateLimitError):
        chat(fake_llm, max_retries=None)
    assert fake_llm.stats()["requests"] == 3


def test_embeddings_are_deterministic_unit_vectors(fake_llm: ServerProcess) -> None:
    resp = embed(fake_llm, ["alpha beta", "gamma", "alpha beta"])
    vecs = [d["embedding"] for d in resp.data]
    assert [len(v) for v in vecs] == [64, 64, 64]
    assert vecs[0] == vecs[2] and vecs[0] != vecs[1]
    assert math.isclose(math.sqrt(sum(x * x for x in vecs[0])), 1.0, rel_tol=1e-6)
    assert resp.usage.prompt_tokens == 5

    fake_llm.configure(embedding_dim=16)
    single = embed(fake_llm, "alpha beta")
    assert len(single.data) == 1 and len(single.data[0]["embedding"]) == 16

    stats = fake_llm.stats()
    assert stats["embeddings"] == 2 and stats["embedding_inputs"] == 4 and stats["requests"] == 2
    assert stats["by_model"] == {"test-embed": 2}


def test_embeddings_ignore_max_retries_zero(fake_llm: ServerProcess) -> None:
    # Documented quirk: aembedding(max_retries=0) still lets the SDK retry twice (see module docstring).
    fake_llm.configure(script=[{"status": 429, "retry_after": 0.05, "count": 5}])
    with pytest.raises(litellm.RateLimitError):
        embed(fake_llm, ["a"], max_retries=0)
    assert fake_llm.stats()["requests"] == 3


def test_embeddings_default_max_retries_env_disables_sdk_retries(fake_llm: ServerProcess) -> None:
    """The fix for the quirk above, checked in a fresh interpreter since the env var is read at import."""
    fake_llm.configure(script=[{"status": 500, "count": 5}])
    code = textwrap.dedent(
        f"""
        import asyncio, litellm
        litellm.suppress_debug_info = True
        try:
            asyncio.run(litellm.aembedding(model="openai/test-embed", api_base={fake_llm.base_url!r},
                                           api_key="sk-test", input=["a"], max_retries=0))
        except litellm.InternalServerError:
            print("raised")
        """
    )
    env = dict(os.environ, DEFAULT_MAX_RETRIES="0", LITELLM_LOCAL_MODEL_COST_MAP="True")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.stdout.strip() == "raised", out.stderr[-2000:]
    assert fake_llm.stats()["requests"] == 1


def test_concurrent_requests_overlap(fake_llm: ServerProcess) -> None:
    fake_llm.configure(latency=0.2)

    async def go() -> list[Any]:
        return await asyncio.gather(
            *[
                litellm.acompletion(
                    model="openai/test-model",
                    api_base=fake_llm.base_url,
                    api_key="sk-test",
                    messages=[{"role": "user", "content": f"q{i}"}],
                    max_retries=0,
                )
                for i in range(8)
            ]
        )

    results = asyncio.run(go())
    assert sorted(r.choices[0].message.content for r in results) == [f"echo: q{i}" for i in range(8)]
    stats = fake_llm.stats()
    assert stats["requests"] == 8 and stats["chat"] == 8
    assert stats["max_in_flight"] > 1  # concurrency proven by the server, not by wall time (flaky under load)


def test_control_api_and_reset(fake_llm: ServerProcess) -> None:
    cfg = fake_llm.configure(latency=0.01, auth_key="k", replies=[{"pattern": "x", "reply": "y"}])
    assert cfg["latency"] == 0.01 and cfg["replies"] == [{"pattern": "x", "reply": "y"}]
    with pytest.raises(RuntimeError, match="unknown config keys"):
        fake_llm.configure(latencyy=1)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(fake_llm.base_url + "/models", timeout=5)
    assert info.value.code == 401
    assert json.loads(info.value.read())["error"]["code"] == "invalid_api_key"
    # in_flight is a live gauge, not a counter: a request an earlier test gave up on (client timeout) may still
    # be sleeping in the shared server. Let it finish, so the reset below is checked against a quiet server.
    deadline = time.monotonic() + 30
    while fake_llm.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    fake_llm.reset()
    assert fake_llm.stats() == {
        "requests": 0,
        "chat": 0,
        "embeddings": 0,
        "by_model": {},
        "embedding_inputs": 0,
        "max_in_flight": 0,
        "in_flight": 0,
        "faults": {},
        "answered": 0,
    }
    with urllib.request.urlopen(fake_llm.base_url + "/models", timeout=5) as resp:
        models = json.loads(resp.read())
    assert models["object"] == "list" and "test-model" in {m["id"] for m in models["data"]}
    assert fake_llm.stats()["requests"] == 1


def test_server_process_reports_startup_failure(openai_server: ServerProcess) -> None:
    port = int(openai_server.url.rsplit(":", 1)[1])
    with pytest.raises(RuntimeError, match="before printing READY") as info:
        ServerProcess(port=port).start()
    assert "stderr" in str(info.value)


def test_script_runs_standalone() -> None:
    script = Path(__file__).with_name("openai_server.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), "--host", "127.0.0.1", "--port", "0", "--latency", "0.0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("READY http://127.0.0.1:")
        with urllib.request.urlopen(line.split(" ", 1)[1] + "/_stats", timeout=5) as resp:
            assert json.loads(resp.read())["requests"] == 0
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
