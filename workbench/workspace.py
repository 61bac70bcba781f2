"""The Workspace: the one Python API every face (today the CLI and the magics) wraps."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from workbench import datasets as _datasets
from workbench.datasets import Dataset
from workbench.errors import NotFoundError, SpecError, WorkbenchError
from workbench.llm import ModelConfig
from workbench.metrics.registry import BoundMetric, bind
from workbench.prompts import Prompt, PromptDiff, RenderLimits
from workbench.runner import Experiment, Run, Variant, variant_names
from workbench.store import Store

if TYPE_CHECKING:
    import pandas as pd

    from workbench.spec import ExperimentSpec

DEFAULT_DIR = ".llmops"


def default_path() -> Path:
    return Path(os.environ.get("LLMOPS_WORKSPACE") or DEFAULT_DIR)


class Workspace:
    """A folder holding ``workspace.duckdb`` and ``artifacts/``. Cheap to open; holds no connection."""

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, read_only: bool = False, lock_timeout: float | None = None
    ) -> None:
        """``read_only`` opens an existing workspace without creating, migrating or writing it (server extension)."""
        self.store = Store(Path(path) if path is not None else default_path(), read_only, lock_timeout)
        self.path = self.store.path

    def __repr__(self) -> str:
        return f"Workspace({str(self.path)!r})"

    def _repr_html_(self) -> str:
        from workbench.display import kv_html

        counts = self.store.sql(
            "SELECT (SELECT count(DISTINCT name) FROM datasets) AS datasets, "
            "(SELECT count(DISTINCT name) FROM prompts) AS prompts, "
            "(SELECT count(DISTINCT name) FROM retrievers) AS retrievers, "
            "(SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM responses) AS cached_responses"
        ).iloc[0]
        return kv_html("Workspace", {"path": str(self.path), **{k: int(v) for k, v in counts.items()}})

    # -- datasets ------------------------------------------------------------------------------

    def add_dataset(
        self,
        name: str,
        data: Any,
        *,
        id: str | None = None,
        inputs: Sequence[str] | None = None,
        text_columns: Sequence[str] | None = None,
        required: Sequence[str] | None = None,
        dedupe: Literal["exact", "normalized"] | None = None,
        fmt: str | None = None,
    ) -> Dataset:
        """Store a dataset version from a DataFrame, records, or a CSV / JSONL / JSON / Parquet file."""
        return _datasets.add(
            self.store,
            name,
            data,
            id=id,
            inputs=inputs,
            text_columns=text_columns,
            required=required,
            dedupe=dedupe,
            fmt=fmt,
        )  # type: ignore[arg-type]

    def dataset(self, name: str, version: int | str | None = None) -> Dataset:
        return _datasets.get(self.store, name, version)

    def datasets(self) -> pd.DataFrame:
        from workbench.display import table

        return table(self.store.list_datasets())

    # -- prompts -------------------------------------------------------------------------------

    def add_prompt(
        self, name: str, user: str, system: str | None = None, few_shot: Sequence[Mapping[str, str]] = ()
    ) -> Prompt:
        """Store a prompt version (same content returns the same version)."""
        p = Prompt(name, user, system, tuple(few_shot))
        version = self.store.upsert_prompt(p.name, p.hash, p.system, p.user, list(p.few_shot))
        return Prompt(name, user, system, tuple(few_shot), version=version)

    def prompt(self, name: str, version: int | None = None) -> Prompt:
        rec = self.store.find_prompt(name, version)
        if rec is None:
            which = f"prompt {name!r}" + (f" version {version}" if version is not None else "")
            known = self.store.names("prompt")
            raise NotFoundError(
                f"no {which} in workspace {self.path}; known prompts: {known or 'none'}. Add one with "
                "ws.add_prompt(...) or a %%llmops prompt NAME cell"
            )
        return Prompt(rec["name"], rec["user"], rec["system"], tuple(rec["few_shot"]), version=rec["version"])

    def prompts(self) -> pd.DataFrame:
        from workbench.display import table

        return table(self.store.list_prompts())

    def save_prompt(self, name: str, user: str, system: str | None = None) -> PromptDiff:
        """Store a version and return what changed against the latest one before (identical text: no change)."""
        before = self.store.find_prompt(name)
        new = self.add_prompt(name, user, system)
        old = self.prompt(name, before["version"]) if before is not None else None
        return PromptDiff(name, old, new)

    def prompt_diff(self, name: str, a: int | None = None, b: int | None = None) -> PromptDiff:
        """What changed between two versions of a prompt (default: the latest against the one before)."""
        new = self.prompt(name, b)
        if a is None:
            old = self.prompt(name, new.version - 1) if new.version and new.version > 1 else None
        else:
            old = self.prompt(name, a)
        return PromptDiff(name, old, new)

    # -- retrieval -----------------------------------------------------------------------------

    def add_corpus(self, name: str, data: Any, *, id: str = "id", text: str = "text") -> Any:
        """Store a retrieval corpus version from a DataFrame, records, or a .jsonl/.txt/.md file or folder."""
        from workbench.retrieval.corpus import Corpus
        from workbench.retrieval.grid import register_corpus

        if isinstance(data, Corpus):
            corpus = data
        elif isinstance(data, (str, os.PathLike)):
            corpus = Corpus.from_path(Path(data), id_field=id, text_field=text)
        elif isinstance(data, list):
            corpus = Corpus.from_records(data, id_field=id, text_field=text)
        else:
            corpus = Corpus.from_dataframe(data, id_col=id, text_col=text)
        register_corpus(self.store, corpus, name)
        return corpus

    def corpus(self, name: str, version: int | None = None) -> Any:
        """A stored corpus (latest version by default)."""
        from workbench.retrieval.grid import load_corpus

        return load_corpus(self.store, name, version)

    def corpora(self) -> pd.DataFrame:
        return self.store.list_corpora()

    def retrieval_eval(
        self,
        dataset: Dataset | str | Any,
        configs: Sequence[Any],
        *,
        question: str = "question",
        gold: str = "gold",
        k: int | None = None,
        corpus: Any = None,
        base: Path | None = None,
    ) -> pd.DataFrame:
        """Evaluate retrieval configs with no model call: hit@k, recall@k, MRR, nDCG@k, build and query time."""
        from workbench.retrieval.grid import evaluate, parse_retrievers

        if isinstance(dataset, str):
            dataset = self.dataset(dataset)
        cases = [row for _, row in dataset.cases()] if isinstance(dataset, Dataset) else dataset
        if isinstance(corpus, str):
            corpus = self.corpus(corpus)
        return evaluate(
            self.store,
            cases,
            parse_retrievers(self._retriever_items(configs), base),
            question=question,
            gold=gold,
            k=k,
            corpus=corpus,
        )

    def add_retriever(self, name: str, config: Mapping[str, Any] | Any, base: Path | None = None) -> Any:
        """Store a named retrieval config (the spec's keys); the same content keeps its version."""
        from workbench.retrieval.grid import parse_retrievers

        data = config.model_dump(mode="json", by_alias=True) if hasattr(config, "model_dump") else dict(config)
        (cfg,) = parse_retrievers([{**data, "name": name}], base or Path.cwd())
        self.store.upsert_retriever(name, cfg.hash, cfg.model_dump(mode="json", by_alias=True))
        return cfg

    def retriever(self, name: str, version: int | None = None) -> Any:
        """A stored named retrieval config (latest version by default)."""
        from workbench.retrieval.config import RetrievalConfig

        rec = self.store.find_retriever(name, version)
        if rec is None:
            known = self.store.names("retriever")
            raise NotFoundError(
                f"no retriever {name!r}"
                + (f" version {version}" if version is not None else "")
                + f" in workspace {self.path}; known: {known or 'none'}. Store one with ws.add_retriever(name, "
                "{...}) or a %%llmops retriever NAME cell"
            )
        return RetrievalConfig.parse(rec["config"], where=f"stored retriever {name!r}")

    def retrievers(self) -> pd.DataFrame:
        """Stored retriever configs, one row per version, with the settings that tell them apart."""
        import json

        from workbench.display import table

        frame = self.store.list_retrievers()
        configs = [json.loads(c) for c in frame["config"]]
        frame = frame.drop(columns=["config"]).assign(
            corpus=[(c.get("corpus") or {}).get("path") for c in configs],
            chunker=[
                "{type} {size}/{overlap} {unit}".format(**c["chunker"]) if c.get("chunker") else None for c in configs
            ],
            embedder=[c.get("embedder") if isinstance(c.get("embedder"), str) else "custom" for c in configs],
            index=[(c.get("index") or {}).get("type") for c in configs],
            top_k=[c.get("top_k") for c in configs],
            hybrid=[bool(c.get("hybrid")) for c in configs],
            mmr=[bool(c.get("mmr")) for c in configs],
        )
        front = ["name", "version", "chunker", "embedder", "index", "top_k", "hybrid", "mmr", "corpus"]
        return table(frame[front + [c for c in frame.columns if c not in front]])

    def _retriever_items(self, items: Sequence[Any]) -> list[Any]:
        """Names of stored retrievers become their configs; dicts and configs pass through."""
        return [self.retriever(*_name_version(r)) if isinstance(r, str) else r for r in items]

    # -- experiments ---------------------------------------------------------------------------

    def experiment(
        self,
        dataset: Dataset | str,
        prompts: Sequence[Prompt | Mapping[str, Any]] | Prompt,
        models: Sequence[ModelConfig | Mapping[str, Any] | str] | ModelConfig | str,
        metrics: Sequence[str | Mapping[str, Any] | BoundMetric] = (),
        *,
        retrievers: Sequence[Any] = (),
        variants: Sequence[Mapping[str, Any]] | None = None,
        repeats: int = 1,
        concurrency: int = 8,
        name: str | None = None,
        max_prompt_chars: int | None = None,
        render_timeout: float | None = None,
    ) -> Experiment:
        """Build (and check) an experiment. Models may be litellm strings, dicts or ModelConfig.

        ``max_prompt_chars`` / ``render_timeout`` bound the rendering of each message (default 1,000,000
        characters and 2 s); a template past them is a TemplateError at plan time, before any call.
        """
        ds = self.dataset(dataset) if isinstance(dataset, str) else dataset
        ps = (
            [prompts]
            if isinstance(prompts, Prompt)
            else [
                p
                if isinstance(p, Prompt)
                else self.prompt(*_name_version(p))
                if isinstance(p, str)
                else Prompt(p["name"], p["user"], p.get("system"), tuple(p.get("few_shot", ())))
                for p in prompts
            ]
        )
        ms = [self._stored_model(m) for m in ([models] if isinstance(models, (str, ModelConfig)) else models)]
        rs: list[Any] = []
        if retrievers:
            from workbench.retrieval.grid import parse_retrievers

            rs = parse_retrievers(self._retriever_items(list(retrievers)), Path.cwd())
        if variants:
            by_p = {p.name: p for p in ps}
            by_m = {m.name: m for m in ms}
            by_r = {r.name: r for r in rs}
            vs = []
            for i, v in enumerate(variants):
                missing = [k for k in ("prompt", "model") if k not in v]
                if missing:
                    raise SpecError(f"variants[{i}]: needs {missing} (and optionally name, retriever)")
                for key, table in (("prompt", by_p), ("model", by_m)):
                    if v[key] not in table:
                        raise SpecError(f"variants[{i}].{key}: {v[key]!r} is not defined; defined: {sorted(table)}")
                if v.get("retriever") and v["retriever"] not in by_r:
                    raise SpecError(
                        f"variants[{i}].retriever: {v['retriever']!r} is not defined; defined: {sorted(by_r)}"
                    )
                r = by_r.get(v["retriever"]) if v.get("retriever") else None
                default = "/".join([v["prompt"], v["model"]] + ([r.name] if r is not None else []))
                vs.append(Variant(v.get("name") or default, by_p[v["prompt"]], by_m[v["model"]], r))
        else:
            vs = variant_names(ps, ms, rs)
        bound = [_metric(m) for m in metrics]
        limits = _limits(max_prompt_chars, render_timeout)
        return Experiment(self.store, ds, vs, bound, repeats, concurrency, name, limits)

    def _stored_model(self, m: ModelConfig | Mapping[str, Any] | str) -> ModelConfig:
        """A bare name (no provider/) of a model a past run stored is that config; anything else as given."""
        if isinstance(m, str) and "/" not in m:
            rec = self.store.find_model(m)
            if rec is not None:
                keep = ("params", "api_base", "api_key_env", "timeout", "max_concurrency", "client")
                return ModelConfig(
                    name=m, model=rec["model"], **{k: rec["config"][k] for k in keep if rec["config"].get(k)}
                )
        return _model(m)

    def run(self, experiment: Experiment | str | os.PathLike[str] | Mapping[str, Any], progress: bool = True) -> Run:
        """Run an Experiment, a YAML spec path, or a spec dict."""
        exp = experiment if isinstance(experiment, Experiment) else self.from_spec(experiment)
        return exp.run(progress=progress)

    def from_spec(
        self, spec: str | os.PathLike[str] | Mapping[str, Any] | ExperimentSpec, base: Path | None = None
    ) -> Experiment:
        """Build an Experiment from a YAML path or dict; relative paths resolve against the spec's folder."""
        from workbench import spec as _spec

        if isinstance(spec, (str, os.PathLike)):
            parsed, base = _spec.load(Path(spec))
        elif isinstance(spec, _spec.ExperimentSpec):
            parsed = spec
        else:
            parsed = _spec.parse(dict(spec))
        base = base or Path.cwd()
        d = parsed.dataset
        if d.path and d.version is not None:
            raise SpecError(
                "dataset: give either `path` (load and version the file) or `version` (a stored one), not both"
            )
        if d.path:
            path = Path(d.path) if Path(d.path).is_absolute() else base / d.path
            ds = self.add_dataset(d.name, path, id=d.id, inputs=d.inputs, dedupe=d.dedupe, fmt=d.format)
        else:
            ds = self.dataset(d.name, d.version)
        prompts = [Prompt(p.name, p.user, p.system, tuple(f.model_dump() for f in p.few_shot)) for p in parsed.prompts]
        models = [
            ModelConfig(
                name=m.name,
                model=m.model,
                params=m.params,
                api_base=m.api_base,
                api_key_env=m.api_key_env,
                timeout=m.timeout,
                max_concurrency=m.max_concurrency,
                max_retries=m.max_retries,
                client=m.client,
            )
            for m in parsed.models
        ]
        retrievers = []
        if parsed.retrievers:
            from workbench.retrieval.grid import parse_retrievers

            retrievers = parse_retrievers(parsed.retrievers, base)
        metrics: list[Any] = []
        for i, m in enumerate(parsed.metrics):
            try:
                metrics.append(
                    _metric(m) if isinstance(m, str) else _metric({"name": m.name, "label": m.label, **m.options()})
                )
            except WorkbenchError as exc:
                raise SpecError(f"metrics[{i}]: {exc}") from exc
        variants = [v.model_dump() for v in parsed.variants] if parsed.variants else None
        return self.experiment(
            ds,
            prompts,
            models,
            metrics,
            retrievers=retrievers,
            variants=variants,
            repeats=parsed.repeats,
            concurrency=parsed.concurrency,
            name=parsed.name,
            max_prompt_chars=parsed.max_prompt_chars,
            render_timeout=parsed.render_timeout,
        )

    def get_run(self, run_id: str) -> Run:
        """A stored run by id (or unique id prefix)."""
        info = self.store.get_run(run_id)
        return Run(self.store, info["run_id"])

    def add_feedback(
        self,
        run_id: str,
        case_id: str,
        variant: str,
        *,
        repeat: int = 0,
        thumbs: bool | None = None,
        rating: float | None = None,
        label: str | None = None,
        comment: str | None = None,
        author: str | None = None,
    ) -> Any:
        """Record a human rating of one stored cell."""
        from workbench import feedback

        return feedback.add(
            self.store,
            run_id,
            case_id,
            variant,
            repeat=repeat,
            thumbs=thumbs,
            rating=rating,
            label=label,
            comment=comment,
            author=author,
        )

    def import_run(self, path: str | os.PathLike[str]) -> Run:
        """Load a run archive (``run.archive(path)`` / ``llmops export-run``): verified, idempotent, no overwrite."""
        from workbench import archive

        return Run(self.store, archive.import_run(self.store, path))

    def diff(self, a: Run | str, b: Run | str, confidence: float = 0.95) -> Any:
        """What changed from run ``a`` to run ``b`` by variant, and the paired score deltas (workbench.rundiff)."""
        from workbench.rundiff import diff_runs

        run_a = a if isinstance(a, Run) else self.get_run(a)
        run_b = b if isinstance(b, Run) else self.get_run(b)
        return diff_runs(run_a, run_b, confidence=confidence)

    def runs(self) -> pd.DataFrame:
        from workbench.display import table

        return table(self.store.list_runs())

    # -- production: monitoring, A/B, feedback loop, gates and promotion -----------------------

    def monitor(
        self,
        log: str | os.PathLike[str],
        *,
        dataset: Dataset | str | None = None,
        bundle: str | os.PathLike[str] | None = None,
        run_id: str | None = None,
        **options: Any,
    ) -> Any:
        """Monitor a served bundle's request log (see ``workbench.monitoring.monitor``).

        Drift is measured against ``dataset`` (default: the eval dataset of ``bundle``) and the
        retrieval scores of the bundle's eval run; ``options`` go to ``monitoring.monitor``.
        """
        from workbench import monitoring, promotion

        variant = options.pop("variant", None)
        reference: Any = self.dataset(dataset) if isinstance(dataset, str) else dataset
        if bundle is not None:
            manifest = promotion.load_manifest(bundle)
            d = manifest.get("dataset") or {}
            run_id = run_id or manifest.get("run_id")
            variant = variant or manifest.get("variant")
            cases = promotion.bundle_eval_cases(bundle)  # the bundle's own evidence, wherever it is monitored
            if cases is not None:
                questions, scores = monitoring.bundle_eval_reference(cases, options.get("question", "question"))
                options.setdefault("retrieval_reference", (f"eval cases of bundle {bundle}", scores))
            if reference is None:
                try:
                    reference = self.dataset(str(d.get("name")), d.get("hash"))
                except NotFoundError:
                    reference = questions if cases is not None and questions else None
                    options.setdefault("reference_name", f"eval cases of bundle {bundle}")
        return monitoring.monitor(log, store=self.store, reference=reference, run_id=run_id, variant=variant, **options)

    def ab(self, log: str | os.PathLike[str], metric: str = "feedback", **options: Any) -> Any:
        """A/B analysis of a log served with two arms (see ``workbench.monitoring.ab``)."""
        from workbench import monitoring

        return monitoring.ab(log, metric, **options)

    def dataset_from_log(
        self,
        log: str | os.PathLike[str],
        name: str,
        *,
        where: str | None = None,
        with_feedback: bool = True,
        confirm: bool = False,
        **options: Any,
    ) -> Any:
        """Served requests -> new cases of dataset ``name``: a preview; stored by ``.save()`` or ``confirm``."""
        from workbench import monitoring

        preview = monitoring.dataset_from_log(
            self.store, log, name, where=where, with_feedback=with_feedback, **options
        )
        if confirm:
            preview.save()
        return preview

    def gate(self, target: str | os.PathLike[str], constraints: Any = None, variant: str | None = None) -> Any:
        """Check thresholds on a run or a bundle (``["token_f1>=0.4", "latency_p95_ms<=2000"]``)."""
        from workbench import promotion

        return promotion.gate(self, target, constraints, variant)

    def promote(
        self,
        bundle: str | os.PathLike[str],
        to: str,
        *,
        approve: str | None = None,
        note: str | None = None,
        constraints: Any = None,
        progress: bool = False,
    ) -> Any:
        """Promote a bundle dev -> qa -> prod (prod: gates re-checked on the current dataset, and an approval)."""
        from workbench import promotion

        return promotion.promote(
            self, bundle, to, approve=approve, note=note, constraints=constraints, progress=progress
        )

    def promotions(self, bundle: str | os.PathLike[str] | None = None) -> pd.DataFrame:
        """Every promotion attempt, promoted or refused, with gates, approver and time."""
        from workbench import promotion

        return promotion.promotions(self, bundle)

    def grid(self, *runs: Run | str, **view: Any) -> Any:
        """EvalGrid widget of one run, or of two runs over one dataset side by side (columns: both runs' variants)."""
        from workbench.widgets.grid import EvalGrid

        ids = [r.run_id if isinstance(r, Run) else self.store.get_run(r)["run_id"] for r in runs]
        return EvalGrid(self.store, ids, **view)

    def sql(
        self, query: str, params: Sequence[Any] | dict[str, Any] | None = None, timeout: float | None = None
    ) -> pd.DataFrame:
        """Read-only SQL over the workspace tables (see workbench.store for the schema).

        Stopped after ``timeout`` seconds (default ``LLMOPS_SQL_TIMEOUT`` or 30): no run can store results meanwhile.
        """
        return self.store.sql(query, params, timeout=timeout)


def _name_version(ref: str) -> tuple[str, int | None]:
    """``name`` or ``name@v3`` / ``name@3`` -> (name, version)."""
    name, sep, version = ref.rpartition("@")
    if sep and version.lstrip("v").isdigit():
        return name, int(version.lstrip("v"))
    return ref, None


def _model(m: ModelConfig | Mapping[str, Any] | str) -> ModelConfig:
    if isinstance(m, ModelConfig):
        return m
    if isinstance(m, str):
        return ModelConfig(name=m.split("/")[-1], model=m)
    data = dict(m)
    if "name" not in data:
        data["name"] = str(data.get("model", "")).split("/")[-1]
    try:
        return ModelConfig(**data)
    except TypeError:
        fields = sorted(ModelConfig.__dataclass_fields__)
        unknown = sorted(set(data) - set(fields))
        hint = " (keys come from the environment: use api_key_env)" if "api_key" in unknown else ""
        raise SpecError(f"model {data['name']!r}: unknown key(s) {unknown}{hint}; a model takes {fields}") from None


def _limits(max_chars: int | None, seconds: float | None) -> RenderLimits:
    from workbench.prompts import DEFAULT_MAX_CHARS, DEFAULT_RENDER_SECONDS

    if max_chars is not None and (isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1):
        raise SpecError(f"max_prompt_chars must be a positive integer, got {max_chars!r}")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0):
        raise SpecError(f"render_timeout must be a positive number of seconds, got {seconds!r}")
    return RenderLimits(
        DEFAULT_MAX_CHARS if max_chars is None else max_chars,
        DEFAULT_RENDER_SECONDS if seconds is None else float(seconds),
    )


def _metric(m: str | Mapping[str, Any] | BoundMetric) -> BoundMetric:
    if isinstance(m, BoundMetric):
        return m
    if isinstance(m, str):
        return bind(m)
    data = dict(m)
    name = data.pop("name")
    label = data.pop("label", None)
    return bind(name, data, label)


def open(path: str | os.PathLike[str] | None = None) -> Workspace:  # noqa: A001 - the public verb is wb.open()
    """Open (creating if needed) a workspace; default ``./.llmops`` or ``$LLMOPS_WORKSPACE``."""
    return Workspace(path)
