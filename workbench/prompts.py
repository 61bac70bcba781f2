"""Prompts: named chat templates (system, user, few-shot) with content-hashed versions.

Templates are Jinja2 in a sandbox with StrictUndefined: a typo in a variable name must fail loudly
before any paid call, not silently send an empty string to a model. ``Experiment.plan()`` renders every
template against every case and reports all problems together.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import time
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from workbench.errors import TemplateError
from workbench.store import dumps

ROLES = ("system", "user", "assistant")


# -- bounded rendering ---------------------------------------------------------------------------
#
# A template is user code: `{{ 'a' * 10**10 }}` would take the machine down, nested loops run forever, and
# `{{ question * 100000000 }}` would send a 500 MB prompt to a paid model. The sandbox below bounds every
# string or list a template builds (`*`, `+`, `~`, `%`, str.format, filters and method calls are checked
# *before* they allocate), the total size of each rendered message, and its rendering time (checked at every
# loop iteration, call and output chunk). Data is immutable inside templates (no list.append).

DEFAULT_MAX_CHARS = 1_000_000  # per rendered message and per value built: ~250k tokens, above any context window
DEFAULT_RENDER_SECONDS = 2.0  # per rendered message


@dataclass(frozen=True)
class RenderLimits:
    """Bounds for rendering one message; override per experiment (spec: ``max_prompt_chars``, ``render_timeout``)."""

    max_chars: int = DEFAULT_MAX_CHARS
    seconds: float = DEFAULT_RENDER_SECONDS


class RenderLimitError(TemplateError):
    """A template tried to build or render more than its limits allow."""


_BUDGET: ContextVar[tuple[int, float] | None] = ContextVar("workbench_render_budget", default=None)


def _budget() -> tuple[int, float]:
    budget = _BUDGET.get()
    if budget is None:  # a render outside render_bounded (should not happen): default limits from now
        budget = (DEFAULT_MAX_CHARS, time.monotonic() + DEFAULT_RENDER_SECONDS)
        _BUDGET.set(budget)
    return budget


def _tick() -> int:
    max_chars, deadline = _budget()
    if time.monotonic() > deadline:
        raise RenderLimitError(
            "rendering took longer than the render time budget (loops too long?); simplify the template or raise "
            "`render_timeout` in the spec (render_timeout= in Python)"
        )
    return max_chars


def _too_big(size: float, what: str) -> None:
    max_chars = _tick()
    if size > max_chars:
        raise RenderLimitError(
            f"the template builds {what} of {size:,.0f} characters/items, above the limit of {max_chars:,}; "
            "shorten it or raise `max_prompt_chars` in the spec (max_prompt_chars= in Python)"
        )


def _weight(value: Any, cap: int) -> int:
    """Size of a value a template holds: characters of strings, summed over (nested) sequences; stops past cap."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, tuple)):
        total = len(value)
        for item in value:
            if total > cap:
                break
            total += _weight(item, cap - total)
        return total
    if isinstance(value, dict):
        return len(value) + sum(_weight(k, cap) + _weight(v, cap) for k, v in list(value.items())[:cap])
    return 0


_FORMAT_NUMBER = re.compile(r"\{[^{}]*?:[^{}]*?(\d+)[^{}]*\}")
_PERCENT_NUMBER = re.compile(r"%[-#0 +]*(\d+)?(?:\.(\d+))?")


def _check_format_widths(fmt: str, style: str) -> None:
    pattern = _FORMAT_NUMBER if style == "{}" else _PERCENT_NUMBER
    for m in pattern.finditer(fmt):
        for g in m.groups():
            if g and len(g) > 12:
                _too_big(10.0 ** len(g), "a format width")
            elif g:
                _too_big(int(g), "a format width")


def _check_args(args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """An integer argument is a size (width, count, repeat) as far as a limit is concerned."""
    for v in (*args, *kwargs.values()):
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 0:
            _too_big(abs(v), "a size argument")


def _predict(obj: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """Result sizes of the str methods and filters that can multiply their input, before they run."""
    name = getattr(obj, "__name__", "")
    target = getattr(obj, "__self__", None)
    if isinstance(target, str):
        if name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
            hits = target.count(args[0]) if args[0] else len(target) + 1
            _too_big(len(target) + hits * max(len(args[1]) - len(args[0]), 0), "a string (replace)")
        elif name == "expandtabs":
            size = args[0] if args else kwargs.get("tabsize", 8)
            if isinstance(size, int):
                _too_big(len(target) + target.count("\t") * size, "a string (expandtabs)")
        elif name == "join" and args:
            items = list(args[0]) if not isinstance(args[0], str) else list(args[0])
            _too_big(_weight(items, 10**12) + len(target) * len(items), "a string (join)")


def _bounded_filter(name: str, fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _check_args([a for a in args if isinstance(a, int)], {k: v for k, v in kwargs.items() if isinstance(v, int)})
        plain = [a for a in args if isinstance(a, (str, list, tuple))]
        if name == "replace" and len(plain) >= 3:
            s, old, new = (str(x) for x in plain[:3])
            hits = s.count(old) if old else len(s) + 1
            _too_big(len(s) + hits * max(len(new) - len(old), 0), "a string (replace filter)")
        elif name == "indent" and plain and isinstance(plain[0], str):
            width = next((a for a in args[1:] if isinstance(a, int)), kwargs.get("width", 4))
            if isinstance(width, int):
                _too_big(len(plain[0]) + (plain[0].count("\n") + 1) * width, "a string (indent filter)")
        elif name == "format" and plain and isinstance(plain[0], str):
            _check_format_widths(plain[0], "%")
        elif name == "join" and plain:
            seq = plain[0]
            sep = plain[1] if len(plain) > 1 and isinstance(plain[1], str) else ""
            _too_big(_weight(list(seq), 10**12) + len(sep) * len(seq), "a string (join filter)")
        result = fn(*args, **kwargs)
        if isinstance(result, (str, list, tuple)):
            _too_big(_weight(result, _tick() + 1), "a value")
        return result

    return wrapper


def _loop(iterable: Any) -> Any:
    """Every template loop iterates through here: each step checks the time budget."""
    for item in iterable:
        _tick()
        yield item


def _concat(*parts: Any) -> str:
    texts = [str(p) for p in parts]
    _too_big(sum(len(t) for t in texts), "a string (~)")
    return "".join(texts)


def _make_env() -> Any:
    from jinja2 import StrictUndefined, nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from jinja2.visitor import NodeTransformer

    class _Bounder(NodeTransformer):
        def visit_For(self, node: Any) -> Any:
            node = self.generic_visit(node)
            node.iter = nodes.Call(nodes.Name("_wb_loop", "load"), [node.iter], [], None, None)
            return node

        def visit_Concat(self, node: Any) -> Any:
            node = self.generic_visit(node)
            return nodes.Call(nodes.Name("_wb_concat", "load"), list(node.nodes), [], None, None)

    class BoundedEnvironment(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**", "+", "%"})

        def _parse(self, source: str, name: str | None, filename: str | None) -> Any:
            return _Bounder().visit(super()._parse(source, name, filename))

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            cap = _tick()
            if operator == "*":
                for a, b in ((left, right), (right, left)):
                    if isinstance(a, (str, list, tuple)) and isinstance(b, int) and not isinstance(b, bool):
                        _too_big(_weight(a, cap + 1) * max(b, 0), "a repeated string or list")
            elif operator == "**":
                if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                    if right * math.log2(abs(left)) > 4096:
                        raise RenderLimitError(f"the template computes {left}**{right}, a number too large to use")
            elif operator == "+":
                if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                    _too_big(_weight(left, cap + 1) + _weight(right, cap + 1), "a string or list (+)")
            elif operator == "%" and isinstance(left, str):
                _check_format_widths(left, "%")
            return super().call_binop(context, operator, left, right)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            if __obj is not _loop and __obj is not _concat:
                _check_args(args, kwargs)
                _predict(__obj, args, kwargs)
            result = super().call(__context, __obj, *args, **kwargs)
            if isinstance(result, (str, list, tuple)):
                _too_big(_weight(result, _tick() + 1), "a value")
            return result

        def wrap_str_format(self, value: Any) -> Any:
            wrapped = super().wrap_str_format(value)
            if wrapped is None:
                return None
            fmt = value.__self__

            def checked(*args: Any, **kwargs: Any) -> str:
                _check_format_widths(fmt, "{}")
                return wrapped(*args, **kwargs)  # type: ignore[no-any-return]

            return checked

    env = BoundedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.filters = {name: _bounded_filter(name, fn) for name, fn in env.filters.items()}
    env.globals.pop("lipsum", None)  # n paragraphs of filler: no use in a prompt, and a way to blow the limits
    env.globals["_wb_loop"] = _loop
    env.globals["_wb_concat"] = _concat

    def concat(parts: Any) -> str:  # block sets, macros and whole templates are joined here
        items = list(parts)
        _too_big(sum(len(p) for p in items), "rendered text")
        return "".join(items)

    env.concat = concat  # type: ignore[method-assign]
    return env


@lru_cache(maxsize=1)
def _env() -> Any:
    return _make_env()


def render_bounded(template: Any, variables: Mapping[str, Any], limits: RenderLimits | None = None) -> str:
    """Render one compiled template within ``limits``: size of values built, output size, time."""
    limits = limits or RenderLimits()
    token = _BUDGET.set((limits.max_chars, time.monotonic() + limits.seconds))
    try:
        out: list[str] = []
        size = 0
        for i, chunk in enumerate(template.generate(variables)):
            size += len(chunk)
            if size > limits.max_chars:
                raise RenderLimitError(
                    f"the rendered message is longer than {limits.max_chars:,} characters; shorten the template or "
                    "its inputs, or raise `max_prompt_chars` in the spec (max_prompt_chars= in Python)"
                )
            if not i & 255:  # loops and calls check the clock themselves; output checks it now and then
                _tick()
            out.append(chunk)
        return "".join(out)
    finally:
        _BUDGET.reset(token)


class RenderFailure(TemplateError):
    """Some parts of a prompt (system, few-shot, user) did not render; ``parts`` holds (part, problem) for each."""

    def __init__(self, prompt: str, parts: list[tuple[str, str]]) -> None:
        self.parts = parts
        super().__init__(f"prompt {prompt!r}: " + "; ".join(f"{part}: {problem}" for part, problem in parts))


@dataclass(frozen=True)
class Prompt:
    """A chat template. ``few_shot`` is a list of ``{role, content}`` messages placed before the user turn."""

    name: str
    user: str
    system: str | None = None
    few_shot: tuple[Mapping[str, str], ...] = ()
    version: int | None = field(default=None, compare=False)  # set when stored in / loaded from a workspace
    _compiled: dict[str, Any] = field(default_factory=dict, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise TemplateError(f"a prompt needs a non-empty name, got {self.name!r}")
        if not isinstance(self.user, str) or not self.user.strip():
            raise TemplateError(f"prompt {self.name!r}: the user template is empty; give it some text")
        shots = tuple(dict(m) for m in (self.few_shot or ()))
        for i, m in enumerate(shots):
            if set(m) != {"role", "content"} or m["role"] not in ROLES:
                raise TemplateError(
                    f"prompt {self.name!r}: few_shot[{i}] must be {{role: user|assistant|system, content: ...}}, "
                    f"got {m!r}"
                )
        object.__setattr__(self, "few_shot", shots)
        from jinja2 import TemplateSyntaxError

        parts = {"system": self.system, "user": self.user}
        parts.update({f"few_shot[{i}]": m["content"] for i, m in enumerate(shots)})
        for part, text in parts.items():
            if text is None:
                continue
            try:
                self._compiled[part] = _env().from_string(text)
            except TemplateSyntaxError as exc:
                raise TemplateError(
                    f"prompt {self.name!r}, {part}: template syntax error on line {exc.lineno}: {exc.message}"
                ) from None
            except (RecursionError, MemoryError, ValueError, TypeError) as exc:
                raise TemplateError(
                    f"prompt {self.name!r}, {part}: the template cannot be compiled ({type(exc).__name__}: {exc}); "
                    "is it nested too deeply?"
                ) from None

    @property
    def hash(self) -> str:
        """Content hash: the template text only, so renaming a prompt keeps its identity."""
        content = {"system": self.system, "user": self.user, "few_shot": list(self.few_shot)}
        return hashlib.sha256(dumps(content).encode()).hexdigest()

    def render(self, variables: Mapping[str, Any], limits: RenderLimits | None = None) -> list[dict[str, str]]:
        """Chat messages for one case, each rendered within ``limits``.

        Every part is rendered even when an earlier one fails, so one RenderFailure names all failing parts.
        """
        parts: list[tuple[str, str]] = []
        if self.system is not None:
            parts.append(("system", "system"))
        parts.extend((f"few_shot[{i}]", m["role"]) for i, m in enumerate(self.few_shot))
        parts.append(("user", "user"))
        messages: list[dict[str, str]] = []
        failures: list[tuple[str, str]] = []
        for part, role in parts:
            try:
                messages.append({"role": role, "content": render_bounded(self._compiled[part], variables, limits)})
            except Exception as exc:  # noqa: BLE001 - every template failure becomes one typed error below
                failures.append((part, render_error_text(exc)))
        if failures:
            raise RenderFailure(self.name, failures)
        return messages

    def _repr_html_(self) -> str:
        import html

        parts = [("system", self.system)] + [(f"few-shot {m['role']}", m["content"]) for m in self.few_shot]
        parts.append(("user", self.user))
        body = "".join(
            f"<div><small>{html.escape(role)}</small><pre style='white-space:pre-wrap;margin:0 0 4px'>"
            f"{html.escape(text)}</pre></div>"
            for role, text in parts
            if text is not None
        )
        version = f" v{self.version}" if self.version is not None else ""
        return f"<b>prompt {html.escape(self.name)}{version}</b> <small>{self.hash[:12]}</small>{body}"

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "hash": self.hash,
            "system": self.system,
            "user": self.user,
            "few_shot": list(self.few_shot),
        }


def template_vars(case: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Variables a template sees: every dataset column, ``case`` (the row) and extras such as ``context``."""
    out = dict(case)
    out["case"] = case
    if extra:
        out.update(extra)
    return out


@dataclass
class RenderProblem:
    variant: str
    problem: str
    case_ids: list[str]


def describe_problems(problems: Sequence[RenderProblem], columns: Sequence[str]) -> str:
    lines = [f"{len(problems)} template problem(s) found before any model call:"]
    for p in problems:
        ids = ", ".join(p.case_ids[:5]) + (f" and {len(p.case_ids) - 5} more" if len(p.case_ids) > 5 else "")
        lines.append(f"  - variant {p.variant!r}: {p.problem} (cases: {ids})")
    lines.append(
        f"Dataset columns available to templates: {list(columns)} (plus `case`, and `context`/`chunks` "
        "with a retriever)."
    )
    return "\n".join(lines)


def render_error_text(exc: BaseException) -> str:
    from jinja2 import UndefinedError

    if isinstance(exc, UndefinedError):
        return f"undefined variable: {exc.message}"
    if isinstance(exc, RenderLimitError):
        return f"limit: {exc}"
    if isinstance(exc, RecursionError):
        return "RecursionError: the template recurses too deeply (a macro calling itself?)"
    if isinstance(exc, MemoryError):
        return "MemoryError: the template needs more memory than is available"
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def prompt_lines(p: Prompt) -> list[str]:
    """A prompt as readable lines, each tagged with its part; the one form versions are shown and diffed in."""
    out = [f"[system] {line}" for line in (p.system or "").splitlines()]
    for i, m in enumerate(p.few_shot):
        out += [f"[few_shot {i} {m['role']}] {line}" for line in m["content"].splitlines()]
    return out + [f"[user] {line}" for line in p.user.splitlines()]


@dataclass(frozen=True)
class PromptDiff:
    """Line diff between two prompt versions (system, few-shot and user parts), for people to read."""

    name: str
    old: Prompt | None
    new: Prompt

    def _texts(self, p: Prompt | None) -> list[str]:
        return prompt_lines(p) if p is not None else []

    @property
    def changed(self) -> bool:
        return self.old is None or self.old.hash != self.new.hash

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "old_version": self.old.version if self.old is not None else None,
            "new_version": self.new.version,
            "changed": self.changed,
            "diff": self.lines() if self.old is not None else self._texts(self.new),
        }

    def lines(self) -> list[str]:
        """Unified diff lines (no headers); an empty list when nothing changed."""
        import difflib

        diff = difflib.unified_diff(self._texts(self.old), self._texts(self.new), lineterm="", n=3)
        return [d for d in diff if not d.startswith(("---", "+++"))]

    def _title(self) -> str:
        if self.old is not None and not self.changed:
            return f"prompt {self.name!r} v{self.new.version}"
        old = f"v{self.old.version}" if self.old is not None else "nothing"
        return f"prompt {self.name!r}: {old} -> v{self.new.version}"

    def __str__(self) -> str:
        if self.old is None:
            return f"{self._title()} (first version)\n" + "\n".join(self._texts(self.new))
        if not self.changed:
            return f"{self._title()}: identical content, no new version"
        return f"{self._title()}\n" + "\n".join(self.lines())

    __repr__ = __str__

    def _repr_html_(self) -> str:
        import html

        colours = {"+": "#e6ffec", "-": "#ffebe9", "@": "#f0f0f0"}
        if self.old is None:
            rows = [(" ", t) for t in self._texts(self.new)]
            note = " (first version)"
        elif not self.changed:
            rows, note = [], ": identical content, no new version"
        else:
            rows, note = [(d[:1], d) for d in self.lines()], ""
        body = "".join(
            f'<div style="background:{colours.get(k, "transparent")};white-space:pre-wrap">{html.escape(t)}</div>'
            for k, t in rows
        )
        return f"<b>{html.escape(self._title())}</b>{html.escape(note)}<div style='font-family:monospace'>{body}</div>"


def undeclared_variables(texts: Sequence[str | None]) -> set[str]:
    """Variables the templates read (Jinja's own analysis), so an editor can flag unknown ones as you type."""
    from jinja2 import meta

    out: set[str] = set()
    for text in texts:
        if text:
            out |= meta.find_undeclared_variables(_env().parse(text))
    return out
