"""Subcommands that manage stored names (datasets, prompts, retrievers) and compose runs from them.

Shared by both faces: each subcommand has a ``handler(ws, args, cell)`` that returns an object (a
DataFrame, a Dataset, a PromptDiff, ...). The ``%llmops`` magic displays that object; ``llmops`` (the
CLI) prints it, or its JSON with ``--json``. All logic is in the Python API (``Workspace``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.errors import SpecError, ValidationError

Handler = Callable[[Any, argparse.Namespace, "str | None"], Any]


def parse_metric(text: str) -> str | dict[str, Any]:
    """``token_f1:expected=answer:label=f1`` -> ``{"name": "token_f1", "expected": "answer", "label": "f1"}``."""
    import yaml

    name, *options = text.split(":")
    if not name:
        raise ValidationError(f"metric {text!r}: needs a name, e.g. token_f1:expected=answer")
    if not options:
        return name
    out: dict[str, Any] = {"name": name}
    for opt in options:
        key, sep, value = opt.partition("=")
        if not sep or not key:
            raise ValidationError(f"metric {text!r}: options look like key=value, got {opt!r}")
        try:
            out[key] = yaml.safe_load(value) if value else value
        except yaml.YAMLError:
            out[key] = value
    return out


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def composed_experiment(ws: Any, args: argparse.Namespace) -> Any:
    """``run --dataset D --prompts a,b --models m --retrievers r1,r2 --metrics token_f1:expected=answer``."""
    prompts, models = _split(args.prompts), _split(args.models)
    missing = [flag for flag, v in (("--prompts", prompts), ("--models", models)) if not v]
    if missing:
        raise ValidationError(
            f"run --dataset needs {' and '.join(missing)} too: stored prompt names (%%llmops prompt NAME) and "
            "models (litellm strings such as local/extractive or openai/gpt-4o-mini, or names of stored models)"
        )
    metrics = [parse_metric(m) for m in _split(args.metrics)]
    return ws.experiment(
        args.dataset,
        prompts,
        models,
        metrics,
        retrievers=_split(args.retrievers),
        repeats=args.repeats,
        concurrency=args.concurrency,
        name=args.name,
    )


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Options of ``run`` that build an experiment from stored names instead of a spec."""
    g = p.add_argument_group("compose from stored names (instead of a spec)")
    g.add_argument("--dataset", help="stored dataset name (or name@vN)")
    g.add_argument("--prompts", help="comma-separated stored prompt names (name or name@vN)")
    g.add_argument("--models", help="comma-separated litellm model strings or stored model names")
    g.add_argument("--retrievers", help="comma-separated stored retriever names (optional)")
    g.add_argument(
        "--metrics",
        help="comma-separated metrics, options after ':', e.g. token_f1:expected=answer,contains:expected=answer",
    )
    g.add_argument("--repeats", type=int, default=1, help="repeats per cell (default 1)")
    g.add_argument("--concurrency", type=int, default=8, help="concurrent model calls (default 8)")
    g.add_argument("--name", help="a name for the run")


def retrieval_eval_by_name(ws: Any, args: argparse.Namespace) -> Any:
    """``retrieval-eval --dataset D --retrievers r1,r2 --gold COL``: retrievers alone, no model call."""
    names = _split(args.retrievers)
    if not args.dataset or not names or not args.gold:
        raise ValidationError(
            "retrieval-eval needs a spec path, or --dataset NAME --retrievers r1,r2 --gold COLUMN "
            "(the column holding the gold document ids)"
        )
    return ws.retrieval_eval(args.dataset, names, question=args.question, gold=args.gold, k=args.k)


def retrieval_eval_from_spec(ws: Any, spec_path: str) -> Any:
    """``retrieval-eval SPEC``: the dataset and retrievers of a YAML spec (the same file ``run`` takes)."""
    from workbench.spec import RetrievalEvalSpec, read_yaml

    path = Path(spec_path)
    spec = RetrievalEvalSpec.from_data(read_yaml(path), str(path))
    base = path.resolve().parent
    d = spec.dataset
    source = Path(d.path) if d.path and Path(d.path).is_absolute() else (base / d.path if d.path else None)
    ds = ws.add_dataset(d.name, source, id=d.id, fmt=d.format) if source else ws.dataset(d.name, d.version)
    return ws.retrieval_eval(ds, spec.retrievers, gold=spec.gold, k=spec.k, base=base)


def add_retrieval_eval_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("evaluate stored retrievers (instead of a spec)")
    g.add_argument("--dataset", help="stored dataset name")
    g.add_argument("--retrievers", help="comma-separated stored retriever names")
    g.add_argument("--gold", help="dataset column with the gold document id(s)")
    g.add_argument("--question", default="question", help="dataset column searched with (default: question)")
    g.add_argument("--k", type=int, help="evaluate every retriever at this depth (default: each one's top_k)")


# -- datasets ------------------------------------------------------------------------------------


def _dataset(ws: Any, args: argparse.Namespace, cell: str | None) -> Any:
    if args.action == "add":
        ds = ws.add_dataset(args.name, args.path, id=args.id)
        return ds
    if args.action == "list":
        return ws.datasets()
    if args.action == "show":
        return ws.dataset(args.name, args.version)
    if args.action == "profile":
        return ws.dataset(args.name, args.version).profile()
    raise ValidationError(f"unknown dataset action {args.action!r}")


# -- prompts -------------------------------------------------------------------------------------


def _prompt(ws: Any, args: argparse.Namespace, cell: str | None) -> Any:
    if args.action == "save":
        user = cell if cell is not None and cell.strip() else args.user
        if args.file:
            user = Path(args.file).read_text(encoding="utf-8")
        if not user or not user.strip():
            raise ValidationError(
                f"prompt {args.name!r}: no template text. In a notebook put it in the cell body "
                "(%%llmops prompt NAME); on the command line use --user TEXT or --file PATH"
            )
        return ws.save_prompt(args.name, user.strip("\n"), system=args.system)
    if args.action == "list":
        return ws.prompts()
    if args.action == "show":
        return ws.prompt(args.name, args.version)
    if args.action == "diff":
        return ws.prompt_diff(args.name, args.a, args.b)
    raise ValidationError(f"unknown prompt action {args.action!r}")


# -- retrievers ----------------------------------------------------------------------------------


def _retriever(ws: Any, args: argparse.Namespace, cell: str | None) -> Any:
    import yaml

    if args.action == "save":
        text = cell if cell is not None and cell.strip() else None
        base = Path.cwd()
        if args.file:
            text = Path(args.file).read_text(encoding="utf-8")
            base = Path(args.file).resolve().parent
        if not text:
            raise ValidationError(
                f"retriever {args.name!r}: no config. In a notebook put the YAML in the cell body "
                "(%%llmops retriever NAME); on the command line use --file PATH"
            )
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpecError(f"retriever {args.name!r}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise SpecError(
                f"retriever {args.name!r}: the YAML must be a mapping with the spec's retriever keys "
                "(corpus, chunker, embedder, index, top_k, hybrid, mmr, query, filter)"
            )
        data.pop("name", None)
        ws.add_retriever(args.name, data, base=base)
        return _retriever_view(ws, args.name, None)
    if args.action == "list":
        return ws.retrievers()
    if args.action == "show":
        return _retriever_view(ws, args.name, args.version)
    raise ValidationError(f"unknown retriever action {args.action!r}")


class RetrieverView:
    """A stored retriever config shown as its YAML (what you would write in a spec)."""

    def __init__(self, name: str, version: int, config: dict[str, Any]) -> None:
        self.name, self.version, self.config = name, version, config

    def yaml(self) -> str:
        import yaml

        return str(yaml.safe_dump(self.config, sort_keys=False, default_flow_style=False))

    def __repr__(self) -> str:
        return f"retriever {self.name!r} v{self.version}\n{self.yaml()}"

    def _repr_html_(self) -> str:
        import html

        return f"<b>retriever {html.escape(self.name)} v{self.version}</b><pre>{html.escape(self.yaml())}</pre>"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "config": self.config}


def _retriever_view(ws: Any, name: str, version: int | None) -> RetrieverView:
    cfg = ws.retriever(name, version)
    rec = ws.store.find_retriever(name, version)
    return RetrieverView(name, int(rec["version"]), cfg.model_dump(mode="json", by_alias=True, exclude_none=True))


# -- wiring --------------------------------------------------------------------------------------


def _print(obj: Any, as_json: bool) -> None:
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        if as_json:
            sys.stdout.write(obj.to_json(orient="records", date_format="iso", indent=2) + "\n")
        else:
            sys.stdout.write(repr(obj) + "\n")
        return
    if hasattr(obj, "to_pandas"):  # a Dataset: its reference and first rows
        sys.stdout.write(f"dataset {obj.ref} ({obj.n_cases} cases, hash {obj.hash[:12]})\n")
        _print(obj.to_pandas().head(10), as_json)
        return
    if hasattr(obj, "record"):  # a Prompt
        obj = {**obj.record(), "version": obj.version}
    if as_json:
        data = obj.as_dict() if hasattr(obj, "as_dict") else obj
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        sys.stdout.write((json.dumps(obj, indent=2) if isinstance(obj, dict) else str(obj)) + "\n")


def _cli(handler: Handler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from workbench.workspace import Workspace

        _print(handler(Workspace(args.workspace), args, None), bool(getattr(args, "json", False)))
        return 0

    return run


def add_commands(sub: Any, common: argparse.ArgumentParser, progress: argparse.ArgumentParser) -> None:
    """Add ``dataset``, ``prompt`` and ``retriever`` (each with list/show/... actions) to the command tree."""
    p = sub.add_parser(
        "dataset",
        help="add, list, show or profile stored datasets",
        description="Manage the workspace's datasets (immutable, versioned by content).",
    )
    acts = p.add_subparsers(dest="action", required=True, metavar="ACTION", help="one of the actions below")
    a = acts.add_parser(
        "add", parents=[common], help="store a file as a dataset version", description="Store a dataset version."
    )
    a.add_argument("name", help="dataset name")
    a.add_argument("path", help="CSV, JSONL, JSON or Parquet file")
    a.add_argument("--id", help="column with stable case ids (default: row hashes)")
    acts.add_parser("list", parents=[common], help="list datasets", description="List stored datasets and versions.")
    for action, text in (("show", "show the first rows"), ("profile", "column statistics")):
        a = acts.add_parser(action, parents=[common], help=text, description=f"Dataset: {text}.")
        a.add_argument("name", help="dataset name")
        a.add_argument("--version", help="version number or hash prefix (default: latest)")
    p.set_defaults(func=_cli(_dataset), handler=_dataset)

    p = sub.add_parser(
        "prompt",
        help="save, list, show or diff prompt versions",
        description="Manage prompt templates. In a notebook, `%%llmops prompt NAME [--system TEXT]` stores the "
        "cell body as a new version of NAME and shows the diff to the previous one.",
    )
    acts = p.add_subparsers(dest="action", required=True, metavar="ACTION", help="one of the actions below")
    a = acts.add_parser(
        "save",
        parents=[common],
        help="store a new version",
        description="Store a prompt version (identical text keeps its version) and show the diff to the previous.",
    )
    a.add_argument("name", help="prompt name")
    a.add_argument("--system", help="system message template")
    a.add_argument("--user", help="user message template (in %%%%llmops prompt: the cell body)")
    a.add_argument("--file", help="read the user template from this file")
    acts.add_parser("list", parents=[common], help="list prompts", description="List stored prompts and versions.")
    a = acts.add_parser("show", parents=[common], help="show one version", description="Show a prompt version.")
    a.add_argument("name", help="prompt name")
    a.add_argument("--version", type=int, help="version number (default: latest)")
    a = acts.add_parser(
        "diff", parents=[common], help="diff two versions", description="Line diff between two prompt versions."
    )
    a.add_argument("name", help="prompt name")
    a.add_argument("a", type=int, nargs="?", help="old version (default: the one before B)")
    a.add_argument("b", type=int, nargs="?", help="new version (default: latest)")
    p.set_defaults(func=_cli(_prompt), handler=_prompt)

    p = sub.add_parser(
        "retriever",
        help="save, list or show named retriever configs",
        description="Manage named retrieval configs. In a notebook, `%%llmops retriever NAME` stores the cell's "
        "YAML (the spec's retriever keys: corpus, chunker, embedder, index, top_k, hybrid, mmr, query, filter).",
    )
    acts = p.add_subparsers(dest="action", required=True, metavar="ACTION", help="one of the actions below")
    a = acts.add_parser(
        "save", parents=[common], help="store a config", description="Store a named retriever config (YAML)."
    )
    a.add_argument("name", help="retriever name")
    a.add_argument("--file", help="YAML file with the config (in %%%%llmops retriever: the cell body)")
    acts.add_parser("list", parents=[common], help="list retrievers", description="List stored retriever configs.")
    a = acts.add_parser("show", parents=[common], help="show one config", description="Show a retriever config.")
    a.add_argument("name", help="retriever name")
    a.add_argument("--version", type=int, help="version number (default: latest)")
    p.set_defaults(func=_cli(_retriever), handler=_retriever)


CELL_ACTIONS = {"prompt": {"save", "list", "show", "diff"}, "retriever": {"save", "list", "show"}}


def normalize_tokens(tokens: list[str], has_cell: bool) -> list[str]:
    """Magic command lines as people type them.

    ``%%llmops prompt NAME ...`` (a cell with a body) means ``prompt save NAME ...``; ``-w DIR`` may come
    anywhere (it is moved to the end, where every command and action accepts it).
    """
    rest: list[str] = []
    moved: list[str] = []
    i = 0
    while i < len(tokens):
        if tokens[i] in ("-w", "--workspace") and i + 1 < len(tokens):
            moved += tokens[i : i + 2]
            i += 2
            continue
        if tokens[i].startswith("--workspace="):
            moved.append(tokens[i])
        else:
            rest.append(tokens[i])
        i += 1
    if has_cell and len(rest) >= 2 and rest[0] in CELL_ACTIONS and rest[1] not in CELL_ACTIONS[rest[0]]:
        if not rest[1].startswith("-"):
            rest = [rest[0], "save", *rest[1:]]
    return rest + moved
