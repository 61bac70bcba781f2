"""The experiment spec users write in YAML. Unknown keys are errors, reported with their path.

```yaml
dataset: {name: covid, path: qa.jsonl, id: qid}
prompts:
  - {name: terse, system: "You answer questions.", user: "Question: {{ query }}"}
models:
  - {name: local, model: openai/test-model, api_base: "http://127.0.0.1:8000/v1", params: {temperature: 0}}
metrics:
  - {name: token_f1, expected: gold_answer}
concurrency: 8
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from workbench.errors import SpecError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetSpec(_Strict):
    name: str
    path: str | None = None
    id: str | None = None
    inputs: list[str] | None = None
    format: str | None = None
    dedupe: Literal["exact", "normalized"] | None = None
    version: int | str | None = None


class FewShot(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str


class PromptSpec(_Strict):
    name: str
    user: str
    system: str | None = None
    few_shot: list[FewShot] = Field(default_factory=list)


class ModelSpec(_Strict):
    name: str
    model: str
    api_base: str | None = None
    api_key_env: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    timeout: float = Field(120.0, gt=0)
    max_concurrency: int | None = Field(None, ge=1)
    max_retries: int = Field(5, ge=0)
    client: Literal["auto", "openai", "litellm"] = "auto"


class VariantSpec(_Strict):
    name: str | None = None
    prompt: str
    model: str
    retriever: str | None = None


class MetricSpec(BaseModel):
    """``{name: token_f1, expected: gold_answer}``: every key but name/label is an option of the metric."""

    model_config = ConfigDict(extra="allow")
    name: str
    label: str | None = None

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def bare_model_strings(items: Any) -> Any:
    """``models: [local/extractive]`` is accepted as in the Python API; the name is the part after the '/'."""
    if isinstance(items, list):
        return [{"name": m.split("/")[-1], "model": m} if isinstance(m, str) and m.strip() else m for m in items]
    return items


class ExperimentSpec(_Strict):
    dataset: DatasetSpec
    prompts: list[PromptSpec] = Field(min_length=1)
    models: list[ModelSpec] = Field(min_length=1)
    retrievers: list[dict[str, Any]] = Field(default_factory=list)
    variants: list[VariantSpec] | None = None
    metrics: list[MetricSpec | str] = Field(default_factory=list)
    # strict: YAML `repeats: yes` is a mistake, not one repeat
    concurrency: int = Field(8, ge=1, le=1024, strict=True)
    repeats: int = Field(1, ge=1, le=1000, strict=True)
    name: str | None = None
    # bounds on rendering each prompt message (default: 1,000,000 characters, 2 s)
    max_prompt_chars: int | None = Field(None, ge=1, le=100_000_000, strict=True)
    render_timeout: float | None = Field(None, gt=0, le=600)

    @field_validator("models", mode="before")
    @classmethod
    def _bare_model_strings(cls, items: Any) -> Any:
        return bare_model_strings(items)

    @field_validator("prompts", "models")
    @classmethod
    def _unique_names(cls, items: list[Any]) -> list[Any]:
        names = [i.name for i in items]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"names must be unique; repeated: {dup}")
        return items


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("MetricSpec", "str"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def parse(data: Any, source: str = "spec") -> ExperimentSpec:
    """Validate a spec dict; errors name the bad key path, e.g. ``models[0].temprature: unknown key``."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: the spec must be a mapping with keys dataset, prompts, models, metrics, ...")
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            if "str" in err["loc"] and isinstance(err.get("input"), dict):
                continue  # a metric written as a mapping failed as a mapping; "not a string" is noise
            where = _loc(err["loc"])
            if err["type"] == "extra_forbidden":
                lines.append(f"{where}: unknown key")
            elif err["type"] == "missing":
                lines.append(f"{where}: required key is missing")
            else:
                lines.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
        lines = list(dict.fromkeys(lines))
        raise SpecError(f"{source}: {len(lines)} problem(s):\n  " + "\n  ".join(lines)) from None


MAX_SPEC_BYTES = 10 * 1024 * 1024


def read_yaml(path: str | Path) -> Any:
    """The data of a YAML spec file, or a SpecError saying what is wrong with the path or the text."""
    import yaml

    p = Path(path)
    if not p.exists():
        raise SpecError(f"spec file {p} does not exist")
    if p.is_dir():
        raise SpecError(f"spec {p} is a folder; give the YAML file inside it (e.g. {p / 'experiment.yaml'})")
    try:
        if p.stat().st_size > MAX_SPEC_BYTES:
            raise SpecError(f"spec file {p} is larger than {MAX_SPEC_BYTES // 2**20} MiB; is it the right file?")
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-save it as UTF-8") from None
    except OSError as exc:
        raise SpecError(f"cannot read spec file {p}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{p}: not valid YAML: {exc}") from None
    except RecursionError:
        raise SpecError(f"{p}: YAML nested too deeply") from None


def load(path: str | Path) -> tuple[ExperimentSpec, Path]:
    """Read a YAML spec; returns it with the folder that relative paths are resolved against."""
    p = Path(path)
    return parse(read_yaml(p), str(p)), p.resolve().parent


class RetrievalEvalSpec(_Strict):
    """``llmops retrieval-eval``: a dataset, retrievers, and where the question and gold ids are.

    The gold column comes from ``gold:`` or from the first retrieval metric's ``gold`` option, so the
    same spec serves ``llmops run`` (with prompts and models) and ``llmops retrieval-eval``.
    """

    dataset: DatasetSpec
    retrievers: list[dict[str, Any]] = Field(min_length=1)
    metrics: list[MetricSpec | str] = Field(default_factory=list)
    gold: str | None = None
    k: int | None = Field(None, ge=1)
    prompts: list[PromptSpec] = Field(default_factory=list)
    models: list[ModelSpec] = Field(default_factory=list)
    variants: list[VariantSpec] | None = None
    concurrency: int = 8
    repeats: int = 1
    name: str | None = None

    @field_validator("models", mode="before")
    @classmethod
    def _bare_model_strings(cls, items: Any) -> Any:
        return bare_model_strings(items)

    @classmethod
    def from_data(cls, data: Any, source: str) -> RetrievalEvalSpec:
        if not isinstance(data, dict):
            raise SpecError(f"{source}: the spec must be a mapping with keys dataset, retrievers, ...")
        if "question" in data:
            raise SpecError(
                f"{source}: question: the question column is set per retriever with `query: <column>`, the key "
                "`llmops run` reads too (default: a column named question)"
            )
        try:
            spec = cls.model_validate(data)
        except ValidationError as exc:
            lines = [
                f"{_loc(e['loc'])}: {'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
                for e in exc.errors()
            ]
            raise SpecError(f"{source}: {len(lines)} problem(s):\n  " + "\n  ".join(lines)) from None
        if spec.gold is None:
            for m in spec.metrics:
                if isinstance(m, MetricSpec) and "gold" in m.options():
                    spec.gold = str(m.options()["gold"])
                    break
        if spec.gold is None:
            raise SpecError(
                f"{source}: say which column holds the gold document ids: `gold: <column>` or a metric "
                "like {name: recall_at_k, gold: gold_doc}"
            )
        return spec
