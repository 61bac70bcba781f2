"""LLM judges: the model calls a metric makes, through the same gateway, cache and cost accounting.

A metric that takes a ``judge`` parameter receives a :class:`Judge`. Its ``ask`` goes through the
response cache (so a re-run pays nothing), the gateway (retries, Retry-After, per-model limits), and
records every judge prompt and response so users can read why a score is what it is.
There is no fallback judge: without a configured judge model a judge metric fails before any call.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from workbench.errors import MetricError
from workbench.llm import Gateway, ModelConfig, request_key
from workbench.store import dumps

JUDGE_ENV = "LLMOPS_JUDGE_MODEL"


def judge_config(value: Any, metric: str) -> ModelConfig:
    """A judge model from a metric option (model string or dict) or ``$LLMOPS_JUDGE_MODEL``."""
    if value is None:
        value = os.environ.get(JUDGE_ENV)
    if not value:
        raise MetricError(
            f"metric {metric!r} needs an LLM judge and none is configured. Add `judge: openai/gpt-4o-mini` (any "
            f"litellm model) to the metric, or set {JUDGE_ENV}. With no cloud key, point it at a local server: "
            "`judge: {model: ollama/llama3, api_base: http://localhost:11434}` (Ollama), or "
            "`{model: openai/<name>, api_base: http://localhost:8000/v1}` (vLLM, llama.cpp server)."
        )
    if isinstance(value, ModelConfig):
        cfg = value
    elif isinstance(value, str):
        cfg = ModelConfig(name=f"judge:{value}", model=value, params={"temperature": 0})
    elif isinstance(value, Mapping):
        data = dict(value)
        data.setdefault("name", f"judge:{data.get('model')}")
        data.setdefault("params", {"temperature": 0})
        try:
            cfg = ModelConfig(**data)
        except TypeError as exc:
            raise MetricError(
                f"metric {metric!r}: judge {value!r} has an unknown key ({exc}); use model, api_base, api_key_env, "
                "params, timeout, max_concurrency"
            ) from None
    else:
        raise MetricError(f"metric {metric!r}: judge must be a model string or a mapping, got {value!r}")
    if cfg.model.startswith("local/"):
        raise MetricError(
            f"metric {metric!r}: {cfg.model} is the embedded extractive baseline, not an LLM; it cannot judge. "
            f"Configure a real model (set {JUDGE_ENV} or the metric's `judge` option)."
        )
    return cfg


@dataclass
class JudgeCall:
    """One recorded judge exchange (what users read to audit a score)."""

    metric: str
    tag: str
    model: str
    request_key: str
    messages: list[dict[str, str]]
    response: str | None
    cached: bool
    cost: float | None
    error: str | None = None


@dataclass
class Judge:
    """A judge model bound to one cell's scoring; collects the calls it makes."""

    config: ModelConfig
    gateway: Gateway
    cache: dict[str, tuple[Any, ...]]
    on_response: Callable[[dict[str, Any]], None]
    metric: str = ""
    calls: list[JudgeCall] = field(default_factory=list)
    pending: dict[str, asyncio.Future[Any]] = field(default_factory=dict)

    def rows(self, case_id: str, variant: str, repeat: int) -> list[dict[str, Any]]:
        """This judge's calls as rows of the ``judgements`` table (one builder for runs and pairwise)."""
        return [
            {
                "case_id": case_id,
                "variant": variant,
                "repeat": repeat,
                "metric": c.metric,
                "seq": i,
                "tag": c.tag,
                "model": c.model,
                "request_key": c.request_key,
                "messages": dumps(c.messages),
                "response": c.response,
                "cached": c.cached,
            }
            for i, c in enumerate(self.calls)
        ]

    def bind(self, metric: str) -> Judge:
        """A fresh judge for one (cell, metric): its ``calls`` are that metric's evidence."""
        return Judge(self.config, self.gateway, self.cache, self.on_response, metric, pending=self.pending)

    async def ask(self, messages: list[dict[str, str]] | str, tag: str = "", repeat: int = 0) -> str:
        """Send one judge prompt (cached by request key) and return the raw text response."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        key = request_key(self.config, messages, repeat)
        hit = self.cache.get(key)
        if hit is not None:
            self.calls.append(JudgeCall(self.metric, tag, self.config.model, key, messages, hit[0], True, hit[3]))
            return str(hit[0])
        waiting = self.pending.get(key)
        if waiting is not None:  # the same judge prompt is already in flight (e.g. two variants, same output)
            entry = await asyncio.shield(waiting)
            self.calls.append(JudgeCall(self.metric, tag, self.config.model, key, messages, entry[0], True, entry[3]))
            return str(entry[0])
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[key] = future
        try:
            result = await self.gateway.complete(self.config, messages)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else needs to
            raise
        finally:
            self.pending.pop(key, None)
        entry = (result.output, result.prompt_tokens, result.completion_tokens, result.cost, result.latency_ms)
        future.set_result(entry)
        self.cache[key] = entry
        self.on_response(
            {
                "request_key": key,
                "model": self.config.model,
                "output": result.output,
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
                "cost": result.cost,
                "latency_ms": result.latency_ms,
                "served_model": result.served_model,
                "system_fingerprint": result.system_fingerprint,
            }
        )
        self.calls.append(
            JudgeCall(self.metric, tag, self.config.model, key, messages, result.output, False, result.cost)
        )
        return result.output
