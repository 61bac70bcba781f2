"""A small, fast, local OpenAI-compatible HTTP server for tests and benchmarks.

Why: model calls in tests must travel over real HTTP (litellm -> openai SDK -> socket) so retries, timeouts,
error mapping and concurrency are exercised exactly as in production, without patching litellm.

Run as a script::

    python tests/openai_server.py --host 127.0.0.1 --port 0 [--latency 0.05]

It prints one line ``READY http://127.0.0.1:PORT`` and serves until SIGTERM/SIGINT.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/embeddings``, ``GET /v1/models`` and the control API
``GET /_stats``, ``POST /_config`` (JSON merged into the config), ``POST /_reset``.

Use :class:`ServerProcess` to start it from Python (pytest fixtures, benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import hashlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import Self

DEFAULT_CONFIG: dict[str, Any] = {
    "latency": 0.0,
    "auth_key": None,
    "unknown_models": [],
    "replies": [],
    "embedding_dim": 64,
    "script": [],
    "fail_models": {},
    # random faults, reproducible: {"seed": 1, "rate_limit": 0.1, "retry_after": 0.05, "server_error": 0.05,
    # "hang": 0.02, "hang_seconds": 3, "malformed": 0.02, "reset": 0.02} (shares of chat requests)
    "chaos": {},
    # what the reply says served the request: `model` ("{model}" is the requested name) and
    # `system_fingerprint` (None leaves the field out, as many OpenAI-compatible servers do)
    "served_model": "{model}",
    "system_fingerprint": "fp_fake_0001",
}

MAX_ECHO_CHARS = 200

_ERROR_TYPES = {
    400: ("invalid_request_error", None, "Bad request"),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided"),
    403: ("invalid_request_error", "permission_denied", "Permission denied"),
    404: ("invalid_request_error", "model_not_found", "The model does not exist"),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests"),
}


def error_body(status: int, message: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI-shaped error body, so the SDK parses it like a real provider error."""
    etype, default_code, default_message = _ERROR_TYPES.get(status, ("server_error", None, "The server had an error"))
    return {
        "error": {
            "message": message or default_message,
            "type": etype,
            "param": None,
            "code": code or default_code,
        }
    }


def count_tokens(text: str) -> int:
    """Whitespace word count: cheap and deterministic, good enough to test usage accounting."""
    return len(text.split())


def _content_text(content: Any) -> str:
    """Flatten OpenAI message content (str or list of parts) to plain text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                parts.append(str(part.get("text", "")))
            else:
                parts.append(str(part))
        return " ".join(parts)
    return str(content)


@lru_cache(maxsize=4096)
def embed_text(text: str, dim: int) -> tuple[float, ...]:
    """Deterministic unit vector for ``text``: same text -> same vector, across processes and runs."""
    import numpy as np

    seed = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=4).digest(), "little")
    vec = np.random.RandomState(seed).standard_normal(dim)
    vec /= np.linalg.norm(vec) or 1.0
    return tuple(float(x) for x in vec)


def _encode_base64(vec: tuple[float, ...]) -> str:
    """The openai SDK asks for base64 float32 embeddings by default and decodes them itself."""
    import numpy as np

    return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")


class FakeOpenAI:
    """State (config, counters, failure script) and request handlers of the fake server."""

    def __init__(self, **config: Any) -> None:
        self.config: dict[str, Any] = copy.deepcopy(DEFAULT_CONFIG)
        self.in_flight = 0
        self._reset_counters()
        self.update_config(config)

    # ----- state -------------------------------------------------------------------------------------
    def _reset_counters(self) -> None:
        self.requests = 0
        self.chat = 0
        self.embeddings = 0
        self.embedding_inputs = 0
        self.by_model: dict[str, int] = {}
        self.max_in_flight = self.in_flight
        self.faults: dict[str, int] = {}
        self.answered = 0  # chat requests answered with a completion (what a client could have paid for)
        self._rng: Any = None

    def reset(self) -> None:
        """Back to default config and zero counters (startup options such as --latency count as defaults)."""
        self.config = copy.deepcopy(DEFAULT_CONFIG)
        self.config.update(copy.deepcopy(self.base_config))
        self._reset_counters()

    def update_config(self, config: dict[str, Any], base: bool = True) -> None:
        """Merge ``config`` into the current config; unknown keys are rejected to catch typos in tests."""
        unknown = set(config) - set(DEFAULT_CONFIG)
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}; known: {sorted(DEFAULT_CONFIG)}")
        config = copy.deepcopy(config)
        if "script" in config:
            steps = []
            for step in config["script"] or []:
                step = dict(step)
                step["count"] = int(step.get("count", 1))
                if step["count"] > 0:
                    steps.append(step)
            config["script"] = steps
        if "replies" in config:
            config["replies"] = [
                {"pattern": r["pattern"], "reply": r["reply"], "_re": re.compile(r["pattern"])}
                for r in (config["replies"] or [])
            ]
        if config.get("latency") is not None:
            config["latency"] = float(config["latency"])
        if "unknown_models" in config:
            config["unknown_models"] = list(config["unknown_models"] or [])
        if "fail_models" in config:
            config["fail_models"] = {str(k): int(v) for k, v in (config["fail_models"] or {}).items()}
        if "chaos" in config:
            config["chaos"] = dict(config["chaos"] or {})
            self._rng = None
        self.config.update(config)
        if base:
            self.base_config = {k: v for k, v in config.items()}

    def public_config(self) -> dict[str, Any]:
        """Config as JSON-able data (compiled regexes stripped)."""
        out = dict(self.config)
        out["replies"] = [{"pattern": r["pattern"], "reply": r["reply"]} for r in self.config["replies"]]
        return out

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "chat": self.chat,
            "embeddings": self.embeddings,
            "by_model": dict(self.by_model),
            "embedding_inputs": self.embedding_inputs,
            "max_in_flight": self.max_in_flight,
            "in_flight": self.in_flight,
            "faults": dict(self.faults),
            "answered": self.answered,
        }

    def _next_step(self) -> dict[str, Any] | None:
        """Consume one unit of the FIFO failure script, if any."""
        script = self.config["script"]
        if not script:
            return None
        step = script[0]
        step["count"] -= 1
        if step["count"] <= 0:
            script.pop(0)
        return step

    # ----- aiohttp plumbing ----------------------------------------------------------------------------
    def make_app(self) -> Any:
        from aiohttp import web

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._wrap(self._chat))
        app.router.add_post("/chat/completions", self._wrap(self._chat))
        app.router.add_post("/v1/embeddings", self._wrap(self._embeddings))
        app.router.add_post("/embeddings", self._wrap(self._embeddings))
        app.router.add_get("/v1/models", self._wrap(self._models))
        app.router.add_get("/_stats", self._h_stats)
        app.router.add_post("/_config", self._h_config)
        app.router.add_get("/_config", self._h_get_config)
        app.router.add_post("/_reset", self._h_reset)
        return app

    @staticmethod
    def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
        from aiohttp import web

        return web.Response(
            body=json.dumps(data, separators=(",", ":")).encode(),
            status=status,
            content_type="application/json",
            headers=headers,
        )

    def _wrap(self, handler: Any) -> Any:
        """Common /v1 path: count, track concurrency, auth, failure script, per-model failures, latency."""

        async def wrapped(request: Any) -> Any:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                body: dict[str, Any] = {}
                if request.method == "POST":
                    raw = await request.read()
                    try:
                        body = json.loads(raw) if raw else {}
                    except ValueError:
                        return self._json(error_body(400, "Request body is not valid JSON"), status=400)
                    if not isinstance(body, dict):
                        return self._json(error_body(400, "Request body must be a JSON object"), status=400)
                model = body.get("model")
                if model is not None:
                    model = str(model)
                    self.by_model[model] = self.by_model.get(model, 0) + 1

                cfg = self.config
                auth_key = cfg["auth_key"]
                if auth_key is not None and request.headers.get("Authorization", "") != f"Bearer {auth_key}":
                    return self._json(error_body(401), status=401)

                step = self._next_step()
                if step is None and cfg["chaos"] and request.path.endswith("/chat/completions"):
                    step = self._chaos_step()
                if step is not None:
                    kind = next((k for k in ("hang", "malformed", "reset", "status") if k in step), "other")
                    if kind == "status":
                        kind = str(step["status"])
                    self.faults[kind] = self.faults.get(kind, 0) + 1
                if step is not None and step.get("reset"):
                    # connection reset: drop the socket without an answer (RST via SO_LINGER 0)
                    import socket
                    import struct

                    transport = request.transport
                    sock = transport.get_extra_info("socket") if transport is not None else None
                    if sock is not None:
                        try:
                            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        except OSError:
                            pass
                    if transport is not None:
                        transport.abort()
                    raise ConnectionResetError("fault injection: connection reset")
                if step is not None:
                    if "hang" in step:
                        await asyncio.sleep(float(step["hang"]))
                        transport = request.transport
                        if transport is None or transport.is_closing():  # the client gave up: nothing answered
                            raise ConnectionResetError("client went away during a hang")
                    elif step.get("malformed"):
                        from aiohttp import web

                        # malformed: true -> not JSON at all; malformed: "shape" -> JSON but not OpenAI-shaped
                        payload = b'{"unexpected": "shape"}' if step["malformed"] == "shape" else b"<html>not json {"
                        return web.Response(body=payload, status=200, content_type="application/json")
                    elif "status" in step:
                        status = int(step["status"])
                        headers = None
                        if step.get("retry_after") is not None:
                            headers = {"Retry-After": _fmt_seconds(step["retry_after"])}
                        return self._json(error_body(status, step.get("message")), status=status, headers=headers)

                if model is not None:
                    if model in cfg["unknown_models"]:
                        msg = f"The model `{model}` does not exist or you do not have access to it."
                        return self._json(error_body(404, msg, "model_not_found"), status=404)
                    fail_status = cfg["fail_models"].get(model)
                    if fail_status:
                        return self._json(error_body(fail_status), status=fail_status)

                latency = cfg["latency"]
                if latency > 0:
                    await asyncio.sleep(latency)
                return await handler(request, body)
            finally:
                self.in_flight -= 1

        return wrapped

    def _chaos_step(self) -> dict[str, Any] | None:
        """A random fault (or None) drawn from the ``chaos`` shares, reproducibly from its seed."""
        import random

        chaos = self.config["chaos"]
        if self._rng is None:
            self._rng = random.Random(chaos.get("seed", 0))
        x = self._rng.random()
        for kind in ("rate_limit", "server_error", "hang", "malformed", "reset"):
            share = float(chaos.get(kind, 0.0))
            if x < share:
                if kind == "rate_limit":
                    return {"status": 429, "retry_after": chaos.get("retry_after", 0.05)}
                if kind == "server_error":
                    return {"status": 500}
                if kind == "hang":
                    return {"hang": float(chaos.get("hang_seconds", 3.0))}
                if kind == "malformed":
                    return {"malformed": True}
                return {"reset": True}
            x -= share
        return None

    # ----- /v1 handlers ------------------------------------------------------------------------------
    def _reply_for(self, messages: list[Any]) -> tuple[str, int]:
        texts = []
        last_user = ""
        for m in messages:
            if not isinstance(m, dict):
                continue
            text = _content_text(m.get("content"))
            texts.append(text)
            if m.get("role") == "user":
                last_user = text
        prompt_tokens = sum(count_tokens(t) for t in texts)
        replies = self.config["replies"]
        if replies:
            joined = "\n".join(texts)
            for r in replies:
                if r["_re"].search(joined):
                    return r["reply"], prompt_tokens
        return ("echo: " + last_user)[:MAX_ECHO_CHARS], prompt_tokens

    async def _chat(self, request: Any, body: dict[str, Any]) -> Any:
        self.chat += 1
        self.answered += 1
        model = str(body.get("model", "unknown"))
        content, prompt_tokens = self._reply_for(body.get("messages") or [])
        completion_tokens = count_tokens(content)
        created = int(time.time())
        rid = f"chatcmpl-{self.requests}"
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        served = str(self.config["served_model"] or "{model}").replace("{model}", model)
        if body.get("stream"):
            return await self._stream(request, rid, created, served, content, usage, body)
        reply: dict[str, Any] = {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": served,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
        if self.config["system_fingerprint"] is not None:
            reply["system_fingerprint"] = self.config["system_fingerprint"]
        return self._json(reply)

    async def _stream(
        self, request: Any, rid: str, created: int, model: str, content: str, usage: dict[str, int], body: dict
    ) -> Any:
        """Minimal SSE streaming: role chunk, one content chunk, stop chunk, optional usage chunk, [DONE]."""
        from aiohttp import web

        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        base = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model}
        if self.config["system_fingerprint"] is not None:
            base["system_fingerprint"] = self.config["system_fingerprint"]
        chunks = [
            [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
            [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
            [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        ]
        out = []
        for choices in chunks:
            out.append(b"data: " + json.dumps({**base, "choices": choices}).encode() + b"\n\n")
        if (body.get("stream_options") or {}).get("include_usage"):
            out.append(b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n")
        out.append(b"data: [DONE]\n\n")
        await resp.write(b"".join(out))
        await resp.write_eof()
        return resp

    async def _embeddings(self, request: Any, body: dict[str, Any]) -> Any:
        self.embeddings += 1
        inputs = body.get("input", "")
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        texts = [t if isinstance(t, str) else " ".join(str(x) for x in t) for t in inputs]
        self.embedding_inputs += len(texts)
        dim = int(body.get("dimensions") or self.config["embedding_dim"])
        as_b64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(texts):
            vec = embed_text(text, dim)
            data.append({"object": "embedding", "index": i, "embedding": _encode_base64(vec) if as_b64 else vec})
        tokens = sum(count_tokens(t) for t in texts)
        return self._json(
            {
                "object": "list",
                "data": data,
                "model": str(body.get("model", "unknown")),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _models(self, request: Any, body: dict[str, Any]) -> Any:
        names = sorted(set(self.by_model) | {"test-model", "test-embed"})
        return self._json(
            {
                "object": "list",
                "data": [{"id": n, "object": "model", "created": 0, "owned_by": "fake"} for n in names],
            }
        )

    # ----- control API -------------------------------------------------------------------------------
    async def _h_stats(self, request: Any) -> Any:
        return self._json(self.stats())

    async def _h_get_config(self, request: Any) -> Any:
        return self._json(self.public_config())

    async def _h_config(self, request: Any) -> Any:
        try:
            cfg = await request.json()
            if not isinstance(cfg, dict):
                raise TypeError("config must be a JSON object")
            self.update_config(cfg, base=False)
        except (ValueError, KeyError, TypeError, re.error) as exc:
            return self._json({"error": str(exc)}, status=400)
        return self._json(self.public_config())

    async def _h_reset(self, request: Any) -> Any:
        self.reset()
        return self._json({"ok": True})


def _fmt_seconds(value: Any) -> str:
    """Retry-After as the shortest exact text ("1", "0.5")."""
    f = float(value)
    return str(int(f)) if f.is_integer() else repr(f)


async def serve(host: str, port: int, **config: Any) -> None:
    """Bind, print the READY line, serve until SIGTERM/SIGINT."""
    from aiohttp import web

    state = FakeOpenAI(**config)
    runner = web.AppRunner(state.make_app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    await site.start()
    sock = site._server.sockets[0]  # type: ignore[union-attr]
    bound_host, bound_port = sock.getsockname()[:2]
    print(f"READY http://{bound_host}:{bound_port}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-POSIX
            pass
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local OpenAI-compatible fake server for tests/benchmarks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to sleep before each answer")
    parser.add_argument("--embedding-dim", type=int, default=64)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, latency=args.latency, embedding_dim=args.embedding_dim))


# ===== client side ====================================================================================

# Never send control calls to 127.0.0.1 through an HTTP(S)_PROXY from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerProcess:
    """Runs the fake server in a subprocess (so it has its own event loop and GIL) and talks to its control API.

    Usage::

        with ServerProcess(latency=0.05) as srv:
            litellm.completion(model="openai/m", api_base=srv.base_url, api_key="sk-x", messages=[...])
            print(srv.stats())
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0, startup_timeout: float = 15.0
    ) -> None:
        self.host = host
        self.port = port
        self.latency = latency
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None
        self.url = ""
        self.base_url = ""

    def start(self) -> Self:
        """Start the subprocess and wait for its READY line; raise RuntimeError with its stderr if it fails."""
        if self.proc is not None:
            return self
        # stderr goes to a file (not a pipe nobody drains) so a startup failure can show it; closed in close().
        self._stderr = tempfile.TemporaryFile()
        cmd = [sys.executable, str(Path(__file__).resolve()), "--host", self.host, "--port", str(self.port)]
        cmd += ["--latency", str(self.latency)]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr, env=env)
        lines: queue.Queue[bytes] = queue.Queue()

        def reader(stdout: Any) -> None:
            # Drains stdout until the process exits, so the server can never block on a full pipe.
            with stdout:
                for line in iter(stdout.readline, b""):
                    lines.put(line)
            lines.put(b"")

        threading.Thread(target=reader, args=(proc.stdout,), name="openai-server-stdout", daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = lines.get(timeout=remaining) if remaining > 0 else None
            except queue.Empty:
                line = None
            if line is None:
                self._fail(f"no READY line within {self.startup_timeout:g} s")
            elif line == b"":
                self._fail(f"server exited with code {proc.wait(5)} before printing READY")
            else:
                text = line.decode("utf-8", "replace").strip()
                if text.startswith("READY "):
                    self.url = text.split(" ", 1)[1].rstrip("/")
                    self.base_url = self.url + "/v1"
                    return self

    def _fail(self, why: str) -> None:
        self._stop_process()
        self._stderr.seek(0)
        err = self._stderr.read().decode("utf-8", "replace")[-4000:]
        self.close()
        raise RuntimeError(f"fake OpenAI server failed to start: {why}.\nstderr:\n{err}")

    def _stop_process(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def close(self) -> None:
        """Terminate the subprocess (SIGTERM, then SIGKILL after 5 s) and release its stderr file."""
        self._stop_process()
        stderr = getattr(self, "_stderr", None)
        if stderr is not None:
            stderr.close()
            self._stderr = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- control API -------------------------------------------------------------------------------
    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(payload).encode() if payload is not None else (b"{}" if method == "POST" else None)
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with _OPENER.open(req, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path} failed: {exc.code} {exc.read().decode('utf-8', 'replace')}") from exc

    def stats(self) -> dict[str, Any]:
        """Counters since the last reset: requests, chat, embeddings, by_model, embedding_inputs, max_in_flight."""
        return self._call("GET", "/_stats")

    def configure(self, **cfg: Any) -> dict[str, Any]:
        """Merge ``cfg`` into the server config (latency, auth_key, unknown_models, replies, script, ...)."""
        return self._call("POST", "/_config", cfg)

    def reset(self) -> None:
        """Zero the counters and restore the default config, so each test starts clean."""
        self._call("POST", "/_reset")


if __name__ == "__main__":
    main()
