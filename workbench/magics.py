"""``%llmops`` / ``%%llmops`` magics: the CLI's commands, returning rich objects instead of printing.

Thin over the Python API and the CLI's own parser (so both faces accept the same arguments);
the parser raises instead of exiting, so a typo never kills the kernel. ``--help`` works on every
command and says ``%llmops``; tab completion offers commands, run ids and stored names.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from workbench.errors import SpecError, ValidationError, WorkbenchError

# columns of run.results() that are blobs for programs, not for reading in a notebook table
BLOB_COLUMNS = ("messages", "retrieved", "request_key", "error_kind")


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

    return build_parser(_Parser, magic=True)


def _resume_hint() -> Any:
    from workbench.progress import RESUME_HINT

    return RESUME_HINT.set("%llmops resume {run_id}")


def llmops(line: str, cell: str | None = None) -> Any:
    """Run one ``%llmops`` command; returns a DataFrame, Run, Comparison, Decision, ... to display."""
    from workbench.commands import normalize_tokens
    from workbench.workspace import Workspace

    try:
        tokens = normalize_tokens(shlex.split(line), cell is not None)
        args = _parser().parse_args(tokens)
    except ValueError as exc:  # shlex: an unclosed quote
        print(f"error: cannot parse the command line ({exc}); check the quotes")
        return None
    except _MagicArgumentError as exc:
        print(str(exc).rstrip())
        return None
    try:
        ws = Workspace(args.workspace)
        command = args.command
        if command in ("run", "resume", "demo"):
            from workbench.progress import RESUME_HINT

            token = _resume_hint()
            try:
                return _run_like(ws, args, cell)
            finally:
                RESUME_HINT.reset(token)
        if command == "runs":
            return ws.runs()
        if command == "results":
            frame = ws.get_run(args.run_id).results()
            if args.output:
                from workbench.export import write

                write(frame, args.format, args.output, escape_formulas=not args.raw)
            from workbench.display import table

            return table(frame.drop(columns=[c for c in BLOB_COLUMNS if c in frame.columns]))
        if command == "leaderboard":
            run = ws.get_run(args.run_id)
            return run.charts() if args.plot else run.leaderboard()
        if command == "sql":
            query = cell if cell and cell.strip() else args.query
            if not query:
                raise ValidationError("%llmops sql needs a query: `%llmops sql SELECT ...` or a %%llmops sql cell")
            return ws.sql(query)
        if command == "metrics":
            return _metrics_table()
        if command == "compare":
            return ws.get_run(args.run_id).compare(args.a, args.b, args.metric)
        if command == "grid":
            return ws.grid(*args.run_ids, page_size=args.page_size)
        if command == "winner":
            from workbench.analysis import bounds

            return ws.get_run(args.run_id).winner(args.metric, bounds(args.min, args.max))
        from workbench.cli_ops import RESULT_BUILDERS

        if command in RESULT_BUILDERS:  # reports with HTML (and charts) to display
            return RESULT_BUILDERS[command](args)
        if command == "retrieval-eval":
            from workbench.commands import retrieval_eval_by_name, retrieval_eval_from_spec

            return retrieval_eval_from_spec(ws, args.spec) if args.spec else retrieval_eval_by_name(ws, args)
        if hasattr(args, "handler"):
            return args.handler(ws, args, cell)
        # commands added by later modules fall back to the CLI's printed form
        args.func(args)
        return None
    except WorkbenchError as exc:
        print(f"error: {exc}")
        return None


def _run_like(ws: Any, args: argparse.Namespace, cell: str | None) -> Any:
    progress = not args.no_progress
    if args.command == "resume":
        return ws.get_run(args.run_id).resume(progress=progress, retry_failed=args.retry_failed, force=args.force)
    if args.command == "demo":
        from workbench.demo import demo_experiment

        return demo_experiment(ws).run(progress=progress)
    if cell and cell.strip():
        import yaml

        from workbench import spec as _spec

        try:
            data = yaml.safe_load(cell)
        except yaml.YAMLError as exc:
            raise SpecError(f"%%llmops cell: not valid YAML: {exc}") from None
        exp = ws.from_spec(_spec.parse(data, "%%llmops cell"), base=None)
    elif args.dataset:
        from workbench.commands import composed_experiment

        exp = composed_experiment(ws, args)
    elif args.spec:
        exp = ws.from_spec(args.spec)
    else:
        raise ValidationError(
            "%llmops run needs a spec path, a %%llmops run cell with the YAML, or stored names: "
            "--dataset D --prompts a,b --models local/extractive [--retrievers r1,r2] [--metrics token_f1:expected=col]"
        )
    if args.dry_run:
        return exp.plan()
    return exp.run(progress=progress)


def _metrics_table() -> Any:
    import pandas as pd

    from workbench.display import table
    from workbench.metrics.registry import all_metrics

    return table(
        pd.DataFrame(
            [
                {
                    "name": d.name,
                    "needs_judge": d.needs_judge,
                    "higher_is_better": d.higher_is_better,
                    "description": d.description,
                }
                for d in all_metrics().values()
            ]
        )
    )


# -- tab completion --------------------------------------------------------------------------------

# which stored names complete the positional after each command (and action)
_NAME_KIND = {
    "resume": "run",
    "results": "run",
    "leaderboard": "run",
    "compare": "run",
    "winner": "run",
    ("dataset", "show"): "dataset",
    ("dataset", "profile"): "dataset",
    ("prompt", "show"): "prompt",
    ("prompt", "diff"): "prompt",
    ("prompt", "save"): "prompt",
    ("retriever", "show"): "retriever",
    ("retriever", "save"): "retriever",
}
_OPTION_KIND = {"--dataset": "dataset", "--prompts": "prompt", "--retrievers": "retriever", "--models": "model"}


def completions(line: str) -> list[str]:
    """Candidates for the last word of a ``%llmops`` line: commands, actions, options, run ids, names."""
    parser = _parser()
    words = line.split()
    if words and words[0].lstrip("%") == "llmops":
        words = words[1:]
    ends_blank = line.endswith((" ", "\t"))
    current = "" if ends_blank or not words else words[-1]
    before = words if ends_blank else words[:-1]
    sub = _subparsers(parser)
    if not before:
        return sorted(c for c in sub if c.startswith(current))
    command = before[0]
    cmd_parser = sub.get(command)
    if cmd_parser is None:
        return []
    actions = _subparsers(cmd_parser)
    positional = [w for w in before[1:] if not w.startswith("-")]
    if actions and not positional:
        return sorted(a for a in actions if a.startswith(current))
    if before[-1] in _OPTION_KIND:
        return _names(before, _OPTION_KIND[before[-1]], current.rpartition(",")[2], current.rpartition(",")[0])
    if current.startswith("-"):
        target = actions.get(positional[0], cmd_parser) if actions and positional else cmd_parser
        opts = {o for a in target._actions for o in a.option_strings}
        return sorted(o for o in opts if o.startswith(current))
    kind = _NAME_KIND.get((command, positional[0]) if actions and positional else command)
    needs_name = (len(positional) == 1) if actions else not positional
    if kind and needs_name:
        return _names(before, kind, current, "")
    return []


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _names(words: list[str], kind: str, prefix: str, head: str) -> list[str]:
    from workbench.store import names_at
    from workbench.workspace import default_path

    path = default_path()
    for flag in ("-w", "--workspace"):
        if flag in words and words.index(flag) + 1 < len(words):
            path = Path(words[words.index(flag) + 1])
    found = names_at(path, kind)
    return [f"{head},{n}" if head else n for n in found if n.startswith(prefix)]


def _completer(shell: Any, event: Any) -> list[str]:
    return completions(event.line)


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics; litellm (seconds to import) is warmed in the background only once a model needs it."""
    from workbench.providers import configure_environment, warm_when_needed

    configure_environment()
    warm_when_needed()

    def _magic(line: str, cell: str | None = None) -> Any:
        return llmops(line, cell)

    _magic.__doc__ = "LLMOps Workbench. `%llmops --help` lists the commands; `%llmops COMMAND --help` explains one."
    ipython.register_magic_function(_magic, magic_kind="line_cell", magic_name="llmops")
    for key in ("%llmops", "%%llmops", "llmops"):
        ipython.set_hook("complete_command", _completer, str_key=key)
