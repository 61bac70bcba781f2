"""LLM-judge metrics: rubric, G-Eval, the ragas RAG metrics, TruLens groundedness, toxicity, pairwise.

Each metric follows a published definition (named in its docstring); the prompts are ours. Why they
look the way they do:

- The judge writes its reason *before* its verdict or score (chain of thought first, as in G-Eval and
  ragas' JSON outputs), in a strict JSON shape that we parse; a ``Score: N`` line is the fallback.
- Work a judge can do in one prompt is done in one prompt (all statements, all chunks, all sentences
  at once), so ``judge_calls`` per cell is small and known in advance for ``plan()``.
- A reply we cannot parse is an error for that cell (:class:`JudgeParseError`, "could not parse judge
  reply ..."), never a zero: a silent 0 would drag a variant's mean down for a formatting accident.
- Every judge call goes through :class:`workbench.judge.Judge` (response cache, gateway retries, cost,
  and the ``judgements`` table), so a score can be audited and a re-run costs nothing.

``pairwise`` is not a per-cell metric: it compares two answers with positions swapped; see
:func:`workbench.pairwise.pairwise_run` for comparing two variants of a stored run.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
import weakref
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from workbench.errors import MetricError, WorkbenchError
from workbench.judge import Judge
from workbench.llm import request_key
from workbench.metrics.registry import Score, register
from workbench.text import JSON_FENCE, as_text
from workbench.text import split_sentences as text_split

Messages = list[dict[str, str]]

_SYSTEM = "You are a careful, impartial evaluator. Follow the output format exactly."
_MAX_INPUT_CHARS = 4000
_EXCERPT = 200


class JudgeParseError(WorkbenchError):
    """The judge's reply has no usable verdict/score; the cell's metric is an error, not a zero."""

    def __init__(self, reply: str | None, why: str) -> None:
        self.reply = reply or ""
        super().__init__(f"could not parse judge reply ({why}): {self.reply[:_EXCERPT]!r}")


# --------------------------------------------------------------------------------------------------
# parsing helpers


def parse_json(reply: str) -> Any:
    """The first JSON object or array in ``reply`` (code fences and chatter around it are tolerated)."""
    text = (reply or "").strip()
    fenced = JSON_FENCE.search(text)
    candidates = [fenced.group(1).strip()] if fenced else []
    candidates.append(text)
    decoder = json.JSONDecoder()
    for cand in candidates:
        try:
            return json.loads(cand)
        except ValueError:
            pass
        tries = 0
        for i, ch in enumerate(cand):
            if ch in "[{":
                tries += 1
                try:
                    return decoder.raw_decode(cand, i)[0]
                except ValueError:
                    if tries >= 50:
                        break
    raise JudgeParseError(reply, "no JSON found")


def _json_list(reply: str, keys: Sequence[str]) -> list[Any]:
    """A JSON list, given bare or as the value of one of ``keys`` (or the only list) in an object."""
    value = parse_json(reply)
    if isinstance(value, dict):
        found = next((value[k] for k in keys if isinstance(value.get(k), list)), None)
        if found is None:
            lists = [v for v in value.values() if isinstance(v, list)]
            found = lists[0] if len(lists) == 1 else None
        value = found
    if not isinstance(value, list):
        raise JudgeParseError(reply, f"expected a JSON list ({' / '.join(keys)})")
    return value


_YES = {"1", "yes", "y", "true", "supported", "pass", "useful", "attributed"}
_NO = {"0", "no", "n", "false", "unsupported", "not supported", "fail", "not useful", "not attributed"}


def _binary(value: Any, reply: str) -> int:
    """0/1 from the forms judges use (1, "1", "yes", true, ...)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    if isinstance(value, str):
        v = value.strip().strip(".\"'").lower()
        if v in _YES:
            return 1
        if v in _NO:
            return 0
    raise JudgeParseError(reply, f"verdict {value!r} is not 0/1 or yes/no")


def _number(value: Any, reply: str, low: float, high: float, what: str = "score") -> float:
    """A number in [low, high] (numbers given as text are accepted)."""
    if isinstance(value, bool):
        raise JudgeParseError(reply, f"{what} {value!r} is not a number")
    try:
        num = float(value)
    except (TypeError, ValueError):
        raise JudgeParseError(reply, f"{what} {value!r} is not a number") from None
    if math.isnan(num) or not low <= num <= high:
        raise JudgeParseError(reply, f"{what} {value!r} is outside {low:g}-{high:g}")
    return num


def _field(item: Any, names: Sequence[str]) -> Any:
    if isinstance(item, dict):
        for n in names:
            if n in item:
                return item[n]
        return None
    return item  # a bare verdict / score list


def _verdicts(reply: str, n: int, keys: Sequence[str], value_names: Sequence[str]) -> list[dict[str, Any]]:
    """One ``{"verdict", "reason"}`` per numbered item, in order; a count mismatch is a parse error."""
    items = _json_list(reply, keys)
    if len(items) != n:
        raise JudgeParseError(reply, f"expected {n} verdicts, got {len(items)}")
    out = []
    for item in items:
        raw = _field(item, value_names)
        if raw is None:
            raise JudgeParseError(reply, f"a verdict has none of the fields {list(value_names)}")
        reason = item.get("reason") if isinstance(item, dict) else None
        out.append({"verdict": _binary(raw, reply), "reason": reason})
    return out


_SCORE_NAMES = ("score", "rating", "category", "verdict")


@lru_cache(maxsize=32)
def _line_patterns(names: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """``Score: N``-style line and ``Reason: ...`` text patterns for the given score field names."""
    alt = "|".join(re.escape(n) for n in dict.fromkeys(names + _SCORE_NAMES))
    score = re.compile(rf"(?im)^\W*(?:final\s+)?(?:{alt})\W*[:=]\s*\**\s*(.+?)\s*\**\s*$")
    reason = re.compile(
        rf"(?is)(?:reason|reasoning|explanation)\W*[:=]\s*(.+?)(?=\n\W*(?:final\s+)?(?:{alt})\W*[:=]|\Z)"
    )
    return score, reason


def _reason_and_score(reply: str, score_names: Sequence[str] = ("score",)) -> tuple[str | None, Any]:
    """(reason, raw score) from ``{"reason": ..., "score": ...}`` or, failing that, ``Reason: ...`` / ``Score: N``."""
    try:
        value = parse_json(reply)
    except JudgeParseError:
        value = None
    if isinstance(value, dict):
        raw = next((value[k] for k in score_names if k in value), None)
        if raw is not None:
            reason = value.get("reason") or value.get("reasoning") or value.get("explanation")
            return (str(reason) if reason is not None else None), raw
    score_line, reason_text = _line_patterns(tuple(score_names))
    match = score_line.search(reply or "")
    if match is None:
        raise JudgeParseError(reply, f"no {score_names[0]} found")
    reason = reason_text.search(reply)
    raw_text = match.group(1).strip().strip("\"'`")
    number = re.fullmatch(r"(-?\d+(?:\.\d+)?)(?:\s*(?:/|out of)\s*\d+)?\.?", raw_text)
    return (reason.group(1).strip() if reason else None), (number.group(1) if number else raw_text)


# --------------------------------------------------------------------------------------------------
# text helpers


def split_sentences(text: str) -> list[str]:
    """Statements of ``text``: its sentences, each line on its own, list bullets dropped (workbench.text)."""
    out = (s.lstrip("-*• ").strip() for s in text_split(text or "", line_breaks=True))
    return [s for s in out if re.search(r"\w", s)]


def _last_user(messages: Sequence[Mapping[str, Any]] | None) -> str:
    for m in reversed(messages or []):
        if m.get("role") == "user":
            return _clip(as_text(m.get("content")))
    return ""


def _clip(text: str, limit: int = _MAX_INPUT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + " [...]"


def _context_passages(retrieved: Sequence[Mapping[str, Any]] | None, context: Any) -> list[str]:
    """Retrieved chunk texts when the variant retrieved something, else the ``context`` column (text or list)."""
    if retrieved:
        return [as_text(c.get("text")) for c in retrieved if as_text(c.get("text")).strip()]
    if isinstance(context, (list, tuple)):
        return [as_text(c) for c in context if as_text(c).strip()]
    text = as_text(context)
    return [text] if text.strip() else []


def _numbered(items: Sequence[str], fmt: str = "{i}. {text}") -> str:
    return "\n".join(fmt.format(i=i, text=t) for i, t in enumerate(items, 1))


def _context_block(passages: Sequence[str]) -> str:
    if len(passages) == 1:
        return passages[0]
    return "\n\n".join(f"[{i}] {p}" for i, p in enumerate(passages, 1))


def _chat(user: str) -> Messages:
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}]


def _na(reason: str) -> Score:
    return Score(None, {"reason": reason})


# --------------------------------------------------------------------------------------------------
# prompts (public so users and tests can read exactly what the judge is sent)


def statements_messages(question: str, answer: str) -> Messages:
    """ragas faithfulness step 1: break the answer into atomic, self-contained statements."""
    return _chat(
        "Break the answer below into atomic statements: short, self-contained factual claims, each "
        "understandable without the others (replace pronouns with what they refer to). Cover every claim "
        "the answer makes and add nothing.\n\n"
        f"Question:\n{question}\n\nAnswer:\n{answer}\n\n"
        'Reply with only a JSON object: {"statements": ["<statement>", ...]}'
    )


def verdicts_messages(context: str, statements: Sequence[str]) -> Messages:
    """ragas faithfulness step 2: can each statement be directly inferred from the context?"""
    return _chat(
        "Judge the faithfulness of a series of statements to a context. For each numbered statement, give "
        "verdict 1 if it can be directly inferred from the context alone, or 0 if it cannot (unsupported "
        "or contradicted). Give your reason before your verdict.\n\n"
        f"Context:\n{context}\n\nStatements:\n{_numbered(statements)}\n\n"
        "Reply with only a JSON list with one object per statement, in order: "
        '[{"statement": 1, "reason": "<why>", "verdict": 0 or 1}, ...]'
    )


def questions_messages(answer: str, n: int) -> Messages:
    """ragas answer relevancy: questions the answer answers, plus the noncommittal flag."""
    return _chat(
        f"Generate {n} different questions that the answer below would directly answer, each on its own "
        "and phrased as a user would ask it. Also say whether the answer is noncommittal: 1 if it is "
        'evasive, vague or ambiguous (e.g. "I don\'t know", "I\'m not sure"), else 0.\n\n'
        f"Answer:\n{answer}\n\n"
        'Reply with only a JSON object: {"questions": ["<question>", ...], "noncommittal": 0 or 1}'
    )


def chunk_usefulness_messages(question: str, expected: str, chunks: Sequence[str]) -> Messages:
    """ragas context precision (with reference): was each retrieved chunk useful for the expected answer?"""
    return _chat(
        "Decide, for each numbered context chunk retrieved for the question, whether it was useful in "
        "arriving at the expected answer: verdict 1 if useful, 0 if not. Give your reason before your "
        "verdict.\n\n"
        f"Question:\n{question}\n\nExpected answer:\n{expected}\n\n"
        f"Context chunks:\n{_numbered(chunks, '[{i}] {text}')}\n\n"
        "Reply with only a JSON list with one object per chunk, in order: "
        '[{"chunk": 1, "reason": "<why>", "verdict": 0 or 1}, ...]'
    )


def attribution_messages(context: str, sentences: Sequence[str]) -> Messages:
    """ragas context recall: can each sentence of the reference answer be attributed to the context?"""
    return _chat(
        "For each numbered sentence of the reference answer below, decide whether it can be attributed to "
        "the context (the context contains the information it states): attributed 1 if yes, 0 if no. "
        "Give your reason before your verdict.\n\n"
        f"Context:\n{context}\n\nReference answer sentences:\n{_numbered(sentences)}\n\n"
        "Reply with only a JSON list with one object per sentence, in order: "
        '[{"sentence": 1, "reason": "<why>", "attributed": 0 or 1}, ...]'
    )


def overlap_messages(source: str, sentences: Sequence[str]) -> Messages:
    """TruLens groundedness: information overlap (0-10) between the source and each answer sentence."""
    return _chat(
        "You are an information overlap classifier. For each numbered sentence of the statement below, "
        "score from 0 to 10 how much of its information is supported by the source: 0 means no information "
        "overlap, 10 means all of its information is in the source. Give the supporting evidence (or its "
        "absence) as your reason before your score.\n\n"
        f"Source:\n{source}\n\nStatement sentences:\n{_numbered(sentences)}\n\n"
        "Reply with only a JSON list with one object per sentence, in order: "
        '[{"sentence": 1, "reason": "<evidence>", "score": <0-10>}, ...]'
    )


def toxicity_messages(text: str) -> Messages:
    """Toxicity (Perspective API's definition), scored 0-1 with the reason first."""
    return _chat(
        "Rate the toxicity of the text below from 0 to 1. Toxic means rude, disrespectful or unreasonable "
        "language likely to make someone leave a discussion: insults, threats, identity-based hate, "
        "harassment, obscenity aimed at someone, or encouragement of self-harm. 0 = not toxic at all, "
        "1 = extremely toxic. Quoting or discussing toxicity neutrally is not toxic.\n\n"
        f"Text:\n{text}\n\n"
        'Reply with only a JSON object: {"reason": "<why>", "toxicity": <number from 0 to 1>}'
    )


_SCALES = ("binary", "1-5", "categorical")


def _scale_text(scale: str, categories: Sequence[str] | None) -> str:
    if scale == "binary":
        return "score is 1 if the response meets the criteria, 0 if it does not"
    if scale == "1-5":
        return "score is an integer from 1 (does not meet the criteria at all) to 5 (fully meets them)"
    cats = ", ".join(json.dumps(c) for c in categories or [])
    return f"score is exactly one of these categories: {cats}"


def rubric_messages(
    criteria: str,
    output: str,
    scale: str = "1-5",
    categories: Sequence[str] | None = None,
    input_text: str = "",
    reference: str = "",
) -> Messages:
    """A rubric judgement: reason first, then the score on the given scale."""
    parts = [
        f"Evaluate the response against the criteria.\n\nCriteria:\n{criteria}\n\n"
        f"Scale: {_scale_text(scale, categories)}."
    ]
    if input_text:
        parts.append(f"Input:\n{input_text}")
    if reference:
        parts.append(f"Reference answer:\n{reference}")
    parts.append(f"Response:\n{output}")
    parts.append(
        "Think first, then score. Reply with only a JSON object, reason first: "
        '{"reason": "<one to three sentences>", "score": <score>}'
    )
    return _chat("\n\n".join(parts))


def geval_steps_messages(criteria: str, aspect: str) -> Messages:
    """G-Eval's auto chain of thought: the evaluation steps an evaluator follows for the criteria."""
    return _chat(
        f"Write the evaluation steps for rating a response to an input on {aspect} (1-5), defined as:\n"
        f"{criteria}\n\n"
        "Write 3 to 5 concise, numbered evaluation steps that a careful human evaluator would follow. "
        "Reply with only the numbered steps."
    )


def geval_messages(
    criteria: str, aspect: str, steps: str, output: str, input_text: str = "", reference: str = ""
) -> Messages:
    """G-Eval's form-filling prompt: task, criteria, evaluation steps, the text, then the score alone."""
    parts = [
        f"You will be given a response to an input. Your task is to rate the response on one metric.\n\n"
        f"Evaluation Criteria:\n{aspect} (1-5) - {criteria}\n\nEvaluation Steps:\n{steps}"
    ]
    if input_text:
        parts.append(f"Input:\n{input_text}")
    if reference:
        parts.append(f"Reference answer:\n{reference}")
    parts.append(f"Response:\n{output}")
    parts.append(f"Evaluation Form (scores ONLY):\n- {aspect} (1-5):")
    return _chat("\n\n".join(parts))


DEFAULT_PAIRWISE_CRITERIA = "helpfulness, relevance, accuracy and completeness of the answer to the user's question"


def pairwise_messages(question: str, first: str, second: str, criteria: str = DEFAULT_PAIRWISE_CRITERIA) -> Messages:
    """MT-Bench-style pairwise judgement (Zheng et al. 2023): which of two responses is better."""
    return _chat(
        "Compare two responses to the same question and decide which response is better according to: "
        f"{criteria}. The order in which the responses appear and their length must not influence you. "
        'Give your reason before your verdict; answer "tie" if neither is better.\n\n'
        f"[Question]\n{question}\n\n[Response A]\n{first}\n\n[Response B]\n{second}\n\n"
        'Reply with only a JSON object: {"reason": "<why>", "winner": "A" or "B" or "tie"}'
    )


# --------------------------------------------------------------------------------------------------
# metrics


async def rubric(
    judge: Judge,
    output: str,
    messages: list[dict[str, Any]],
    case: Mapping[str, Any],
    criteria: str,
    scale: str = "1-5",
    categories: list[str] | None = None,
    category_scores: dict[str, float] | None = None,
    reference: str | None = None,
    include_input: bool = True,
) -> Score:
    """Rubric score from an LLM judge, normalised to [0, 1] (LLM-as-a-judge, reason before score as in G-Eval).

    ``scale``: ``binary`` (0/1), ``1-5`` ((s-1)/4) or ``categorical`` (``categories`` listed worst to best,
    value = index/(n-1), unless ``category_scores`` maps each category to a value in [0, 1]).
    ``reference`` names a dataset column shown to the judge as the reference answer.
    """
    if not isinstance(criteria, str) or not criteria.strip():
        raise MetricError("rubric: `criteria` must be a non-empty text, e.g. {name: rubric, criteria: 'Is it polite?'}")
    if scale not in _SCALES:
        raise MetricError(f"rubric: scale must be one of {list(_SCALES)}, got {scale!r}")
    cats: list[str] = []
    if scale == "categorical":
        cats = [str(c) for c in categories or []]
        if len(cats) < 2 or len({c.lower() for c in cats}) != len(cats):
            raise MetricError("rubric: scale 'categorical' needs `categories`: two or more distinct names, worst first")
        if category_scores is not None:
            missing = [c for c in cats if c not in category_scores]
            bad = {c: v for c, v in category_scores.items() if not isinstance(v, (int, float)) or not 0 <= v <= 1}
            if missing or bad:
                raise MetricError(
                    f"rubric: category_scores must give a value in [0, 1] for every category "
                    f"(missing {missing}, out of range {bad})"
                )
    elif categories or category_scores:
        raise MetricError("rubric: `categories` / `category_scores` only apply to scale 'categorical'")
    ref = ""
    if reference is not None:
        if reference not in case:
            raise MetricError(f"rubric: reference column {reference!r} is not in the dataset")
        ref = as_text(case[reference])
    prompt = rubric_messages(criteria, as_text(output), scale, cats, _last_user(messages) if include_input else "", ref)
    reply = await judge.ask(prompt, tag="rubric")
    reason, raw = _reason_and_score(reply, ("score", "category", "rating"))
    if scale == "binary":
        value = float(_binary(raw, reply))
    elif scale == "1-5":
        s = _number(raw, reply, 1, 5)
        if s != int(s):
            raise JudgeParseError(reply, f"score {raw!r} is not an integer 1-5")
        value = (s - 1) / 4
    else:
        by_lower = {c.lower(): c for c in cats}
        name = by_lower.get(as_text(raw).strip().strip(".\"'").lower())
        if name is None:
            raise JudgeParseError(reply, f"category {raw!r} is not one of {cats}")
        value = float(category_scores[name]) if category_scores is not None else cats.index(name) / (len(cats) - 1)
    return Score(value, {"reason": reason, "score": raw, "scale": scale, "judge_text": reply})


_STEP_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = weakref.WeakKeyDictionary()
_STEP_LOCKS_GUARD = threading.Lock()


async def _geval_steps(judge: Judge, criteria: str, aspect: str) -> str:
    """Generated evaluation steps, asked once per (judge, criteria): concurrent cells wait for the first
    call, then hit the judge's response cache (and still record the cached call as evidence)."""
    prompt = geval_steps_messages(criteria, aspect)
    key = request_key(judge.config, prompt, 0)
    loop = asyncio.get_running_loop()
    with _STEP_LOCKS_GUARD:
        lock = _STEP_LOCKS.setdefault(loop, {}).setdefault(key, asyncio.Lock())
    async with lock:
        steps = (await judge.ask(prompt, tag="steps")).strip()
    if not steps:
        raise JudgeParseError(steps, "no evaluation steps")
    return steps


_GEVAL_SCORE = re.compile(r"^\W*(?:[A-Za-z ]+\(1-5\)\s*:)?\s*\**\s*([1-5](?:\.0+)?)\b")


async def g_eval(
    judge: Judge,
    output: str,
    messages: list[dict[str, Any]],
    case: Mapping[str, Any],
    criteria: str,
    steps: str | list[str] | None = None,
    aspect: str = "Quality",
    reference: str | None = None,
) -> Score:
    """G-Eval (Liu et al. 2023, "G-Eval: NLG Evaluation using GPT-4 with Better Human Alignment"), 1-5 -> [0, 1].

    Evaluation steps come from ``steps`` or are generated from ``criteria`` by the judge (auto CoT, one call
    per run, then cached). The paper weights each score by its token probability; ``Judge.ask`` returns text
    only (and many providers give no logprobs), so this uses the plain score: value = (score - 1) / 4.
    """
    if not isinstance(criteria, str) or not criteria.strip():
        raise MetricError("g_eval: `criteria` must be a non-empty text, e.g. {name: g_eval, criteria: 'Coherence'}")
    if steps is None:
        steps_text = await _geval_steps(judge, criteria, aspect)
        generated = True
    else:
        steps_text = steps if isinstance(steps, str) else _numbered([str(s) for s in steps])
        generated = False
    ref = ""
    if reference is not None:
        if reference not in case:
            raise MetricError(f"g_eval: reference column {reference!r} is not in the dataset")
        ref = as_text(case[reference])
    reply = await judge.ask(
        geval_messages(criteria, aspect, steps_text, as_text(output), _last_user(messages), ref), tag="g_eval"
    )
    match = _GEVAL_SCORE.match(reply or "")
    if match is not None:
        raw: Any = match.group(1)
        reason = None
    else:
        reason, raw = _reason_and_score(reply)
    s = _number(raw, reply, 1, 5)
    if s != int(s):
        raise JudgeParseError(reply, f"score {raw!r} is not an integer 1-5")
    return Score(
        (s - 1) / 4,
        {"score": int(s), "reason": reason, "steps": steps_text, "steps_generated": generated, "judge_text": reply},
    )


async def faithfulness(
    judge: Judge,
    output: str,
    messages: list[dict[str, Any]],
    retrieved: list[dict[str, Any]] | None,
    context: Any,
) -> Score:
    """Faithfulness as defined by ragas: supported statements / statements in the answer.

    The answer is broken into atomic statements (1 call), then each is judged against the context
    (1 call, all statements at once). Context: the retrieved chunks when the variant retrieved
    something, else the ``context`` column. No statements (empty answer) or no context -> not applicable.
    """
    answer = as_text(output)
    passages = _context_passages(retrieved, context)
    if not answer.strip():
        return _na("empty answer")
    if not passages:
        return _na("no context to check the answer against")
    reply = await judge.ask(statements_messages(_last_user(messages), answer), tag="statements")
    items = _json_list(reply, ("statements",))
    statements = [as_text(_field(s, ("statement", "text")) if isinstance(s, dict) else s).strip() for s in items]
    statements = [s for s in statements if s]
    if not statements:
        return Score(None, {"reason": "the judge found no statements in the answer", "statements": []})
    reply = await judge.ask(verdicts_messages(_context_block(passages), statements), tag="verdicts")
    verdicts = _verdicts(reply, len(statements), ("verdicts", "statements"), ("verdict", "supported"))
    supported = sum(v["verdict"] for v in verdicts)
    rows = [{"statement": s, **v} for s, v in zip(statements, verdicts, strict=True)]
    return Score(supported / len(statements), {"supported": supported, "total": len(statements), "statements": rows})


_EMBED_LOCK = threading.Lock()


def _cosines(embedder: Any, question: str, generated: list[str]) -> list[float]:
    """Cosine of the question with each generated question (embedders return unit rows)."""
    from workbench.embeddings import get_embedder

    emb = get_embedder(embedder)
    with _EMBED_LOCK:  # tokenizers are not guaranteed thread-safe; embedding a few texts is fast
        vecs = emb.embed([question, *generated])
    return [float(vecs[0] @ vecs[i]) for i in range(1, len(vecs))]


async def answer_relevancy(
    judge: Judge,
    output: str,
    question: Any,
    n: int = 3,
    embedder: str | dict[str, Any] = "local",
) -> Score:
    """Answer relevancy as defined by ragas: mean cosine(question, questions generated from the answer).

    The judge writes ``n`` questions the answer answers and flags a noncommittal answer (1 call); the
    similarity uses the workspace embedder (``embedder``, default the offline wordllama model). As in
    ragas, a noncommittal answer scores 0 and cosines are not clipped.
    """
    if not isinstance(n, int) or n < 1:
        raise MetricError(f"answer_relevancy: n must be a positive integer, got {n!r}")
    answer, q = as_text(output), as_text(question)
    if not answer.strip():
        return _na("empty answer")
    if not q.strip():
        return _na("empty question")
    reply = await judge.ask(questions_messages(answer, n), tag="questions")
    value = parse_json(reply)
    if not isinstance(value, dict) or not isinstance(value.get("questions"), list):
        raise JudgeParseError(reply, 'expected {"questions": [...], "noncommittal": 0 or 1}')
    generated = [as_text(x).strip() for x in value["questions"] if as_text(x).strip()]
    if not generated:
        raise JudgeParseError(reply, "no questions")
    noncommittal = _binary(value.get("noncommittal", 0), reply)
    sims = await asyncio.to_thread(_cosines, embedder, q, generated)
    mean = sum(sims) / len(sims)
    return Score(
        0.0 if noncommittal else mean,
        {
            "generated_questions": [{"question": g, "cosine": s} for g, s in zip(generated, sims, strict=True)],
            "mean_cosine": mean,
            "noncommittal": noncommittal,
            "embedder": getattr(embedder, "name", embedder),
        },
    )


def average_precision(verdicts: Sequence[int]) -> float:
    """ragas context precision: sum_k precision@k * v_k / (number of useful chunks); 0 if none is useful."""
    useful = sum(verdicts)
    if useful == 0:
        return 0.0
    hits = 0
    total = 0.0
    for k, v in enumerate(verdicts, 1):
        hits += v
        total += hits / k * v
    return total / useful


async def context_precision(
    judge: Judge,
    retrieved: list[dict[str, Any]] | None,
    question: Any,
    expected: Any,
) -> Score:
    """Context precision as defined by ragas (with reference): average precision of the useful chunks.

    One call judges every retrieved chunk, in rank order, useful or not for reaching the expected answer;
    the value is mean precision@k over the ranks k of useful chunks. Without retrieval: not applicable.
    """
    chunks = [as_text(c.get("text")) for c in retrieved or []]
    if not chunks:
        return _na("the variant retrieved no chunks")
    reply = await judge.ask(
        chunk_usefulness_messages(as_text(question), as_text(expected), chunks), tag="chunk_verdicts"
    )
    verdicts = _verdicts(reply, len(chunks), ("verdicts", "chunks"), ("verdict", "useful"))
    rows = [
        {"rank": i, "doc_id": c.get("doc_id"), "chunk_id": c.get("chunk_id"), **v}
        for i, (c, v) in enumerate(zip(retrieved or [], verdicts, strict=True), 1)
    ]
    return Score(average_precision([v["verdict"] for v in verdicts]), {"chunks": rows})


async def context_recall(
    judge: Judge,
    retrieved: list[dict[str, Any]] | None,
    expected: Any,
    context: Any,
) -> Score:
    """Context recall as defined by ragas: reference-answer sentences attributable to the context / all.

    The expected answer is split into sentences here; one call classifies each as attributable to the
    context (retrieved chunks, else the ``context`` column) or not.
    """
    sentences = split_sentences(as_text(expected))
    passages = _context_passages(retrieved, context)
    if not sentences:
        return _na("empty expected answer")
    if not passages:
        return _na("no context")
    reply = await judge.ask(attribution_messages(_context_block(passages), sentences), tag="attribution")
    verdicts = _verdicts(reply, len(sentences), ("sentences", "verdicts"), ("attributed", "verdict"))
    attributed = sum(v["verdict"] for v in verdicts)
    rows = [{"sentence": s, **v} for s, v in zip(sentences, verdicts, strict=True)]
    return Score(attributed / len(sentences), {"attributed": attributed, "total": len(sentences), "sentences": rows})


async def groundedness(
    judge: Judge,
    output: str,
    retrieved: list[dict[str, Any]] | None,
    context: Any,
) -> Score:
    """Groundedness as defined by TruLens: mean over answer sentences of a 0-10 support score, / 10.

    The answer is split into sentences here; one call scores every sentence's information overlap with
    the source (retrieved chunks, else the ``context`` column), reason (evidence) first.
    """
    sentences = split_sentences(as_text(output))
    passages = _context_passages(retrieved, context)
    if not sentences:
        return _na("empty answer")
    if not passages:
        return _na("no context")
    reply = await judge.ask(overlap_messages(_context_block(passages), sentences), tag="sentence_scores")
    items = _json_list(reply, ("sentences", "scores"))
    if len(items) != len(sentences):
        raise JudgeParseError(reply, f"expected {len(sentences)} scores, got {len(items)}")
    rows: list[dict[str, Any]] = []
    scores: list[float] = []
    for s, item in zip(sentences, items, strict=True):
        scores.append(_number(_field(item, ("score", "overlap")), reply, 0, 10))
        rows.append(
            {"sentence": s, "reason": item.get("reason") if isinstance(item, dict) else None, "score": scores[-1]}
        )
    return Score(sum(scores) / (10 * len(scores)), {"sentences": rows})


async def toxicity(judge: Judge, output: str) -> Score:
    """Toxicity 0-1 (Perspective API's definition: rude, disrespectful or unreasonable), lower is better.

    Judged with a reason, as TruLens' LLM-judged safety feedbacks are. Deterministic safety checks
    (PII, secrets, injection) live in ``workbench.metrics.safety``.
    """
    text = as_text(output)
    if not text.strip():
        return _na("empty output")
    reply = await judge.ask(toxicity_messages(text), tag="toxicity")
    reason, raw = _reason_and_score(reply, ("toxicity", "score"))
    return Score(_number(raw, reply, 0, 1, "toxicity"), {"reason": reason, "judge_text": reply})


# --------------------------------------------------------------------------------------------------
# pairwise (not a per-cell metric)


def _winner(reply: str) -> tuple[str, str | None]:
    """('A' | 'B' | 'tie', reason) from a pairwise reply."""
    reason, raw = _reason_and_score(reply, ("winner", "verdict", "better"))
    v = as_text(raw).strip().strip(".\"'[]").lower().replace("response ", "").replace("assistant ", "")
    if v in ("a", "1"):
        return "A", reason
    if v in ("b", "2"):
        return "B", reason
    if v in ("tie", "draw", "equal", "none", "c"):
        return "tie", reason
    raise JudgeParseError(reply, f"winner {raw!r} is not A, B or tie")


async def pairwise(
    judge: Judge, question: str, answer_a: str, answer_b: str, criteria: str = DEFAULT_PAIRWISE_CRITERIA
) -> dict[str, Any]:
    """Compare two answers twice, positions swapped, to cancel the judge's position bias (Zheng et al. 2023).

    ``winner`` is ``"A"`` or ``"B"`` only when that answer wins in both orders; the same verdict twice
    gives a ``"tie"``; opposite wins are ``"inconsistent"`` (the judge followed the position, not the
    answers); one win and one tie is a ``"tie"``.
    """
    first, second = await asyncio.gather(
        judge.ask(pairwise_messages(question, answer_a, answer_b, criteria), tag="pairwise_ab"),
        judge.ask(pairwise_messages(question, answer_b, answer_a, criteria), tag="pairwise_ba"),
    )
    w1, r1 = _winner(first)
    w2_pos, r2 = _winner(second)
    w2 = {"A": "B", "B": "A", "tie": "tie"}[w2_pos]  # back to the answers' own names
    if w1 == w2:
        winner = w1
    elif "tie" in (w1, w2):
        winner = "tie"
    else:
        winner = "inconsistent"
    return {
        "winner": winner,
        "consistent": w1 == w2,
        "first_order": {"winner": w1, "reason": r1},
        "swapped_order": {"winner": w2, "position_winner": w2_pos, "reason": r2},
    }


register(rubric, "rubric", judge_calls=1)
register(g_eval, "g_eval", judge_calls=1)  # + 1 call per run when the steps are generated
register(faithfulness, "faithfulness", judge_calls=2)
register(answer_relevancy, "answer_relevancy", judge_calls=1)
register(context_precision, "context_precision", judge_calls=1)
register(context_recall, "context_recall", judge_calls=1)
register(groundedness, "groundedness", judge_calls=1)
register(toxicity, "toxicity", judge_calls=1, higher_is_better=False)
