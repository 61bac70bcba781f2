"""Experiments and runs: render -> (retrieve) -> call model -> score -> store, for every cell of the grid.

A cell is (case, variant, repeat). Design choices and why:

- Everything that can fail without a model call is checked first (templates against every case,
  metric options and columns), so a typo never costs money.
- Cache lookups happen in one query for the whole grid, and litellm is imported only when some
  cell misses the cache, so a fully cached re-run takes a fraction of a second.
- Identical requests within a run (same request key) are sent once.
- A fixed pool of asyncio workers pulls cells in case-major order, so variants interleave and a
  slow model does not starve the others; per-model limits live in the gateway.
- Finished cells are buffered and written in one transaction at most ~1 s later (a connection per
  cell is 5x slower here), from a worker thread so the event loop keeps calling models. A cell's
  primary key makes a duplicate impossible; resume runs exactly the cells that are not stored.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import secrets
import threading
import time
import warnings
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from workbench import liveness
from workbench.datasets import Dataset
from workbench.errors import (
    MetricError,
    ModelError,
    ModelFatalError,
    RunInProgressError,
    SpecError,
    TemplateError,
    WorkbenchError,
)
from workbench.journal import Journal
from workbench.judge import Judge
from workbench.llm import CallResult, Gateway, ModelConfig, request_key
from workbench.metrics.registry import BOARD_COLUMNS, CELL_COLUMNS, BoundMetric, CellView, Score, check_columns
from workbench.prompts import (
    Prompt,
    RenderFailure,
    RenderLimits,
    RenderProblem,
    describe_problems,
    render_error_text,
    template_vars,
)
from workbench.store import Store, dumps, lock_timeout

if TYPE_CHECKING:
    import pandas as pd

FLUSH_SECONDS = 1.0
# a flush waits this long for the database, then spills its batch to the journal (durable) and moves on
FLUSH_WAIT = 2.0
# (cells, scores, responses, judgements) rows waiting to be written together
_Batch = tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]
FLUSH_CELLS = 2000


@dataclass(frozen=True)
class Variant:
    """One column of the grid: a prompt version x a model config (x a retrieval config)."""

    name: str
    prompt: Prompt
    model: ModelConfig
    retriever: Any | None = None  # a RetrievalConfig; see workbench.retrieval

    @property
    def hash(self) -> str:
        import hashlib

        parts = {"p": self.prompt.hash, "m": self.model.hash, "r": getattr(self.retriever, "hash", None)}
        return hashlib.sha256(dumps(parts).encode()).hexdigest()

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "hash": self.hash,
            "prompt_name": self.prompt.name,
            "prompt_hash": self.prompt.hash,
            "model_name": self.model.name,
            "model": self.model.model,
            "model_hash": self.model.hash,
            "retriever_name": getattr(self.retriever, "name", None),
            "retriever_hash": getattr(self.retriever, "hash", None),
            "corpus_hash": getattr(self.retriever, "corpus_hash", None),
        }


def variant_names(prompts: Sequence[Prompt], models: Sequence[ModelConfig], retrievers: Sequence[Any]) -> list[Variant]:
    """Cross product with readable names: the prompt name when that is unambiguous, else prompt/model[/retriever]."""
    rs: list[Any] = list(retrievers) or [None]
    short = len(models) == 1 and rs == [None]
    out = []
    for p in prompts:
        for m in models:
            for r in rs:
                name = p.name if short else "/".join([p.name, m.name] + ([r.name] if r is not None else []))
                out.append(Variant(name, p, m, r))
    return out


@dataclass
class PlannedCell:
    case_id: str
    case: dict[str, Any]
    variant: Variant
    repeat: int
    messages: list[dict[str, str]]
    key: str
    retrieved: list[dict[str, Any]] | None = None


@dataclass
class Plan:
    """What a run will do, known before any model call: cells, requests, judge calls and their cost."""

    cells: list[PlannedCell]
    n_variants: int
    n_cases: int
    repeats: int
    judge_calls: int = 0
    judge_cost_estimate: float | None = None

    def __len__(self) -> int:
        return len(self.cells)

    def summary(self) -> dict[str, Any]:
        return {
            "cells": len(self.cells),
            "variants": self.n_variants,
            "cases": self.n_cases,
            "repeats": self.repeats,
            "unique_requests": len({c.key for c in self.cells}),
            "judge_calls": self.judge_calls,
            "judge_cost_estimate": self.judge_cost_estimate,
        }

    def __repr__(self) -> str:
        s = self.summary()
        cost = s["judge_cost_estimate"]
        judge = f", {s['judge_calls']} judge calls" + (f" (~${cost:.4f})" if cost is not None else "")
        return (
            f"<Plan: {s['cells']} cells = {s['cases']} cases x {s['variants']} variants x {s['repeats']} repeat(s); "
            f"{s['unique_requests']} unique model requests{judge if s['judge_calls'] else ''}; no model called yet>"
        )

    def _repr_html_(self) -> str:
        from workbench.display import kv_html

        names = list(dict.fromkeys(c.variant.name for c in self.cells))
        return kv_html("Plan (checked, no model called yet)", {**self.summary(), "variant names": ", ".join(names)})


@dataclass
class Experiment:
    """Dataset version x variants x metrics x repeats. ``run()`` executes it; ``plan()`` checks it for free."""

    store: Store
    dataset: Dataset
    variants: list[Variant]
    metrics: list[BoundMetric] = field(default_factory=list)
    repeats: int = 1
    concurrency: int = 8
    name: str | None = None
    #: bounds on rendering each message (size of values built, total size, time); see workbench.prompts
    limits: RenderLimits = field(default_factory=RenderLimits)

    def __post_init__(self) -> None:
        if not self.variants:
            raise SpecError("an experiment needs at least one variant (a prompt and a model)")
        names = [v.name for v in self.variants]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise SpecError(f"variant names must be unique; repeated: {dup}. Name them explicitly under `variants:`")
        if not isinstance(self.repeats, int) or self.repeats < 1:
            raise SpecError(f"repeats must be an integer >= 1, got {self.repeats!r}")
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise SpecError(f"concurrency must be an integer >= 1, got {self.concurrency!r}")
        labels = [m.label for m in self.metrics]
        dup = sorted({n for n in labels if labels.count(n) > 1})
        if dup:
            raise MetricError(f"metric {dup[0]!r} appears twice; give one of them a different `label`")
        clash = sorted({lb for lb in labels if lb.endswith("_error") and lb[: -len("_error")] in labels})
        if clash:
            raise MetricError(
                f"metric label {clash[0]!r} clashes with the error column of metric {clash[0][:-6]!r} in "
                "results(); give one of them a different `label`"
            )

    def to_record(self) -> dict[str, Any]:
        """Everything needed to rebuild this experiment in another process (resume after kill -9)."""
        return {
            "name": self.name,
            "dataset": {"name": self.dataset.name, "hash": self.dataset.hash, "version": self.dataset.version},
            "variants": [
                {
                    "name": v.name,
                    "prompt": v.prompt.record(),
                    "model": v.model.record()["config"]
                    | {"name": v.model.name, "max_retries": v.model.max_retries, "retry_base": v.model.retry_base},
                    "retriever": v.retriever.model_dump(mode="json", by_alias=True)
                    if v.retriever is not None
                    else None,
                    "retriever_corpus_hash": getattr(v.retriever, "corpus_hash", None),  # content, not path
                }
                for v in self.variants
            ],
            "metrics": [
                {"name": m.definition.name, "options": _plain_options(m.options), "label": m.label}
                for m in self.metrics
            ],
            "repeats": self.repeats,
            "concurrency": self.concurrency,
            "limits": {"max_chars": self.limits.max_chars, "seconds": self.limits.seconds},
        }

    @classmethod
    def from_record(cls, store: Store, rec: dict[str, Any]) -> Experiment:
        from workbench import datasets
        from workbench.metrics.registry import bind

        ds = datasets.get(store, rec["dataset"]["name"], rec["dataset"]["hash"])
        variants = []
        for v in rec["variants"]:
            p = v["prompt"]
            m = dict(v["model"])
            model = ModelConfig(
                name=m.pop("name"),
                model=m["model"],
                params=m.get("params") or {},
                api_base=m.get("api_base"),
                api_key_env=m.get("api_key_env"),
                timeout=m.get("timeout", 120.0),
                max_concurrency=m.get("max_concurrency"),
                max_retries=m.get("max_retries", 5),
                retry_base=m.get("retry_base", 0.5),
                client=m.get("client", "auto"),
            )
            retriever = None
            if v.get("retriever"):
                from workbench.retrieval.config import RetrievalConfig

                retriever = RetrievalConfig.parse(v["retriever"], where=f"run record, variant {v['name']!r}")
                if v.get("retriever_corpus_hash"):
                    retriever = retriever.with_corpus_hash(v["retriever_corpus_hash"])
            variants.append(
                Variant(v["name"], Prompt(p["name"], p["user"], p["system"], tuple(p["few_shot"])), model, retriever)
            )
        metrics = [bind(m["name"], m["options"], m["label"]) for m in rec["metrics"]]
        limits = RenderLimits(**rec["limits"]) if rec.get("limits") else RenderLimits()
        return cls(store, ds, variants, metrics, rec["repeats"], rec["concurrency"], rec.get("name"), limits)

    # -- planning ----------------------------------------------------------------------------

    def plan(self) -> Plan:
        """Render every variant against every case and check metrics; report all problems at once."""
        cases = self.dataset.cases()
        columns = set(self.dataset.columns)
        for m in self.metrics:
            check_columns(m, columns)
        retrieved = self._retrieve(cases)
        problems: dict[tuple[str, str], list[str]] = {}
        cells: list[PlannedCell] = []
        rendered: dict[tuple[str, str], tuple[list[dict[str, str]], list[dict[str, Any]] | None]] = {}
        for case_id, case in cases:
            for v in self.variants:
                hits = retrieved.get((v.name, case_id))
                extra = None
                if v.retriever is not None:
                    extra = {"context": "\n\n".join(h["text"] for h in hits or []), "chunks": hits or []}
                try:
                    messages = v.prompt.render(template_vars(case, extra), self.limits)
                except RenderFailure as exc:  # every failing part of every variant, reported together
                    for part, problem in exc.parts:
                        problems.setdefault((v.name, f"{part}: {problem}"), []).append(case_id)
                    continue
                except Exception as exc:  # noqa: BLE001 - every template failure is collected and reported together
                    problems.setdefault((v.name, render_error_text(exc)), []).append(case_id)
                    continue
                rendered[(case_id, v.name)] = (messages, hits)
        if problems:
            report = [RenderProblem(var, prob, ids) for (var, prob), ids in problems.items()]
            raise TemplateError(describe_problems(report, sorted(columns)))
        for case_id, case in cases:
            for v in self.variants:
                messages, hits = rendered[(case_id, v.name)]
                for r in range(self.repeats):
                    cells.append(PlannedCell(case_id, case, v, r, messages, request_key(v.model, messages, r), hits))
        plan = Plan(cells, len(self.variants), len(cases), self.repeats)
        self._estimate_judges(plan)
        return plan

    def _estimate_judges(self, plan: Plan) -> None:
        """Judge calls = cells x calls per cell; cost from litellm's price table at ~4 characters a token."""
        judged = [m for m in self.metrics if m.judge is not None]
        if not judged:
            return
        from workbench.providers import call_cost

        chars = sum(len(m["content"]) for c in plan.cells for m in c.messages) / max(len(plan.cells), 1)
        total = 0.0
        known = True
        for m in judged:
            calls = m.definition.judge_calls * len(plan.cells)
            plan.judge_calls += calls
            cost = call_cost(m.judge.model, int(chars / 4) + 200, 150)  # litellm's price table, read as data
            if cost is None:  # models missing from the price table have no estimate
                known = False
            else:
                total += cost * calls
        plan.judge_cost_estimate = total if known else None

    def _retrieve(self, cases: list[tuple[str, dict[str, Any]]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
        out: dict[tuple[str, str], list[dict[str, Any]]] = {}
        by_config: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for v in self.variants:
            if v.retriever is None:
                continue
            from workbench.retrieval.grid import retrieve_for_cases

            if v.retriever.hash not in by_config:  # variants sharing a retriever search once
                by_config[v.retriever.hash] = retrieve_for_cases(self.store, v.retriever, cases)
            for case_id, hits in by_config[v.retriever.hash].items():
                out[(v.name, case_id)] = hits
        return out

    # -- running -----------------------------------------------------------------------------

    def _create_run(self, plan: Plan | None = None) -> tuple[Run, Plan]:
        plan = self.plan() if plan is None else plan
        from workbench.params import refuse_secrets

        record = self.to_record()
        for v in record["variants"]:  # defence in depth: nothing credential-shaped reaches runs.spec
            refuse_secrets({"model": v["model"], "retriever": v["retriever"]}, f"variant {v['name']!r}", "variant")
        refuse_secrets(record["metrics"], "metrics", "metrics")
        run_id = time.strftime("%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(3)
        self.store.create_run(
            run_id,
            self.name,
            self.dataset.name,
            self.dataset.hash,
            record,
            self.repeats,
            len(plan),
            [v.record() for v in self.variants],
            _unique(v.model.record() for v in self.variants),
            _unique(v.prompt.record() for v in self.variants),
        )
        return Run(self.store, run_id, self), plan

    def run(self, progress: Any = True) -> Run:
        """Create a run and execute every cell. Returns the Run, also when interrupted (then resumable)."""
        plan = self.plan()  # before the database is opened: retrieval may take a while
        with self.store.session():  # create, claim and read the cache in one open (each open costs ~25-50 ms)
            run, _ = self._create_run(plan)
            run._claim()
            try:
                cache = self.store.start_execution(run.run_id, list({c.key for c in plan.cells}))
            except BaseException:
                liveness.ACTIVE.discard(run.run_id)
                raise
        run._execute(plan.cells, progress=progress, started=cache)
        return run

    async def arun(self, progress: Any = True) -> Run:
        """Async form of ``run`` for code that already has an event loop."""
        run, plan = self._create_run()
        await asyncio.to_thread(run._claim)
        await _Executor(run, plan.cells, progress=progress, replace=False).execute()
        return run


def _plain_options(options: Any) -> dict[str, Any]:
    """Metric options as JSON: a ModelConfig judge becomes its constructor arguments (never a key)."""
    return {k: v.options() if isinstance(v, ModelConfig) else v for k, v in dict(options).items()}


def _unique(records: Any) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for r in records:
        seen.setdefault(r["name"] + ":" + r["hash"], r)
    return list(seen.values())


@dataclass
class RunSummary:
    cells: int = 0
    done: int = 0
    cached: int = 0
    failed: int = 0
    model_calls: int = 0
    retries: int = 0
    tokens: int = 0
    cost: float = 0.0
    seconds: float = 0.0
    status: str = "created"
    batch_fallbacks: int = 0  # batch scoring attempts that failed and fell back to scoring cell by cell
    clients: dict[str, str] = field(default_factory=dict)  # model name -> route that served it (openai/litellm/local)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Run:
    """A stored run: results, leaderboard, resume. Load one with ``ws.run_by_id(run_id)``."""

    def __init__(self, store: Store, run_id: str, experiment: Experiment | None = None) -> None:
        self.store = store
        self.run_id = run_id
        self._experiment = experiment
        self.last = RunSummary()

    def __repr__(self) -> str:
        return f"Run({self.run_id!r}, status={self.status!r})"

    @property
    def info(self) -> dict[str, Any]:
        return self.store.get_run(self.run_id)

    @property
    def status(self) -> str:
        return str(self.info["status"])

    @property
    def experiment(self) -> Experiment:
        if self._experiment is None:
            self._experiment = Experiment.from_record(self.store, self.info["spec"])
        return self._experiment

    # -- execution ---------------------------------------------------------------------------

    def resume(self, progress: Any = True, retry_failed: bool = False, force: bool = False) -> Run:
        """Run only the cells that are not stored (and, with ``retry_failed``, those that failed).

        Refused (RunInProgressError, naming the process) while another live process executes the run;
        ``force`` takes over a run whose owner on another host cannot be checked but is known to be gone.
        """
        plan = self.experiment.plan()
        self._claim(force)
        try:
            stored = self.store.stored_cells(self.run_id, include_failed=not retry_failed)
        except BaseException:
            liveness.ACTIVE.discard(self.run_id)
            raise
        todo = [c for c in plan.cells if (c.case_id, c.variant.name, c.repeat) not in stored]
        self._execute(todo, progress=progress, replace=retry_failed)
        return self

    def _claim(self, force: bool = False) -> None:
        """Record this process as the run's owner (refused while another live one executes it)."""
        if self.run_id in liveness.ACTIVE:
            raise RunInProgressError(
                f"run {self.run_id} is already executing in this process ({liveness.Owner.me().describe()}); "
                "wait for it to finish"
            )
        self.store.claim_run(self.run_id, liveness.Owner.me(), force=force)
        liveness.ACTIVE.add(self.run_id)

    def failed_variants(self, max_failure_rate: float | None = None) -> list[dict[str, Any]]:
        """Variants whose failure rate passes ``max_failure_rate`` (default: only those where every cell failed).

        Each entry names the variant, its counts and its most frequent error, so a summary can say why.
        """
        out = []
        for v in self.store.variant_failures(self.run_id):
            if v["n"] == 0 or v["failed"] == 0:
                continue
            rate = v["failed"] / v["n"]
            if (rate > max_failure_rate) if max_failure_rate is not None else v["failed"] == v["n"]:
                out.append(v | {"rate": rate})
        return out

    def _execute(
        self, cells: list[PlannedCell], progress: Any, replace: bool = False,
        started: dict[str, tuple[Any, ...]] | None = None,
    ) -> None:
        """Execute cells of a run this process has claimed; the claim ends with the execution.

        ``started``: the cached responses already read by ``store.start_execution`` (the run is marked running).
        """
        try:
            executor = _Executor(self, cells, progress=progress, replace=replace)
            executor.started = started
            _run_coroutine(executor.execute, executor.cancel)
        finally:
            liveness.ACTIVE.discard(self.run_id)

    # -- results -----------------------------------------------------------------------------

    def _metric_columns(self) -> dict[str, str]:
        """Metric label -> its column in results()/leaderboard() (see registry.RESERVED_COLUMNS).

        A built-in that is a raw column under its own name (``cost``) is left out: the raw column is it.
        A label that clashes otherwise (only in runs stored before the rule) gets a ``_metric`` suffix.
        """
        from workbench.metrics.registry import RESERVED_COLUMNS, get

        out: dict[str, str] = {}
        for m in self.info["spec"]["metrics"]:
            label = m["label"]
            try:
                shares = get(m["name"]).column == label
            except MetricError:  # a plugin that is not installed here: its stored scores still show
                shares = False
            if not shares:
                clashes = label in RESERVED_COLUMNS or label.startswith("human_")
                out[label] = f"{label}_metric" if clashes else label
        return out

    def results(self) -> pd.DataFrame:
        """One row per cell: case, variant, repeat, prompt, output, one column per metric, cost, latency, error."""
        import pandas as pd

        cells, scores = self.store.results(self.run_id)
        columns = self._metric_columns()
        scores = scores[scores["metric"].isin(list(columns))].assign(metric=lambda f: f["metric"].map(columns))
        labels = list(columns.values())
        cells["messages"] = [json.loads(m) if isinstance(m, str) else m for m in cells["messages"]]
        cells["prompt"] = [
            next((x["content"] for x in reversed(m or []) if x["role"] == "user"), None) for m in cells["messages"]
        ]
        cells["retrieved"] = [json.loads(r) if isinstance(r, str) else r for r in cells["retrieved"]]
        keys = ["case_id", "variant", "repeat"]
        if len(scores):
            wide = scores.pivot_table(index=keys, columns="metric", values="value", aggfunc="first", dropna=False)
            wide = wide.reindex(columns=[lb for lb in labels if lb in wide.columns])
            errs = scores[scores["error"].notna()]
            out = cells.merge(wide.reset_index(), on=keys, how="left")
            if len(errs):
                err_wide = errs.pivot_table(index=keys, columns="metric", values="error", aggfunc="first")
                err_wide.columns = [f"{c}_error" for c in err_wide.columns]
                out = out.merge(err_wide.reset_index(), on=keys, how="left")
        else:
            out = cells
        for lb in labels:
            if lb not in out.columns:
                out[lb] = pd.Series(dtype="float64")
        from workbench import feedback

        human = feedback.per_cell(self.store, self.run_id)
        if len(human):
            out = out.merge(human, on=keys, how="left")
        front = [*CELL_COLUMNS[:5], *labels, *CELL_COLUMNS[5:]]  # case, variant, repeat, prompt, output first
        rest = [c for c in out.columns if c not in front and c not in ("variant_position", "case_position")]
        from workbench.display import table

        return table(out[front + rest].reset_index(drop=True))

    def replay(self, use_cache: bool = True, retry_failed_judgements: bool = False, progress: bool = False) -> Any:
        """Re-execute this run's stored cells as a new run; returns (new run, ReplayReport) (workbench.replay)."""
        from workbench import replay

        return replay.replay(self, use_cache, retry_failed_judgements, progress)

    def archive(self, path: Any) -> Any:
        """Write this run to one zip file another workspace can import (see workbench.archive); returns its path."""
        from workbench import archive

        return archive.export_run(self.store, self.run_id, path)

    def judgements(self) -> pd.DataFrame:
        """Every judge prompt and response behind the judge metrics' scores, per cell and metric."""
        return self.store.judgements(self.run_id)

    def leaderboard(self) -> pd.DataFrame:
        """Per variant: mean of every metric, n, errors, cost, p50/p95 latency, in grid order."""
        board = self.store.leaderboard(self.run_id)
        means = self.store.score_means(self.run_id)
        columns = self._metric_columns()
        means = means[means["metric"].isin(list(columns))].assign(metric=lambda f: f["metric"].map(columns))
        labels = list(columns.values())
        if len(means):
            wide = means.pivot_table(index="variant", columns="metric", values="mean", aggfunc="first")
            board = board.merge(wide.reset_index(), on="variant", how="left")
        for lb in labels:
            if lb not in board.columns:
                board[lb] = float("nan")
        board["cost_per_1k"] = board["cost"] / board["n"].where(board["n"] > 0) * 1000
        cols = ["variant", *labels, *BOARD_COLUMNS]
        from workbench import feedback

        human = feedback.per_cell(self.store, self.run_id)
        if len(human):
            means = human.groupby("variant")[["human_thumbs", "human_rating"]].mean().dropna(axis=1, how="all")
            board = board.merge(means.reset_index(), on="variant", how="left")
            cols[1 + len(labels) : 1 + len(labels)] = list(means.columns)
        from workbench.display import table

        return table(board[cols].reset_index(drop=True))

    def add_feedback(
        self,
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
        """Record a human rating of one cell (see workbench.feedback)."""
        from workbench import feedback

        return feedback.add(
            self.store,
            self.run_id,
            case_id,
            variant,
            repeat=repeat,
            thumbs=thumbs,
            rating=rating,
            label=label,
            comment=comment,
            author=author,
        )

    def feedback(self) -> pd.DataFrame:
        """Every feedback row of this run."""
        return self.store.feedback(self.run_id)

    def export(self, path: Any, variant: str | None = None, **options: Any) -> Any:
        """Write a variant (default: the winner on ``metric=``) as a deployable bundle; see workbench.bundles."""
        from workbench import bundles

        return bundles.export(self, path, variant, **options)

    def grid(self, **view: Any) -> Any:
        """Side-by-side EvalGrid widget of this run; ``view`` presets filters/sort/baseline (see ViewState)."""
        from workbench.widgets.grid import EvalGrid

        return EvalGrid(self.store, [self.run_id], **view)

    # -- analysis (workbench.analysis) -------------------------------------------------------

    def compare(
        self,
        a: str,
        b: str,
        metric: str,
        confidence: float = 0.95,
        method: Literal["permutation", "bootstrap"] = "permutation",
    ) -> Any:
        """Paired comparison of variant ``a`` against ``b``: difference, CI and p-value."""
        from workbench import analysis

        return analysis.compare(self, a, b, metric, confidence=confidence, method=method)

    def winner(
        self, metric: str, constraints: Any = None, higher_is_better: bool | None = None, alpha: float = 0.05
    ) -> Any:
        """The best variant meeting the constraints (e.g. ``["faithfulness>=0.8", "latency_p95_ms<=2000"]``)."""
        from workbench import analysis

        return analysis.winner(self, metric, constraints, higher_is_better=higher_is_better, alpha=alpha)

    def confidence_intervals(self, metric: str, confidence: float = 0.95) -> pd.DataFrame:
        """Per variant: mean of ``metric`` with a bootstrap confidence interval."""
        from workbench import analysis

        return analysis.variant_cis(self, metric, confidence=confidence)

    def charts(self, metric: str | None = None, constraints: Any = None) -> Any:
        """Leaderboard charts: means with CIs, score distributions, cost/latency vs quality (Pareto), the winner."""
        from workbench.widgets.charts import Charts

        return Charts(self, metric, constraints)

    def agreement(self, metric: str, human: str = "rating") -> dict[str, Any]:
        """Judge-human agreement (Cohen's kappa, Spearman) on cells with both a score and feedback."""
        from workbench import analysis

        return analysis.agreement(self, metric, human)

    def summary(self) -> dict[str, Any]:
        """Counts as stored (whichever process ran the cells) plus what this process did last."""
        info = self.info
        board = self.leaderboard()
        means = self.store.score_means(self.run_id)
        return {
            "metric_errors": {str(k): int(v) for k, v in means.groupby("metric")["errors"].sum().items() if v},
            "run_id": self.run_id,
            "status": info["status"],
            "cells": int(info["n_cells"]),
            "stored": int(board["n"].sum()),
            "cached": self.last.cached,
            "failed": int(board["errors"].sum()),
            "model_calls": self.last.model_calls,
            "retries": self.last.retries,
            "clients": dict(self.last.clients),
            "cost": float(board["cost"].sum()),
            "seconds": round(self.last.seconds, 3),
            "leaderboard": json.loads(board.to_json(orient="records")),
        }

    def _repr_html_(self) -> str:
        import html

        info = self.info
        board = self.leaderboard()
        stored = int(board["n"].sum())
        status = html.escape(str(info["status"]))
        head = f"<b>Run {html.escape(self.run_id)}</b> — {status}, {stored}/{info['n_cells']} cells stored"
        if info["status"] in ("interrupted", "incomplete", "failed") and stored < int(info["n_cells"]):
            head += f" (resume: <code>%llmops resume {html.escape(self.run_id)}</code> or <code>run.resume()</code>)"
        return head + "<br>" + (board._repr_html_() or "")


# ---------------------------------------------------------------------------------------------
# execution engine


def _run_coroutine(factory: Callable[[], Coroutine[Any, Any, None]], cancel: Callable[[], None]) -> None:
    """Run a coroutine to completion from sync code, also inside Jupyter's running event loop."""
    try:
        asyncio.get_running_loop()
        in_loop = True
    except RuntimeError:
        in_loop = False
    if not in_loop:  # run outside the except block: errors of the run must not chain this RuntimeError
        asyncio.run(factory())
        return
    # A loop is running in this thread (a notebook kernel): run ours in a worker thread.
    # Waiting uses an Event, not Thread.join: a KeyboardInterrupt inside join() can leave the thread marked
    # as finished while it still runs (CPython < 3.13), and the run's final write would be lost.
    box: dict[str, BaseException] = {}
    done = threading.Event()

    def target() -> None:
        try:
            asyncio.run(factory())
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread below
            box["error"] = exc
        finally:
            done.set()

    context = contextvars.copy_context()  # the caller's settings (e.g. the resume hint) reach the run's thread
    threading.Thread(target=context.run, args=(target,), name="workbench-run", daemon=True).start()
    while True:
        try:
            if done.wait(0.1):
                break
        except KeyboardInterrupt:  # the notebook's stop button: stop taking cells, store what finished
            cancel()
    if "error" in box:
        raise box["error"]


class _Executor:
    def __init__(
        self, run: Run, cells: list[PlannedCell], progress: Any, replace: bool, use_cache: bool = True
    ) -> None:
        self.use_cache = use_cache  # False: every cell and judge prompt is sent again (replay --no-cache)
        self.started: dict[str, tuple[Any, ...]] | None = None  # start_execution already done by the caller
        self.run = run
        self.store = run.store
        self.cells = cells
        self.progress = progress
        self.replace = replace
        self.summary = RunSummary(cells=len(cells))
        self.metrics = run.experiment.metrics
        self.sync_metrics = [m for m in self.metrics if not m.definition.is_async]
        self.async_metrics = [m for m in self.metrics if m.definition.is_async]
        self.buffer_cells: list[dict[str, Any]] = []
        self.buffer_scores: list[dict[str, Any]] = []
        self.buffer_responses: list[dict[str, Any]] = []
        self.buffer_judgements: list[dict[str, Any]] = []
        self.spilled: list[dict[str, Any]] = []  # batches in the journal that the database does not have yet
        self.journal: Journal | None = None
        self.lock = threading.Lock()
        self.fatal: ModelFatalError | None = None
        self.gateway = Gateway(run.experiment.concurrency)
        self.judges: dict[str, Judge] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[Any] | None = None
        self._cancelled = False
        from workbench.progress import Tally

        variants = list(dict.fromkeys(c.variant.name for c in cells))
        self.tally = Tally(variants, [m.label for m in self.metrics])
        self.reporter: Any = None
        self.clock: Any = None
        self._started = time.perf_counter()

    def cancel(self) -> None:
        """Called from another thread (KeyboardInterrupt in a notebook)."""
        self._cancelled = True  # workers stop taking cells even if the loop is not reachable below
        if self._loop is not None and self._main is not None:
            try:
                self._loop.call_soon_threadsafe(self._main.cancel)
            except RuntimeError:  # the loop already closed: the run has finished on its own
                pass

    # -- scoring -------------------------------------------------------------------------------

    @staticmethod
    def _view(cell: PlannedCell, res: tuple[Any, ...]) -> CellView:
        return CellView(
            case=cell.case,
            output=res[0] or "",
            messages=cell.messages,
            retrieved=cell.retrieved,
            latency_ms=res[4],
            cost=res[3],
            tokens=(res[1] or 0) + (res[2] or 0),
        )

    @staticmethod
    def _score_row(cell: PlannedCell, m: BoundMetric, raw: Any, error: str | None) -> dict[str, Any]:
        value: Any = None
        detail: Any = None
        if error is None:
            if isinstance(raw, Score):
                value, detail = raw.value, raw.detail
            else:
                value = raw
            try:
                value = None if value is None else float(value)
            except (TypeError, ValueError):
                error, value = f"metric returned {type(value).__name__}, not a number: {value!r:.80}", None
        return {
            "case_id": cell.case_id,
            "variant": cell.variant.name,
            "repeat": cell.repeat,
            "metric": m.label,
            "value": value,
            "detail": dumps(detail) if detail is not None else None,
            "error": error,
        }

    def _score_sync(self, cell: PlannedCell, res: tuple[Any, ...]) -> list[dict[str, Any]]:
        return self._score_sync_many([(cell, res)])[0]

    def _score_sync_many(self, items: list[tuple[PlannedCell, tuple[Any, ...]]]) -> list[list[dict[str, Any]]]:
        """Cheap metrics for many cells; (output, expected) metrics with a batch form run vectorised."""
        views = [self._view(cell, res) for cell, res in items]
        rows: list[list[dict[str, Any]]] = [[] for _ in items]
        for m in self.sync_metrics:
            d = m.definition
            done: set[int] = set()
            if d.batch is not None and len(items) > 1 and d.injected == ("output",) and d.columns == ("expected",):
                column = m.options.get("expected", "expected")
                idx = [i for i, v in enumerate(views) if isinstance(v.case.get(column), str)]
                options = {k: m.options[k] for k in (*d.required_options, *d.optional_options) if k in m.options}
                try:
                    values = d.batch([views[i].output for i in idx], [views[i].case[column] for i in idx], **options)
                    if len(values) != len(idx):
                        raise ValueError(f"batch returned {len(values)} values for {len(idx)} cells")
                except Exception as exc:  # noqa: BLE001 - the per-cell path below scores (and reports) each cell
                    # never silently: a broken batch form would only show up as a slow run
                    self.summary.batch_fallbacks += 1
                    warnings.warn(
                        f"metric {m.label!r}: batch scoring failed ({type(exc).__name__}: {exc}); scoring "
                        f"{len(idx)} cells one by one instead",
                        stacklevel=2,
                    )
                    values, idx = [], []
                for i, value in zip(idx, values):
                    rows[i].append(self._score_row(items[i][0], m, value, None))
                    done.add(i)
            for i, (cell, _) in enumerate(items):
                if i in done:
                    continue
                try:
                    rows[i].append(self._score_row(cell, m, d.fn(**m.call_kwargs(views[i])), None))
                except Exception as exc:  # noqa: BLE001 - a failing metric records its error for this cell only
                    rows[i].append(self._score_row(cell, m, None, f"{type(exc).__name__}: {exc}"))
        return rows

    def _judge_for(self, m: BoundMetric) -> Judge:
        key = m.judge.hash
        judge = self.judges.get(key)
        if judge is None:
            judge = self.judges[key] = Judge(m.judge, self.gateway, {}, self._on_judge_response)
        return judge.bind(m.label)

    def _on_judge_response(self, response: dict[str, Any]) -> None:
        s = self.summary
        s.tokens += (response["prompt_tokens"] or 0) + (response["completion_tokens"] or 0)
        s.cost += response["cost"] or 0.0
        with self.lock:
            self.buffer_responses.append(response)

    async def _score_async(
        self, cell: PlannedCell, res: tuple[Any, ...]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Judge (async) metrics of one cell: (score rows, judge-call rows), stored with the cell."""
        view = self._view(cell, res)
        calls: list[dict[str, Any]] = []

        async def one(m: BoundMetric) -> dict[str, Any]:
            judge = self._judge_for(m) if m.definition.needs_judge else None
            try:
                row = self._score_row(cell, m, await m.definition.fn(**m.call_kwargs(view, judge)), None)
            except ModelFatalError:
                raise
            except Exception as exc:  # noqa: BLE001 - a failing metric records its error for this cell only
                row = self._score_row(cell, m, None, f"{type(exc).__name__}: {exc}")
            if judge is not None:
                calls.extend(judge.rows(cell.case_id, cell.variant.name, cell.repeat))
            return row

        rows = list(await asyncio.gather(*(one(m) for m in self.async_metrics)))
        return rows, calls

    def _record(
        self,
        cell: PlannedCell,
        res: tuple[Any, ...] | None,
        cached: bool,
        scores: list[dict[str, Any]],
        error: str | None = None,
        error_kind: str | None = None,
        judgements: list[dict[str, Any]] | None = None,
    ) -> None:
        """Buffer one finished cell with its scores and judge calls: they always land in one batch.

        res = (output, prompt_tokens, completion_tokens, cost, latency_ms[, served_model, system_fingerprint]).
        """
        record = {
            "case_id": cell.case_id,
            "variant": cell.variant.name,
            "repeat": cell.repeat,
            "request_key": cell.key,
            "messages": dumps(cell.messages),
            "output": res[0] if res else None,
            "error": error,
            "error_kind": error_kind,
            "latency_ms": res[4] if res else None,
            "prompt_tokens": res[1] if res else None,
            "completion_tokens": res[2] if res else None,
            "cost": res[3] if res else None,
            "cached": cached,
            "retrieved": dumps(cell.retrieved) if cell.retrieved is not None else None,
            # a cache hit carries the ids of the response it reuses: what served the original call
            "served_model": res[5] if res and len(res) > 5 else None,
            "system_fingerprint": res[6] if res and len(res) > 6 else None,
        }
        with self.lock:
            self.buffer_cells.append(record)
            self.buffer_scores.extend(scores)
            if judgements:
                self.buffer_judgements.extend(judgements)
        self.tally.add(record, scores)
        s = self.summary
        s.done += 1
        s.cached += cached
        s.failed += error is not None

    async def _record_cached(self, items: list[tuple[PlannedCell, tuple[Any, ...]]]) -> None:
        for (cell, hit), scores in zip(items, self._score_sync_many(items)):
            self._record(cell, hit, True, scores)
        if len(self.buffer_cells) >= FLUSH_CELLS:
            await self._flush_quietly()

    async def _finish(self, cell: PlannedCell, res: tuple[Any, ...], cached: bool) -> None:
        scores = self._score_sync(cell, res)
        judgements: list[dict[str, Any]] = []
        if self.async_metrics:
            judged, judgements = await self._score_async(cell, res)
            scores += judged
        self._record(cell, res, cached, scores, judgements=judgements)

    # -- buffering and durable writes ----------------------------------------------------------

    def _take(self) -> _Batch:
        with self.lock:
            batch = (self.buffer_cells, self.buffer_scores, self.buffer_responses, self.buffer_judgements)
            self.buffer_cells, self.buffer_scores, self.buffer_responses, self.buffer_judgements = [], [], [], []
        return batch

    def _put_back(self, batch: _Batch) -> None:
        """A write failed: the batch goes back in front of what arrived since, to be written next time."""
        with self.lock:
            self.buffer_cells = batch[0] + self.buffer_cells
            self.buffer_scores = batch[1] + self.buffer_scores
            self.buffer_responses = batch[2] + self.buffer_responses
            self.buffer_judgements = batch[3] + self.buffer_judgements

    def _as_record(self, batch: _Batch) -> dict[str, Any]:
        cells, scores, responses, judgements = batch
        return {
            "kind": "batch",
            "run_id": self.run.run_id,
            "replace": self.replace,
            "cells": cells,
            "scores": scores,
            "responses": responses,
            "judgements": judgements,
        }

    def flush(self, wait: float | None = None) -> None:
        """Write finished cells and paid responses; if the database stays busy, spill them to the journal.

        The batch is in the journal (fsync'ed) before this raises, so a kill -9 while another process holds
        the workspace loses nothing that was flushed; the spilled batches are written with the next batch.
        """
        batch = self._take()
        record = self._as_record(batch) if any(batch) else None
        batches = self.spilled + ([record] if record else [])
        if not batches:
            return
        try:
            wait = min(FLUSH_WAIT, lock_timeout()) if wait is None else wait
            self.store.write_batches(self.run.run_id, batches, timeout=wait)
        except BaseException:
            if record is not None:
                try:
                    self._spill(record)
                except OSError:
                    self._put_back(batch)  # no journal either: keep it in memory, never drop it
            raise
        if self.spilled:
            self.spilled = []
            if self.journal is not None:
                self.journal.clear()

    def _spill(self, record: dict[str, Any]) -> None:
        if self.journal is None:
            self.journal = Journal(self.store.artifacts, self.run.run_id)
        self.journal.append(record)
        self.spilled.append(record)

    async def _flusher(self, stop: asyncio.Event) -> None:
        warned = False
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), FLUSH_SECONDS)
            except asyncio.TimeoutError:
                pass
            if self.journal is not None:
                self.journal.beat()
            try:
                await asyncio.to_thread(self.flush)
            except WorkbenchError as exc:  # e.g. another process holds the workspace: journaled, try again
                if not warned:
                    warned = True
                    where = f" (kept in {self.journal.path})" if self.journal is not None else ""
                    warnings.warn(
                        f"run {self.run.run_id}: could not write finished cells yet{where}: {exc}; will retry",
                        stacklevel=2,
                    )
            self._report()

    async def _flush_quietly(self) -> None:
        try:
            await asyncio.to_thread(self.flush)
        except WorkbenchError:  # journaled; the flusher or the final write stores it
            pass

    def snapshot(self, status: str = "running") -> Any:
        from workbench.progress import Snapshot

        s = self.summary
        return Snapshot(
            self.run.run_id,
            s.cells,
            s.done,
            s.cached,
            s.failed,
            s.tokens,
            s.cost,
            time.perf_counter() - self._started,
            self.clock.eta(s.done) if self.clock is not None else None,
            self.tally.board(),
            status,
        )

    def _report(self, status: str = "running") -> None:
        if self.reporter is None:
            return
        snap = self.snapshot(status)
        try:
            self.reporter.close(snap) if status != "running" else self.reporter.update(snap)
        except Exception as exc:  # noqa: BLE001 - a broken display must never stop a paid run
            self.reporter = None
            warnings.warn(f"progress display stopped: {type(exc).__name__}: {exc}", stacklevel=2)

    # -- the run -----------------------------------------------------------------------------

    async def execute(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._main = asyncio.current_task()
        started = self._started = time.perf_counter()
        run_id = self.run.run_id
        s = self.summary
        status = "completed"
        try:
            try:  # the journal's mtime is the run's heartbeat; it holds batches only while the database is busy
                self.journal = Journal(self.store.artifacts, run_id)
            except OSError:
                self.journal = None
            keys = list({c.key for c in self.cells})
            if self.started is not None and self.use_cache:
                cache = self.started
            else:
                cache = await asyncio.to_thread(self.store.start_execution, run_id, keys if self.use_cache else [])
            judge_models = sorted({m.judge.model for m in self.metrics if m.judge is not None and self.use_cache})
            if judge_models:
                judge_cache = await asyncio.to_thread(self.store.responses_for_models, judge_models)
                for m in self.metrics:
                    if m.judge is not None:
                        self._judge_for(m).cache.update(judge_cache)
            groups: dict[str, list[PlannedCell]] = {}
            hits: list[tuple[PlannedCell, tuple[Any, ...]]] = []
            fast: list[tuple[PlannedCell, tuple[Any, ...]]] = []
            for cell in self.cells:
                hit = cache.get(cell.key)
                if hit is None:
                    groups.setdefault(cell.key, []).append(cell)
                elif self.async_metrics:
                    hits.append((cell, hit))
                else:  # fast path: cached cells with only cheap metrics are scored in batches, no task each
                    fast.append((cell, hit))
                    if len(fast) >= FLUSH_CELLS:  # bounded batches keep memory flat
                        await self._record_cached(fast)
                        fast = []
            if fast:
                await self._record_cached(fast)
            self._start_reporting()  # shown at once; the ETA's clock starts at the first tick with finished cells
            # the model clients' imports (litellm: seconds) happen here, not inside the first calls
            routes = {g[0].variant.model.route for g in groups.values()}
            if "litellm" in routes:
                from workbench.llm import litellm_module

                await asyncio.to_thread(litellm_module)
            if "openai" in routes:
                import importlib

                await asyncio.to_thread(importlib.import_module, "openai")
            if groups or hits:
                stop = asyncio.Event()
                flusher = asyncio.create_task(self._flusher(stop))
                queue: list[Any] = [("hit", c, h) for c, h in hits] + [("call", g) for g in groups.values()]
                queue.reverse()  # pop() from the end keeps case-major order
                workers = [
                    asyncio.create_task(self._worker(queue))
                    for _ in range(min(self.run.experiment.concurrency, len(queue)))
                ]
                try:
                    await asyncio.gather(*workers)
                finally:
                    for w in workers:
                        w.cancel()
                    await asyncio.gather(*workers, return_exceptions=True)
                    stop.set()
                    await asyncio.gather(flusher, return_exceptions=True)
            if self.fatal is not None:
                status = "failed"
        except (asyncio.CancelledError, KeyboardInterrupt):
            status = "interrupted"
        finally:
            s.model_calls = self.gateway.stats.calls
            s.retries = self.gateway.stats.retries
            s.clients = dict(self.gateway.routes)
            stored, n_cells, status = self._final_write(status)
            s.seconds = time.perf_counter() - started
            s.status = status
            self._report(status)
            self.run.last = s
            try:
                await self.gateway.aclose()  # HTTP connections; asyncio.run would close them with the loop anyway
            except Exception:  # noqa: BLE001 - every cell is stored by now; a failing socket close must not hide that
                pass
        if status == "interrupted":
            from workbench.progress import RESUME_HINT

            # a plain notice, not a warning: nothing went wrong, and a warning is attributed to asyncio's code
            print(
                f"run {run_id} interrupted: {stored}/{n_cells} cells stored. "
                f"Resume it with {RESUME_HINT.get().format(run_id=run_id)}.",
                flush=True,
            )
        if self.fatal is not None:
            raise ModelFatalError(
                f"{self.fatal} Run {run_id} stopped: {stored}/{n_cells} cells stored; after fixing it, "
                f"`llmops resume {run_id}` (or run.resume()) runs only the missing cells."
            ) from self.fatal

    def _start_reporting(self) -> None:
        from workbench.progress import Clock, make_reporter

        self.clock = Clock(len(self.cells), self.summary.done)
        if self.progress and self.cells and self.reporter is None:
            self.reporter = make_reporter(self.progress, self.snapshot())
    def _final_write(self, status: str) -> tuple[int, int, str]:
        """The last batches and the final status in one transaction; if the workspace stays locked past the
        lock timeout, they go to the journal with the status, to be stored at the next open."""
        batch = self._take()
        record = self._as_record(batch)
        try:
            try:
                stored, n_cells, status = self.store.finish_run(
                    self.run.run_id, status, [*self.spilled, record], wait=None
                )
            except WorkbenchError as exc:
                self._spill(record)
                assert self.journal is not None
                self.journal.append({"kind": "finish", "run_id": self.run.run_id, "status": status})
                warnings.warn(
                    f"run {self.run.run_id}: the workspace stayed busy ({exc}). Every finished cell and paid response "
                    f"is saved in {self.journal.path} and is stored the next time the workspace is opened.",
                    stacklevel=2,
                )
                return self.summary.done, len(self.cells), status
            self.spilled = []
            if self.journal is not None:
                self.journal.clear()
            return stored, n_cells, status
        finally:
            if self.journal is not None:
                self.journal.close()

    async def _worker(self, queue: list[Any]) -> None:
        while queue and self.fatal is None and not self._cancelled:
            item = queue.pop()
            try:
                if item[0] == "hit":
                    await self._finish(item[1], item[2], cached=True)
                else:
                    await self._call(item[1])
            except ModelFatalError as exc:  # from the model or from a judge: stop the run
                if self.fatal is None:
                    self.fatal = exc
                return
            if len(self.buffer_cells) >= FLUSH_CELLS:
                await self._flush_quietly()

    async def _call(self, group: list[PlannedCell]) -> None:
        s = self.summary
        first = group[0]
        try:
            result: CallResult = await self.gateway.complete(first.variant.model, first.messages)
        except ModelFatalError:
            raise
        except ModelError as exc:
            for cell in group:
                self._record(cell, None, False, [], error=str(exc), error_kind="model")
            return
        except WorkbenchError as exc:
            for cell in group:
                self._record(cell, None, False, [], error=str(exc), error_kind=type(exc).__name__)
            return
        res = (
            result.output,
            result.prompt_tokens,
            result.completion_tokens,
            result.cost,
            result.latency_ms,
            result.served_model,
            result.system_fingerprint,
        )
        with self.lock:
            self.buffer_responses.append(
                {
                    "request_key": first.key,
                    "model": first.variant.model.model,
                    "output": result.output,
                    "prompt_tokens": result.prompt_tokens,
                    "completion_tokens": result.completion_tokens,
                    "cost": result.cost,
                    "latency_ms": result.latency_ms,
                    "served_model": result.served_model,
                    "system_fingerprint": result.system_fingerprint,
                }
            )
        s.tokens += (result.prompt_tokens or 0) + (result.completion_tokens or 0)
        s.cost += result.cost or 0.0
        for i, cell in enumerate(group):
            await self._finish(cell, res, cached=i > 0)
