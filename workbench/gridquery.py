"""One page of a run's side-by-side grid (a row per case, the variants side by side), computed in DuckDB.

Face-independent: the JupyterLab server extension calls it, and so can the notebook grid. Filtering,
sorting and paging happen over cases in one parameterised query; only the visible page's cells and
scores are then fetched, so a 10,000-case run costs the same per page as a 10-case one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from workbench.errors import ValidationError
from workbench.store import Store

MAX_PAGE_SIZE = 500
OPS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "=": "=", "==": "=", "!=": "<>"}


@dataclass
class MetricFilter:
    """Keep cases whose score ``metric`` (of ``variant``, or of any variant) satisfies ``op value``."""

    metric: str
    op: str
    value: float
    variant: str | None = None


@dataclass
class GridFilters:
    """What the grid shows: a case-insensitive text search over inputs and outputs, errors only, score bounds,
    and the variants (columns) to show."""

    search: str | None = None
    errors_only: bool = False
    metrics: list[MetricFilter] = field(default_factory=list)
    variants: list[str] | None = None


@dataclass
class GridSort:
    """Order of cases: dataset order (``metric`` None), or a variant's score (minus the baseline's)."""

    metric: str | None = None
    variant: str | None = None
    descending: bool = False


def parse_filters(raw: Mapping[str, Any] | None) -> GridFilters:
    """Filters from JSON (``{"search", "errors_only", "metrics": [{metric, op, value, variant}], "variants"}``)."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - {"search", "errors_only", "metrics", "variants"})
    if unknown:
        raise ValidationError(f"grid filters: unknown key(s) {unknown}; use search, errors_only, metrics, variants")
    metrics = []
    for i, m in enumerate(raw.get("metrics") or []):
        if not isinstance(m, Mapping) or "metric" not in m or "value" not in m:
            raise ValidationError(f"grid filters.metrics[{i}]: needs {{metric, op, value[, variant]}}, got {m!r}")
        op = str(m.get("op", ">="))
        if op not in OPS:
            raise ValidationError(f"grid filters.metrics[{i}].op: {op!r} is not one of {sorted(OPS)}")
        try:
            value = float(m["value"])
        except (TypeError, ValueError):
            raise ValidationError(f"grid filters.metrics[{i}].value: {m['value']!r} is not a number") from None
        metrics.append(MetricFilter(str(m["metric"]), op, value, m.get("variant") or None))
    variants = raw.get("variants")
    if variants is not None and (not isinstance(variants, list) or not all(isinstance(v, str) for v in variants)):
        raise ValidationError(f"grid filters.variants: a list of variant names, got {variants!r}")
    search = raw.get("search")
    return GridFilters(str(search) if search else None, bool(raw.get("errors_only")), metrics, variants)


def parse_sort(raw: str | Mapping[str, Any] | None) -> GridSort:
    """``"metric:variant:desc"`` (variant and direction optional) or ``{metric, variant, descending}``."""
    if not raw:
        return GridSort()
    if isinstance(raw, str):
        parts = raw.split(":")
        desc = parts[-1] in ("desc", "asc") and parts.pop() == "desc"
        return GridSort(parts[0] or None, (parts[1] if len(parts) > 1 else None) or None, desc)
    return GridSort(raw.get("metric"), raw.get("variant"), bool(raw.get("descending")))


def _check(kind: str, name: str | None, known: Sequence[str]) -> None:
    if name is not None and name not in known:
        raise ValidationError(f"grid: unknown {kind} {name!r}; this run has {list(known)}")


def grid_page(
    store: Store,
    run_id: str,
    filters: GridFilters | Mapping[str, Any] | None = None,
    sort: GridSort | str | Mapping[str, Any] | None = None,
    baseline: str | None = None,
    page: int = 0,
    page_size: int = 50,
    repeat: int = 0,
) -> dict[str, Any]:
    """One page of the grid: ``{total, page, page_size, variants, metrics, input_columns, rows}``.

    Each row is a case: its inputs and, per variant, output, error, latency, cost, scores and (with a
    ``baseline`` variant) the score differences from the baseline.
    """
    f = filters if isinstance(filters, GridFilters) else parse_filters(filters)
    s = sort if isinstance(sort, GridSort) else parse_sort(sort)
    if page < 0 or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValidationError(f"grid: page must be >= 0 and page_size in 1..{MAX_PAGE_SIZE}, got {page}, {page_size}")
    info = store.get_run(run_id)
    run_id = info["run_id"]
    variants = [v["variant"] for v in store.run_variants(run_id)]
    metrics = [m["label"] for m in info["spec"].get("metrics", [])]
    _check("baseline variant", baseline, variants)
    _check("sort variant", s.variant, variants)
    if s.metric is not None and s.metric not in metrics and s.metric not in ("latency_ms", "cost"):
        raise ValidationError(f"grid: cannot sort by {s.metric!r}; sort by one of {metrics + ['latency_ms', 'cost']}")
    for m in f.metrics:
        _check("filter metric", m.metric, metrics)
        _check("filter variant", m.variant, variants)
    for v in f.variants or []:
        _check("variant", v, variants)
    shown = [v for v in variants if f.variants is None or v in f.variants]

    params: list[Any] = [run_id, repeat]
    where: list[str] = []

    def p(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    if f.search:
        needle = p(f.search.lower())
        where.append(
            f"(contains(lower(k.data::TEXT), {needle}) OR EXISTS (SELECT 1 FROM cells c WHERE c.run_id=$1 "
            f"AND c.repeat=$2 AND c.case_id=k.case_id AND contains(lower(coalesce(c.output, '')), {needle})))"
        )
    if f.errors_only:
        where.append("EXISTS (SELECT 1 FROM cells c WHERE c.run_id=$1 AND c.case_id=k.case_id AND c.error IS NOT NULL)")
    for m in f.metrics:
        cond = f"s.metric={p(m.metric)} AND s.value {OPS[m.op]} {p(m.value)}"
        if m.variant:
            cond += f" AND s.variant={p(m.variant)}"
        where.append(
            f"EXISTS (SELECT 1 FROM scores s WHERE s.run_id=$1 AND s.repeat=$2 AND s.case_id=k.case_id AND {cond})"
        )

    order = "k.position"
    if s.metric is not None:
        variant = s.variant or (shown[0] if shown else variants[0])

        def value_of(v: str) -> str:
            if s.metric in ("latency_ms", "cost"):
                return (
                    f"(SELECT c.{s.metric} FROM cells c WHERE c.run_id=$1 AND c.repeat=$2 AND c.case_id=k.case_id "
                    f"AND c.variant={p(v)})"
                )
            return (
                "(SELECT s.value FROM scores s WHERE s.run_id=$1 AND s.repeat=$2 AND s.case_id=k.case_id "
                f"AND s.variant={p(v)} AND s.metric={p(s.metric)})"
            )

        key = value_of(variant)
        if baseline and baseline != variant:
            key = f"({key} - {value_of(baseline)})"
        order = f"{key} {'DESC' if s.descending else 'ASC'} NULLS LAST, k.position"

    # Page of case ids first (no case data through the sort and the window), then only that page's data.
    query = f"""
        SELECT k.case_id, k.position, count(*) OVER () AS total
        FROM dataset_cases k
        WHERE k.dataset_hash = {p(info["dataset_hash"])} AND $1 IS NOT NULL AND $2 >= 0
        {"".join(" AND " + w for w in where)}
        ORDER BY {order}
        LIMIT {p(page_size)} OFFSET {p(page * page_size)}
    """
    with store.connect() as con:
        cases = con.execute(query, params).fetchall()
        total = int(cases[0][2]) if cases else _count(con, query, params, page)
        ids = [c[0] for c in cases]
        data = dict(
            con.execute(
                "SELECT case_id, data FROM dataset_cases WHERE dataset_hash=$1 AND list_contains($2, case_id)",
                [info["dataset_hash"], ids],
            ).fetchall()
        )
        cells = con.execute(
            "SELECT case_id, variant, output, error, latency_ms, cost, cached FROM cells "
            "WHERE run_id=$1 AND repeat=$2 AND list_contains($3, case_id)",
            [run_id, repeat, ids],
        ).fetchall()
        scores = con.execute(
            "SELECT case_id, variant, metric, value, error FROM scores "
            "WHERE run_id=$1 AND repeat=$2 AND list_contains($3, case_id)",
            [run_id, repeat, ids],
        ).fetchall()
        columns = _first_row(con.execute("SELECT columns FROM datasets WHERE hash=$1", [info["dataset_hash"]]))

    by_cell: dict[tuple[str, str], dict[str, Any]] = {}
    for case_id, variant, output, error, latency, cost, cached in cells:
        by_cell[(case_id, variant)] = {
            "output": output,
            "error": error,
            "latency_ms": latency,
            "cost": cost,
            "cached": cached,
            "scores": {},
        }
    for case_id, variant, metric, value, error in scores:
        cell = by_cell.get((case_id, variant))
        if cell is not None:
            cell["scores"][metric] = value
            if error:
                cell.setdefault("score_errors", {})[metric] = error
    rows = []
    for case_id, position, _ in cases:
        row_cells = {v: by_cell.get((case_id, v)) for v in shown}
        if baseline:
            base = (by_cell.get((case_id, baseline)) or {}).get("scores", {})
            for v, cell in row_cells.items():
                if cell is not None and v != baseline:
                    cell["delta"] = {
                        m: cell["scores"][m] - base[m]
                        for m in metrics
                        if cell["scores"].get(m) is not None and base.get(m) is not None
                    }
        rows.append({"case_id": case_id, "position": position, "inputs": json.loads(data[case_id]), "cells": row_cells})
    return {
        "run_id": run_id,
        "total": total,
        "page": page,
        "page_size": page_size,
        "variants": shown,
        "all_variants": variants,
        "metrics": metrics,
        "baseline": baseline,
        "input_columns": json.loads(columns[0]) if columns else [],
        "rows": rows,
    }


def _first_row(cursor: Any) -> Any:
    rows = cursor.fetchall()
    return rows[0] if rows else None


def _count(con: Any, query: str, params: list[Any], page: int) -> int:
    """Total when the page is empty (past the end, or nothing matches): count without the window."""
    if page == 0:
        return 0
    limited = params[:-2] + [1, 0]
    row = _first_row(con.execute(query, limited))
    return int(row[2]) if row else 0
