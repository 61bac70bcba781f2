"""``%llmops`` / ``%%llmops`` magics: the CLI's commands, returning rich objects instead of printing.

Thin over the Python API and the CLI's own parser (so both faces accept the same arguments);
the parser raises instead of exiting, so a typo never kills the kernel.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from workbench.errors import SpecError, ValidationError, WorkbenchError


class _MagicArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that reports instead of calling sys.exit."""

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise _MagicArgumentError(message or "")

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _MagicArgumentError(f"{self.format_usage()}{self.prog}: error: {message}")

    def print_help(self, file: Any = None) -> None:
        raise _MagicArgumentError(self.format_help())


def _parser() -> argparse.ArgumentParser:
    from workbench.cli import build_parser

    parser = build_parser(_Parser)
    parser.prog = "%llmops"
    return parser


def llmops(line: str, cell: str | None = None) -> Any:
    """Run one ``%llmops`` command; returns a DataFrame, Run, Comparison or Decision to display."""
    from workbench.workspace import Workspace

    try:
        args = _parser().parse_args(shlex.split(line))
    except ValueError as exc:  # shlex: an unclosed quote
        print(f"error: cannot parse the command line ({exc}); check the quotes")
        return None
    except _MagicArgumentError as exc:
        print(str(exc).rstrip())
        return None
    try:
        ws = Workspace(args.workspace)
        command = args.command
        if command == "run":
            if cell and cell.strip():
                import yaml

                from workbench import spec as _spec

                try:
                    data = yaml.safe_load(cell)
                except yaml.YAMLError as exc:
                    raise SpecError(f"%%llmops cell: not valid YAML: {exc}") from None
                exp = ws.from_spec(_spec.parse(data, "%%llmops cell"), base=None)
            elif args.spec:
                exp = ws.from_spec(args.spec)
            else:
                raise ValidationError("%llmops run needs a spec path, or use %%llmops run with the YAML in the cell")
            if args.dry_run:
                return exp.plan()
            return exp.run(progress=not args.no_progress)
        if command == "resume":
            return ws.get_run(args.run_id).resume(
                progress=not args.no_progress, retry_failed=args.retry_failed, force=args.force
            )
        if command == "runs":
            return ws.runs()
        if command == "results":
            frame = ws.get_run(args.run_id).results()
            if args.output:
                from workbench.export import write

                write(frame, args.format, args.output, escape_formulas=not args.raw)
            return frame
        if command == "leaderboard":
            return ws.get_run(args.run_id).leaderboard()
        if command == "sql":
            return ws.sql(cell if cell and cell.strip() else args.query)
        if command == "demo":
            from workbench.demo import demo_experiment

            return demo_experiment(ws).run(progress=not args.no_progress)
        if command == "metrics":
            import pandas as pd

            from workbench.metrics.registry import all_metrics

            return pd.DataFrame(
                [
                    {"name": d.name, "needs_judge": d.needs_judge, "description": d.description}
                    for d in all_metrics().values()
                ]
            )
        if command == "compare":
            return ws.get_run(args.run_id).compare(args.a, args.b, args.metric)
        if command == "winner":
            from workbench.analysis import bounds

            return ws.get_run(args.run_id).winner(args.metric, bounds(args.min, args.max))
        # commands added by later modules fall back to the CLI's printed form
        args.func(args)
        return None
    except WorkbenchError as exc:
        print(f"error: {exc}")
        return None


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics; litellm (seconds to import) is warmed in the background only once a model needs it."""
    from workbench.providers import configure_environment, warm_when_needed

    configure_environment()
    warm_when_needed()

    def _magic(line: str, cell: str | None = None) -> Any:
        return llmops(line, cell)

    _magic.__doc__ = "LLMOps Workbench. `%llmops --help` lists the commands; `%llmops COMMAND --help` explains one."
    ipython.register_magic_function(_magic, magic_kind="line_cell", magic_name="llmops")
