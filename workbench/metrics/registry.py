"""Metric registry: built-ins, user functions (``@metric``) and plugins share one table.

A metric is a plain function. Its parameters say what it needs, so users write
``def brevity(output: str) -> float`` and nothing else:

- injected names: ``output``, ``case`` (the whole dataset row), ``messages`` (rendered chat),
  ``retrieved`` (list of chunk dicts), ``latency_ms``, ``cost``, ``tokens``;
- column names: ``expected``, ``gold``, ``context``, ``question`` receive the value of the
  dataset column named by the option of the same name (default: a column of that name);
- ``judge``: the metric calls an LLM judge. The spec's ``judge`` option (a litellm model string or
  dict, default ``$LLMOPS_JUDGE_MODEL``) is checked at bind time and the runner passes a
  :class:`workbench.judge.Judge`; such metrics are ``async def`` and say ``judge_calls`` per cell;
- any other parameter is an option the spec must (or, with a default, may) give.

It returns a float, a bool, ``None`` (not applicable) or a :class:`Score` carrying an explanation.
A metric that raises records its error for that cell only; the run goes on.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from workbench.errors import MetricError

INJECTED = ("output", "case", "messages", "retrieved", "latency_ms", "cost", "tokens")
COLUMN_OPTIONS = ("expected", "gold", "context", "question")

# The naming rule for result tables: a metric's column is its label, and these raw columns of
# ``Run.results()`` (per cell) and ``Run.leaderboard()`` / winner tables (per variant) are reserved, as are
# ``human_*`` (feedback) and ``<label>_error``. A metric labelled like one of them would give two columns of
# one name, so it is refused, except a built-in that *is* that raw column (``cost``), which shares it.
CELL_COLUMNS = (  # in results() order; metric columns go after "output"
    "case_id",
    "variant",
    "repeat",
    "prompt",
    "output",
    "error",
    "latency_ms",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "cached",
    "retrieved",
    "messages",
    "error_kind",
    "request_key",
)
BOARD_COLUMNS = ("n", "errors", "cached", "cost", "cost_per_1k", "tokens", "latency_p50_ms", "latency_p95_ms")
RESERVED_COLUMNS = frozenset(CELL_COLUMNS + BOARD_COLUMNS + ("error_rate", "variant_position", "case_position"))


def check_label(label: str, column: str | None = None) -> None:
    """Refuse a metric column name that a raw results/leaderboard column already has (see RESERVED_COLUMNS)."""
    if label == column:
        return
    if label in RESERVED_COLUMNS or label.startswith("human_"):
        raise MetricError(
            f"metric name {label!r} clashes with the raw column {label!r} that every run's results() or "
            f"leaderboard() already has (reserved: {sorted(RESERVED_COLUMNS)} and human_*); give the metric "
            f"another label, e.g. {{name: ..., label: {label}_score}}, or register it under another name"
        )


@dataclass(frozen=True)
class Score:
    """A score with the evidence behind it (what matched, the judge's reason)."""

    value: float | None
    detail: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class CellView:
    """What a metric may look at for one cell."""

    case: Mapping[str, Any]
    output: str | None
    messages: list[dict[str, Any]] = field(default_factory=list)
    retrieved: list[dict[str, Any]] | None = None
    latency_ms: float | None = None
    cost: float | None = None
    tokens: int | None = None


@dataclass(frozen=True)
class MetricDef:
    """A registered metric function and what its signature asks for."""

    name: str
    fn: Callable[..., Any]
    description: str
    needs_judge: bool = False
    version: str = "1"
    higher_is_better: bool = True
    injected: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    optional_columns: tuple[str, ...] = ()  # column parameters with a default: absent column -> default
    required_options: tuple[str, ...] = ()
    optional_options: tuple[str, ...] = ()
    is_async: bool = False
    judge_calls: int = 0
    # Optional vectorised form for (output, expected) metrics: batch(outputs, expecteds, **options) -> values.
    # The runner uses it when it scores many cells at once (cached re-runs); results must equal fn's.
    batch: Callable[..., Sequence[Any]] | None = None
    # A built-in whose value per cell is this raw results column: under that label it shares the column.
    column: str | None = None


_REGISTRY: dict[str, MetricDef] = {}


def _describe(fn: Callable[..., Any]) -> str:
    doc = inspect.getdoc(fn) or ""
    return doc.strip().splitlines()[0] if doc.strip() else fn.__name__


def register(
    fn: Callable[..., Any],
    name: str | None = None,
    *,
    description: str | None = None,
    needs_judge: bool = False,
    version: str = "1",
    higher_is_better: bool = True,
    replace: bool = True,
    judge_calls: int = 1,
    batch: Callable[..., Sequence[Any]] | None = None,
    column: str | None = None,
) -> MetricDef:
    """Add ``fn`` to the registry under ``name`` (default: its function name); raw column names are refused."""
    metric_name = name or fn.__name__
    check_label(metric_name, column)
    if not replace and metric_name in _REGISTRY:
        raise MetricError(f"metric {metric_name!r} is already registered; pass replace=True to override it")
    injected: list[str] = []
    columns: list[str] = []
    optional_columns: list[str] = []
    required: list[str] = []
    optional: list[str] = []
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.name == "judge":
            needs_judge = True
        elif param.name in INJECTED:
            injected.append(param.name)
        elif param.name in COLUMN_OPTIONS:
            columns.append(param.name)
            if param.default is not inspect.Parameter.empty:
                optional_columns.append(param.name)
        elif param.name in ("name", "label"):
            raise MetricError(
                f"metric {metric_name!r}: a parameter cannot be called {param.name!r}, the spec uses that key "
                "for the metric itself; rename it"
            )
        elif param.default is inspect.Parameter.empty:
            required.append(param.name)
        else:
            optional.append(param.name)
    definition = MetricDef(
        name=metric_name,
        fn=fn,
        description=description or _describe(fn),
        needs_judge=needs_judge,
        version=version,
        higher_is_better=higher_is_better,
        injected=tuple(injected),
        columns=tuple(columns),
        optional_columns=tuple(optional_columns),
        required_options=tuple(required),
        optional_options=tuple(optional),
        is_async=inspect.iscoroutinefunction(fn),
        judge_calls=judge_calls if needs_judge else 0,
        batch=batch,
        column=column,
    )
    _REGISTRY[metric_name] = definition
    return definition


def metric(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    needs_judge: bool = False,
    version: str = "1",
    higher_is_better: bool = True,
    judge_calls: int = 1,
) -> Any:
    """Decorator registering a user metric: ``@metric`` or ``@metric(name="brevity")``."""

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        register(
            f,
            name,
            description=description,
            needs_judge=needs_judge,
            version=version,
            higher_is_better=higher_is_better,
            judge_calls=judge_calls,
        )
        return f

    return wrap(fn) if fn is not None else wrap


def get(name: str) -> MetricDef:
    """Look up a metric by name, with a message listing the known names."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise MetricError(
            f"unknown metric {name!r}; known metrics: {known}. Register your own with @workbench.metric"
        ) from None


def all_metrics() -> dict[str, MetricDef]:
    """Every registered metric, built-ins and plugins included."""
    _load_builtins()
    return dict(sorted(_REGISTRY.items()))


_BUILTINS_LOADED = False


def _load_builtins() -> None:
    """Import the built-in metric modules and entry-point plugins once, on first lookup."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    import importlib

    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    load_plugins()


PLUGIN_GROUP = "workbench.metrics"
PLUGIN_ERRORS: dict[str, str] = {}


def load_plugins() -> list[str]:
    """Load metrics from installed packages (entry-point group ``workbench.metrics``).

    An entry point may name a function (registered under the entry point's name) or a module that
    registers its metrics on import. A plugin that fails to load is reported, not fatal.
    """
    import warnings
    from importlib.metadata import entry_points

    loaded = []
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the built-ins down with it
            PLUGIN_ERRORS[ep.name] = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"metric plugin {ep.name!r} ({ep.value}) failed to load: {exc}", stacklevel=2)
            continue
        if callable(obj) and not isinstance(obj, type):
            if ep.name not in _REGISTRY or _REGISTRY[ep.name].fn is not obj:
                register(obj, ep.name)
        loaded.append(ep.name)
    return loaded


# Modules whose import registers built-in metrics. Each new metric family adds itself here.
BUILTIN_MODULES: list[str] = [
    "workbench.metrics.basic",
    "workbench.metrics.similarity",
    "workbench.metrics.safety",
    "workbench.metrics.retrieval",
    "workbench.metrics.judge",
]


@dataclass(frozen=True)
class BoundMetric:
    """A metric with its options checked, ready to score cells. ``label`` names its column."""

    definition: MetricDef
    options: Mapping[str, Any]
    label: str
    judge: Any = None  # the judge's ModelConfig, resolved at bind time

    def call_kwargs(self, cell: CellView, judge: Any = None) -> dict[str, Any]:
        """Build the keyword arguments for one cell (``judge``: the runner's Judge for this metric)."""
        d = self.definition
        kwargs: dict[str, Any] = {}
        if d.needs_judge:
            if judge is None:
                raise MetricError(f"metric {self.label!r} needs a judge; run it through an experiment")
            kwargs["judge"] = judge
        for name in d.injected:
            kwargs[name] = getattr(cell, name)
        for col in d.columns:
            column = self.options.get(col, col)
            if column not in cell.case and col in d.optional_columns and col not in self.options:
                continue
            if column not in cell.case:
                raise MetricError(f"metric {self.label!r}: column {column!r} (option {col!r}) is not in the dataset")
            kwargs[col] = cell.case[column]
        for opt in d.required_options + d.optional_options:
            if opt in self.options:
                kwargs[opt] = self.options[opt]
        return kwargs


def bind(name: str, options: Mapping[str, Any] | None = None, label: str | None = None) -> BoundMetric:
    """Check a metric's options against its signature before any model call."""
    definition = get(name)
    opts = dict(options or {})
    allowed = set(definition.columns) | set(definition.required_options) | set(definition.optional_options)
    judge = None
    if definition.needs_judge:
        from workbench.judge import judge_config

        allowed.add("judge")
        judge = judge_config(opts.get("judge"), name)
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise MetricError(
            f"metric {name!r} does not take option(s) {unknown}; it takes {sorted(allowed) or 'no options'}"
        )
    check_label(label or name, definition.column)
    missing = [o for o in definition.required_options if o not in opts]
    if missing:
        raise MetricError(f"metric {name!r} needs option(s) {missing}, e.g. {{name: {name}, {missing[0]}: ...}}")
    return BoundMetric(definition=definition, options=opts, label=label or name, judge=judge)


def check_columns(bound: BoundMetric, columns: set[str]) -> None:
    """Fail early when a metric reads a dataset column that does not exist."""
    for col in bound.definition.columns:
        column = bound.options.get(col, col)
        if col in bound.definition.optional_columns and col not in bound.options:
            continue
        if column not in columns:
            raise MetricError(
                f"metric {bound.label!r} reads column {column!r} (option {col!r}) but the dataset has "
                f"{sorted(columns)}; set {{name: {bound.definition.name}, {col}: <column>}}"
            )
