"""Text helpers shared by the chunker, the LLM-judge metrics, json_valid and the offline baseline.

One sentence splitter and one JSON-fence pattern, so "a sentence" and "a fenced JSON block" mean the same
thing everywhere. Sentence splitting is a regex heuristic: a sentence ends at ``.``, ``!`` or ``?``
(optionally followed by closing quotes/brackets) before whitespace, unless the word before is a common
abbreviation (e.g., i.e., et al., Fig., Dr., vs., single initials); blank lines always end a sentence;
``line_breaks=True`` also ends one at every line break (markdown lists, one statement per line).
"""

from __future__ import annotations

import math
import re
from typing import Any

Span = tuple[int, int]

_SENT_END = re.compile(r"[.!?]+[\"')\]]*(?=\s)|\n\s*\n")
_ABBREV = frozenset(
    "e.g i.e al fig figs eq dr mr mrs ms prof vs etc no nos vol approx ca cf st jr sr inc ltd co resp".split()
)
_LINE = re.compile(r"\n")

# A ```json (or bare ```) fenced block: json_valid needs the whole output to be one, the judge parser takes
# the first one amid chatter (fullmatch vs search on the same pattern).
JSON_FENCE = re.compile(r"```(?:json)?[ \t]*\n?(.*?)\s*```", re.DOTALL | re.IGNORECASE)


def trim(text: str, start: int, end: int) -> Span:
    """``(start, end)`` narrowed past surrounding whitespace."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def sentence_spans(text: str, start: int = 0, end: int | None = None, line_breaks: bool = False) -> list[Span]:
    """Sentence spans of ``text[start:end]`` (offsets into ``text``, trimmed, never empty)."""
    end = len(text) if end is None else end
    spans: list[Span] = []
    cursor = start
    for m in _SENT_END.finditer(text, start, end):
        if m.group(0)[0] in ".!?":
            word = text[max(cursor, m.start() - 12) : m.start()].split()
            last = word[-1].lower().lstrip("([\"'") if word else ""
            if last in _ABBREV or (len(last) == 1 and last.isalpha()) or last.endswith(("e.g", "i.e")):
                continue
        spans.append((cursor, m.end()))
        cursor = m.end()
    spans.append((cursor, end))
    if line_breaks:
        split: list[Span] = []
        for s, e in spans:
            pos = s
            for m in _LINE.finditer(text, s, e):
                split.append((pos, m.start()))
                pos = m.end()
            split.append((pos, e))
        spans = split
    out = []
    for s, e in spans:
        s, e = trim(text, s, e)
        if e > s:
            out.append((s, e))
    return out


def split_sentences(text: str, line_breaks: bool = False) -> list[str]:
    """The sentences of ``text`` as strings (see :func:`sentence_spans`)."""
    return [text[s:e] for s, e in sentence_spans(text or "", line_breaks=line_breaks)]


def as_text(value: Any) -> str:
    """A metric input as text: None and NaN (a missing dataset value) are empty, anything else its str()."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value if isinstance(value, str) else str(value)
