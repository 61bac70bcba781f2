"""``RetrievalConfig``: what users write under ``retrievers:`` in a spec, validated strictly.

Why pydantic with ``extra="forbid"``: a typo (``overlapp: 32``) must fail loudly with the path of the bad
key instead of silently running the default. ``RetrievalConfig.hash`` (sha256 of canonical JSON without the
display ``name``) identifies a configuration in results; build-time parts of it also key the artifact cache.
The corpus enters that hash by its documents' content hash, never by its path, so the same spec and files in
two folders (or on two machines) give the same hash; the path is kept only as provenance.

Shorthands: ``corpus: docs/`` == ``{path: docs/}``, ``chunker: 256`` == ``{size: 256}``,
``index: hnsw`` == ``{type: hnsw}``, ``hybrid: true`` == ``{}`` (defaults), ``mmr: true`` == ``{}``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from workbench.errors import RetrievalError

if TYPE_CHECKING:
    from workbench.retrieval.corpus import Corpus

__all__ = [
    "CHUNKER_VERSION",
    "ChunkerConfig",
    "CorpusSpec",
    "EmbedderConfig",
    "FlatIndex",
    "HNSWIndex",
    "HybridConfig",
    "IVFFlatIndex",
    "IVFPQIndex",
    "IndexConfig",
    "MMRConfig",
    "RetrievalConfig",
    "canonical_hash",
    "format_validation_error",
]

# Bump when chunking output changes for the same config, so cached chunks/embeddings are not reused.
CHUNKER_VERSION = 1


def canonical_hash(data: Any) -> str:
    """sha256 of canonical JSON (sorted keys, no whitespace): equal data -> equal hash in every process."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CorpusSpec(_Strict):
    """Where the documents are: a .jsonl/.csv/.parquet/.txt/.md/.pdf file or a folder of them."""

    path: str
    id: str = "id"
    text: str = "text"
    glob: str | None = None

    def resolve(self, base_dir: str | Path | None = None) -> Path:
        """The absolute path, relative paths taken from ``base_dir`` (the spec's folder) or the cwd."""
        p = Path(self.path).expanduser()
        if not p.is_absolute():
            p = Path(base_dir or ".") / p
        return p.resolve()

    def load(self, base_dir: str | Path | None = None) -> Corpus:
        """Read and validate the corpus."""
        from workbench.retrieval.corpus import Corpus

        return Corpus.from_path(self.resolve(base_dir), id_field=self.id, text_field=self.text, glob=self.glob)

    def content_hash(self, base_dir: str | Path | None = None) -> str:
        """``Corpus.hash`` of what this spec reads, cached per file signature (path, size, mtime) in the process."""
        root = self.resolve(base_dir)
        if root.is_dir():
            files = sorted(p for p in root.glob(self.glob or "**/*") if p.is_file())
        else:
            files = [root]
        try:
            signature = (
                self.id,
                self.text,
                self.glob,
                tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files),
            )
        except OSError:
            signature = None
        if signature is not None and signature in _CONTENT_HASHES:
            return _CONTENT_HASHES[signature]
        digest = self.load(base_dir).hash
        if signature is not None:
            _CONTENT_HASHES[signature] = digest
        return digest


_CONTENT_HASHES: dict[Any, str] = {}


class ChunkerConfig(_Strict):
    """How documents are cut. Tokens are regex word tokens (runs of non-space characters), not model tokens."""

    type: Literal["fixed", "sentence", "markdown"] = "fixed"
    unit: Literal["tokens", "chars"] = "tokens"
    size: int = Field(default=256, gt=0, le=1_000_000)
    overlap: int = Field(default=32, ge=0)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkerConfig:
        if self.overlap >= self.size:
            raise ValueError(
                f"chunker.overlap ({self.overlap}) must be smaller than chunker.size ({self.size}); "
                f"e.g. overlap: {self.size // 8}"
            )
        return self

    @property
    def hash(self) -> str:
        return canonical_hash({"chunker": self.model_dump(mode="json"), "version": CHUNKER_VERSION})


class EmbedderConfig(_Strict):
    """A litellm embedding model (or ``model: local``). API keys never go here: only the variable's name."""

    model: str = Field(min_length=1)
    api_base: str | None = None
    api_key_env: str | None = None
    batch_size: int = Field(default=256, ge=1, le=100_000)
    max_retries: int = Field(default=6, ge=0, le=100)
    timeout: float = Field(default=60.0, gt=0)
    dimensions: int | None = Field(default=None, ge=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _no_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "api_key" in data:
            raise ValueError(
                "embedder.api_key is not allowed (it would be stored with results): set the key in the "
                "environment (OPENAI_API_KEY, ...) or give the variable's name as api_key_env"
            )
        return data


class FlatIndex(_Strict):
    """Exact search: ``IndexFlatIP`` on unit vectors (cosine). Best up to a few hundred thousand chunks."""

    type: Literal["flat"] = "flat"

    def build_params(self) -> dict[str, Any]:
        return {"type": self.type}


class HNSWIndex(_Strict):
    """Graph index: fast approximate search; ``ef_search`` trades speed for recall at query time.

    Defaults measured on 100k x 256-dim wordllama vectors, 2 cores (benchmarks/bench_retrieval.py):
    M=32, ef_construction=200, ef_search=96 gives recall@10 ~0.97 against exact search at ~8,000 queries/s.
    """

    type: Literal["hnsw"] = "hnsw"
    M: int = Field(default=32, ge=4, le=256)
    ef_construction: int = Field(default=200, ge=8, le=4096)
    ef_search: int = Field(default=96, ge=1, le=32768)

    def build_params(self) -> dict[str, Any]:
        return {"type": self.type, "M": self.M, "ef_construction": self.ef_construction}


class IVFFlatIndex(_Strict):
    """Inverted lists over k-means cells; ``nlist`` defaults to ~4*sqrt(chunks), ``nprobe`` cells searched."""

    type: Literal["ivf_flat"] = "ivf_flat"
    nlist: int | None = Field(default=None, ge=1)
    nprobe: int = Field(default=16, ge=1)

    def build_params(self) -> dict[str, Any]:
        return {"type": self.type, "nlist": self.nlist}


class IVFPQIndex(_Strict):
    """IVF with product quantisation: compact and approximate; ``m`` must divide the embedding width."""

    type: Literal["ivf_pq"] = "ivf_pq"
    nlist: int | None = Field(default=None, ge=1)
    nprobe: int = Field(default=16, ge=1)
    m: int = Field(default=16, ge=1)
    nbits: int = Field(default=8, ge=1, le=16)

    def build_params(self) -> dict[str, Any]:
        return {"type": self.type, "nlist": self.nlist, "m": self.m, "nbits": self.nbits}


IndexConfig = Annotated[FlatIndex | HNSWIndex | IVFFlatIndex | IVFPQIndex, Field(discriminator="type")]


class HybridConfig(_Strict):
    """BM25 (bm25s) fused with dense results: reciprocal rank fusion or a normalised weighted sum.

    ``bm25_weight`` w weighs the BM25 side: RRF score = (1-w)/(rrf_k+rank_dense) + w/(rrf_k+rank_bm25);
    weighted score = (1-w)*minmax(dense) + w*minmax(bm25). Each side contributes ``fetch_k`` candidates
    (default max(5*top_k, 50)).
    """

    bm25_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    fusion: Literal["rrf", "weighted"] = "rrf"
    rrf_k: int = Field(default=60, ge=1)
    fetch_k: int | None = Field(default=None, ge=1)
    k1: float = Field(default=1.5, gt=0)
    b: float = Field(default=0.75, ge=0, le=1)
    stopwords: Literal["en"] | None = "en"


class MMRConfig(_Strict):
    """Maximal marginal relevance over ``fetch_k`` candidates: ``lambda`` 1 = pure relevance, 0 = pure diversity."""

    lambda_: float = Field(default=0.5, ge=0.0, le=1.0, alias="lambda")
    fetch_k: int = Field(default=20, ge=1, le=10_000)


def _shorthand(value: Any, key: str) -> Any:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return {key: value}
    return value


def _flag(value: Any) -> Any:
    if value is True:
        return {}
    if value is False:
        return None
    return value


class RetrievalConfig(_Strict):
    """One retrieval configuration: a grid dimension of an experiment.

    ``query`` names the dataset column (or a Jinja template over the case) whose text is searched; the
    runner defaults it to ``question``. It is part of the hash (it changes what is retrieved) but not of any
    artifact key (it changes nothing that is built).
    """

    name: str | None = None
    corpus: CorpusSpec | None = None
    query: str | None = Field(default=None, min_length=1)  # dataset column (or template) to search with
    chunker: ChunkerConfig = ChunkerConfig()  # frozen: safe to share as a default
    embedder: str | EmbedderConfig = "local"
    index: IndexConfig = FlatIndex()
    top_k: int = Field(default=4, ge=1, le=10_000)
    hybrid: HybridConfig | None = None
    mmr: MMRConfig | None = None
    filter: dict[str, Any] | None = None

    _base_dir: Path | None = PrivateAttr(default=None)
    _corpus_hash: str | None = PrivateAttr(default=None)

    @field_validator("corpus", mode="before")
    @classmethod
    def _corpus_shorthand(cls, v: Any) -> Any:
        return {"path": str(v)} if isinstance(v, (str, Path)) else v

    @field_validator("chunker", mode="before")
    @classmethod
    def _chunker_shorthand(cls, v: Any) -> Any:
        return _shorthand(v, "size") if not isinstance(v, str) else {"type": v}

    @field_validator("index", mode="before")
    @classmethod
    def _index_shorthand(cls, v: Any) -> Any:
        return {"type": v} if isinstance(v, str) else v

    @field_validator("hybrid", "mmr", mode="before")
    @classmethod
    def _flags(cls, v: Any) -> Any:
        return _flag(v)

    @field_validator("embedder", mode="before")
    @classmethod
    def _embedder_text(cls, v: Any) -> Any:
        if isinstance(v, str) and not v.strip():
            raise ValueError("embedder must not be empty: use 'local' or a litellm embedding model")
        return v.strip() if isinstance(v, str) else v

    @field_validator("filter")
    @classmethod
    def _filter_values(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("filter must name at least one metadata field, e.g. {year: 2015}; omit it otherwise")
        for key, value in v.items():
            values = value if isinstance(value, list) else [value]
            for item in values:
                if not (item is None or isinstance(item, (str, int, float, bool))):
                    raise ValueError(
                        f"filter.{key}: values must be scalars or lists of scalars, got {type(item).__name__}"
                    )
        return v

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> RetrievalConfig:
        if self.mmr is not None and self.mmr.fetch_k < self.top_k:
            raise ValueError(f"mmr.fetch_k ({self.mmr.fetch_k}) must be >= top_k ({self.top_k})")
        context = info.context if info is not None else None
        if isinstance(context, dict) and context.get("base_dir") is not None:
            self._base_dir = Path(context["base_dir"])
        return self

    # ---- identity ------------------------------------------------------------------------------
    def canonical(self) -> dict[str, Any]:
        """The JSON that defines this configuration: settings plus the corpus *content* hash (no name, no path)."""
        data = self.model_dump(mode="json", by_alias=True, exclude={"name", "corpus"})
        data["corpus"] = None if self.corpus is None else {"content": self.corpus_hash}
        return data

    @property
    def hash(self) -> str:
        return canonical_hash(self.canonical())

    @property
    def corpus_hash(self) -> str | None:
        """Content hash of the corpus (reads it once per file version); ``None`` without a corpus."""
        if self.corpus is None:
            return None
        if self._corpus_hash is None:
            self._corpus_hash = self.corpus.content_hash(self._base_dir)
        return self._corpus_hash

    def with_corpus_hash(self, corpus_hash: str | None) -> RetrievalConfig:
        """A copy whose corpus is known by content hash (an imported or recorded run whose files are elsewhere)."""
        out = self.model_copy()
        out._corpus_hash = corpus_hash
        return out

    @property
    def settings_hash(self) -> str:
        """Hash of the settings alone (no corpus): names an unnamed config without reading any file."""
        return canonical_hash(self.model_dump(mode="json", by_alias=True, exclude={"name", "corpus"}))

    @property
    def label(self) -> str:
        """Display name: ``name`` or ``r-<settings hash prefix>``."""
        return self.name or f"r-{self.settings_hash[:8]}"

    @property
    def base_dir(self) -> Path | None:
        return self._base_dir

    # ---- construction --------------------------------------------------------------------------
    @classmethod
    def parse(cls, data: Any, base_dir: str | Path | None = None, where: str = "retriever") -> RetrievalConfig:
        """Validate ``data`` (a dict, a config, or YAML-loaded object); errors become ``RetrievalError``."""
        if isinstance(data, RetrievalConfig):
            if base_dir is not None and data._base_dir is None:
                data = data.model_copy()
                data._base_dir = Path(base_dir)
            return data
        try:
            return cls.model_validate(data, context={"base_dir": base_dir})
        except PydanticValidationError as exc:
            raise RetrievalError(format_validation_error(exc, where)) from None

    def load_corpus(self, base_dir: str | Path | None = None) -> Corpus:
        """Load this config's ``corpus`` (paths relative to ``base_dir`` or the spec's folder)."""
        if self.corpus is None:
            raise RetrievalError(
                f"retriever {self.label!r} has no corpus: add corpus: {{path: docs.jsonl}} or pass a Corpus"
            )
        return self.corpus.load(base_dir if base_dir is not None else self._base_dir)


def format_validation_error(exc: PydanticValidationError, where: str = "retriever") -> str:
    """One line per problem: ``where.field.path: message (got value)``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if not str(p).startswith("function-"))
        # discriminated unions put the tag in the path (index.hnsw.M): keep it, it tells which form was meant
        msg = err.get("msg", "invalid value").removeprefix("Value error, ")
        got = err.get("input")
        shown = f" (got {got!r})" if err.get("type") not in ("missing",) and not isinstance(got, dict) else ""
        if err.get("type") == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{where}.{loc}: {msg}{shown}" if loc else f"{where}: {msg}{shown}")
    return "invalid retrieval config:\n  " + "\n  ".join(lines)
