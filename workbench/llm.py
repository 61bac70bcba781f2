"""Model gateway: model configs, request keys, retries, per-model concurrency, cost, and which client calls.

Three routes serve a model, chosen per model config (``client: auto|openai|litellm``, default ``auto``):

- ``local/*`` (the embedded baseline) is answered in-process: no import, no HTTP, no event-loop hop.
- OpenAI-compatible chat endpoints (``openai/...``, a bare OpenAI model name such as ``gpt-4o-mini``, and
  ``hosted_vllm/``, ``lm_studio/``, ``llamafile/`` with an ``api_base``) go through the official ``openai``
  SDK with its aiohttp transport: litellm costs ~4x its CPU per call and seconds to import.
- everything else goes through litellm, imported on first use.

Both HTTP routes share one retry loop (Retry-After, 4xx-not-retried, fatal auth / unknown model), one error
mapping and one price table (``workbench.providers``), and the request key does not depend on the route:
a response cached through one answers the other. Why our own retry loop: we must honour Retry-After on
429, count every attempt, and stop a whole run at the first auth / unknown-model error instead of failing
N cells. API keys are read from the environment at call time and never stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from workbench import providers
from workbench.errors import ModelError, ModelFatalError, SpecError
from workbench.providers import classify, litellm_module, retry_after, warm_import  # noqa: F401 - re-exported
from workbench.store import dumps

# litellm kwargs a user may not put in params: they are ours to set.
_RESERVED = {"model", "messages", "api_key", "api_base", "num_retries", "max_retries", "timeout", "stream"}
CLIENTS = ("auto", "openai", "litellm")
# litellm providers whose requests go unchanged to an OpenAI-style /chat/completions endpoint.
OPENAI_COMPATIBLE = ("openai", "hosted_vllm", "lm_studio", "llamafile")
DEFAULT_OPENAI_BASE = "https://api.openai.com/v1"


@dataclass(frozen=True)
class ModelConfig:
    """A litellm model string plus parameters. ``api_key_env`` names an environment variable, never a key.

    ``client`` picks who makes the call (``auto``: the openai SDK for OpenAI-compatible endpoints, in-process
    for ``local/*``, litellm for the rest); it is not part of the identity, so it never changes a request key.
    """

    name: str
    model: str
    params: Mapping[str, Any] = field(default_factory=dict)
    api_base: str | None = None
    api_key_env: str | None = None
    timeout: float = 120.0
    max_concurrency: int | None = None
    max_retries: int = 5
    retry_base: float = 0.5
    client: str = "auto"

    def __post_init__(self) -> None:
        if not self.model or not isinstance(self.model, str):
            raise SpecError(f"model {self.name!r}: `model` must be a litellm model string such as 'openai/gpt-4o-mini'")
        if self.client not in CLIENTS:
            raise SpecError(f"model {self.name!r}: client must be one of {list(CLIENTS)}, got {self.client!r}")
        if self.client == "openai" and not self.api_base and self.provider != "openai":
            raise SpecError(
                f"model {self.name!r}: client: openai needs an api_base for {self.model!r} (only OpenAI's own models "
                "have a default endpoint); set api_base to the server's /v1 URL or use client: litellm"
            )
        bad = sorted(set(self.params) & _RESERVED)
        if bad:
            raise SpecError(
                f"model {self.name!r}: params {bad} are set by the workbench; use api_base / api_key_env / timeout "
                "fields of the model instead (keys always come from the environment)"
            )
        if "key" in " ".join(k.lower() for k in self.params):
            raise SpecError(f"model {self.name!r}: do not put keys in params; set api_key_env to an env var name")
        from workbench.params import check_params  # secrets anywhere in params, types of known params

        check_params(self.name, self.params, self.api_base)
        object.__setattr__(self, "params", dict(self.params))
        if self.route == "litellm":
            providers.litellm_needed()

    @cached_property
    def provider(self) -> str | None:
        """litellm's provider prefix (``openai`` for ``openai/x``; a bare name's provider from the price table)."""
        return providers.split_provider(self.model)[0]

    @cached_property
    def route(self) -> str:
        """Who serves this model: ``local`` (in-process), ``openai`` (the SDK) or ``litellm``."""
        if self.client == "litellm":
            return "litellm"
        if self.model.startswith("local/"):
            return "local"
        if self.client == "openai":
            return "openai"
        if self.provider == "openai" or (self.provider in OPENAI_COMPATIBLE and self.api_base):
            return "openai"
        return "litellm"

    @property
    def where(self) -> str:
        """How messages name this model: 'model NAME (MODEL at URL)'."""
        return f"model {self.name!r} ({self.model}{' at ' + self.api_base if self.api_base else ''})"

    @property
    def hash(self) -> str:
        """Identity of what answers: model, params and endpoint (not the name, limits or key)."""
        return hashlib.sha256(dumps(self.identity()).encode()).hexdigest()

    def identity(self) -> dict[str, Any]:
        return {"model": self.model, "params": _normalise(dict(self.params)), "api_base": self.api_base}

    def options(self) -> dict[str, Any]:
        """Constructor arguments (never a key), so a judge config survives a run record and resume."""
        return {
            "name": self.name,
            "model": self.model,
            "params": dict(self.params),
            "api_base": self.api_base,
            "api_key_env": self.api_key_env,
            "timeout": self.timeout,
            "max_concurrency": self.max_concurrency,
            "max_retries": self.max_retries,
            "retry_base": self.retry_base,
            "client": self.client,
        }

    def record(self) -> dict[str, Any]:
        config = self.identity() | {
            "api_key_env": self.api_key_env,
            "timeout": self.timeout,
            "max_concurrency": self.max_concurrency,
            "client": self.client,
            "route": self.route,  # which client served it, recorded with every run
        }
        return {"name": self.name, "model": self.model, "hash": self.hash, "config": config}


def _normalise(value: Any) -> Any:
    """``temperature: 0`` and ``0.0`` are the same request: integral floats hash as ints."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def request_key(model: ModelConfig, messages: list[dict[str, str]], repeat: int) -> str:
    """Cache key: the canonical request. Same key means the same paid call, so it is made once."""
    payload = dumps({"m": model.identity(), "msg": messages, "r": repeat})
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class CallResult:
    output: str
    prompt_tokens: int | None
    completion_tokens: int | None
    cost: float | None
    latency_ms: float
    attempts: int
    # what the provider says served the call (its reply's `model` and `system_fingerprint`), when it says
    served_model: str | None = None
    system_fingerprint: str | None = None


@dataclass
class GatewayStats:
    calls: int = 0
    attempts: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0


class Gateway:
    """Makes model calls with retries and per-model concurrency limits; counts tokens, cost and attempts.

    ``concurrency`` sizes the connection pool of each OpenAI SDK client. ``routes`` maps each model name
    called to the route that served it. Close with ``aclose()`` (or let ``asyncio.run`` end: clients are
    closed with their loop).
    """

    def __init__(self, concurrency: int = 16) -> None:
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self.stats = GatewayStats()
        self.routes: dict[str, str] = {}
        self.clients = providers.OpenAIClients(concurrency)

    async def aclose(self) -> None:
        await self.clients.aclose()

    def _semaphore(self, model: ModelConfig) -> asyncio.Semaphore | None:
        if not model.max_concurrency:
            return None
        sem = self._semaphores.get(model.hash)
        if sem is None:
            sem = self._semaphores[model.hash] = asyncio.Semaphore(model.max_concurrency)
        return sem

    async def complete(self, model: ModelConfig, messages: list[dict[str, str]]) -> CallResult:
        """One completion with retries. Raises ModelFatalError (stop the run) or ModelError (this cell)."""
        sem = self._semaphore(model)
        if sem is None:
            return await self._complete(model, messages)
        async with sem:
            return await self._complete(model, messages)

    async def _complete(self, model: ModelConfig, messages: list[dict[str, str]]) -> CallResult:
        route = model.route
        self.routes[model.name] = route
        key = _api_key(model, route)
        key_env = model.api_key_env or providers.key_env_hint(model.model)
        # imports and client set-up happen before the clock starts: latency_ms is the call, not our start-up
        client = await self.clients.get(_openai_base(model), key or "sk-no-key") if route == "openai" else None
        if route == "litellm":
            litellm_module()
        attempt = 0
        while True:
            attempt += 1
            self.stats.attempts += 1
            start = time.perf_counter()
            try:
                if route == "local":
                    output, pt, ct, cost, served, fingerprint = _local(model, messages)
                elif route == "openai":
                    output, pt, ct, cost, served, fingerprint = await self._openai(model, messages, client)
                else:
                    output, pt, ct, cost, served, fingerprint = await _litellm(model, messages, key)
                latency_ms = (time.perf_counter() - start) * 1000
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every provider error is classified, in one place
                # the key is masked before the message is cut, and the raw exception is not chained:
                # neither the workspace, nor a log, nor a traceback may show it
                failure = classify(exc, model.where, key_env=key_env, secret=key, timeout=model.timeout)
            # raised outside the except block: `from None` only hides __context__, and the provider's
            # exception kept there carries the request (Authorization header included)
            if failure.kind == "fatal":
                raise ModelFatalError(failure.message) from None
            if providers.give_up(failure, attempt, model.max_retries):
                raise ModelError(providers.final_message(failure, attempt)) from None
            self.stats.retries += 1
            await asyncio.sleep(providers.backoff(attempt, model.retry_base, failure.wait))
        self.stats.calls += 1
        self.stats.prompt_tokens += pt or 0
        self.stats.completion_tokens += ct or 0
        self.stats.cost += cost or 0.0
        return CallResult(output, pt, ct, cost, latency_ms, attempt, served, fingerprint)

    async def _openai(self, model: ModelConfig, messages: list[dict[str, str]], client: Any) -> _Reply:
        """One POST through the SDK's documented raw-request method (``client.post``): the SDK's transport, auth
        headers, timeouts and status-error classes, without re-validating our plain-dict messages and params
        against its type annotations or building pydantic objects for the reply (measured: ~half its CPU per call).
        Params go into the body unchanged, as litellm sends them for OpenAI-compatible providers."""
        body = {**model.params, "model": _wire_name(model), "messages": messages}
        raw = await client.post(
            "/chat/completions", cast_to=self.clients.raw_response, body=body, options={"timeout": model.timeout}
        )
        data = json.loads(raw.content)
        choices = data.get("choices") if isinstance(data, dict) else None
        message = choices[0].get("message") if isinstance(choices, list) and choices else None
        if not isinstance(message, dict):
            raise providers.MalformedResponse("provider returned a response with no 'choices'")
        output = message.get("content") or ""
        usage = data.get("usage") or {}
        pt, ct = usage.get("prompt_tokens"), usage.get("completion_tokens")
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        cost = providers.call_cost(model.model, pt, ct, served_as=data.get("model"), cached_tokens=cached)
        served, fingerprint = data.get("model"), data.get("system_fingerprint")
        return str(output), pt, ct, cost, _text(served), _text(fingerprint)


# output, prompt tokens, completion tokens, cost, served model, system fingerprint
_Reply = tuple[str, "int | None", "int | None", "float | None", "str | None", "str | None"]


def _text(value: Any) -> str | None:
    """A provider's id field as text; absent or empty is None (many OpenAI-compatible servers send neither)."""
    return str(value) if value else None


class _UnknownLocalModel(Exception):
    status_code = 404


def _local(model: ModelConfig, messages: list[dict[str, str]]) -> _Reply:
    """The embedded baseline, in-process; same answer and token counts as its litellm custom provider."""
    from workbench import baseline

    name = model.model.split("/", 1)[-1]
    if name not in baseline.MODELS:
        known = sorted(baseline.MODELS)
        raise _UnknownLocalModel(f"unknown local model {model.model!r}; the embedded models are {known}")
    text, prompt_tokens, completion_tokens = baseline.respond(messages)
    # the served model is the requested one (as its litellm provider reports it); no fingerprint: it is code
    return text, prompt_tokens, completion_tokens, None, model.model, None


async def _litellm(model: ModelConfig, messages: list[dict[str, str]], key: str | None) -> _Reply:
    litellm = litellm_module()
    kwargs: dict[str, Any] = dict(model.params)
    if model.api_base:
        kwargs["api_base"] = model.api_base
    if key is not None:
        kwargs["api_key"] = key
    resp = await litellm.acompletion(
        model=model.model, messages=messages, timeout=model.timeout, max_retries=0, num_retries=0, **kwargs
    )
    output = resp.choices[0].message.content
    usage = getattr(resp, "usage", None)
    pt = getattr(usage, "prompt_tokens", None) if usage else None
    ct = getattr(usage, "completion_tokens", None) if usage else None
    served = _text(getattr(resp, "model", None))
    prefix = f"{model.provider}/"
    if served and model.provider != "local" and served.startswith(prefix) and not _wire_name(model).startswith(prefix):
        # litellm prefixes some providers' reply ids (lm_studio/x for the x the server sent): report what the
        # endpoint said, as the openai route does ("local/" is the embedded baseline's own id on both routes)
        served = served[len(prefix) :]
    return str(output or ""), pt, ct, _cost(litellm, resp), served, _text(getattr(resp, "system_fingerprint", None))


def _api_key(model: ModelConfig, route: str) -> str | None:
    """The key for this call, from the environment; the same rules (and messages) on every route."""
    if route == "local":
        return None
    if model.api_key_env:
        key = os.environ.get(model.api_key_env)
        if not key:
            raise ModelFatalError(
                f"model {model.name!r}: environment variable {model.api_key_env} is not set; export it with your "
                "API key (it is read at call time and never stored)"
            )
        return key
    if model.api_base:
        # OpenAI-compatible local servers usually accept any key; both clients insist on one being present.
        return os.environ.get("OPENAI_API_KEY") or "sk-no-key"
    if model.provider == "openai":
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            raise ModelFatalError(
                f"{model.where}: authentication failed (no API key). Set OPENAI_API_KEY in the environment to a "
                "valid key (keys are read from the environment and never stored), then resume the run."
            )
        return key
    return None  # litellm finds the provider's own variable (ANTHROPIC_API_KEY, ...)


def _openai_base(model: ModelConfig) -> str:
    if model.api_base:
        return model.api_base
    return os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_BASE") or DEFAULT_OPENAI_BASE


def _wire_name(model: ModelConfig) -> str:
    """The model name the endpoint sees: litellm's provider prefix removed, as litellm does."""
    provider, name = providers.split_provider(model.model)
    if provider is None or "/" not in model.model:
        return model.model
    if provider in OPENAI_COMPATIBLE or provider in providers.known_providers():
        return name
    return model.model


def _cost(litellm: Any, resp: Any) -> float | None:
    hidden = getattr(resp, "_hidden_params", None) or {}
    if "response_cost" in hidden:  # litellm already priced it (None = not in its map); asking again costs ~0.2 ms
        cost = hidden["response_cost"]
        return None if cost is None else float(cost)
    try:
        return float(litellm.completion_cost(completion_response=resp))
    except Exception:  # noqa: BLE001 - unknown models have no price in litellm's map: cost is unknown, not an error
        return None
