"""CLI commands for bundles and serving: ``llmops export``, ``llmops bundle verify``, ``llmops serve``.

Kept apart from ``cli.py`` so the deploy face stays thin and separate; ``cli.py`` registers these through
``_EXTRA_COMMANDS``. Each command is a few lines over ``workbench.bundles`` / ``workbench.serving``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_export(args: argparse.Namespace) -> int:
    from workbench.analysis import bounds
    from workbench.cli import _print_json, _workspace
    from workbench.errors import ValidationError

    if len(args.targets) not in (1, 2):
        raise ValidationError("usage: llmops export RUN [VARIANT] PATH")
    variant, path = (None, args.targets[0]) if len(args.targets) == 1 else args.targets
    run = _workspace(args).get_run(args.run_id)
    out = run.export(
        path,
        variant,
        metric=args.metric,
        constraints=bounds(args.min, args.max),
        zip=args.zip,
        overwrite=args.force,
        allow_failing_gates=args.allow_failing_gates,
    )
    from workbench.bundles import verify

    _, manifest = verify(out)
    if args.json:
        _print_json({"path": str(out), "bundle_hash": manifest["bundle_hash"], "variant": manifest["variant"]})
    else:
        gates = ", ".join(
            f"{g['metric']} {g['op']} {g['threshold']:g}: {'ok' if g['passed'] else 'FAILED'}"
            for g in manifest["gates"]
        )
        sys.stdout.write(
            f"exported variant {manifest['variant']} of run {manifest['run_id']} to {out}\n"
            f"bundle hash {manifest['bundle_hash']}, {len(manifest['files'])} files"
            + (f"; gates: {gates}" if gates else "")
            + f"\nevidence: {out}/report.html (inside the archive for --zip)\n"
        )
    return 0


def cmd_bundle_verify(args: argparse.Namespace) -> int:
    from workbench.bundles import load_bundle, verify
    from workbench.cli import EXIT_RUN_FAILED, _print_json

    if not args.replay:
        _, manifest = verify(args.path)
        data: dict[str, Any] = {"ok": True, "bundle_hash": manifest["bundle_hash"], "files": len(manifest["files"])}
        _print_json(data) if args.json else sys.stdout.write(
            f"ok: {args.path} - bundle {manifest['bundle_hash'][:12]} ({manifest['variant']}), "
            f"{len(manifest['files'])} files verified\n"
        )
        return 0
    bundle = load_bundle(args.path)
    report = bundle.replay(limit=args.limit)
    if args.json:
        _print_json({"ok": True, "bundle_hash": bundle.hash, "replay": report.as_dict()})
    else:
        sys.stdout.write(f"ok: every file of {args.path} verified (bundle {bundle.hash[:12]})\n{report}\n")
    return 0 if report.identical else EXIT_RUN_FAILED


def cmd_serve(args: argparse.Namespace) -> int:
    from workbench.serving import ServeConfig, serve

    config = ServeConfig(
        bundles=[str(p) for p in args.bundles],
        split=args.split,
        log_dir=args.log_dir,
        log=not args.no_log,
        token_env=args.token_env or None,
        max_body_bytes=args.max_body_bytes,
    )
    serve(config, host=args.host, port=args.port, workers=args.workers)
    return 0


def add_commands(sub: Any, common: argparse.ArgumentParser, progress: argparse.ArgumentParser) -> None:
    """Register export / bundle / serve on the ``llmops`` parser (called by ``cli.build_parser``)."""
    p = sub.add_parser(
        "export",
        parents=[common],
        help="export a run's variant as a deployable bundle",
        description="Write a variant (or, with --metric, the winner) of a run as a bundle directory or .zip: "
        "manifest with sha256 of every file, prompt, model config (key names only), retrieval artifacts, "
        "eval cases, an HTML evidence report and pinned requirements. --min/--max become the bundle's gates.",
    )
    p.add_argument("run_id", help="run id (or a unique prefix)")
    p.add_argument("targets", nargs="+", metavar="[VARIANT] PATH", help="variant name (optional) and bundle path")
    p.add_argument("--zip", action="store_true", help="write a .zip archive instead of a directory")
    p.add_argument("--metric", "-m", help="with no VARIANT: export the winner on this metric")
    p.add_argument("--min", action="append", metavar="NAME=VALUE", help="gate: lower bound (repeatable)")
    p.add_argument("--max", action="append", metavar="NAME=VALUE", help="gate: upper bound (repeatable)")
    p.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    p.add_argument(
        "--allow-failing-gates", action="store_true", help="export even when a gate fails (recorded as failed)"
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "bundle",
        help="check a bundle",
        description="Bundle tools: `llmops bundle verify PATH [--replay]`.",
    )
    bsub = p.add_subparsers(dest="bundle_command", required=True, metavar="SUBCOMMAND", help="verify")
    v = bsub.add_parser(
        "verify",
        parents=[common],
        help="verify every hash of a bundle; --replay re-runs its eval cases",
        description="Verify every file of a bundle (directory or .zip) against its manifest. With --replay, run "
        "the recorded eval cases through the loaded bundle and report, per metric, the recorded and the "
        "replayed score; exit 1 when they differ.",
    )
    v.add_argument("path", help="bundle directory or .zip")
    v.add_argument("--replay", action="store_true", help="re-run the recorded eval cases and compare the scores")
    v.add_argument("--limit", type=int, default=None, help="replay only the first N cases")
    v.set_defaults(func=cmd_bundle_verify)

    p = sub.add_parser(
        "serve",
        help="serve one bundle (or two: A/B) over HTTP",
        description="Serve a bundle with FastAPI + uvicorn: POST /v1/answer, POST /v1/chat/completions "
        "(OpenAI-compatible), POST /v1/feedback, GET /health, /version, /metrics, /openapi.json. Two bundles "
        "make an A/B test (--split percent of traffic to B, sticky per user id). Every request is logged as "
        "JSONL under --log-dir (default <bundle folder>/logs/<bundle hash[:12]>).",
    )
    p.add_argument("bundles", nargs="+", metavar="BUNDLE", help="bundle directory or .zip (two for an A/B test)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (0 = any free port; the chosen one is printed)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (each writes its own log segments)")
    p.add_argument("--split", type=float, default=50.0, help="A/B: percent of traffic sent to the second bundle")
    p.add_argument("--log-dir", help="request-log folder (default <bundle folder>/logs/<bundle hash[:12]>)")
    p.add_argument("--no-log", action="store_true", help="do not write the request log")
    p.add_argument(
        "--token-env",
        default="LLMOPS_SERVE_TOKEN",
        help="name of the env var holding the bearer token; when it is set, requests must send it "
        "(default LLMOPS_SERVE_TOKEN; '' disables auth)",
    )
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="larger request bodies get 413 (default 1 MiB)")
    p.set_defaults(func=cmd_serve)
