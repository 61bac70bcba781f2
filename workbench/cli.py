"""``llmops``: the command line face. Thin over the Python API; ``--json`` on everything that prints data.

argparse (standard library) because the same parser definitions are reused by the ``%llmops``
magics, where a parser must never exit the kernel.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workbench.errors import ModelFatalError, ValidationError, WorkbenchError

EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 1
EXIT_VARIANTS_FAILED = 3  # the run finished, but a variant failed entirely (or past --max-failure-rate)
EXIT_INTERRUPTED = 130


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _print_table(frame: Any) -> None:
    import pandas as pd

    with pd.option_context(
        "display.max_columns",
        50,
        "display.width",
        200,
        "display.max_colwidth",
        60,
        "display.float_format",
        "{:.4f}".format,
    ):
        sys.stdout.write(frame.to_string(index=False) + "\n")


def _workspace(args: argparse.Namespace) -> Any:
    from workbench.workspace import Workspace

    return Workspace(args.workspace)


def _report_run(run: Any, args: argparse.Namespace) -> int:
    with run.store.session():  # a handful of short reads: one database open instead of one each (~25-75 ms)
        return _report_run_now(run, args)


def _report_run_now(run: Any, args: argparse.Namespace) -> int:
    summary = run.summary()
    max_rate = getattr(args, "max_failure_rate", None)
    failed = run.failed_variants(max_rate)
    summary["failed_variants"] = failed
    if args.json:
        _print_json(summary)
    else:
        sys.stdout.write(
            f"run {summary['run_id']}: {summary['status']} - {summary['stored']}/{summary['cells']} cells stored, "
            f"{summary['cached']} from cache, {summary['failed']} failed, {summary['model_calls']} model calls, "
            f"${summary['cost']:.4f}, {summary['seconds']:.2f} s\n"
        )
        _print_table(run.leaderboard())
        for metric, count in summary["metric_errors"].items():
            sys.stdout.write(
                f"metric {metric}: {count} cell(s) could not be scored; see the `{metric}_error` column "
                f"of `llmops results {summary['run_id']}`\n"
            )
    limit = "every cell failed" if max_rate is None else f"failure rate above --max-failure-rate {max_rate:g}"
    for v in failed:
        sys.stderr.write(
            f"variant {v['variant']!r} failed: {v['failed']}/{v['n']} cells ({v['rate']:.0%}, {limit}); "
            f"most frequent error: {v['error']}\n"
        )
    if summary["status"] == "interrupted":
        return EXIT_INTERRUPTED
    if summary["status"] != "completed":
        return EXIT_RUN_FAILED
    return EXIT_VARIANTS_FAILED if failed else 0


def cmd_run(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    if args.dataset:
        from workbench.commands import composed_experiment

        exp = composed_experiment(ws, args)
    elif args.spec:
        exp = ws.from_spec(args.spec)
    else:
        raise ValidationError("llmops run needs a spec path, or --dataset/--prompts/--models naming stored things")
    if args.dry_run:
        plan = exp.plan()
        _print_json(plan.summary()) if args.json else sys.stdout.write(f"plan: {plan.summary()}\n")
        return 0
    return _report_run(exp.run(progress=not args.no_progress), args)


def cmd_resume(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    run = ws.get_run(args.run_id)
    run.resume(progress=not args.no_progress, retry_failed=args.retry_failed, force=args.force)
    return _report_run(run, args)


def cmd_runs(args: argparse.Namespace) -> int:
    frame = _workspace(args).runs()
    if args.json:
        _print_json(json.loads(frame.to_json(orient="records", date_format="iso")))
    else:
        _print_table(frame) if len(frame) else sys.stdout.write("no runs yet: try `llmops demo`\n")
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from workbench.export import check_output_path, write

    if args.output:
        check_output_path(args.output)  # before reading the run: a bad path fails fast
    frame = _workspace(args).get_run(args.run_id).results()
    text = write(frame, args.format, args.output, escape_formulas=not args.raw)
    if text is not None:
        sys.stdout.write(text)
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    run = _workspace(args).get_run(args.run_id)
    board = run.leaderboard()
    if args.plot:
        run.charts().save(args.plot)
    _print_json(json.loads(board.to_json(orient="records"))) if args.json else _print_table(board)
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    frame = _workspace(args).sql(args.query)
    if args.json:
        _print_json(json.loads(frame.to_json(orient="records", date_format="iso")))
    else:
        _print_table(frame)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from workbench.demo import demo_experiment

    ws = _workspace(args)
    if not args.json:
        sys.stdout.write(
            f"LLMOps Workbench demo (offline) in workspace {ws.path}\n"
            "model: local/extractive - an extractive baseline, not an LLM\n"
        )
    run = demo_experiment(ws).run(progress=not (args.no_progress or args.json))
    code = _report_run(run, args)
    if not args.json:
        sys.stdout.write(
            f"\nNext: `llmops results {run.run_id} --format csv`, or in Python: "
            f"wb.open({str(ws.path)!r}).get_run({run.run_id!r}).results()\n"
        )
    return code


def cmd_metrics(args: argparse.Namespace) -> int:
    from workbench.metrics.registry import all_metrics

    rows = [
        {
            "name": d.name,
            "needs_judge": d.needs_judge,
            "higher_is_better": d.higher_is_better,
            "options": sorted(
                {*d.columns, *d.required_options, *d.optional_options} | ({"judge"} if d.needs_judge else set())
            ),
            "description": d.description,
        }
        for d in all_metrics().values()
    ]
    if args.json:
        _print_json(rows)
    else:
        width = max(len(str(r["name"])) for r in rows)
        for r in rows:
            judge = " [judge]" if r["needs_judge"] else ""
            sys.stdout.write(f"{r['name']:<{width}}  {r['description']}{judge}\n")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    comparison = _workspace(args).get_run(args.run_id).compare(args.a, args.b, args.metric)
    _print_json(comparison.as_dict()) if args.json else sys.stdout.write(f"{comparison}\n")
    return 0


def cmd_winner(args: argparse.Namespace) -> int:
    from workbench.analysis import bounds

    decision = _workspace(args).get_run(args.run_id).winner(args.metric, bounds(args.min, args.max))
    if args.json:
        _print_json(decision.as_dict())
    else:
        sys.stdout.write(f"winner: {decision.winner}\n{decision.reason}\n\n")
        _print_table(decision.table)
    return 0 if decision.winner is not None else EXIT_RUN_FAILED


def cmd_retrieval_eval(args: argparse.Namespace) -> int:
    from workbench.commands import retrieval_eval_by_name, retrieval_eval_from_spec

    ws = _workspace(args)
    board = retrieval_eval_from_spec(ws, args.spec) if args.spec else retrieval_eval_by_name(ws, args)
    if args.json:
        _print_json(json.loads(board.to_json(orient="records")))
    else:
        _print_table(board)
    return 0


def cmd_grid(args: argparse.Namespace) -> int:
    """The grid's first page as text (the interactive grid is the notebook's ``%llmops grid``)."""
    from workbench.gridview import GridQuery

    store = _workspace(args).store
    query = GridQuery(store, [store.get_run(r)["run_id"] for r in args.run_ids])
    frame = query.frame(query.default_state(), limit=args.page_size)
    frame.columns = [f"{a}:{b}" if a != "case" else b for a, b in frame.columns]
    if args.json:
        _print_json(json.loads(frame.to_json(orient="records")))
    else:
        _print_table(frame)
    return 0


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate between 0 and 1 (e.g. 0.05)")
    return value


def build_parser(
    parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser, magic: bool = False
) -> argparse.ArgumentParser:
    """The full command tree; the magics pass a parser class that raises instead of exiting, and ``magic=True``
    (usage says ``%llmops``, no ``--json``: the magic returns objects, cell bodies may replace positionals)."""
    common = parser_class(add_help=False)
    common.add_argument(
        "--workspace", "-w", default=None, help="workspace folder (default: $LLMOPS_WORKSPACE or ./.llmops)"
    )
    if magic:
        common.set_defaults(json=False)
    else:
        common.add_argument("--json", action="store_true", help="print machine-readable JSON")
    progress = parser_class(add_help=False)
    progress.add_argument("--no-progress", action="store_true", help="do not show progress")
    progress.add_argument(
        "--max-failure-rate",
        type=_rate,
        default=None,
        metavar="RATE",
        help="exit with code 3 when any variant's share of failed cells passes RATE (0-1); "
        "default: only when a variant failed entirely",
    )

    parser = parser_class(
        prog="%llmops" if magic else "llmops", description="LLMOps Workbench: evaluate prompt/model/RAG grids."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "run",
        parents=[common, progress],
        help="run an experiment spec (YAML)",
        description="Run every cell of an experiment spec; identical requests are answered from the cache.",
    )
    p.add_argument(
        "spec",
        nargs="?",
        help="path of the YAML spec (in %%%%llmops run, the cell body may hold the YAML instead)",
    )
    p.add_argument("--dry-run", action="store_true", help="check the spec and render all prompts; no model call")
    from workbench.commands import add_run_options

    add_run_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "resume",
        parents=[common, progress],
        help="run the missing cells of a run",
        description="Resume a run that was interrupted or killed: only missing cells run.",
    )
    p.add_argument("run_id", help="run id (or a unique prefix)")
    p.add_argument("--retry-failed", action="store_true", help="also re-run cells that failed")
    p.add_argument(
        "--force",
        action="store_true",
        help="take over a run whose owner on another host cannot be checked (only once that process is gone)",
    )
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("runs", parents=[common], help="list runs", description="List the runs in the workspace.")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser(
        "results",
        parents=[common],
        help="export a run's cells",
        description="Export one row per cell with outputs, scores, cost and errors.",
    )
    p.add_argument("run_id", help="run id (or a unique prefix)")
    p.add_argument("--format", choices=["csv", "json", "parquet"], default="csv", help="output format")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.add_argument(
        "--raw",
        action="store_true",
        help="CSV: write cells starting with = + - @ tab or CR verbatim (default: prefix a ' so spreadsheets "
        "do not run them as formulas)",
    )
    p.set_defaults(func=cmd_results)

    p = sub.add_parser(
        "leaderboard",
        parents=[common],
        help="per-variant means, cost and latency",
        description="Show a run's leaderboard.",
    )
    p.add_argument("run_id", help="run id (or a unique prefix)")
    if magic:
        p.add_argument("--plot", action="store_true", help="draw the charts (means with CIs, distributions, ...)")
    else:
        p.add_argument("--plot", metavar="FILE", help="also save the charts to FILE (.html, .png, .svg or .json)")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser(
        "sql",
        parents=[common],
        help="read-only SQL over the workspace",
        description="Run one read-only SELECT over the workspace tables.",
    )
    p.add_argument("query", nargs="?" if magic else None, help="a SELECT statement (in %%%%llmops sql: the cell body)")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser(
        "demo",
        parents=[common, progress],
        help="run the offline demo",
        description="Run the offline PubMedQA demo with the embedded baseline model.",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("metrics", parents=[common], help="list metrics", description="List every metric by name.")
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser(
        "compare",
        parents=[common],
        help="paired comparison of two variants",
        description="Paired difference of variant A minus B on a metric, with its CI and p-value.",
    )
    p.add_argument("run_id", help="run id (or a unique prefix)")
    p.add_argument("a", help="variant A")
    p.add_argument("b", help="variant B")
    p.add_argument("--metric", "-m", required=True, help="metric label")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "winner",
        parents=[common],
        help="pick the best variant under constraints",
        description="Choose the best variant on a metric among those meeting every constraint.",
    )
    p.add_argument("run_id", help="run id (or a unique prefix)")
    p.add_argument("--metric", "-m", required=True, help="metric label to maximise (or minimise)")
    p.add_argument(
        "--min", action="append", metavar="NAME=VALUE", help="lower bound, e.g. faithfulness=0.8 (repeatable)"
    )
    p.add_argument(
        "--max",
        action="append",
        metavar="NAME=VALUE",
        help="upper bound, e.g. latency_p95_ms=2000 or cost_per_1k=5 (repeatable)",
    )
    p.set_defaults(func=cmd_winner)

    p = sub.add_parser(
        "retrieval-eval",
        parents=[common],
        help="evaluate retrievers alone, no model call",
        description="Leaderboard of retrieval configs (hit@k, recall@k, MRR, nDCG@k, build and "
        "query time) on a dataset with gold document ids; makes no model call.",
    )
    p.add_argument(
        "spec", nargs="?", help="YAML with dataset, retrievers and (optionally) metrics naming the gold column"
    )
    from workbench.commands import add_commands, add_retrieval_eval_options

    add_retrieval_eval_options(p)
    p.set_defaults(func=cmd_retrieval_eval)
    add_commands(sub, common, progress)

    p = sub.add_parser(
        "grid",
        parents=[common],
        help="side-by-side grid of one run, or of two runs over one dataset",
        description="Cases as rows, variants as columns. In a notebook (%llmops grid) it is an interactive "
        "widget (filters, sorts, diffs, feedback); on the command line it prints the first page.",
    )
    p.add_argument("run_ids", nargs="+", metavar="RUN", help="run id (or a unique prefix); give two to compare runs")
    p.add_argument("--page-size", type=int, default=20, help="rows per page (default 20)")
    p.set_defaults(func=cmd_grid)

    for extra in _EXTRA_COMMANDS:
        extra(sub, common, progress)
    return parser


# Later modules (retrieval, analysis) add their subcommands here.
_EXTRA_COMMANDS: list[Any] = []


def _deploy_commands(sub: Any, common: argparse.ArgumentParser, progress: argparse.ArgumentParser) -> None:
    from workbench.cli_deploy import add_commands

    add_commands(sub, common, progress)


def _ops_commands(sub: Any, common: argparse.ArgumentParser, progress: argparse.ArgumentParser) -> None:
    from workbench.cli_ops import add_commands

    add_commands(sub, common, progress)


_EXTRA_COMMANDS.append(_deploy_commands)
_EXTRA_COMMANDS.append(_ops_commands)
def cmd_export_run(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    path = ws.get_run(args.run_id).archive(args.path)
    if args.json:
        _print_json({"path": str(path), "bytes": Path(path).stat().st_size})
    else:
        sys.stdout.write(f"wrote {path} ({Path(path).stat().st_size:,} bytes)\n")
    return 0


def cmd_import_run(args: argparse.Namespace) -> int:
    run = _workspace(args).import_run(args.path)
    if args.json:
        _print_json({"run_id": run.run_id, "status": run.status})
    else:
        sys.stdout.write(f"imported run {run.run_id} ({run.status})\n")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    result = _workspace(args).diff(args.run_a, args.run_b)
    if args.json:
        _print_json(result.as_dict())
    else:
        sys.stdout.write(str(result) + "\n")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    run = _workspace(args).get_run(args.run_id)
    _, report = run.replay(
        use_cache=not args.no_cache,
        retry_failed_judgements=args.retry_failed_judgements,
        progress=not args.no_progress and not args.json,
    )
    if args.json:
        _print_json(report.as_dict())
    else:
        sys.stdout.write(str(report) + "\n")
    return 0


def _run_archive_commands(sub: Any, common: Any, progress: Any) -> None:
    p = sub.add_parser(
        "export-run",
        parents=[common],
        help="write a run to one archive file",
        description="Write a run (cells, scores, judgements, feedback, dataset version, prompts, model configs "
        "without secrets, environment) to a zip of Parquet + JSON with sha256 checksums.",
    )
    p.add_argument("run_id", help="run id (or a unique prefix)")
    p.add_argument("path", help="archive file to write (.zip), or a folder")
    p.set_defaults(func=cmd_export_run)
    p = sub.add_parser(
        "import-run",
        parents=[common],
        help="load a run archive into the workspace",
        description="Load a run archive: checksums verified, idempotent, never overwrites a different run.",
    )
    p.add_argument("path", help="archive file written by export-run")
    p.set_defaults(func=cmd_import_run)
    p = sub.add_parser(
        "diff",
        parents=[common],
        help="what changed between two runs",
        description="By variant: dataset rows added/removed/changed, prompt text (unified diff), model and "
        "params, retriever settings, metrics; and paired score deltas (B - A) with confidence intervals.",
    )
    p.add_argument("run_a", help="the earlier run (id or unique prefix)")
    p.add_argument("run_b", help="the later run (id or unique prefix)")
    p.set_defaults(func=cmd_diff)
    p = sub.add_parser(
        "replay",
        parents=[common, progress],
        help="re-execute a run's cells and compare scores",
        description="Re-execute a stored or imported run's cells (its stored prompts) as a new run. With the cache "
        "the scores equal the original; with --no-cache every call is sent again and the report gives, per "
        "metric, original vs replayed, the difference and a paired test.",
    )
    p.add_argument("run_id", help="run id (or a unique prefix)")
    p.add_argument("--no-cache", action="store_true", help="send every model and judge call again")
    p.add_argument(
        "--retry-failed-judgements",
        action="store_true",
        help="re-ask judge prompts behind scores that failed (e.g. replies that did not parse)",
    )
    p.set_defaults(func=cmd_replay)


_EXTRA_COMMANDS.append(_run_archive_commands)


def main(argv: Sequence[str] | None = None) -> int:
    from workbench.providers import configure_environment

    configure_environment()  # before anything may import litellm: its cost map from the package, not the network
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ModelFatalError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_RUN_FAILED
    except WorkbenchError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_BAD_INPUT
    except OSError as exc:  # a path the user gave cannot be read or written: say which, no traceback
        where = f" {exc.filename}" if exc.filename else ""
        sys.stderr.write(f"error:{where}: {exc.strerror or exc}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED


def entry() -> None:
    """The ``llmops`` process: ``main`` with the cyclic garbage collector tuned for a short-lived command.

    A cold run imports pandas, DuckDB and a model client (hundreds of thousands of long-lived objects) and then
    allocates mostly acyclic, reference-counted data: with the default thresholds the collector walks those
    imports again and again (~0.25 s CPU of a 3 s ``llmops run``). Rarer collections still bound cyclic garbage,
    also in the long-lived ``llmops serve``.
    At the end, freezing what is alive spares shutdown its last collections (~0.4 s): the process ends here,
    ``main`` has flushed and closed its files, and atexit handlers still run.
    """
    gc.set_threshold(50_000, 20, 10)
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
