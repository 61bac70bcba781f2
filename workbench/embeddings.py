"""Embedders: the offline default (wordllama) and any litellm embedding model, behind one small protocol.

Why a protocol: the retrieval engine caches chunk embeddings on disk keyed by ``Embedder.name``, so an
embedder only has to say who it is (``name``), how wide its vectors are (``dim``) and turn texts into
L2-normalised float32 rows (``embed``). Inner product on those rows is cosine similarity, which is what
the FAISS indexes use.

- ``get_embedder("local")`` (the default) is wordllama's ``l2_supercat`` 256-dim model. Its weights
  ship inside the wheel; wordllama 0.4.0 looks for the tokenizer config in ``wordllama/tokenizer/``
  while the wheel ships ``wordllama/tokenizers/``, then falls back to the network. We load it with
  ``cache_dir`` pointing at the installed package folder (its ``tokenizers/`` sub-folder is exactly
  where wordllama's cache lookup goes) and ``disable_download=True``, so it never touches the network.
  The model is loaded lazily on first use and once per process.
- ``get_embedder("text-embedding-3-small")``, ``get_embedder("openai/my-embed")`` or
  ``get_embedder({"model": "openai/my-embed", "api_base": "http://127.0.0.1:8000/v1"})`` call litellm:
  batched, retried like chat calls (``workbench.providers``: 429/5xx/timeouts, honouring ``Retry-After``),
  with a per-process per-text cache so each distinct text is sent once. API keys come from the
  environment only (optionally a variable named by ``api_key_env``); they are never stored.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from workbench import providers  # one retry policy, error mapping and litellm import for chat and embeddings
from workbench.errors import RetrievalError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DEFAULT_EMBEDDER",
    "Embedder",
    "EmbeddingInputError",
    "LiteLLMEmbedder",
    "LocalEmbedder",
    "embedder_spec_key",
    "get_embedder",
    "normalize_rows",
]

log = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "local"
LOCAL_NAME = "wordllama-l2-supercat-256"
MAX_RETRY_AFTER = 120.0
LOCAL_ALIASES = ("local", "default", "wordllama", LOCAL_NAME)
_ACCEPTED = (
    "'local' (the offline wordllama default), a litellm embedding model string such as "
    "'text-embedding-3-small' or 'openai/<model>' (optionally prefixed 'litellm:'), or a dict like "
    "{model: 'openai/<model>', api_base: 'http://127.0.0.1:8000/v1', batch_size: 256}"
)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors; ``name`` identifies the vectors in cache keys."""

    name: str

    @property
    def dim(self) -> int: ...

    def embed(self, texts: list[str]) -> np.ndarray: ...


class EmbeddingInputError(RetrievalError):
    """Some inputs were rejected by the embedding model (typically: longer than its input limit).

    ``failures`` maps the position of each rejected text in the ``embed`` call to the provider's message,
    so the caller can name the documents or chunks concerned. Every other text was embedded and cached.
    """

    def __init__(self, message: str, failures: Mapping[int, str]) -> None:
        super().__init__(message)
        self.failures = dict(failures)


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows in place (zero rows stay zero instead of becoming NaN) and return float32."""
    import numpy as np

    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.size == 0:
        return x
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x


# ---------------------------------------------------------------------------------------------
# local (wordllama)

_WL_LOCK = threading.Lock()
_WL_MODEL: Any = None


def _load_wordllama() -> Any:
    """Load wordllama's l2_supercat-256 from the files in its wheel, once per process, never the network."""
    global _WL_MODEL
    if _WL_MODEL is not None:
        return _WL_MODEL
    with _WL_LOCK:
        if _WL_MODEL is not None:
            return _WL_MODEL
        # wordllama.inference calls logging.basicConfig(level=INFO) at import: keep the user's logging as it was.
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        first_import = "wordllama" not in sys.modules
        try:
            import wordllama
            from wordllama import WordLlama
        except ImportError as exc:  # pragma: no cover - dependency of the package
            raise RetrievalError(
                "the default embedder needs the 'wordllama' package, which is not installed: "
                "pip install wordllama (or choose a litellm embedder)"
            ) from exc
        finally:
            if first_import:
                root.handlers[:] = handlers
                root.setLevel(level)
        package_dir = Path(wordllama.__file__).parent
        tokenizer = package_dir / "tokenizers" / "l2_supercat_tokenizer_config.json"
        weights = package_dir / "weights" / "l2_supercat_256.safetensors"
        missing = [str(p) for p in (tokenizer, weights) if not p.exists()]
        if missing:
            raise RetrievalError(
                f"the wordllama install is missing {missing}; the offline embedder needs the files shipped in "
                "the wheel: reinstall with pip install --force-reinstall wordllama==0.4.0.post1"
            )
        try:
            _WL_MODEL = WordLlama.load(config="l2_supercat", dim=256, cache_dir=package_dir, disable_download=True)
        except (OSError, ValueError) as exc:
            raise RetrievalError(f"could not load the wordllama model from {package_dir}: {exc}") from exc
        return _WL_MODEL


class LocalEmbedder:
    """wordllama l2_supercat (256 dims): offline, CPU, ~thousands of chunks/s; loaded on first ``embed``.

    Texts are embedded in batches sorted by length, because wordllama pads each batch to its longest
    text: similar lengths waste less work and bound memory (``max_batch_chars``).
    """

    name = LOCAL_NAME

    def __init__(self, batch_size: int = 64, max_batch_chars: int = 400_000) -> None:
        self.batch_size = batch_size
        self.max_batch_chars = max_batch_chars
        self.texts_embedded = 0

    @property
    def dim(self) -> int:
        return 256

    def load(self) -> LocalEmbedder:
        """Load the model now (it is otherwise loaded on the first ``embed``)."""
        _load_wordllama()
        return self

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` into an (n, 256) float32 array of unit (or zero, for empty text) rows."""
        import numpy as np

        texts = _check_texts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        model = _load_wordllama()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        start = 0
        while start < len(order):
            longest = len(texts[order[start]])
            end = start + 1
            while end < len(order) and end - start < self.batch_size:
                longest = len(texts[order[end]])
                if (end - start + 1) * longest > self.max_batch_chars:
                    break
                end += 1
            idx = order[start:end]
            out[idx] = model.embed([texts[i] for i in idx], norm=False, batch_size=len(idx))
            start = end
        self.texts_embedded += len(texts)
        return normalize_rows(out)

    def __repr__(self) -> str:
        return f"LocalEmbedder(name={self.name!r}, dim={self.dim})"


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, str):
        raise RetrievalError("embed() takes a list of strings, got one string: wrap it as [text]")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise RetrievalError(
            f"embed() needs strings; items at positions {bad[:5]} are {type(texts[bad[0]]).__name__}: "
            "convert them with str() or drop them"
        )
    return texts


# ---------------------------------------------------------------------------------------------
# litellm

_LENGTH_HINT = re.compile(
    r"context length|context window|too long|too many tokens|maximum.{0,40}(tokens|length|input)|"
    r"token limit|input length|exceeds",
    re.IGNORECASE,
)


class _TruthyZero(int):
    """0 that is truthy: litellm's OpenAI path does ``max_retries or DEFAULT_MAX_RETRIES`` (so a plain 0 becomes 2).

    We retry ourselves (one policy for every provider, visible in our counters), so the SDK must not.
    """

    def __bool__(self) -> bool:
        return True


_NO_RETRIES = _TruthyZero(0)


class LiteLLMEmbedder:
    """Embeddings through litellm (OpenAI, Azure, Cohere, Ollama, vLLM, ... any OpenAI-compatible server)."""

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key_env: str | None = None,
        batch_size: int = 256,
        max_retries: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        timeout: float = 60.0,
        dimensions: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise RetrievalError(f"embedder model must be a non-empty string, got {model!r}; use {_ACCEPTED}")
        if batch_size < 1:
            raise RetrievalError(f"embedder batch_size must be >= 1, got {batch_size}")
        self.model = model.strip()
        self.api_base = api_base
        self.api_key_env = api_key_env
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.timeout = timeout
        self.dimensions = dimensions
        self.params = dict(params or {})
        for forbidden in ("api_key", "input", "model"):
            if forbidden in self.params:
                raise RetrievalError(
                    f"embedder params may not set {forbidden!r}"
                    + (
                        ": keys come from the environment (set api_key_env to the variable's name)"
                        if forbidden == "api_key"
                        else ""
                    )
                )
        suffix = ""
        extra = dict(self.params)
        if dimensions is not None:
            extra["dimensions"] = dimensions
        if extra:
            suffix = "?" + json.dumps(extra, sort_keys=True, separators=(",", ":"), default=str)
        self.name = f"litellm:{self.model}{suffix}"
        self._dim: int | None = dimensions
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self.requests = 0
        self.texts_sent = 0
        self.cache_hits = 0
        self.retries = 0
        providers.litellm_needed()

    @property
    def dim(self) -> int:
        """Vector width; known after the first call (one short probe request if asked before)."""
        if self._dim is None:
            self.embed(["dimension probe"])
        assert self._dim is not None
        return self._dim

    def _api_key(self) -> str | None:
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise RetrievalError(
                    f"embedder {self.model!r} reads its API key from ${self.api_key_env}, which is not set: "
                    f"export {self.api_key_env}=..."
                )
            return key
        if (
            self.api_base
            and self.model.startswith(("openai/", "hosted_vllm/"))
            and not os.environ.get("OPENAI_API_KEY")
        ):
            return "no-key-needed"  # local OpenAI-compatible servers want *a* key header; this is not a secret
        return None

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` (each distinct text sent once per process), in order, as unit float32 rows."""
        import numpy as np

        texts = _check_texts(texts)
        with self._lock:
            todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
            self.cache_hits += len(texts) - len(todo)
        failures: dict[str, str] = {}
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            for text, message in self._embed_batch(batch).items():
                failures[text] = message
        if failures:
            positions = {i: failures[t] for i, t in enumerate(texts) if t in failures}
            first_pos, first_msg = next(iter(positions.items()))
            raise EmbeddingInputError(
                f"embedder {self.model!r} rejected {len(positions)} of {len(texts)} texts (e.g. position "
                f"{first_pos}, {len(texts[first_pos]):,} chars: {first_msg[:200]}); the other texts were "
                "embedded and cached. Use a smaller chunk size or a model with a longer input limit.",
                positions,
            )
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts]).astype(np.float32, copy=False)

    def _where(self) -> str:
        return f"embedder {self.model!r}" + (f" at {self.api_base}" if self.api_base else "")

    def _embed_batch(self, batch: list[str]) -> dict[str, str]:
        """Embed one batch into the cache; return {text: error} for inputs the model rejects as too long."""
        rejected = self._call_with_retries(batch)
        if isinstance(rejected, str):
            if len(batch) == 1:
                return {batch[0]: rejected}
            # Bisect to find the offending inputs; everything else gets embedded.
            mid = len(batch) // 2
            return {**self._embed_batch(batch[:mid]), **self._embed_batch(batch[mid:])}
        with self._lock:
            for text, vec in zip(batch, rejected, strict=True):
                self._cache[text] = vec
        return {}

    def _call_with_retries(self, batch: list[str]) -> np.ndarray | str:
        """The batch's vectors, or the provider's message when it rejects an input as too long.

        Errors go through the same classification and retry policy as chat calls (workbench.providers); the
        provider's exception is never chained into ours, since it may echo the key.
        """
        import numpy as np

        litellm = providers.litellm_module()
        kwargs: dict[str, Any] = dict(self.params)
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.dimensions is not None:
            kwargs["dimensions"] = self.dimensions
        api_key = self._api_key()
        if api_key:
            kwargs["api_key"] = api_key
        key_env = self.api_key_env or providers.key_env_hint(self.model)
        attempt = 0
        while True:
            attempt += 1
            self.requests += 1
            self.texts_sent += len(batch)
            try:
                response = litellm.embedding(
                    model=self.model, input=batch, timeout=self.timeout, max_retries=_NO_RETRIES, **kwargs
                )
                break
            except Exception as exc:  # noqa: BLE001 - classified in one place, for chat and embeddings alike
                failure = providers.classify(exc, self._where(), key_env=key_env, secret=api_key, timeout=self.timeout)
                text = providers.provider_text(exc, api_key)
                mro = {c.__name__ for c in type(exc).__mro__}
            # decided outside the except block, so no error raised here carries the provider's exception
            # (and its request, Authorization header included) in __context__
            if failure.kind == "fatal":
                raise RetrievalError(failure.message) from None
            if failure.kind == "cell":
                if "ContextWindowExceededError" in mro or _LENGTH_HINT.search(text):
                    return text
                raise RetrievalError(
                    f"{self._where()} rejected the request ({failure.message}). Check the model name and params."
                ) from None
            if providers.give_up(failure, attempt, self.max_retries):
                message = providers.final_message(failure, attempt)
                raise RetrievalError(f"{message}; try again later or lower batch_size") from None
            delay = providers.backoff(
                attempt, self.backoff_base, failure.wait, cap=MAX_RETRY_AFTER if failure.wait else self.backoff_max
            )
            log.info("%s: %s, retrying in %.2f s", self._where(), failure.message, delay)
            self.retries += 1
            time.sleep(delay)
        data = sorted(_field(item, "index", i) for i, item in enumerate(response.data))
        items = sorted(response.data, key=lambda item: _field(item, "index", 0))
        if len(items) != len(batch) or data != list(range(len(batch))):
            raise RetrievalError(
                f"embedder {self.model!r} returned {len(items)} vectors for {len(batch)} inputs; "
                "the server is not OpenAI-compatible for embeddings"
            )
        matrix = np.asarray([_field(item, "embedding", None) for item in items], dtype=np.float32)
        if matrix.ndim != 2:
            raise RetrievalError(f"embedder {self.model!r} returned vectors of unequal length")
        if self._dim is None:
            self._dim = int(matrix.shape[1])
        elif matrix.shape[1] != self._dim:
            raise RetrievalError(
                f"embedder {self.model!r} returned {matrix.shape[1]}-dim vectors, earlier {self._dim}-dim: "
                "pin the width with dimensions: N"
            )
        return normalize_rows(matrix)

    def __repr__(self) -> str:
        return f"LiteLLMEmbedder(name={self.name!r}, api_base={self.api_base!r})"


def _field(item: Any, key: str, default: Any) -> Any:
    if isinstance(item, Mapping):
        return item.get(key, default)
    return getattr(item, key, default)


# ---------------------------------------------------------------------------------------------
# factory

_EMBEDDERS: dict[str, Embedder] = {}
_FACTORY_LOCK = threading.Lock()
_DICT_KEYS = {
    "model",
    "api_base",
    "api_key_env",
    "batch_size",
    "max_retries",
    "timeout",
    "dimensions",
    "params",
}


def embedder_spec_key(spec: Any) -> str:
    """Canonical text of an embedder spec (same spec -> same key), used to share instances and caches."""
    if spec is None:
        return DEFAULT_EMBEDDER
    if hasattr(spec, "model_dump"):
        spec = spec.model_dump(exclude_none=True, exclude_defaults=True)
    if isinstance(spec, str):
        return spec.strip()
    if isinstance(spec, Mapping):
        return json.dumps(dict(spec), sort_keys=True, separators=(",", ":"), default=str)
    raise RetrievalError(f"embedder must be a string or a dict, got {type(spec).__name__} {spec!r}; use {_ACCEPTED}")


def get_embedder(spec: Any = DEFAULT_EMBEDDER) -> Embedder:
    """Return the (per-process shared) embedder for ``spec``: 'local', a litellm model string, or a dict.

    An ``Embedder`` instance is passed through unchanged. Unknown specs raise ``RetrievalError``.
    """
    if spec is not None and not isinstance(spec, (str, Mapping)) and hasattr(spec, "embed") and hasattr(spec, "name"):
        return spec  # already an embedder
    key = embedder_spec_key(spec)
    with _FACTORY_LOCK:
        if key in _EMBEDDERS:
            return _EMBEDDERS[key]
    embedder = _make_embedder(spec)
    with _FACTORY_LOCK:
        return _EMBEDDERS.setdefault(key, embedder)


def _make_embedder(spec: Any) -> Embedder:
    if hasattr(spec, "model_dump"):
        spec = spec.model_dump(exclude_none=True, exclude_defaults=True)
    if spec is None:
        return LocalEmbedder()
    if isinstance(spec, str):
        value = spec.strip()
        if value.lower() in LOCAL_ALIASES:
            return LocalEmbedder()
        if value.startswith("litellm:"):
            value = value[len("litellm:") :]
        _check_litellm_model(value, spec)
        return LiteLLMEmbedder(value)
    if isinstance(spec, Mapping):
        data = dict(spec)
        if "api_key" in data:
            raise RetrievalError(
                "embedder: do not put api_key in a config (it would be stored with results); set it in the "
                "environment (OPENAI_API_KEY, ...) or name the variable with api_key_env: MY_KEY_VAR"
            )
        unknown = sorted(set(data) - _DICT_KEYS)
        if unknown:
            raise RetrievalError(f"embedder: unknown key(s) {unknown}; accepted keys are {sorted(_DICT_KEYS)}")
        model = data.pop("model", None)
        if not isinstance(model, str) or not model.strip():
            raise RetrievalError(f"embedder dict needs a 'model' string, got {spec!r}; use {_ACCEPTED}")
        if model.strip().lower() in LOCAL_ALIASES:
            return LocalEmbedder(batch_size=int(data.get("batch_size", 64)))
        model = model.strip().removeprefix("litellm:")
        if not data.get("api_base"):
            _check_litellm_model(model, spec)
        return LiteLLMEmbedder(model, **data)
    raise RetrievalError(f"unknown embedder {spec!r}; use {_ACCEPTED}")


def _check_litellm_model(model: str, spec: Any) -> None:
    """Fail early (before any request) when litellm cannot tell which provider serves ``model``."""
    if not model:
        raise RetrievalError(f"unknown embedder {spec!r}; use {_ACCEPTED}")
    import contextlib
    import io

    litellm = providers.litellm_module()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # litellm prints a provider list on failure
            litellm.get_llm_provider(model)
    except Exception as exc:  # litellm raises several unrelated types here; all mean "unknown model"
        raise RetrievalError(f"unknown embedder {spec!r}: litellm does not know this model; use {_ACCEPTED}") from exc
