"""Prompts: named chat templates (system, user, few-shot) with content-hashed versions.

Templates are Jinja2 in a sandbox with StrictUndefined: a typo in a variable name must fail loudly
before any paid call, not silently send an empty string to a model. ``Experiment.plan()`` renders every
template against every case and reports all problems together.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from workbench.errors import TemplateError
from workbench.store import dumps

ROLES = ("system", "user", "assistant")


@lru_cache(maxsize=1)
def _env() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


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
                ) from exc

    @property
    def hash(self) -> str:
        """Content hash: the template text only, so renaming a prompt keeps its identity."""
        content = {"system": self.system, "user": self.user, "few_shot": list(self.few_shot)}
        return hashlib.sha256(dumps(content).encode()).hexdigest()

    def render(self, variables: Mapping[str, Any]) -> list[dict[str, str]]:
        """Chat messages for one case. Raises jinja2 errors; ``check_render`` turns them into a report."""
        messages: list[dict[str, str]] = []
        if self.system is not None:
            messages.append({"role": "system", "content": self._compiled["system"].render(variables)})
        for i, m in enumerate(self.few_shot):
            messages.append({"role": m["role"], "content": self._compiled[f"few_shot[{i}]"].render(variables)})
        messages.append({"role": "user", "content": self._compiled["user"].render(variables)})
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


def render_error_text(exc: Exception) -> str:
    from jinja2 import UndefinedError

    if isinstance(exc, UndefinedError):
        return f"undefined variable: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


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
