"""Model params users write: types of the well-known ones, and no secrets anywhere in them.

Why here and not at the provider: ``temperature: "hot"`` would otherwise travel to a paid endpoint and
fail there (or, worse, be silently coerced), and a key pasted into ``params`` (``extra_headers:
{Authorization: "Bearer sk-..."}``) would be stored in ``models.config`` and ``runs.spec`` and copied into
every export. Both are refused when the model config is built, before anything is stored or called.
Keys belong in the environment: ``api_key_env`` names the variable.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from workbench.errors import SpecError

# names whose value is a credential, whatever it looks like (headers included)
_SECRET_NAME = re.compile(
    r"(^|[-_ .])(api[-_ ]?key|apikey|key|token|access[-_ ]?token|secret|password|passwd|pwd|authorization|auth|"
    r"cookie|set-cookie|credential|credentials|bearer|private[-_ ]?key)($|[-_ .])",
    re.IGNORECASE,
)
# values that look like credentials wherever they appear
_SECRET_VALUE = re.compile(
    r"\bsk-[A-Za-z0-9_\-]{12,}"  # OpenAI / Anthropic style
    r"|\bBearer\s+\S{8,}"
    r"|\bBasic\s+[A-Za-z0-9+/=]{12,}"
    r"|\bAKIA[0-9A-Z]{16}\b"  # AWS access key id
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"  # GitHub tokens
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"  # Slack
    r"|\bAIza[0-9A-Za-z_\-]{30,}"  # Google API key
    r"|\beyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}"  # JWT
    r"|://[^/\s:@]+:[^/\s@]+@",  # credentials in a URL
)


def secret_paths(value: Any, path: str = "params") -> list[str]:
    """Where in ``value`` a credential sits (by key name or by shape); empty when there is none."""
    found: list[str] = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            where = f"{path}.{k}"
            names_a_variable = isinstance(k, str) and k.lower().endswith("_env")  # api_key_env: a name, not a key
            if isinstance(k, str) and not names_a_variable and _SECRET_NAME.search(k) and v not in (None, "", False):
                found.append(where)
            else:
                found.extend(secret_paths(v, where))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found.extend(secret_paths(v, f"{path}[{i}]"))
    elif isinstance(value, str) and _SECRET_VALUE.search(value):
        found.append(path)
    return found


def refuse_secrets(value: Any, where: str, path: str = "params") -> None:
    """SpecError naming every place in ``value`` that holds a credential."""
    found = secret_paths(value, path)
    if found:
        raise SpecError(
            f"{where}: {', '.join(found)} look(s) like a credential (an API key, token, password or auth header). "
            "Secrets are never stored: remove it and put the key in an environment variable named by "
            "`api_key_env` (litellm reads provider keys such as OPENAI_API_KEY from the environment too)."
        )


def _number(lo: float | None = None, hi: float | None = None, integer: bool = False) -> Any:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not float(v).is_integer()):
            return f"must be {'an integer' if integer else 'a number'}"
        if isinstance(v, float) and not math.isfinite(v):
            return "must be a finite number"
        if lo is not None and v < lo:
            return f"must be >= {lo:g}"
        if hi is not None and v > hi:
            return f"must be <= {hi:g}"
        return None

    return check


def _stop(v: Any) -> str | None:
    if isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)):
        return None
    return "must be a string or a list of strings"


def _kind(*types: type) -> Any:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) and bool not in types:
            return f"must be {' or '.join(t.__name__ for t in types)}"
        return None if isinstance(v, types) else f"must be {' or '.join(t.__name__ for t in types)}"

    return check


# OpenAI-style chat parameters that litellm passes through; unknown params are the provider's business.
KNOWN: dict[str, Any] = {
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "max_tokens": _number(1, integer=True),
    "max_completion_tokens": _number(1, integer=True),
    "n": _number(1, 128, integer=True),
    "seed": _number(integer=True),
    "presence_penalty": _number(-2, 2),
    "frequency_penalty": _number(-2, 2),
    "top_k": _number(0, integer=True),
    "logprobs": _kind(bool),
    "top_logprobs": _number(0, 20, integer=True),
    "stop": _stop,
    "response_format": _kind(dict),
    "logit_bias": _kind(dict),
    "user": _kind(str),
    "extra_headers": _kind(dict),
    "tools": _kind(list),
    "tool_choice": _kind(str, dict),
    "parallel_tool_calls": _kind(bool),
    "reasoning_effort": _kind(str),
}


def check_params(model_name: str, params: Mapping[str, Any], api_base: str | None = None) -> None:
    """Refuse secrets anywhere in ``params`` (or in ``api_base``) and badly typed well-known params."""
    refuse_secrets(params, f"model {model_name!r}")
    if api_base:
        refuse_secrets(api_base, f"model {model_name!r}", "api_base")
    problems = []
    for name, check in KNOWN.items():
        if name in params and params[name] is not None:
            why = check(params[name])
            if why:
                problems.append(f"params.{name} {why} (got {params[name]!r:.60})")
    if problems:
        raise SpecError(f"model {model_name!r}: " + "; ".join(problems))
