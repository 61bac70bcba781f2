"""CLI commands for production: ``llmops ab``, ``monitor``, ``gate``, ``promote``, ``promotions``.

Kept apart from ``cli.py`` (which registers them through ``_EXTRA_COMMANDS``) so each face stays thin:
every command is a few lines over ``workbench.monitoring`` / ``workbench.promotion`` via the Workspace.
Exit codes: 0 ok, 1 a failed gate / refused promotion / monitoring alert, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from workbench.cli import EXIT_RUN_FAILED, _print_json, _print_table, _workspace


def _ab(args: argparse.Namespace) -> Any:
    return _workspace(args).ab(args.log, args.metric, arms=(args.arm_a, args.arm_b), where=args.where, alpha=args.alpha)


def _monitor(args: argparse.Namespace) -> Any:
    from workbench.analysis import bounds

    options = {"window": args.window, "where": args.where, "thresholds": bounds(None, args.max),
               "cache": not args.no_cache}  # fmt: skip
    if not (args.dataset or args.bundle or args.run):  # nothing to look up: no workspace to import or open
        from workbench import monitoring

        return monitoring.monitor(args.log, **options)
    return _workspace(args).monitor(args.log, dataset=args.dataset, bundle=args.bundle, run_id=args.run, **options)


def _gate(args: argparse.Namespace) -> Any:
    from workbench.analysis import bounds

    return _workspace(args).gate(args.target, bounds(args.min, args.max), variant=args.variant)


def cmd_ab(args: argparse.Namespace) -> int:
    result = _ab(args)
    _print_json(result.as_dict()) if args.json else sys.stdout.write(f"{result}\n")
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    report = _monitor(args)
    _print_json(report.as_dict()) if args.json else sys.stdout.write(f"{report}\n")
    return EXIT_RUN_FAILED if report.alerts else 0


def cmd_gate(args: argparse.Namespace) -> int:
    report = _gate(args)
    _print_json(report.as_dict()) if args.json else sys.stdout.write(f"{report}\n")
    return 0 if report.passed else EXIT_RUN_FAILED


def cmd_promote(args: argparse.Namespace) -> int:
    from workbench.analysis import bounds
    from workbench.errors import PromotionError

    try:
        done = _workspace(args).promote(
            args.bundle,
            args.to,
            approve=args.approve,
            note=args.note,
            constraints=bounds(args.min, args.max),
            progress=not (args.no_progress or args.json),
        )
    except PromotionError as exc:
        _print_json({"promoted": False, "reason": str(exc)}) if args.json else sys.stderr.write(f"refused: {exc}\n")
        return EXIT_RUN_FAILED
    _print_json({"promoted": True, **done.as_dict()}) if args.json else sys.stdout.write(f"{done}\n")
    return 0


def cmd_promotions(args: argparse.Namespace) -> int:
    frame = _workspace(args).promotions(args.bundle)
    if args.json:
        _print_json(json.loads(frame.to_json(orient="records", date_format="iso")))
    elif len(frame):
        _print_table(frame.drop(columns=["gates", "bundle_path"]))
    else:
        sys.stdout.write("no promotions yet: llmops promote BUNDLE --to qa\n")
    return 0


def add_commands(sub: Any, common: argparse.ArgumentParser, progress: argparse.ArgumentParser) -> None:
    bounds_help = "(repeatable) NAME=VALUE: a metric label or latency_p50_ms, latency_p95_ms, cost_per_1k, error_rate"
    p = sub.add_parser(
        "ab",
        parents=[common],
        help="A/B analysis of a served log",
        description="Per arm n and mean with a 95%% CI, the difference B - A with its p-value, and a verdict "
        "(A, B, or not yet significant with the sample size needed).",
    )
    p.add_argument("log", help="request log folder written by `llmops serve A B --split 50`")
    p.add_argument(
        "--metric", "-m", default="feedback",
        help="feedback (ratings), latency_ms, cost, tokens, error, a safety flag (pii, secrets, prompt_injection) "
        "or a numeric log column",
    )  # fmt: skip
    p.add_argument("--where", help="SQL condition over the log's columns, e.g. \"ts >= '2026-01-01'\"")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    p.add_argument("--arm-a", default="A", help="name of arm A in the log (default A)")
    p.add_argument("--arm-b", default="B", help="name of arm B in the log (default B)")
    p.set_defaults(func=cmd_ab)

    p = sub.add_parser(
        "monitor",
        parents=[common],
        help="monitor a served log (exit 1 on alerts)",
        description="Volume, error rate, latency p50/p95, tokens and cost per time window; drift of questions "
        "against the eval dataset and of retrieval scores; safety flags; exit code 1 when a threshold is crossed.",
    )
    p.add_argument("log", help="request log folder (requests-*.jsonl, feedback-*.jsonl)")
    p.add_argument("--dataset", "-d", help="eval dataset to measure question drift against (default: the bundle's)")
    p.add_argument("--bundle", "-b", help="the served bundle: its eval dataset and run are the drift references")
    p.add_argument("--run", help="eval run whose retrieval scores are the reference (default: the bundle's)")
    p.add_argument("--window", help="time window, e.g. 5m, 1h, 1d (default: at most 48 windows)")
    p.add_argument("--where", help="SQL condition over the log's columns")
    p.add_argument(
        "--max", action="append", metavar="NAME=VALUE",
        help="alert threshold (repeatable): error_rate, latency_p95_ms, cost_per_request, pii_rate, secrets_rate, "
        "prompt_injection_rate",
    )  # fmt: skip
    p.add_argument("--no-cache", action="store_true", help="parse every log segment again (no .monitor-cache)")
    p.set_defaults(func=cmd_monitor)

    p = sub.add_parser(
        "gate",
        parents=[common],
        help="check thresholds on a run or bundle (exit 1 on failure)",
        description="Check --min/--max thresholds against a run's leaderboard or a bundle's recorded evaluation "
        "(without thresholds, a bundle's own gates). Prints a report; exits 1 when a threshold fails.",
    )
    p.add_argument("target", help="run id (or prefix) or bundle path (folder or .zip)")
    p.add_argument("--min", action="append", metavar="NAME=VALUE", help="lower bound " + bounds_help)
    p.add_argument("--max", action="append", metavar="NAME=VALUE", help="upper bound " + bounds_help)
    p.add_argument("--variant", help="check only this variant of the run (default: every variant)")
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser(
        "promote",
        parents=[common, progress],
        help="promote a bundle dev -> qa -> prod",
        description="Record a bundle's promotion. prod needs --approve and the bundle's gates to pass on the "
        "current version of its eval dataset (its variant is re-run when the dataset has a newer version).",
    )
    p.add_argument("bundle", help="bundle path (folder or .zip)")
    p.add_argument("--to", required=True, choices=["qa", "prod"], help="target stage")
    p.add_argument("--approve", metavar="NAME", help="approver's name (required for prod; stored with the time)")
    p.add_argument("--note", help="approval note")
    p.add_argument("--min", action="append", metavar="NAME=VALUE", help="extra lower-bound gate " + bounds_help)
    p.add_argument("--max", action="append", metavar="NAME=VALUE", help="extra upper-bound gate " + bounds_help)
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser(
        "promotions",
        parents=[common],
        help="list promotions",
        description="Every promotion attempt (promoted and refused) with stage, approver, time and gates.",
    )
    p.add_argument("bundle", nargs="?", help="only this bundle (path or bundle hash)")
    p.set_defaults(func=cmd_promotions)


# Commands whose result object the %llmops magic returns for display (report HTML, charts).
RESULT_BUILDERS: dict[str, Any] = {"ab": _ab, "monitor": _monitor, "gate": _gate}
