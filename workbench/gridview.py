"""Side-by-side view of stored runs, one page at a time: what the EvalGrid widget shows, computed in DuckDB.

Why a module of its own: the grid must stay responsive on a 10,000-case x 6-variant run, so filtering,
sorting and paging run as one SQL query over the workspace and only the visible page ever reaches
Python (and the browser). Nothing is cached between pages: each request opens a short-lived
connection, so a run that is still writing (in this or another process) is simply seen as it grows.

Every value from a user (search text, regex, thresholds, metric and column names) is a bound
parameter; the only identifiers written into SQL are fixed fragments chosen from allow-lists.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from workbench.errors import NotFoundError, ValidationError
from workbench.store import Store

if TYPE_CHECKING:
    import pandas as pd

SHOW = ("all", "errors", "failures", "passes", "disagree")
SORTS = ("case", "metric", "delta", "disagreement", "latency", "cost")
FEEDBACK = ("any", "has", "none")
DIFFS = ("off", "baseline", "expected")
MAX_PAGE_SIZE = 200
# Longest text sent for one field; the page stays small (<= 1 MB) whatever the outputs hold.
MAX_TEXT = 3000  # longer texts come whole on request (GridQuery.full_text)
MAX_CHUNK_TEXT = 1500
MAX_DIFF_TOKENS = 3000
LIVE_STATUSES = ("created", "running")


@dataclass
class ViewState:
    """What the grid shows: filters, sort, baseline, diff, page. Plain values, so a widget can sync them."""

    show: str = "all"
    failure_metric: str = ""
    failure_op: str = "<"
    failure_threshold: float = 0.5
    disagree_metric: str = ""
    disagree_spread: float = 0.0
    search: str = ""
    search_regex: bool = False
    feedback: str = "any"
    sort_by: str = "case"
    sort_metric: str = ""
    sort_column: str = ""
    sort_desc: bool = False
    baseline: str = ""
    diff: str = "off"
    expected_column: str = ""
    input_columns: list[str] = field(default_factory=list)
    page: int = 0
    page_size: int = 20

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ViewState:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValidationError(f"grid view: unknown setting(s) {unknown}; settings are {sorted(names)}")
        return cls(**data)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GridColumn:
    """One variant column of the grid: ``key`` is its label (unique across the runs shown)."""

    key: str
    run_id: str
    variant: str


class _Params:
    """Collects bound parameters and hands out their ``$n`` placeholders."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _num(x: Any, digits: int = 4) -> float | None:
    """A JSON-safe float rounded for display (NaN and None become None)."""
    if x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    if math.isnan(f) or math.isinf(f):
        return None
    return round(f, digits)


def _clip(text: Any, limit: int) -> tuple[str | None, int]:
    """(text cut to ``limit`` characters, number of characters cut)."""
    if text is None:
        return None, 0
    s = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False, default=str)
    return (s, 0) if len(s) <= limit else (s[:limit], len(s) - limit)


_TOKEN = re.compile(r"\s+|\w+|[^\w\s]", re.UNICODE)


def word_diff(text: str, reference: str) -> list[list[Any]]:
    """``text`` as [[segment, changed], ...]: words not in ``reference`` at that place are marked.

    Highlight only: words of the reference missing from ``text`` are not shown (no strike-through).
    """
    a = _TOKEN.findall(reference or "")[:MAX_DIFF_TOKENS]
    b_all = _TOKEN.findall(text or "")
    b = b_all[:MAX_DIFF_TOKENS]
    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    out: list[list[Any]] = []

    def emit(seg: str, changed: bool) -> None:
        if not seg:
            return
        if out and out[-1][1] == changed:
            out[-1][0] += seg
        else:
            out.append([seg, changed])

    for tag, _i1, _i2, j1, j2 in sm.get_opcodes():
        if tag in ("replace", "insert"):  # one highlight per changed run; its outer whitespace is not a change
            seg = "".join(b[j1:j2])
            core = seg.strip()
            lead = seg[: len(seg) - len(seg.lstrip())]
            emit(lead, False)
            emit(core, True)
            emit(seg[len(lead) + len(core) :], False)
        elif tag == "equal":
            emit("".join(b[j1:j2]), False)
    emit("".join(b_all[MAX_DIFF_TOKENS:]), False)
    return out


class GridQuery:
    """Pages of one run (or two runs over one dataset) side by side: rows are cases, columns variants."""

    def __init__(self, store: Store, run_ids: Sequence[str]) -> None:
        if not run_ids:
            raise ValidationError("a grid needs at least one run")
        self.store = store
        infos = [store.get_run(r) for r in run_ids]
        self.run_ids = [i["run_id"] for i in infos]
        if len(set(self.run_ids)) != len(self.run_ids):
            raise ValidationError(f"run {self.run_ids[0]} is given twice; compare two different runs")
        hashes = {i["dataset_hash"] for i in infos}
        if len(hashes) > 1:
            desc = ", ".join(f"{i['run_id']} ({i['dataset_name']} {i['dataset_hash'][:10]})" for i in infos)
            raise ValidationError(
                f"runs {desc} are over different dataset versions; a side-by-side grid needs the same cases. "
                "Re-run one of them on the other's dataset version."
            )
        self.dataset_hash = infos[0]["dataset_hash"]
        self.max_repeats = max(int(i["repeats"]) for i in infos)
        with store.connect() as con:  # dataset and variants in one short connection
            ds = con.execute(
                "SELECT columns, id_column, n_cases FROM datasets WHERE hash = $1 LIMIT 1", [self.dataset_hash]
            ).fetchall()
            variants = con.execute(
                "SELECT run_id, variant FROM run_variants WHERE list_contains($1, run_id) ORDER BY position",
                [self.run_ids],
            ).fetchall()
        self.dataset_columns: list[str] = list(json.loads(ds[0][0])) if ds else []
        self.id_column: str | None = ds[0][1] if ds else None
        self.n_cases = int(ds[0][2]) if ds else 0
        self.columns: list[GridColumn] = []
        labels = _run_labels(infos)
        for info, label in zip(infos, labels):
            for rid, variant in variants:
                if rid == info["run_id"]:
                    key = variant if len(infos) == 1 else f"{label}:{variant}"
                    self.columns.append(GridColumn(key, rid, variant))
        self.metrics: list[str] = []
        higher: dict[str, bool] = {}
        expected: list[str] = []
        for info in infos:
            for m in info["spec"].get("metrics", []):
                label = m["label"]
                if label not in self.metrics:
                    self.metrics.append(label)
                    higher[label] = _higher_is_better(m["name"])
                opt = (m.get("options") or {}).get("expected")
                if isinstance(opt, str) and opt in self.dataset_columns:
                    expected.append(opt)
        self.higher_is_better = higher
        self._ranges: tuple[str, dict[str, tuple[Any, Any]]] = ("", {})
        self.default_expected = (
            expected[0]
            if expected
            else next((c for c in ("expected", "answer", "reference") if c in self.dataset_columns), "")
        )

    # -- defaults and checks ---------------------------------------------------------------

    def default_state(self) -> ViewState:
        skip = {self.id_column, self.default_expected}
        inputs = [c for c in self.dataset_columns if c not in skip][:2]
        return ViewState(
            baseline=self.columns[0].key if self.columns else "",
            expected_column=self.default_expected,
            input_columns=inputs,
            failure_metric=self.metrics[0] if self.metrics else "",
            sort_metric=self.metrics[0] if self.metrics else "",
        )

    def check(self, s: ViewState) -> None:
        """Every setting names something that exists; messages say what the choices are."""
        keys = [c.key for c in self.columns]

        def one_of(name: str, value: Any, allowed: Sequence[Any], empty_ok: bool = False) -> None:
            if empty_ok and value in ("", None):
                return
            if value not in allowed:
                raise ValidationError(f"grid {name}: {value!r} is not one of {list(allowed)}")

        one_of("show", s.show, SHOW)
        one_of("sort_by", s.sort_by, SORTS)
        one_of("feedback", s.feedback, FEEDBACK)
        one_of("diff", s.diff, DIFFS)
        one_of("failure_op", s.failure_op, ("<", ">"))
        one_of("baseline", s.baseline, keys, empty_ok=True)
        one_of("sort_column", s.sort_column, keys, empty_ok=True)
        for name in ("failure_metric", "disagree_metric", "sort_metric"):
            one_of(name, getattr(s, name), self.metrics, empty_ok=True)
        one_of("expected_column", s.expected_column, self.dataset_columns, empty_ok=True)
        for c in s.input_columns:
            one_of("input_columns", c, self.dataset_columns)
        for name in ("failure_threshold", "disagree_spread"):
            v = getattr(s, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
                raise ValidationError(f"grid {name}: needs a number, got {v!r}")
        if not isinstance(s.page, int) or s.page < 0:
            raise ValidationError(f"grid page: needs an integer >= 0, got {s.page!r}")
        if not isinstance(s.page_size, int) or not 1 <= s.page_size <= MAX_PAGE_SIZE:
            raise ValidationError(f"grid page_size: needs an integer from 1 to {MAX_PAGE_SIZE}, got {s.page_size!r}")
        if s.show == "failures" and not s.failure_metric:
            raise ValidationError("grid show='failures' needs failure_metric (a metric of the run)")
        if s.sort_by in ("metric", "delta") and not s.sort_metric:
            raise ValidationError(f"grid sort_by={s.sort_by!r} needs sort_metric (a metric of the run)")
        if s.sort_by == "delta" and not s.baseline:
            raise ValidationError("grid sort_by='delta' needs a baseline column")
        if s.diff == "baseline" and not s.baseline:
            raise ValidationError("grid diff='baseline' needs a baseline column")
        if s.diff == "expected" and not s.expected_column:
            raise ValidationError("grid diff='expected' needs expected_column (a dataset column)")

    # -- the row query -----------------------------------------------------------------------

    def _rows_sql(self, s: ViewState, p: _Params) -> tuple[str, bool]:
        """SQL listing the filtered, sorted case ids (with the filtered total); True when it uses a regex.

        Only what the view needs is computed: dataset order with no filter reads no cell at all.
        """
        key_to_idx = {c.key: i for i, c in enumerate(self.columns)}
        ctes = [
            "k AS (SELECT x[1]::INTEGER AS col, x[2] AS run_id, x[3] AS variant FROM "
            f"(SELECT unnest({p([[i, c.run_id, c.variant] for i, c in enumerate(self.columns)])}) AS x))",
            f"d AS (SELECT case_id, position, data FROM dataset_cases WHERE dataset_hash = {p(self.dataset_hash)})",
        ]
        joins = ""
        # per-case aggregates of the metrics this view needs (repeats averaged per column)
        wanted: list[str] = []
        if s.show in ("failures", "passes"):
            wanted.append(s.failure_metric)
        if s.show == "disagree" and s.disagree_metric:
            wanted.append(s.disagree_metric)
        if s.sort_by in ("metric", "delta") or (s.sort_by == "disagreement" and s.sort_metric):
            wanted.append(s.sort_metric)
        wanted = list(dict.fromkeys(wanted))
        if wanted:
            if self.max_repeats > 1:  # repeats are averaged per column first
                ctes.append(
                    f"ms AS (SELECT k.col, s.case_id, s.metric, avg(s.value) AS v FROM scores s JOIN k "
                    f"ON s.run_id = k.run_id AND s.variant = k.variant WHERE list_contains({p(wanted)}, s.metric) "
                    "GROUP BY ALL)"
                )
            else:
                ctes.append(
                    f"ms AS (SELECT k.col, s.case_id, s.metric, s.value AS v FROM scores s JOIN k "
                    f"ON s.run_id = k.run_id AND s.variant = k.variant WHERE list_contains({p(wanted)}, s.metric))"
                )
            base = p(key_to_idx.get(s.baseline, -1))
            at = p(key_to_idx.get(s.sort_column, -1))
            metric_aggs = []
            for i, m in enumerate(wanted):
                mp = p(m)
                metric_aggs.append(
                    f"min(v) FILTER (WHERE metric = {mp}) AS m{i}_min, "
                    f"max(v) FILTER (WHERE metric = {mp}) AS m{i}_max, "
                    f"avg(v) FILTER (WHERE metric = {mp}) AS m{i}_mean, "
                    f"any_value(v) FILTER (WHERE metric = {mp} AND col = {base}) AS m{i}_base, "
                    f"any_value(v) FILTER (WHERE metric = {mp} AND col = {at}) AS m{i}_at, "
                    f"avg(v) FILTER (WHERE metric = {mp} AND col <> {base}) AS m{i}_others"
                )
            ctes.append(f"ma AS (SELECT case_id, {', '.join(metric_aggs)} FROM ms GROUP BY case_id)")
            joins += " LEFT JOIN ma ON ma.case_id = d.case_id"
        # per-case aggregates over cells, only those the view uses
        cell_aggs = []
        if s.show == "errors":
            cell_aggs.append("bool_or(c.error IS NOT NULL) AS has_error")
        if (s.show == "disagree" and not s.disagree_metric) or (s.sort_by == "disagreement" and not s.sort_metric):
            cell_aggs.append(
                "count(DISTINCT hash(c.output)) FILTER (WHERE c.repeat = 0 AND c.output IS NOT NULL) AS n_outputs"
            )
        if s.sort_by == "latency":
            cell_aggs.append("avg(c.latency_ms) AS latency")
        if s.sort_by == "cost":
            cell_aggs.append("sum(c.cost) AS cost")
        if cell_aggs:
            ctes.append(
                f"ca AS (SELECT c.case_id, {', '.join(cell_aggs)} FROM cells c JOIN k "
                "ON c.run_id = k.run_id AND c.variant = k.variant GROUP BY c.case_id)"
            )
            joins += " LEFT JOIN ca ON ca.case_id = d.case_id"
        where: list[str] = []
        mi = {m: i for i, m in enumerate(wanted)}
        if s.show == "errors":
            where.append("coalesce(ca.has_error, false)")
        elif s.show in ("failures", "passes"):
            i = mi[s.failure_metric]
            thr = p(float(s.failure_threshold))
            fail = f"ma.m{i}_min < {thr}" if s.failure_op == "<" else f"ma.m{i}_max > {thr}"
            where.append(f"coalesce({fail}, false)" if s.show == "failures" else f"NOT coalesce({fail}, true)")
        elif s.show == "disagree":
            if s.disagree_metric:
                i = mi[s.disagree_metric]
                where.append(f"coalesce(ma.m{i}_max - ma.m{i}_min > {p(float(s.disagree_spread))}, false)")
            else:
                where.append("coalesce(ca.n_outputs > 1, false)")
        uses_regex = False
        if s.search:
            if s.search_regex:
                q = p(s.search)
            else:  # ILIKE scans about twice as fast as contains(lower(t), ...): no lowered copy of every output
                escaped = s.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                q = p(f"%{escaped}%")
            paths = p([f'$."{c}"' for c in self.dataset_columns])
            if s.search_regex:
                uses_regex = True
                match = f"regexp_matches(t, {q})"
            else:
                match = f"t ILIKE {q} ESCAPE '\\'"
            ctes.append(
                "hits AS (SELECT DISTINCT case_id FROM ("
                f"SELECT case_id, unnest(json_extract_string(data, {paths})) AS t FROM d "
                "UNION ALL SELECT c.case_id, c.output AS t FROM cells c JOIN k "
                f"ON c.run_id = k.run_id AND c.variant = k.variant) WHERE t IS NOT NULL AND {match})"
            )
            where.append("d.case_id IN (SELECT case_id FROM hits)")
        if s.feedback != "any":
            rated = (
                "d.case_id IN (SELECT f.case_id FROM feedback f JOIN k "
                "ON f.run_id = k.run_id AND f.variant = k.variant)"
            )
            where.append(rated if s.feedback == "has" else f"NOT {rated}")
        order = self._order(s, mi)
        sql = (
            "WITH "
            + ",\n".join(ctes)
            + "\nSELECT d.case_id, count(*) OVER () AS total FROM d"
            + joins
            + (" WHERE " + " AND ".join(where) if where else "")
            + f" ORDER BY {order}d.position"
        )
        return sql, uses_regex

    @staticmethod
    def _order(s: ViewState, mi: dict[str, int]) -> str:
        direction = "DESC" if s.sort_desc else "ASC"
        if s.sort_by == "case":
            return "" if not s.sort_desc else "d.position DESC, "
        if s.sort_by == "latency":
            expr = "ca.latency"
        elif s.sort_by == "cost":
            expr = "ca.cost"
        elif s.sort_by == "metric":
            i = mi[s.sort_metric]
            expr = f"ma.m{i}_at" if s.sort_column else f"ma.m{i}_mean"
        elif s.sort_by == "delta":
            i = mi[s.sort_metric]
            expr = f"(ma.m{i}_at - ma.m{i}_base)" if s.sort_column else f"(ma.m{i}_others - ma.m{i}_base)"
        elif s.sort_metric:  # disagreement on a metric: its spread across columns
            i = mi[s.sort_metric]
            expr = f"(ma.m{i}_max - ma.m{i}_min)"
        else:  # disagreement on outputs: how many different answers
            expr = "ca.n_outputs"
        return f"{expr} {direction} NULLS LAST, "

    def _case_ids(self, con: Any, s: ViewState, limit: int | None, offset: int) -> tuple[list[str], int]:
        import duckdb

        p = _Params()
        sql, uses_regex = self._rows_sql(s, p)
        if limit is not None:
            sql += f" LIMIT {p(int(limit))} OFFSET {p(int(offset))}"
        if uses_regex:
            try:
                con.execute("SELECT regexp_matches('', $1)", [s.search]).fetchall()
            except duckdb.Error as exc:
                raise ValidationError(
                    f"search: {s.search!r} is not a valid regular expression ({_short(exc)}); "
                    "fix it or untick 'regex' to search for the plain text"
                ) from None
        rows = con.execute(sql, p.values).fetchall()
        if not rows and offset > 0 and limit is not None:  # past the end: report the total anyway
            p2 = _Params()
            sql2, _ = self._rows_sql(s, p2)
            total_row = con.execute(f"SELECT count(*) FROM ({sql2})", p2.values).fetchall()
            return [], int(total_row[0][0]) if total_row else 0
        return [r[0] for r in rows], int(rows[0][1]) if rows else 0

    # -- page details ------------------------------------------------------------------------

    def _details(self, con: Any, case_ids: list[str], s: ViewState) -> list[dict[str, Any]]:
        """Inputs, every cell (all repeats), scores and feedback of the given cases, in the given order."""
        if not case_ids:
            return []

        def q(con: Any, sql: str) -> list[Any]:
            """Run ``sql`` with {k} (the columns), {ids} and {ds} bound as parameters, in order of use."""
            p = _Params()
            make = {
                "k": lambda: (
                    "k AS (SELECT x[1]::INTEGER AS col, x[2] AS run_id, x[3] AS variant FROM "
                    f"(SELECT unnest({p([[i, c.run_id, c.variant] for i, c in enumerate(self.columns)])}) AS x))"
                ),
                "ids": lambda: p(case_ids),
                "ds": lambda: p(self.dataset_hash),
            }

            class Bind(dict):  # type: ignore[type-arg]
                def __missing__(self, key: str) -> str:
                    self[key] = make[key]()
                    return str(self[key])

            return con.execute(sql.format_map(Bind()), p.values).fetchall()

        # rowid lookups: find the page's rows on narrow columns, then read only those rows' texts
        cases = q(
            con,
            "SELECT case_id, data FROM dataset_cases WHERE rowid IN (SELECT rowid FROM dataset_cases "
            "WHERE dataset_hash = {ds} AND list_contains({ids}, case_id))",
        )
        cells = q(
            con,
            "WITH {k} SELECT k.col, c.case_id, c.repeat, c.output, c.error, c.error_kind, c.latency_ms, "
            "c.prompt_tokens, c.completion_tokens, c.cost, c.cached, c.retrieved "
            "FROM cells c JOIN k ON c.run_id = k.run_id AND c.variant = k.variant "
            "WHERE c.rowid IN (SELECT rowid FROM cells WHERE list_contains({ids}, case_id)) "
            "ORDER BY c.case_id, k.col, c.repeat",
        )
        scores = q(
            con,
            "WITH {k} SELECT k.col, s.case_id, s.repeat, s.metric, s.value, s.error "
            "FROM scores s JOIN k ON s.run_id = k.run_id AND s.variant = k.variant "
            "WHERE s.rowid IN (SELECT rowid FROM scores WHERE list_contains({ids}, case_id))",
        )
        feedback = q(
            con,
            "WITH {k} SELECT k.col, f.case_id, f.repeat, f.kind, f.value, f.comment, f.feedback_id "
            "FROM feedback f JOIN k ON f.run_id = k.run_id AND f.variant = k.variant "
            "WHERE list_contains({ids}, f.case_id) ORDER BY f.feedback_id",
        )
        data = {cid: json.loads(d) for cid, d in cases}
        keys = [c.key for c in self.columns]
        out: dict[str, dict[str, Any]] = {}
        for cid in case_ids:
            row = data.get(cid, {})
            inputs = {}
            for col in s.input_columns:
                text, cut = _clip(row.get(col), MAX_TEXT)
                inputs[col] = {"text": text, "cut": cut}
            expected = row.get(s.expected_column) if s.expected_column else None
            exp_text, exp_cut = _clip(expected, MAX_TEXT)
            out[cid] = {
                "case_id": cid,
                "inputs": inputs,
                "expected": {"text": exp_text, "cut": exp_cut} if s.expected_column else None,
                "cells": {},
            }
        by_cell: dict[tuple[str, int, int], dict[str, Any]] = {}
        for col, cid, rep, output, error, kind, lat, pt, ct, cost, cached, retrieved in cells:
            text, cut = _clip(output, MAX_TEXT)
            chunks = []
            for h in json.loads(retrieved) if isinstance(retrieved, str) else retrieved or []:
                ctext, ccut = _clip(h.get("text"), MAX_CHUNK_TEXT)
                chunks.append(
                    {
                        "id": str(h.get("chunk_id", h.get("id", ""))),
                        "doc_id": str(h.get("doc_id", "")),
                        "score": _num(h.get("score")),
                        "text": ctext,
                        "cut": ccut,
                    }
                )
            tokens = (pt or 0) + (ct or 0) if pt is not None or ct is not None else None
            cell = out[cid]["cells"].setdefault(keys[col], {"repeats": [], "feedback": _empty_feedback()})
            by_cell[(cid, col, int(rep))] = rec = {
                "repeat": int(rep),
                "output": text,
                "cut": cut,
                "error": _clip(error, 2000)[0],
                "error_kind": kind,
                "latency_ms": _num(lat, 1),
                "tokens": tokens,
                "cost": _num(cost, 6),
                "cached": bool(cached),
                "scores": {},
                "score_errors": {},
                "chunks": chunks,
                "_full": output,
            }
            cell["repeats"].append(rec)
        for col, cid, rep, metric, value, error in scores:
            r = by_cell.get((cid, col, int(rep)))
            if r is None:
                continue
            if error:
                r["score_errors"][metric] = _clip(error, 300)[0]
            r["scores"][metric] = _num(value)
        for col, cid, rep, kind, value, comment, fid in feedback:
            cell = out[cid]["cells"].get(keys[col])
            if cell is None:
                continue
            _add_feedback(cell["feedback"], int(rep), kind, value, comment, int(fid))
        rows = [out[cid] for cid in case_ids]
        for row in rows:
            self._diffs(row, s, data.get(row["case_id"], {}))
            for cell in row["cells"].values():
                for r in cell["repeats"]:
                    r.pop("_full", None)
        return rows

    def _diffs(self, row: dict[str, Any], s: ViewState, case: dict[str, Any]) -> None:
        if s.diff == "off":
            return
        if s.diff == "expected":
            ref = case.get(s.expected_column)
            reference = ref if isinstance(ref, str) else (None if ref is None else json.dumps(ref))
        else:
            base = row["cells"].get(s.baseline)
            reference = base["repeats"][0]["_full"] if base and base["repeats"] else None
        if reference is None:
            return
        for key, cell in row["cells"].items():
            if s.diff == "baseline" and key == s.baseline:
                continue
            for r in cell["repeats"]:
                if r["_full"] is not None:
                    r["diff"] = word_diff(r["output"] or "", reference)

    # -- public ------------------------------------------------------------------------------

    def page(self, state: ViewState | dict[str, Any]) -> dict[str, Any]:
        """One page as plain JSON-able data: rows, the filtered total, columns, metric ranges, run status."""
        s = state if isinstance(state, ViewState) else ViewState.from_dict(state)
        self.check(s)
        with self.store.connect() as con:  # one short connection per page
            ids, total = self._case_ids(con, s, s.page_size, s.page * s.page_size)
            pages = max(1, math.ceil(total / s.page_size))
            if not ids and total and s.page >= pages:  # the filter shrank the result below this page: show the last
                s.page = pages - 1
                ids, total = self._case_ids(con, s, s.page_size, s.page * s.page_size)
            rows = self._details(con, ids, s)
            status = self._status(con)
        return {"rows": rows, "total": total, "n_cases": self.n_cases, "page": s.page, "pages": pages, **status}

    def status(self) -> dict[str, Any]:
        """Cheap facts that change while a run writes: statuses, cells stored, metric ranges."""
        with self.store.connect() as con:
            return self._status(con)

    def _status(self, con: Any) -> dict[str, Any]:
        runs = con.execute(
            "SELECT r.run_id, r.status, r.n_cells, (SELECT count(*) FROM cells c WHERE c.run_id = r.run_id), "
            "(SELECT count(*) FROM feedback f WHERE f.run_id = r.run_id) "
            "FROM runs r WHERE list_contains($1, r.run_id)",
            [self.run_ids],
        ).fetchall()
        version = ":".join(f"{r[1]}/{r[3]}/{r[4]}" for r in sorted(runs))
        if self._ranges[0] != version:  # metric ranges change only when cells arrive
            ranges = con.execute(
                "SELECT metric, min(value), max(value) FROM scores WHERE list_contains($1, run_id) GROUP BY metric",
                [self.run_ids],
            ).fetchall()
            self._ranges = (version, {m: (lo, hi) for m, lo, hi in ranges})
        rng = self._ranges[1]
        by_run = {r[0]: r for r in runs}
        return {
            "runs": [
                {"run_id": rid, "status": by_run[rid][1], "cells": int(by_run[rid][2]), "stored": int(by_run[rid][3])}
                for rid in self.run_ids
                if rid in by_run
            ],
            "live": any(r[1] in LIVE_STATUSES for r in runs),
            "version": version,
            "metrics": [
                {
                    "name": m,
                    "min": _num(rng.get(m, (None, None))[0]),
                    "max": _num(rng.get(m, (None, None))[1]),
                    "higher_is_better": self.higher_is_better.get(m, True),
                }
                for m in self.metrics
            ],
        }

    def frame(self, state: ViewState | dict[str, Any], limit: int | None = None) -> pd.DataFrame:
        """Every row the view's filters keep, in its order (not just one page), as a wide DataFrame.

        Columns are a two-level index: ("case", input column) then (variant column, field) with fields
        output, error, latency_ms, cost and one per metric (repeats averaged; the first repeat's output).
        """
        import pandas as pd

        s = state if isinstance(state, ViewState) else ViewState.from_dict(state)
        self.check(s)
        s = ViewState.from_dict({**s.as_dict(), "diff": "off"})
        records = []
        with self.store.connect() as con:
            ids, _total = self._case_ids(con, s, limit, 0)
            rows = [r for start in range(0, len(ids), 2000) for r in self._details(con, ids[start : start + 2000], s)]
        for row in rows:
            rec: dict[tuple[str, str], Any] = {("case", "case_id"): row["case_id"]}
            for col, v in row["inputs"].items():
                rec[("case", col)] = v["text"]
            for c in self.columns:
                cell = row["cells"].get(c.key)
                reps = cell["repeats"] if cell else []
                rec[(c.key, "output")] = reps[0]["output"] if reps else None
                rec[(c.key, "error")] = reps[0]["error"] if reps else None
                rec[(c.key, "latency_ms")] = _mean([r["latency_ms"] for r in reps])
                rec[(c.key, "cost")] = _mean([r["cost"] for r in reps])
                for m in self.metrics:
                    rec[(c.key, m)] = _mean([r["scores"].get(m) for r in reps])
            records.append(rec)
        columns = [("case", "case_id")] + [("case", c) for c in s.input_columns]
        for c in self.columns:
            columns += [(c.key, f) for f in ("output", "error", "latency_ms", "cost", *self.metrics)]
        return pd.DataFrame.from_records(records, columns=pd.MultiIndex.from_tuples(columns))

    def column(self, key: str) -> GridColumn:
        for c in self.columns:
            if c.key == key:
                return c
        raise NotFoundError(f"the grid has no column {key!r}; its columns are {[c.key for c in self.columns]}")

    def full_text(self, field: str, case_id: str, column: Any = None, repeat: Any = 0, name: Any = None) -> str | None:
        """One whole text the page cut: a cell's output (``column``, ``repeat``) or a dataset column (``name``)."""
        if field == "output":
            c = self.column(str(column))
            if isinstance(repeat, bool) or not isinstance(repeat, int):
                raise ValidationError(f"repeat must be an integer, got {repeat!r}")
            with self.store.connect() as con:
                rows = con.execute(
                    "SELECT output FROM cells WHERE run_id=$1 AND variant=$2 AND case_id=$3 AND repeat=$4",
                    [c.run_id, c.variant, case_id, repeat],
                ).fetchall()
            return rows[0][0] if rows else None
        if field == "input":
            if name not in self.dataset_columns:
                raise ValidationError(f"the dataset has no column {name!r}; its columns are {self.dataset_columns}")
            with self.store.connect() as con:
                rows = con.execute(
                    "SELECT data FROM dataset_cases WHERE dataset_hash=$1 AND case_id=$2", [self.dataset_hash, case_id]
                ).fetchall()
            value = json.loads(rows[0][0]).get(name) if rows else None
            return value if isinstance(value, str) or value is None else json.dumps(value, ensure_ascii=False)
        raise ValidationError(f"text field must be 'output' or 'input', got {field!r}")

    def feedback_for(self, case_id: str, key: str) -> dict[str, Any]:
        """The feedback summary of one cell (all repeats), as the page shows it."""
        c = self.column(key)
        with self.store.connect() as con:
            rows = con.execute(
                "SELECT repeat, kind, value, comment, feedback_id FROM feedback WHERE run_id=$1 AND variant=$2 "
                "AND case_id=$3 ORDER BY feedback_id",
                [c.run_id, c.variant, case_id],
            ).fetchall()
        fb = _empty_feedback()
        for rep, kind, value, comment, fid in rows:
            _add_feedback(fb, int(rep), kind, value, comment, int(fid))
        return fb


def _empty_feedback() -> dict[str, Any]:
    return {"thumbs": None, "rating": None, "comments": [], "n": 0}


def _add_feedback(fb: dict[str, Any], repeat: int, kind: str, value: Any, comment: Any, fid: int) -> None:
    """Latest thumbs and rating win (they are shown as the cell's current state); comments accumulate."""
    fb["n"] += 1
    if kind == "thumbs" and value is not None:
        fb["thumbs"] = bool(value >= 0.5)
    elif kind == "rating" and value is not None:
        fb["rating"] = _num(value, 1)
    if comment:
        fb["comments"].append({"text": _clip(comment, 1000)[0], "repeat": repeat, "id": fid})
        fb["comments"] = fb["comments"][-5:]


def _mean(values: list[Any]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _short(exc: BaseException) -> str:
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return msg.split("Error: ", 1)[-1]


def _higher_is_better(name: str) -> bool:
    from workbench.errors import WorkbenchError
    from workbench.metrics.registry import get

    try:
        return bool(get(name).higher_is_better)
    except WorkbenchError:
        return True


def _run_labels(infos: list[dict[str, Any]]) -> list[str]:
    """Short distinct labels for runs shown together: their names when distinct, else id suffixes."""
    names = [i.get("name") or "" for i in infos]
    if all(names) and len(set(names)) == len(names):
        return names
    ids = [i["run_id"] for i in infos]
    tails = [rid.rsplit("-", 1)[-1] for rid in ids]
    return tails if len(set(tails)) == len(tails) else ids
