"""Model gateway over litellm: model configs, request keys, retries, per-model concurrency, cost.

Why our own retry loop instead of litellm's: we must honour Retry-After on 429, count every
attempt, and stop a whole run at the first auth / unknown-model error instead of failing N cells.
litellm is imported lazily (it takes seconds and, without ``LITELLM_LOCAL_MODEL_COST_MAP``, reaches
for the network); this module is also the one place that maps litellm's exceptions to ours.
API keys are read from the environment at call time and never stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from workbench.errors import ModelError, ModelFatalError, SpecError
from workbench.store import dumps

_LITELLM: Any = None
_LITELLM_LOCK = threading.Lock()

# litellm kwargs a user may not put in params: they are ours to set.
_RESERVED = {"model", "messages", "api_key", "api_base", "num_retries", "max_retries", "timeout", "stream"}


def litellm_module() -> Any:
    """Import litellm once, offline-safe and configured lean; registers the embedded baseline provider."""
    global _LITELLM
    if _LITELLM is not None:
        return _LITELLM
    with _LITELLM_LOCK:
        if _LITELLM is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            os.environ.setdefault("LITELLM_LOG", "ERROR")
            import litellm

            litellm.suppress_debug_info = True
            litellm.telemetry = False
            # No callbacks are registered, so nothing logs messages; the redaction flag would deep-copy every
            # request and response for nothing (measured: 6-11% of litellm's per-call CPU).
            litellm.callbacks = []
            litellm.success_callback = []
            litellm.failure_callback = []
            litellm.set_verbose = False
            from workbench.baseline import register_provider

            register_provider(litellm)
            _LITELLM = litellm
    return _LITELLM


def warm_import() -> threading.Thread:
    """Import litellm in a background thread (used by %load_ext) so the first run does not wait."""
    t = threading.Thread(target=litellm_module, name="workbench-litellm-import", daemon=True)
    t.start()
    return t


@dataclass(frozen=True)
class ModelConfig:
    """A litellm model string plus parameters. ``api_key_env`` names an environment variable, never a key."""

    name: str
    model: str
    params: Mapping[str, Any] = field(default_factory=dict)
    api_base: str | None = None
    api_key_env: str | None = None
    timeout: float = 120.0
    max_concurrency: int | None = None
    max_retries: int = 5
    retry_base: float = 0.5

    def __post_init__(self) -> None:
        if not self.model or not isinstance(self.model, str):
            raise SpecError(f"model {self.name!r}: `model` must be a litellm model string such as 'openai/gpt-4o-mini'")
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
        }

    def record(self) -> dict[str, Any]:
        config = self.identity() | {
            "api_key_env": self.api_key_env,
            "timeout": self.timeout,
            "max_concurrency": self.max_concurrency,
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


@dataclass
class GatewayStats:
    calls: int = 0
    attempts: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0


# Matched through the class hierarchy: these are temporary whatever their status code says.
_TRANSIENT = {
    "RateLimitError",
    "InternalServerError",
    "ServiceUnavailableError",
    "APIConnectionError",
    "Timeout",
    "JSONDecodeError",
    "BadGatewayError",
}


def retry_after(exc: BaseException) -> float | None:
    """Seconds the provider asked us to wait (``retry-after-ms`` or ``Retry-After``: seconds or HTTP date)."""
    headers: Any = getattr(exc, "litellm_response_headers", None)
    if not headers:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(float(ms) / 1000.0, 0.0)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(float(value), 0.0)
        except ValueError:
            from email.utils import parsedate_to_datetime

            return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError, AttributeError):
        return None


def classify(exc: BaseException, model: ModelConfig, secret: str | None = None) -> tuple[str, str]:
    """Map a litellm / HTTP exception to ('fatal' | 'transient' | 'cell', message); ``secret`` is masked out.

    A 4xx other than 408/409/429 is never retried: the same request cannot succeed (bad request,
    context window exceeded, content policy). litellm's generic ``APIError`` counts as temporary only
    when it is that exact class, since every status error inherits from it.
    """
    name = type(exc).__name__
    mro = {c.__name__ for c in type(exc).__mro__}
    status = getattr(exc, "status_code", None)
    raw = str(exc).strip()
    if secret and len(secret) >= 8:
        raw = raw.replace(secret, "***")
    text = raw.splitlines()[0][:300] if raw else name
    where = f"model {model.name!r} ({model.model}{' at ' + model.api_base if model.api_base else ''})"
    if mro & {"AuthenticationError", "PermissionDeniedError"} or status in (401, 403):
        env = model.api_key_env or _key_env_hint(model.model)
        return "fatal", (
            f"{where}: authentication failed ({text}). Set {env} in the environment to a valid key "
            "(keys are read from the environment and never stored), then resume the run."
        )
    if "NotFoundError" in mro or status == 404:
        return "fatal", (
            f"{where}: the model or endpoint was not found ({text}). Check the model name and api_base; "
            "litellm model strings look like 'openai/gpt-4o-mini' or 'ollama/llama3'."
        )
    if name == "BadRequestError" and ("LLM Provider NOT provided" in str(exc) or "not supported" in str(exc)):
        return "fatal", f"{where}: litellm does not know this model ({text}). See litellm's provider list."
    if status in (408, 409, 429) or (isinstance(status, int) and status >= 500):
        return "transient", f"{where}: {name}: {text}"
    if isinstance(status, int) and 400 <= status < 500:
        return "cell", f"{where}: {name} (HTTP {status}, not retried): {text}"
    if mro & _TRANSIENT or name == "APIError":
        return "transient", f"{where}: {name}: {text}"
    if isinstance(exc, (asyncio.TimeoutError, ConnectionError, ValueError)):
        return "transient", f"{where}: {name}: {text}"
    return "cell", f"{where}: {name}: {text}"


def _key_env_hint(model: str) -> str:
    provider = model.split("/", 1)[0].upper() if "/" in model else "OPENAI"
    return f"{provider}_API_KEY"


class Gateway:
    """Makes model calls with retries and per-model concurrency limits; counts tokens, cost and attempts."""

    def __init__(self) -> None:
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self.stats = GatewayStats()

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
        litellm = litellm_module()
        kwargs: dict[str, Any] = dict(model.params)
        if model.api_base:
            kwargs["api_base"] = model.api_base
        if model.api_key_env:
            key = os.environ.get(model.api_key_env)
            if not key:
                raise ModelFatalError(
                    f"model {model.name!r}: environment variable {model.api_key_env} is not set; export it with your "
                    "API key (it is read at call time and never stored)"
                )
            kwargs["api_key"] = key
        elif model.api_base and not model.model.startswith("local/"):
            # OpenAI-compatible local servers usually accept any key; litellm insists on one being present.
            kwargs.setdefault("api_key", os.environ.get("OPENAI_API_KEY") or "sk-no-key")
        attempt = 0
        while True:
            attempt += 1
            self.stats.attempts += 1
            start = time.perf_counter()
            try:
                resp = await litellm.acompletion(
                    model=model.model,
                    messages=messages,
                    timeout=model.timeout,
                    max_retries=0,
                    num_retries=0,
                    **kwargs,
                )
                latency_ms = (time.perf_counter() - start) * 1000
                output = resp.choices[0].message.content
                if output is None:
                    output = ""
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every provider error is classified here, in one place
                # the key is masked before the message is cut, and the raw exception is not chained:
                # neither the workspace, nor a log, nor a traceback may show it
                kind, message = classify(exc, model, secret=kwargs.get("api_key"))
                wait = retry_after(exc)
            # raised outside the except block: `from None` only hides __context__, and the provider's
            # exception there carries the request (Authorization header included)
            if kind == "fatal":
                raise ModelFatalError(message)
            if kind == "cell" or attempt > model.max_retries:
                suffix = f" (after {attempt} attempts)" if attempt > 1 else ""
                raise ModelError(message + suffix)
            self.stats.retries += 1
            if wait is None:
                wait = random.uniform(0, model.retry_base * 2 ** (attempt - 1))
            await asyncio.sleep(min(wait, 60.0))
        usage = getattr(resp, "usage", None)
        pt = getattr(usage, "prompt_tokens", None) if usage else None
        ct = getattr(usage, "completion_tokens", None) if usage else None
        cost = _cost(litellm, resp)
        self.stats.calls += 1
        self.stats.prompt_tokens += pt or 0
        self.stats.completion_tokens += ct or 0
        self.stats.cost += cost or 0.0
        return CallResult(str(output), pt, ct, cost, latency_ms, attempt)


def _cost(litellm: Any, resp: Any) -> float | None:
    hidden = getattr(resp, "_hidden_params", None) or {}
    if "response_cost" in hidden:  # litellm already priced it (None = not in its map); asking again costs ~0.2 ms
        cost = hidden["response_cost"]
        return None if cost is None else float(cost)
    try:
        return float(litellm.completion_cost(completion_response=resp))
    except Exception:  # noqa: BLE001 - unknown models have no price in litellm's map: cost is unknown, not an error
        return None
