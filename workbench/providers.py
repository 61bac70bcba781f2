"""Provider calls: the one place that imports litellm, builds OpenAI SDK clients, prices calls and maps errors.

Why one module: chat calls (``workbench.llm``) and embedding calls (``workbench.embeddings``) must retry,
honour ``Retry-After``, tell fatal from retryable errors and mask keys the same way, whichever client made
the call. Exceptions of litellm and of the ``openai`` SDK are classified here by their status code and
class names, so neither package has to be imported to classify (and litellm is never imported for a
model it does not serve). Messages are built from the provider's own error text with the client's prefix
removed, so the two clients produce the same message for the same failure; the raw exception is never
chained, because a provider may echo the API key.

Prices come from litellm's shipped price table (``model_prices_and_context_window_backup.json``), read as
data from the installed package without executing litellm's ``__init__``: a call costs the same whichever
client served it, and an unknown model costs ``None``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from workbench.errors import ModelError

_LITELLM: Any = None
_LITELLM_LOCK = threading.Lock()
_WARM_ON_NEED = False
_WARMING: threading.Thread | None = None


def configure_environment() -> None:
    """Environment litellm reads at import: the shipped cost map (no network) and quiet logs."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOG", "ERROR")


def litellm_module() -> Any:
    """Import litellm once, offline-safe and configured lean; registers the embedded baseline provider."""
    global _LITELLM
    if _LITELLM is not None:
        return _LITELLM
    with _LITELLM_LOCK:
        if _LITELLM is None:
            configure_environment()
            try:
                import litellm
            except ImportError as exc:  # pragma: no cover - dependency of the package
                raise ModelError("litellm serves this model but is not installed: pip install litellm") from exc

            litellm.suppress_debug_info = True  # otherwise it prints help banners on every failed call
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
    """Import litellm in a background thread so the first litellm-served call does not wait for it."""
    global _WARMING
    if _WARMING is None:
        _WARMING = threading.Thread(target=litellm_module, name="workbench-litellm-import", daemon=True)
        _WARMING.start()
    return _WARMING


def warm_when_needed(enabled: bool = True) -> None:
    """In a notebook (``%load_ext``): start importing litellm as soon as a model that needs it is configured."""
    global _WARM_ON_NEED
    _WARM_ON_NEED = enabled


def litellm_needed() -> None:
    """A model or embedder served by litellm was configured: warm the import now if the notebook asked for it."""
    if _WARM_ON_NEED and _LITELLM is None:
        warm_import()


# ---------------------------------------------------------------------------------------------
# prices (litellm's shipped table, read as data)

_PRICES: dict[str, Any] | None = None
_PRICES_LOCK = threading.Lock()
PRICE_FILE = "model_prices_and_context_window_backup.json"


def price_table() -> dict[str, Any]:
    """litellm's price table, located with ``find_spec`` (which does not run litellm's ``__init__``)."""
    global _PRICES
    if _PRICES is not None:
        return _PRICES
    with _PRICES_LOCK:
        if _PRICES is None:
            import importlib.util
            from pathlib import Path

            table: dict[str, Any] = {}
            spec = importlib.util.find_spec("litellm")
            for folder in (spec.submodule_search_locations or []) if spec else []:
                path = Path(folder) / PRICE_FILE
                if path.is_file():
                    table = json.loads(path.read_text(encoding="utf-8"))
                    break
            table.pop("sample_spec", None)
            _PRICES = table
    return _PRICES


def known_providers() -> frozenset[str]:
    """Every provider prefix the price table knows (``groq``, ``ollama``, ...)."""
    global _PROVIDERS
    if _PROVIDERS is None:
        entries = [v for v in price_table().values() if isinstance(v, dict)]
        _PROVIDERS = frozenset(str(v["litellm_provider"]) for v in entries if v.get("litellm_provider"))
    return _PROVIDERS


_PROVIDERS: frozenset[str] | None = None


def split_provider(model: str) -> tuple[str | None, str]:
    """``openai/gpt-4o-mini`` -> ("openai", "gpt-4o-mini"); a bare name -> (its provider in the table, name)."""
    if "/" in model:
        provider, name = model.split("/", 1)
        return provider, name
    entry = price_table().get(model)
    return (entry.get("litellm_provider") if isinstance(entry, dict) else None), model


def price_entry(model: str, served_as: str | None = None) -> dict[str, Any] | None:
    """The table entry for a model string (or the model name the server answered as), if its provider matches."""
    provider, name = split_provider(model)
    table = price_table()
    for candidate in (served_as, name):
        if not candidate:
            continue
        for key in (f"{provider}/{candidate}", candidate):
            entry = table.get(key)
            if isinstance(entry, dict) and entry.get("litellm_provider") == provider:
                return entry
    return None


def call_cost(
    model: str, prompt_tokens: int | None, completion_tokens: int | None, served_as: str | None = None,
    cached_tokens: int | None = None,
) -> float | None:
    """USD for one call from the price table; ``None`` when the model (or its usage) is unknown."""
    if prompt_tokens is None and completion_tokens is None:
        return None
    entry = price_entry(model, served_as)
    if entry is None:
        return None
    inp, outp = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
    if inp is None and outp is None:
        return None
    pt, ct, cached = prompt_tokens or 0, completion_tokens or 0, min(cached_tokens or 0, prompt_tokens or 0)
    cache_price = entry.get("cache_read_input_token_cost")
    if cached and cache_price is not None:
        prompt_cost = (pt - cached) * (inp or 0.0) + cached * cache_price
    else:
        prompt_cost = pt * (inp or 0.0)
    return float(prompt_cost + ct * (outp or 0.0))


# ---------------------------------------------------------------------------------------------
# errors: one classification for every client


@dataclass(frozen=True)
class Failure:
    """What to do about a failed provider call: 'fatal' (stop the run), 'transient' (retry) or 'cell' (give up)."""

    kind: str
    message: str
    wait: float | None = None  # seconds the provider asked for (Retry-After), if any


class MalformedResponse(Exception):
    """The server answered 200 with a body that is not an OpenAI chat completion (retried like a 5xx)."""


_TIMEOUT = {"Timeout", "APITimeoutError", "TimeoutError", "TimeoutException", "ReadTimeout", "ConnectTimeout"}
_CONNECTION = {"APIConnectionError", "ConnectError", "ClientConnectorError", "ConnectionError", "RemoteProtocolError"}
# litellm's classes for temporary failures, matched through the class hierarchy whatever their status says.
_TRANSIENT = {"RateLimitError", "InternalServerError", "ServiceUnavailableError", "BadGatewayError", "JSONDecodeError"}
_PREFIX = re.compile(r"^(?:\s*(?:litellm\.\w+:|\w+(?:Error|Exception)\s*[:-]|Error code:\s*\d+\s*-))+\s*")


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


def redact(text: str, *secrets: str | None) -> str:
    """Mask every key (8+ characters) in ``text``; done before any cut so no part of a key survives."""
    for secret in secrets:
        if secret and len(secret) >= 8:
            text = text.replace(secret, "***")
    return text


def provider_text(exc: BaseException, *secrets: str | None) -> str:
    """The provider's own message, without the client's prefixes, key masked, first line, at most 300 chars."""
    raw = redact(str(exc).strip(), *secrets)
    for _ in range(4):  # litellm nests prefixes: "litellm.X: X: OpenAIException - text"
        stripped = _PREFIX.sub("", raw, count=1)
        if stripped == raw:
            break
        raw = stripped
    line = raw.splitlines()[0].strip() if raw.strip() else ""
    return line[:300] or type(exc).__name__


def key_env_hint(model: str) -> str:
    provider = model.split("/", 1)[0].upper() if "/" in model else "OPENAI"
    return f"{provider}_API_KEY"


def classify(
    exc: BaseException, where: str, *, key_env: str, secret: str | None = None, timeout: float | None = None
) -> Failure:
    """Map an exception of litellm, the openai SDK or the network to a :class:`Failure`.

    ``where`` names the model or embedder ("model 'x' (openai/x at URL)"). A 4xx other than 408/409/429
    is never retried: the same request cannot succeed (bad request, context window exceeded, content
    policy). 401/403 and 404 stop the run: every other cell would fail the same way.
    """
    mro = {c.__name__ for c in type(exc).__mro__}
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    text = provider_text(exc, secret)
    wait = retry_after(exc)
    if mro & _TIMEOUT or isinstance(exc, asyncio.TimeoutError):
        limit = f" within {timeout:g} s" if timeout else ""
        return Failure("transient", f"{where}: no answer{limit} (timed out)", wait)
    if mro & {"AuthenticationError", "PermissionDeniedError"} or status in (401, 403):
        return Failure("fatal", (
            f"{where}: authentication failed ({text}). Set {key_env} in the environment to a valid key "
            "(keys are read from the environment and never stored), then resume the run."
        ))
    if "NotFoundError" in mro or status == 404:
        return Failure("fatal", (
            f"{where}: the model or endpoint was not found ({text}). Check the model name and api_base; "
            "model strings look like 'openai/gpt-4o-mini' or 'ollama/llama3'."
        ))
    if "BadRequestError" in mro and ("LLM Provider NOT provided" in str(exc) or "not supported" in str(exc)):
        return Failure("fatal", f"{where}: litellm does not know this model ({text}). See litellm's provider list.")
    if status in (408, 409, 429) or (status is not None and status >= 500):
        return Failure("transient", f"{where}: HTTP {status}: {text}", wait)
    if status is not None and 400 <= status < 500:
        return Failure("cell", f"{where}: HTTP {status} (not retried): {text}")
    if isinstance(exc, MalformedResponse):
        return Failure("transient", f"{where}: malformed response: {text}", wait)
    if mro & _CONNECTION or isinstance(exc, ConnectionError):
        return Failure("transient", f"{where}: connection failed: {text}", wait)
    if mro & _TRANSIENT or type(exc).__name__ == "APIError" or isinstance(exc, ValueError):
        return Failure("transient", f"{where}: {type(exc).__name__}: {text}", wait)
    return Failure("cell", f"{where}: {type(exc).__name__}: {text}")


def backoff(attempt: int, base: float, wait: float | None, cap: float = 60.0) -> float:
    """Seconds before retry ``attempt`` (1-based): what the provider asked, else full-jitter exponential."""
    if wait is not None:
        return min(wait, cap) + random.uniform(0, 0.05)
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))


def give_up(failure: Failure, attempt: int, max_retries: int) -> bool:
    """True when this failure ends the call: fatal, not retryable, or out of retries."""
    return failure.kind != "transient" or attempt > max_retries


def final_message(failure: Failure, attempt: int) -> str:
    return failure.message + (f" (after {attempt} attempts)" if attempt > 1 and failure.kind != "fatal" else "")


# ---------------------------------------------------------------------------------------------
# OpenAI SDK clients


class OpenAIClients:
    """One ``openai.AsyncOpenAI`` (aiohttp transport) per endpoint and key, per event loop, pooled to concurrency.

    Clients are closed with the loop: an async generator holds them, and ``asyncio.run`` finalises async
    generators before closing its loop; ``aclose()`` closes them earlier.
    """

    def __init__(self, pool_size: int = 16) -> None:
        self.pool_size = max(int(pool_size), 1)
        self._clients: dict[tuple[str, str], Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closer: Any = None

    async def get(self, base_url: str, api_key: str) -> Any:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new asyncio.run: clients of a closed loop cannot be reused
            self._clients = {}
            self._loop = loop
            self._closer = self._close_with_loop()
            await self._closer.asend(None)
        client = self._clients.get((base_url, api_key))
        if client is None:
            import openai

            http = openai.DefaultAioHttpClient(limits=_limits(self.pool_size), verify=_ssl_context())
            client = self._clients[(base_url, api_key)] = openai.AsyncOpenAI(
                base_url=base_url, api_key=api_key, max_retries=0, http_client=http
            )
        return client

    @property
    def raw_response(self) -> Any:
        """The SDK's HTTP response class: ``cast_to`` it and the SDK hands the reply back unparsed."""
        return _httpx().Response

    async def _close_with_loop(self) -> Any:
        try:
            yield
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            try:
                await client.close()
            except Exception:  # noqa: BLE001 - closing a half-broken connection must not mask the run's result
                pass


def _httpx() -> Any:
    """The HTTP library the installed SDK is built on (``httpx``, or ``httpx2`` in openai 3.x)."""
    import openai._base_client as base

    return getattr(base, "httpx2", None) or getattr(base, "httpx")  # noqa: B009 - the name differs by version


@functools.cache
def _ssl_context() -> Any:
    """One verifying SSL context per process: building one loads the CA bundle (~0.1 s), which every new
    client (one per endpoint per run) would otherwise pay again. Contexts are safe to share."""
    return _httpx().create_ssl_context()


def _limits(size: int) -> Any:
    return _httpx().Limits(max_connections=size, max_keepalive_connections=size)
