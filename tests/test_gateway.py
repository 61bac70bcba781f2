"""The gateway on both HTTP routes (openai SDK and litellm) over real HTTP, the in-process baseline, prices,
and cold starts that must not import litellm.

Each behaviour test runs once per client; where the two routes must say exactly the same thing (fail-fast
messages, give-up messages, token counts, cost) a single test calls both and compares.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import workbench as wb
from workbench import providers
from workbench.errors import ModelError, ModelFatalError, SpecError
from workbench.llm import Gateway, ModelConfig, request_key

CLIENTS = ("openai", "litellm")
ROOT = Path(__file__).resolve().parents[1]
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is two plus two?"}]


def _cfg(server, client: str, **kw) -> ModelConfig:
    kw.setdefault("retry_base", 0.01)
    return ModelConfig(name="m", model=kw.pop("model", "openai/test-model"), api_base=server.base_url, client=client,
                       **kw)


def _call(cfg: ModelConfig, messages=MESSAGES, gateway: Gateway | None = None):
    gw = gateway or Gateway(4)

    async def main():
        return await gw.complete(cfg, messages)

    return asyncio.run(main()), gw


def _error(cfg: ModelConfig) -> BaseException:
    try:
        _call(cfg)
    except (ModelError, ModelFatalError) as exc:
        return exc
    raise AssertionError("the call should have failed")


def test_routes_are_chosen_per_model():
    assert ModelConfig("a", "openai/gpt-4o-mini").route == "openai"
    assert ModelConfig("b", "gpt-4o-mini").route == "openai"  # a bare OpenAI name, known from the price table
    assert ModelConfig("c", "hosted_vllm/llama", api_base="http://127.0.0.1:1/v1").route == "openai"
    assert ModelConfig("d", "anthropic/claude-3-5-sonnet-20240620").route == "litellm"
    assert ModelConfig("e", "ollama/llama3").route == "litellm"
    assert ModelConfig("f", "local/extractive").route == "local"
    assert ModelConfig("g", "local/extractive", client="litellm").route == "litellm"
    assert ModelConfig("h", "openai/x", api_base="http://127.0.0.1:1/v1", client="litellm").route == "litellm"
    assert ModelConfig("i", "ollama/llama3", api_base="http://127.0.0.1:1/v1", client="openai").route == "openai"
    with pytest.raises(SpecError, match="client must be one of"):
        ModelConfig("j", "openai/x", client="httpx")
    with pytest.raises(SpecError, match="needs an api_base"):
        ModelConfig("k", "ollama/llama3", client="openai")
    # the client is not part of what answers: same hash, same request key
    a = ModelConfig("m", "openai/x", api_base="http://h/v1", client="openai")
    b = ModelConfig("m", "openai/x", api_base="http://h/v1", client="litellm")
    assert a.hash == b.hash and request_key(a, MESSAGES, 0) == request_key(b, MESSAGES, 0)


def test_both_routes_return_the_same_output_tokens_and_cost(fake_llm):
    results = {c: _call(_cfg(fake_llm, c, params={"temperature": 0}))[0] for c in CLIENTS}
    assert fake_llm.stats()["chat"] == 2
    o, lt = results["openai"], results["litellm"]
    assert o.output == lt.output == "echo: What is two plus two?"
    assert (o.prompt_tokens, o.completion_tokens) == (lt.prompt_tokens, lt.completion_tokens) == (7, 6)
    assert o.cost is None and lt.cost is None  # test-model has no price: unknown, not free
    # a priced model: the price table read as data gives exactly litellm's figure
    priced = {c: _call(_cfg(fake_llm, c, model="openai/gpt-4o-mini"))[0].cost for c in CLIENTS}
    entry = providers.price_table()["gpt-4o-mini"]
    expected = 7 * entry["input_cost_per_token"] + 6 * entry["output_cost_per_token"]
    assert priced["openai"] == pytest.approx(expected, rel=1e-12)
    assert priced["litellm"] == pytest.approx(expected, rel=1e-12)


def test_params_reach_the_server_on_both_routes(fake_llm):
    fake_llm.configure(replies=[{"pattern": "plus", "reply": "four"}])
    for client in CLIENTS:
        res, gw = _call(_cfg(fake_llm, client, params={"temperature": 0.2, "max_tokens": 5, "seed": 7}))
        assert res.output == "four" and gw.routes == {"m": client}


@pytest.mark.parametrize("client", CLIENTS)
def test_provider_reported_model_and_fingerprint_are_kept(fake_llm, client):
    res, _ = _call(_cfg(fake_llm, client))
    assert (res.served_model, res.system_fingerprint) == ("test-model", "fp_fake_0001")  # the server's defaults
    # the provider moves the alias to a new snapshot and backend: the result says so
    fake_llm.configure(served_model="{model}-2024-08-06", system_fingerprint="fp_44709d6fcb")
    res, _ = _call(_cfg(fake_llm, client))
    assert (res.served_model, res.system_fingerprint) == ("test-model-2024-08-06", "fp_44709d6fcb")
    # a server that sends no fingerprint (most OpenAI-compatible ones): unknown, not an empty string
    fake_llm.configure(system_fingerprint=None)
    res, _ = _call(_cfg(fake_llm, client))
    assert (res.served_model, res.system_fingerprint) == ("test-model-2024-08-06", None)

    # both routes report the id the endpoint sent (litellm prefixes some providers' ids: lm_studio/x for x)
    fake_llm.configure(served_model="{model}")
    for model, served in (("lm_studio/qwen", "qwen"), ("hosted_vllm/org/test-model", "org/test-model")):
        assert _call(_cfg(fake_llm, client, model=model))[0].served_model == served


@pytest.mark.parametrize("client", CLIENTS)
def test_retry_after_is_honoured(fake_llm, client):
    fake_llm.configure(script=[{"status": 429, "retry_after": 0.5, "count": 1}])
    t = time.perf_counter()
    res, gw = _call(_cfg(fake_llm, client))
    assert time.perf_counter() - t >= 0.5
    assert res.attempts == 2 and gw.stats.retries == 1 and fake_llm.stats()["requests"] == 2


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    "step", [{"status": 500, "count": 2}, {"status": 503, "count": 1}, {"malformed": True, "count": 1},
             {"malformed": "shape", "count": 1}, {"hang": 2.0, "count": 1}],
    ids=["500", "503", "malformed", "no-choices", "timeout"],
)
def test_transient_failures_are_retried(fake_llm, client, step):
    fake_llm.configure(script=[step])
    res, _ = _call(_cfg(fake_llm, client, timeout=0.7))
    assert res.output.startswith("echo:") and res.attempts == 1 + step["count"]
    assert fake_llm.stats()["requests"] == 1 + step["count"]


def test_give_up_and_fail_fast_messages_are_identical_on_both_routes(fake_llm, monkeypatch):
    cases = {
        "400 not retried": ({"script": [{"status": 400, "message": "maximum context length exceeded"}]}, {}),
        "422 not retried": ({"script": [{"status": 422, "message": "bad field"}]}, {}),
        "500 until give-up": ({"fail_models": {"test-model": 500}}, {"max_retries": 1}),
        "429 until give-up": ({"script": [{"status": 429, "retry_after": 0, "count": 3}]}, {"max_retries": 2}),
        "timeout": ({"script": [{"hang": 1.5, "count": 1}]}, {"max_retries": 0, "timeout": 0.5}),
        "unknown model": ({"unknown_models": ["test-model"]}, {}),
        "bad key": ({"auth_key": "sk-right"}, {"api_key_env": "WB_GW_KEY"}),
    }
    monkeypatch.setenv("WB_GW_KEY", "sk-wrong-but-long-enough")
    for label, (server_cfg, model_kw) in cases.items():
        seen = {}
        for client in CLIENTS:
            fake_llm.reset()
            fake_llm.configure(**server_cfg)
            exc = _error(_cfg(fake_llm, client, **model_kw))
            seen[client] = (type(exc).__name__, str(exc), fake_llm.stats()["requests"])
            assert exc.__cause__ is None and exc.__suppress_context__  # the provider's exception is not chained
        assert seen["openai"] == seen["litellm"], label
    # and the messages say what happened
    fake_llm.reset()
    fake_llm.configure(script=[{"status": 400, "message": "maximum context length exceeded"}])
    assert "HTTP 400 (not retried): maximum context length exceeded" in str(_error(_cfg(fake_llm, "openai")))
    assert fake_llm.stats()["requests"] == 1


@pytest.mark.parametrize("client", CLIENTS)
def test_auth_and_unknown_model_stop_the_run(fake_llm, client, monkeypatch):
    fake_llm.configure(auth_key="sk-good")
    monkeypatch.setenv("WB_GW_KEY", "sk-bad-key-value")
    exc = _error(_cfg(fake_llm, client, api_key_env="WB_GW_KEY"))
    assert isinstance(exc, ModelFatalError) and "WB_GW_KEY" in str(exc) and "authentication failed" in str(exc)
    assert "sk-bad-key-value" not in str(exc)
    monkeypatch.delenv("WB_GW_KEY")
    exc = _error(_cfg(fake_llm, client, api_key_env="WB_GW_KEY"))
    assert isinstance(exc, ModelFatalError) and "WB_GW_KEY is not set" in str(exc)
    fake_llm.reset()
    fake_llm.configure(unknown_models=["test-model"])
    exc = _error(_cfg(fake_llm, client))
    assert isinstance(exc, ModelFatalError) and "not found" in str(exc)
    assert fake_llm.stats()["requests"] == 1


@pytest.mark.parametrize("client", CLIENTS)
def test_an_echoed_key_is_masked(fake_llm, client, monkeypatch):
    key = "sk-live-" + "QWERTYUIOPASDFGHJKLZXCVBNM" * 12
    monkeypatch.setenv("WB_GW_KEY", key)
    fake_llm.configure(script=[{"status": 500, "message": f"upstream rejected key={key}", "count": 1}])
    exc = _error(_cfg(fake_llm, client, api_key_env="WB_GW_KEY", max_retries=0))
    assert "upstream rejected key=***" in str(exc) and key[:12] not in str(exc)
    assert exc.__cause__ is None and exc.__suppress_context__


@pytest.mark.parametrize("client", CLIENTS)
def test_per_model_concurrency_limit(fake_llm, client):
    deadline = time.monotonic() + 30  # a request an earlier test abandoned (timeout) may still be held open
    while fake_llm.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.1)
    fake_llm.configure(latency=0.1)
    cfg = _cfg(fake_llm, client, max_concurrency=2, model="openai/limit-model")  # its own counter on the server
    gw = Gateway(8)

    async def main():
        await asyncio.gather(*(gw.complete(cfg, [{"role": "user", "content": f"q{i}"}]) for i in range(8)))

    asyncio.run(main())
    assert fake_llm.stats()["max_in_flight"] == 2 and fake_llm.stats()["by_model"]["limit-model"] == 8


def test_connection_pool_is_sized_to_the_concurrency(fake_llm):
    fake_llm.configure(latency=0.1)
    cfg = _cfg(fake_llm, "openai")
    gw = Gateway(3)

    async def main():
        await asyncio.gather(*(gw.complete(cfg, [{"role": "user", "content": f"q{i}"}]) for i in range(9)))
        assert len(gw.clients._clients) == 1  # one client per endpoint and key

    asyncio.run(main())
    assert fake_llm.stats()["max_in_flight"] == 3


def test_a_cache_filled_through_one_route_answers_the_other(tmp_path, fake_llm):
    ws = wb.open(tmp_path / "ws")
    ds = ws.add_dataset("qa", [{"id": f"c{i}", "question": f"question {i}"} for i in range(5)], id="id")
    prompts = [wb.Prompt("p", "Q: {{ question }}")]

    def model(client):
        return {"name": "m", "model": "openai/test-model", "api_base": fake_llm.base_url, "client": client}

    first = ws.experiment(ds, prompts, [model("openai")]).run(progress=False)
    assert first.last.clients == {"m": "openai"} and fake_llm.stats()["chat"] == 5
    second = ws.experiment(ds, prompts, [model("litellm")]).run(progress=False)
    assert second.last.cached == 5 and second.last.model_calls == 0 and fake_llm.stats()["chat"] == 5
    assert first.results()["output"].tolist() == second.results()["output"].tolist()
    # the run records which client served each model
    assert second.summary()["clients"] == {}  # nothing was called
    assert [v["model"]["route"] for v in first.info["spec"]["variants"]] == ["openai"]
    assert [v["model"]["route"] for v in second.info["spec"]["variants"]] == ["litellm"]
    assert first.summary()["clients"] == {"m": "openai"}


def test_local_baseline_in_process_matches_its_litellm_provider():
    messages = [{"role": "user", "content": "Context: Cats sleep a lot. Dogs bark loudly at night.\n"
                                            "Question: Do dogs bark at night?"}]
    local = ModelConfig("b", "local/extractive")
    via_litellm = ModelConfig("b", "local/extractive", client="litellm")
    a, gw = _call(local, messages)
    b, _ = _call(via_litellm, messages)
    assert gw.routes == {"b": "local"}
    assert a.output == b.output == "Dogs bark loudly at night."
    assert (a.prompt_tokens, a.completion_tokens, a.cost) == (b.prompt_tokens, b.completion_tokens, b.cost)
    assert (a.served_model, a.system_fingerprint) == (b.served_model, b.system_fingerprint)
    assert (a.served_model, a.system_fingerprint) == ("local/extractive", None)
    exc = _error(ModelConfig("b", "local/nonexistent"))
    assert isinstance(exc, ModelFatalError) and "not found" in str(exc) and "extractive" in str(exc)


def test_call_cost_matches_litellm_on_its_own_table():
    litellm = providers.litellm_module()
    table = providers.price_table()
    names = sorted(k for k, v in table.items() if isinstance(v, dict) and v.get("litellm_provider") == "openai"
                   and v.get("mode") == "chat" and "input_cost_per_token" in v and "/" not in k)
    assert len(names) > 20
    for name in names:
        ours = providers.call_cost(f"openai/{name}", 123, 45)
        theirs = sum(litellm.cost_per_token(model=f"openai/{name}", prompt_tokens=123, completion_tokens=45))
        assert ours == pytest.approx(theirs, rel=1e-9), name
    assert providers.call_cost("openai/no-such-model-xyz", 10, 10) is None
    assert providers.call_cost("hosted_vllm/gpt-4o-mini", 10, 10) is None  # priced only under its own provider


def test_price_table_is_read_without_importing_litellm():
    code = ("import sys; from workbench import providers; t = providers.price_table(); "
            "assert len(t) > 1000 and 'gpt-4o-mini' in t; assert 'litellm' not in sys.modules, 'imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=_env())
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **extra}
    env.pop("OPENAI_API_KEY", None)
    return env


def test_cold_cli_run_with_openai_compatible_models_never_imports_litellm(tmp_path, fake_llm):
    spec = {
        "dataset": {"name": "qa", "path": "qa.jsonl", "id": "id"},
        "prompts": [{"name": "p", "user": "Q: {{ question }}"}],
        "models": [{"name": "m", "model": "openai/test-model", "api_base": fake_llm.base_url},
                   {"name": "base", "model": "local/extractive"}],
        "metrics": [{"name": "contains", "expected": "question"}, {"name": "token_f1", "expected": "question"}],
    }
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps({"id": f"c{i}", "question": f"q {i}"}) + "\n"
                                               for i in range(6)))
    (tmp_path / "spec.yaml").write_text(json.dumps(spec))
    code = textwrap.dedent("""
        import json, sys
        from workbench.cli import main
        rc = main(["run", "spec.yaml", "--json", "-w", "ws"])
        print(json.dumps({"rc": rc, "litellm": "litellm" in sys.modules}), file=sys.stderr)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=_env(),
                         cwd=tmp_path)
    probe = json.loads(out.stderr.strip().splitlines()[-1])
    assert probe == {"rc": 0, "litellm": False}, out.stderr[-2000:]
    assert fake_llm.stats()["chat"] == 6


def test_load_ext_warms_litellm_only_when_a_model_needs_it():
    code = textwrap.dedent("""
        import sys, time
        from IPython.testing.globalipapp import start_ipython
        ip = start_ipython()
        ip.run_line_magic("load_ext", "workbench")
        time.sleep(0.5)
        before = "litellm" in sys.modules
        import workbench as wb
        wb.ModelConfig("a", "openai/gpt-4o-mini"); wb.ModelConfig("b", "local/extractive")
        time.sleep(0.5)
        after_fast = "litellm" in sys.modules
        wb.ModelConfig("c", "anthropic/claude-3-5-sonnet-20240620")
        from workbench import providers
        providers._WARMING.join(120)
        print(before, after_fast, "litellm" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=_env())
    assert out.stdout.split()[-3:] == ["False", "False", "True"], out.stderr[-2000:]


def test_embedding_errors_take_the_same_path_as_chat_errors(fake_llm, monkeypatch):
    """One classification for chat and embeddings: same fail-fast wording, keys masked, nothing chained."""
    from workbench.embeddings import LiteLLMEmbedder
    from workbench.errors import RetrievalError

    key = "sk-embed-" + "ZYXWVUTSRQPONMLKJIHGFEDCBA" * 10
    monkeypatch.setenv("WB_EMB_KEY", key)
    fake_llm.configure(script=[{"status": 500, "message": f"upstream rejected key={key}", "count": 2}])
    emb = LiteLLMEmbedder("openai/test-embed", api_base=fake_llm.base_url, api_key_env="WB_EMB_KEY", max_retries=1,
                          backoff_base=0.01)
    with pytest.raises(RetrievalError) as info:
        emb.embed(["x"])
    message = str(info.value)
    assert "HTTP 500: upstream rejected key=***" in message and "after 2 attempts" in message
    assert key[:12] not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    fake_llm.reset()
    fake_llm.configure(auth_key="sk-right")
    with pytest.raises(RetrievalError) as info:
        LiteLLMEmbedder("openai/test-embed", api_base=fake_llm.base_url, api_key_env="WB_EMB_KEY").embed(["y"])
    chat = _error(_cfg(fake_llm, "openai", api_key_env="WB_EMB_KEY"))
    tail = "authentication failed (Incorrect API key provided). Set WB_EMB_KEY in the environment"
    assert tail in str(info.value) and tail in str(chat)
    assert info.value.__cause__ is None
