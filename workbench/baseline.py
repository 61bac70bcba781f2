"""The embedded baseline model ``local/extractive``: not an LLM, an honest extractive baseline.

It answers with the sentence of the prompt's context that best matches the question by a BM25-style
lexical score. It needs no key, no network and no weights, so a fresh machine can run the whole
loop, and any real model has a floor to beat. The gateway answers ``local/*`` in-process (no litellm
import); it is also registered as a litellm custom provider, for code that calls litellm itself.
It must never be used as an LLM judge.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from typing import Any

from workbench.text import split_sentences

PROVIDER = "local"
MODELS = {"extractive": "returns the context sentence most similar to the question (lexical BM25 score)"}

_TOKEN = re.compile(r"[a-z0-9]+")
_QUESTION = re.compile(r"(?im)^\s*(?:question|q|query)\s*:\s*(.+)$")
_CONTEXT = re.compile(
    r"(?is)(?:^|\n)\s*(?:context|abstract|passage|document)s?\s*:\s*(.+?)(?=\n\s*(?:question|q|query)\s*:|\Z)"
)
_STOP = frozenset(
    "a an the of in on at to for and or is are was were be been being do does did with by from as that this these "
    "those it its which what who whom whose when where why how than then there their they them we you i not no yes "
    "can could should would may might will shall has have had into over under about after before between".split()
)


def _tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOP]


def find_question_and_context(messages: list[dict[str, Any]]) -> tuple[str, str]:
    """The question is a ``Question:`` line (else the last sentence ending in '?', else the last user turn).

    The context is a ``Context:`` (or Abstract/Passage/Document) block, else the rest of the prompt.
    """
    user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "") or ""
    everything = "\n\n".join(str(m.get("content") or "") for m in messages if m.get("role") in ("system", "user"))
    q = _QUESTION.search(user)
    if q:
        question = q.group(1).strip()
    else:
        asks = [s for s in split_sentences(user) if s.rstrip().endswith("?")]
        question = asks[-1] if asks else user.strip()
    c = _CONTEXT.search(user) or _CONTEXT.search(everything)
    if c:
        return question, c.group(1).strip()
    # no labelled context: the rest of the prompt, without the question (nor its "Question:" label)
    return question, _QUESTION.sub(" ", everything).replace(question, " ").strip()


def answer(messages: list[dict[str, Any]]) -> str:
    """Best-matching context sentence by BM25 (k1=1.2, b=0.75) with sentences as documents."""
    question, context = find_question_and_context(messages)
    sentences = [s for s in split_sentences(context) if _tokens(s)]
    if not sentences:
        return ""
    q_terms = set(_tokens(question))
    docs = [Counter(_tokens(s)) for s in sentences]
    n = len(docs)
    avg = sum(sum(d.values()) for d in docs) / n
    df = Counter(t for d in docs for t in d)
    best, best_score = 0, -1.0
    for i, d in enumerate(docs):
        length = sum(d.values())
        score = 0.0
        for t in q_terms:
            tf = d.get(t, 0)
            if tf:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length / avg))
        if score > best_score:
            best, best_score = i, score
    return sentences[best]


def respond(messages: list[dict[str, Any]]) -> tuple[str, int, int]:
    """(answer, prompt tokens, completion tokens): tokens are whitespace words, on every route."""
    text = answer(messages)
    prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in messages)
    return text, prompt_tokens, len(text.split())


def _response(litellm: Any, model: str, messages: list[dict[str, Any]]) -> Any:
    text, prompt_tokens, completion_tokens = respond(messages)
    return litellm.ModelResponse(
        model=f"{PROVIDER}/{model}",
        choices=[{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        usage={
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        created=int(time.time()),
    )


def register_provider(litellm: Any) -> None:
    """Register ``local/extractive`` with litellm (called once, when litellm is first imported)."""

    class ExtractiveBaseline(litellm.CustomLLM):  # type: ignore[misc, name-defined]
        def _check(self, model: str) -> str:
            name = model.split("/", 1)[-1]
            if name not in MODELS:
                raise litellm.NotFoundError(
                    message=f"unknown local model {model!r}; the embedded models are {sorted(MODELS)}",
                    model=model,
                    llm_provider=PROVIDER,
                )
            return name

        def completion(self, model: str, messages: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
            return _response(litellm, self._check(model), messages)

        async def acompletion(self, model: str, messages: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
            return _response(litellm, self._check(model), messages)

    entry = {"provider": PROVIDER, "custom_handler": ExtractiveBaseline()}
    providers = [p for p in (litellm.custom_provider_map or []) if p.get("provider") != PROVIDER]
    litellm.custom_provider_map = [*providers, entry]
    # litellm reads the map when it is set through its helper; newer versions need the explicit call.
    setup = getattr(getattr(litellm, "utils", None), "custom_llm_setup", None)
    if callable(setup):
        setup()
