"""Serving bundles over HTTP: a FastAPI app factory, the uvicorn runner and the background request-log writer.

Endpoints: ``POST /v1/answer`` (one input or a batch), OpenAI-compatible ``POST /v1/chat/completions`` (the
last user message is the question, so litellm / any OpenAI client can call a deployed bundle as a model),
``GET /health``, ``GET /version``, ``POST /v1/feedback``, ``GET /metrics`` (Prometheus), ``/openapi.json``.

Two bundles make an A/B test: ``split`` percent of traffic goes to arm B; a request carrying a user or
session id is assigned by a hash of it (sticky), others at random. The arm is logged with every request.

Every request is logged by ``workbench.requestlog.LogWriter`` (a background thread appending JSONL
segments to the server's own folder: a response never waits for a disk write, and a server never holds
the notebook's DuckDB lock); ``workbench.requestlog.read_requests`` reads it back. Each worker process
writes its own segments.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import hmac
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from workbench.errors import ValidationError
from workbench.requestlog import LogWriter

if TYPE_CHECKING:
    from workbench.bundles import Bundle

CONFIG_ENV = "LLMOPS_SERVE_CONFIG"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_TOKEN_ENV = "LLMOPS_SERVE_TOKEN"
DEFAULT_MAX_BODY = 1 << 20


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# configuration


@dataclass
class ServeConfig:
    """Everything ``llmops serve`` passes to the app (also to worker processes, as JSON in an env var)."""

    bundles: list[str]
    split: float = 50.0
    log_dir: str | None = None
    log: bool = True
    token_env: str | None = DEFAULT_TOKEN_ENV
    max_body_bytes: int = DEFAULT_MAX_BODY
    max_batch: int = 64

    def __post_init__(self) -> None:
        if not 1 <= len(self.bundles) <= 2:
            raise ValidationError(f"serve takes one bundle, or two for an A/B test; got {len(self.bundles)}")
        if not 0 <= float(self.split) <= 100:
            raise ValidationError(f"--split is the percentage of traffic sent to bundle B (0-100), got {self.split}")
        if self.max_body_bytes < 1024:
            raise ValidationError(f"--max-body-bytes must be at least 1024, got {self.max_body_bytes}")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        return cls(**json.loads(text))


def default_log_dir(bundle_paths: Sequence[str | os.PathLike[str]], hashes: Sequence[str]) -> Path:
    """``<folder of bundle A>/logs/<hash[:12]>`` (A/B: ``ab-<hashA[:12]>-<hashB[:12]>``)."""
    base = Path(bundle_paths[0]).resolve().parent / "logs"
    return base / ("-".join(["ab", *(h[:12] for h in hashes)]) if len(hashes) > 1 else hashes[0][:12])


def assign_arm(user: str | None, split: float, rng: random.Random | None = None) -> str:
    """Arm B with probability ``split``%; sticky per user (sha256 of the id), random without one."""
    if user:
        bucket = int.from_bytes(hashlib.sha256(user.encode("utf-8")).digest()[:8], "big") % 10_000 / 100.0
    else:
        bucket = (rng or random).random() * 100.0
    return "B" if bucket < split else "A"


# ---------------------------------------------------------------------------------------------
# the app


# request / response models (OpenAPI is generated from these)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AnswerInput(_Strict):
    question: str = Field(min_length=1, max_length=100_000, description="the question (template variable)")
    variables: dict[str, JsonValue] = Field(
        default_factory=dict, description="other template variables the bundle's prompt uses"
    )
    user: str | None = Field(default=None, max_length=512, description="user or session id (sticky A/B arm)")


class AnswerBatch(_Strict):
    items: list[AnswerInput] = Field(min_length=1, max_length=1024)
    user: str | None = Field(default=None, max_length=512)


class Chunk(BaseModel):
    chunk_id: str
    doc_id: str
    score: float
    rank: int | None = None


class AnswerOut(BaseModel):
    request_id: str
    bundle_hash: str
    arm: str | None
    answer: str | None
    retrieved: list[Chunk]
    latency_ms: float
    prompt_tokens: int | None
    completion_tokens: int | None
    cost: float | None
    error: str | None = None


class BatchOut(BaseModel):
    results: list[AnswerOut]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str = Field(max_length=64)
    content: str | list[dict[str, JsonValue]] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI clients send many optional fields; we ignore them
    model: str | None = Field(default=None, max_length=512)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1024)
    user: str | None = Field(default=None, max_length=512)
    metadata: dict[str, JsonValue] | None = Field(
        default=None, description="extra template variables (besides the question)"
    )
    stream: bool | None = None


class Feedback(_Strict):
    request_id: str = Field(min_length=1, max_length=200)
    rating: float | None = Field(default=None, allow_inf_nan=False)
    label: str | None = Field(default=None, max_length=1000)
    comment: str | None = Field(default=None, max_length=10_000)


class Ok(BaseModel):
    ok: Literal[True] = True
    request_id: str


@dataclass
class _State:
    config: ServeConfig
    bundles: list[Bundle] = field(default_factory=list)
    writer: LogWriter | None = None
    log_dir: Path | None = None
    metrics: Any = None
    token: str | None = None
    ready: bool = False


def create_app(config: ServeConfig, bundles: Sequence[Bundle] | None = None) -> FastAPI:
    """The FastAPI app serving ``config.bundles`` (loaded and verified at startup unless given)."""
    state = _State(config)
    state.token = os.environ.get(config.token_env) if config.token_env else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        from workbench.bundles import load_bundle
        from workbench.llm import litellm_module

        t0 = time.perf_counter()
        state.bundles = list(bundles) if bundles is not None else [load_bundle(p) for p in config.bundles]
        t1 = time.perf_counter()
        if any(getattr(b.model, "route", "litellm") == "litellm" for b in state.bundles):
            await asyncio.to_thread(litellm_module)  # import litellm now (seconds), not on the first request
        t2 = time.perf_counter()
        for b in state.bundles:
            if b.retriever is not None:  # load the embedder and warm the index with one search
                await asyncio.to_thread(b.retriever.search, ["warm-up"])
            if b.model.model.startswith("local/"):  # free to call: warm the first-call path too
                await b.abatch([{"question": "warm-up"}])
        if config.log:
            state.log_dir = (
                Path(config.log_dir)
                if config.log_dir
                else default_log_dir(config.bundles, [b.hash for b in state.bundles])
            )
            state.writer = LogWriter(state.log_dir).start()
        state.metrics = _Metrics()
        state.ready = True
        sys.stdout.write(
            f"llmops serve: ready, pid {os.getpid()}, bundle(s) "
            f"{', '.join(b.variant + ' ' + b.hash[:12] for b in state.bundles)}, "
            f"log {state.log_dir if state.log_dir else 'off'}; verify+load {t1 - t0:.1f} s, client import "
            f"{t2 - t1:.1f} s, warm-up {time.perf_counter() - t2:.1f} s\n"
        )
        sys.stdout.flush()
        try:
            yield
        finally:
            if state.writer is not None:
                state.writer.close()

    app = FastAPI(
        title="LLMOps Workbench bundle server",
        version=_version(),
        lifespan=lifespan,
        description="Serves exported workbench bundles. Errors are JSON: {error: {message, type}}.",
    )
    app.state.llmops = state
    bearer = HTTPBearer(auto_error=False)

    async def auth(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if state.token is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), state.token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": {"message": str(exc.detail), "type": "http_error"}},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
        if request.url.path in ("/v1/answer", "/v1/chat/completions") and state.writer is not None:
            _log_request(state, _new_id(), None, None, None, None, None, f"invalid request: {message}", 422)
        return JSONResponse(
            {"error": {"message": f"invalid request: {message}", "type": "invalid_request_error"}, "detail": errors},
            status_code=422,
        )

    def pick(user: str | None) -> tuple[Bundle, str | None]:
        if len(state.bundles) == 1:
            return state.bundles[0], None
        arm = assign_arm(user, config.split)
        return state.bundles[0 if arm == "A" else 1], arm

    async def answer_many(
        inputs: list[dict[str, Any]], users: list[str | None], endpoint: str
    ) -> list[tuple[str, Bundle, str | None, Any, int]]:
        """Answer every input (grouped by arm, one batch per bundle); returns (id, bundle, arm, answer, status)."""
        started = time.perf_counter()
        picks = [pick(u) for u in users]
        out: list[Any] = [None] * len(inputs)
        groups: dict[int, list[int]] = {}
        for i, (b, _) in enumerate(picks):
            groups.setdefault(id(b), []).append(i)
        for idx in groups.values():
            b = picks[idx[0]][0]
            answers = await b.abatch([inputs[i] for i in idx])
            for i, a in zip(idx, answers):
                out[i] = a
        results = []
        for i, a in enumerate(out):
            b, arm = picks[i]
            status = 200 if a.error is None else (502 if a.error_kind in ("ModelError", "ModelFatalError") else 422)
            rid = _new_id()
            a.latency_ms = (time.perf_counter() - started) * 1000 if len(inputs) > 1 else a.latency_ms
            _log_request(state, rid, b, arm, users[i], inputs[i], a, a.error, status)
            state.metrics.observe(endpoint, arm, status, a)
            results.append((rid, b, arm, a, status))
        return results

    def answer_out(rid: str, b: Bundle, arm: str | None, a: Any) -> dict[str, Any]:
        return {
            "request_id": rid,
            "bundle_hash": b.hash,
            "arm": arm,
            **a.to_dict(),
        }

    @app.post(
        "/v1/answer",
        response_model=AnswerOut | BatchOut,
        dependencies=[Depends(auth)],
        responses={422: {"description": "invalid input"}, 502: {"description": "the model failed"}},
        summary="Answer one input, or a batch ({items: [...]})",
    )
    async def answer(body: AnswerInput | AnswerBatch) -> Any:  # type: ignore[valid-type]
        if isinstance(body, AnswerBatch):
            items = body.items
            users = [i.user or body.user for i in items]
        else:
            items, users = [body], [body.user]
        inputs = [{**i.variables, "question": i.question} for i in items]
        results = await answer_many(inputs, users, "answer")
        if isinstance(body, AnswerBatch):
            return {"results": [answer_out(rid, b, arm, a) for rid, b, arm, a, _ in results]}
        rid, b, arm, a, status = results[0]
        if status != 200:
            return JSONResponse(
                {"error": {"message": a.error, "type": _error_type(status)}, "request_id": rid}, status_code=status
            )
        return answer_out(rid, b, arm, a)

    @app.post(
        "/v1/chat/completions",
        dependencies=[Depends(auth)],
        responses={422: {"description": "invalid input"}, 502: {"description": "the model failed"}},
        summary="OpenAI-compatible: the last user message is the question",
    )
    async def chat(body: ChatRequest) -> Any:  # type: ignore[valid-type]
        if body.stream:
            raise HTTPException(400, "streaming is not supported by this server: send stream=false")
        question = None
        for m in reversed(body.messages):
            if m.role == "user":
                question = _text(m.content)
                break
        if not question:
            raise HTTPException(422, "no user message with text: the last user message is the question")
        inputs = {**(body.metadata or {}), "question": question}
        rid, b, arm, a, status = (await answer_many([inputs], [body.user], "chat"))[0]
        if status != 200:
            return JSONResponse(
                {"error": {"message": a.error, "type": _error_type(status)}, "request_id": rid}, status_code=status
            )
        return {
            "id": f"chatcmpl-{rid}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.model or b.variant,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": a.answer}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": a.prompt_tokens or 0,
                "completion_tokens": a.completion_tokens or 0,
                "total_tokens": (a.prompt_tokens or 0) + (a.completion_tokens or 0),
            },
            "workbench": answer_out(rid, b, arm, a),
        }

    @app.post("/v1/feedback", response_model=Ok, dependencies=[Depends(auth)], summary="Rate a served answer")
    async def feedback(body: Feedback) -> Any:  # type: ignore[valid-type]
        if state.writer is not None:
            state.writer.write(
                "feedback",
                {
                    "ts": utc_now(),
                    "request_id": body.request_id,
                    "rating": body.rating,
                    "label": body.label,
                    "comment": body.comment,
                },
            )
        state.metrics.feedback.inc()
        return {"ok": True, "request_id": body.request_id}

    @app.get("/health", summary="Liveness: 200 once the bundles are loaded")
    async def health() -> Any:
        return {"status": "ok" if state.ready else "loading", "bundles": [b.hash for b in state.bundles]}

    @app.get("/version", dependencies=[Depends(auth)], summary="What is served: the bundles' manifests in short")
    async def version() -> Any:
        arms = ["A", "B"] if len(state.bundles) > 1 else [None]
        return {
            "workbench_version": _version(),
            "split_to_b_percent": config.split if len(state.bundles) > 1 else None,
            "log_dir": str(state.log_dir) if state.log_dir else None,
            "bundles": [{"arm": arm, **b.summary()} for arm, b in zip(arms, state.bundles)],
        }

    @app.get(
        "/metrics",
        dependencies=[Depends(auth)],
        summary="Prometheus text format",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics() -> Any:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return _BodyLimit(app, config.max_body_bytes)  # type: ignore[return-value]


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")


def _error_type(status: int) -> str:
    return "model_error" if status == 502 else "invalid_request_error"


def _new_id() -> str:
    return uuid.uuid4().hex


def _log_request(
    state: _State,
    rid: str,
    bundle: Bundle | None,
    arm: str | None,
    user: str | None,
    inputs: dict[str, Any] | None,
    a: Any,
    error: str | None,
    status: int,
) -> None:
    if state.writer is None:
        return
    state.writer.write(
        "requests",
        {
            "ts": utc_now(),
            "request_id": rid,
            "bundle_hash": bundle.hash if bundle is not None else None,
            "variant": bundle.variant if bundle is not None else None,
            "arm": arm,
            "user": user,
            "input": inputs,
            "output": a.answer if a is not None else None,
            "retrieved": [{"chunk_id": h["chunk_id"], "doc_id": h["doc_id"], "score": h["score"]} for h in a.retrieved]
            if a is not None
            else [],
            "latency_ms": a.latency_ms if a is not None else None,
            "prompt_tokens": a.prompt_tokens if a is not None else None,
            "completion_tokens": a.completion_tokens if a is not None else None,
            "cost": a.cost if a is not None else None,
            "error": error,
            "status": status,
        },
    )


class _Metrics:
    """Prometheus metrics in a registry of their own (several apps in one process must not collide).

    With several workers (``PROMETHEUS_MULTIPROC_DIR`` set, as ``serve`` does for ``--workers N``) every
    process writes its values to files in that folder and a scrape, whichever worker answers it, adds up
    all of them (prometheus_client's multiprocess mode): the totals are the server's, not one worker's.
    """

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.registry = CollectorRegistry()
        labels = ["endpoint", "arm", "status"]
        self.requests = Counter("llmops_requests", "answered requests", labels, registry=self.registry)
        self.errors = Counter("llmops_request_errors", "requests that failed", labels, registry=self.registry)
        self.latency = Histogram(
            "llmops_request_latency_seconds",
            "time to answer (retrieval + model)",
            ["endpoint", "arm"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.tokens = Counter("llmops_tokens", "model tokens", ["arm", "kind"], registry=self.registry)
        self.cost = Counter("llmops_cost_usd", "model cost in USD (where priced)", ["arm"], registry=self.registry)
        self.feedback = Counter("llmops_feedback", "feedback rows received", registry=self.registry)

    def exposition(self) -> bytes:
        """The Prometheus text format: this process's registry, or every worker's values in multiprocess mode."""
        from prometheus_client import CollectorRegistry, generate_latest

        if not self.multiprocess:
            return bytes(generate_latest(self.registry))
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return bytes(generate_latest(registry))

    def observe(self, endpoint: str, arm: str | None, status: int, a: Any) -> None:
        arm_label = arm or "-"
        self.requests.labels(endpoint, arm_label, str(status)).inc()
        if status >= 400:
            self.errors.labels(endpoint, arm_label, str(status)).inc()
        self.latency.labels(endpoint, arm_label).observe((a.latency_ms or 0.0) / 1000)
        self.tokens.labels(arm_label, "prompt").inc(a.prompt_tokens or 0)
        self.tokens.labels(arm_label, "completion").inc(a.completion_tokens or 0)
        self.cost.labels(arm_label).inc(a.cost or 0.0)


class _BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes (by Content-Length, or while it streams in).

    The rest of an oversized body is read and dropped (up to ``DRAIN_BYTES``) before answering, so a client
    still sending it gets the 413 instead of a broken pipe.
    """

    DRAIN_BYTES = 32 << 20

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.state = app.state  # tests and the factory reach the served state through the wrapper

    async def _drain(self, receive: Any, already: int) -> None:
        seen = already
        while seen <= self.DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.limit + 1
                if declared > self.limit:
                    if declared <= self.DRAIN_BYTES:
                        await self._drain(receive, 0)
                    await _too_large(send, self.limit)
                    return
                await self.app(scope, receive, send)  # the server enforces the declared length
                return
        if scope.get("method") in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        # no Content-Length (chunked): read the body here, up to the limit, and hand it on in one piece
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body = message.get("body", b"")
            seen += len(body)
            if seen > self.limit:
                if message.get("more_body", False):
                    await self._drain(receive, seen)
                await _too_large(send, self.limit)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole = b"".join(chunks)
        delivered = False

        async def replay() -> Any:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Any, limit: int) -> None:
    body = json.dumps({"error": {"message": f"request body over {limit} bytes", "type": "request_too_large"}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _version() -> str:
    from workbench import __version__

    return __version__


def app_from_env() -> Any:
    """uvicorn factory for worker processes: the config comes as JSON in ``$LLMOPS_SERVE_CONFIG``."""
    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise ValidationError(f"{CONFIG_ENV} is not set: start the server with `llmops serve BUNDLE`")
    return create_app(ServeConfig.from_json(text))


def _multiprocess_metrics_dir(workers: int) -> str | None:
    """With several workers, point ``PROMETHEUS_MULTIPROC_DIR`` (inherited by them) at a fresh folder.

    Returns the folder when serve made it (and removes it at shutdown). A folder the user set is used as
    it is, with any number of workers (it must exist; clearing it between runs is theirs to do).
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        if not Path(given).is_dir():
            raise ValidationError(
                f"{MULTIPROC_ENV}={given} is not a folder: create it (empty) or unset it, and serve will use a "
                "temporary one"
            )
        return None
    if workers == 1:
        return None
    import tempfile

    folder = tempfile.mkdtemp(prefix="llmops-metrics-")
    os.environ[MULTIPROC_ENV] = folder
    return folder


def serve(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Verify the bundles, bind the socket (port 0 = any free port, printed), run uvicorn until stopped.

    ``workers > 1`` runs that many processes on the socket; ``/metrics`` then adds up every worker's values
    (prometheus_client's multiprocess mode over a temporary ``PROMETHEUS_MULTIPROC_DIR``).
    """
    import uvicorn

    from workbench.bundles import verify

    for p in config.bundles:  # fail fast, in this process, with a clear message
        verify(p)
    if workers < 1:
        raise ValidationError(f"--workers must be >= 1, got {workers}")
    own_dir = _multiprocess_metrics_dir(workers)
    try:
        os.environ[CONFIG_ENV] = config.to_json()
        ucfg = uvicorn.Config(
            "workbench.serving:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=30,
            server_header=False,
        )
        server = uvicorn.Server(ucfg)
        sock = ucfg.bind_socket()
        bound = sock.getsockname()
        sys.stdout.write(f"llmops serve: listening on http://{bound[0]}:{bound[1]}\n")
        sys.stdout.flush()
        if workers > 1:
            import inspect

            from uvicorn.supervisors import Multiprocess

            kwargs: dict[str, Any] = {"sockets": [sock]}
            if "target" in inspect.signature(Multiprocess).parameters:  # uvicorn < 0.36 takes the target explicitly
                kwargs["target"] = server.run
            Multiprocess(ucfg, **kwargs).run()
        else:
            server.run(sockets=[sock])
    finally:
        if own_dir is not None:
            import shutil

            shutil.rmtree(own_dir, ignore_errors=True)
            os.environ.pop(MULTIPROC_ENV, None)


__all__ = [
    "LogWriter",
    "ServeConfig",
    "app_from_env",
    "assign_arm",
    "create_app",
    "default_log_dir",
    "serve",
]
