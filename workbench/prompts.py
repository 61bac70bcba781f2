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


def as_text(p: Prompt) -> str:
    """A prompt as one readable text (system, few-shot turns, user), the form versions are diffed in."""
    parts = [f"[system]\n{p.system}"] if p.system is not None else []
    parts += [f"[{m['role']}]\n{m['content']}" for m in p.few_shot]
    parts.append(f"[user]\n{p.user}")
    return "\n\n".join(parts) + "\n"


def diff(old: Prompt, new: Prompt, context: int = 3) -> str:
    """Unified diff between two prompt versions (empty when their templates are identical)."""
    import difflib

    a, b = (f"{p.name} v{p.version}" if p.version is not None else p.name for p in (old, new))
    lines = difflib.unified_diff(
        as_text(old).splitlines(keepends=True), as_text(new).splitlines(keepends=True), a, b, n=context
    )
    return "".join(lines)
