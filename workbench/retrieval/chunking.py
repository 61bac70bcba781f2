"""Chunkers: fixed windows, sentence packing and markdown-heading-aware packing, all with exact offsets.

Why offsets: a chunk's ``text`` is always ``document.text[start:end]`` (trimmed of surrounding blanks), so
a hit can be highlighted in its source and chunk ids (``f"{doc_id}#{i}"``) are stable for a given config.

Units: ``tokens`` are regex word tokens (maximal runs of non-whitespace characters, ``\\S+``), a cheap,
model-independent stand-in for model tokens (roughly 0.75 of a BPE token count for English prose);
``chars`` are Python characters (fixed char windows end at a word boundary when one lies in the window's
second half, so words are not cut unless a single "word" is longer than half a window).

Sentences come from the one splitter in :mod:`workbench.text` (a regex heuristic; blank lines always end a
sentence). Markdown mode also treats every line break as a boundary, so list items and code lines are never
glued to prose.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workbench.text import Span, sentence_spans, trim

if TYPE_CHECKING:
    from workbench.retrieval.config import ChunkerConfig
    from workbench.retrieval.corpus import Corpus, Document

__all__ = ["Chunk", "chunk_corpus", "chunk_document", "split_sentences"]

_TOKEN = re.compile(r"\S+")
_SPACE = re.compile(r"\s+")
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_FENCE = re.compile(r"^(```|~~~)", re.MULTILINE)  # markdown code fences (not text.JSON_FENCE: any language)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: ``text == document.text[start:end]``; ``index`` is its position in the document."""

    chunk_id: str
    doc_id: str
    index: int
    text: str
    start: int
    end: int
    section: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


def split_sentences(text: str, start: int = 0, end: int | None = None, line_breaks: bool = False) -> list[Span]:
    """Sentence spans of ``text[start:end]`` (the rules: :mod:`workbench.text`)."""
    return sentence_spans(text, start, end, line_breaks)


class _Measure:
    """Length of a span in the configured unit."""

    def __init__(self, text: str, unit: str) -> None:
        self.text = text
        self.unit = unit

    def __call__(self, span: Span) -> int:
        if self.unit == "chars":
            return span[1] - span[0]
        return sum(1 for _ in _TOKEN.finditer(self.text, span[0], span[1]))


def _last_space(text: str, lo: int, hi: int) -> int:
    """Index of the last whitespace character in ``text[lo:hi]``, or -1."""
    for i in range(hi - 1, lo - 1, -1):
        if text[i].isspace():
            return i
    return -1


def _fixed_spans(text: str, start: int, end: int, unit: str, size: int, overlap: int) -> list[Span]:
    """Windows of ``size`` units every ``size - overlap`` units over ``text[start:end]``."""
    stride = size - overlap
    spans: list[Span] = []
    if unit == "chars":
        # windows end at a word boundary when there is one in their second half, and restart at a word start
        s0, e0 = trim(text, start, end)
        pos = s0
        while pos < e0:
            stop = min(pos + size, e0)
            if stop < e0 and not text[stop].isspace() and not text[stop - 1].isspace():
                cut = _last_space(text, pos + size // 2, stop)
                if cut > pos:
                    stop = cut
            s, e = trim(text, pos, stop)
            if e > s:
                spans.append((s, e))
            if stop >= e0:
                break
            nxt = max(stop - overlap, pos + 1)
            if not text[nxt - 1].isspace() and not text[nxt].isspace():
                m = _SPACE.search(text, nxt, stop)
                if m is not None:
                    nxt = m.end()
            pos = nxt
        return spans
    tokens = [(m.start(), m.end()) for m in _TOKEN.finditer(text, start, end)]
    i = 0
    while i < len(tokens):
        j = min(i + size, len(tokens))
        spans.append((tokens[i][0], tokens[j - 1][1]))
        if j >= len(tokens):
            break
        i += stride
    return spans


def _pack(text: str, sentences: list[Span], unit: str, size: int, overlap: int) -> list[Span]:
    """Greedily pack whole sentences into chunks of at most ``size`` units; overlap = trailing whole sentences.

    A sentence longer than ``size`` is cut into fixed windows on its own.
    """
    measure = _Measure(text, unit)
    lengths = [measure(s) for s in sentences]
    spans: list[Span] = []
    current: list[int] = []  # indices of sentences in the chunk being built

    def chunk_len(idx: list[int]) -> int:
        if unit == "tokens":
            return sum(lengths[i] for i in idx)
        return sentences[idx[-1]][1] - sentences[idx[0]][0]

    def flush() -> list[int]:
        if not current:
            return []
        spans.append((sentences[current[0]][0], sentences[current[-1]][1]))
        carry: list[int] = []
        if overlap > 0:
            for i in reversed(current):
                if chunk_len([i, *carry]) > overlap or len(carry) + 1 >= len(current):
                    break
                carry.insert(0, i)
        return carry

    for i, span in enumerate(sentences):
        if lengths[i] > size:
            flush()
            current = []
            spans.extend(_fixed_spans(text, span[0], span[1], unit, size, overlap))
            continue
        if current and chunk_len([*current, i]) > size:
            current = flush()
            while current and chunk_len([*current, i]) > size:
                current.pop(0)
        current.append(i)
    flush()
    return spans


def _markdown_sections(text: str) -> list[tuple[Span, str | None]]:
    """Split at ATX headings (``#``..``######``) outside fenced code; each section carries its heading path."""
    fenced: list[Span] = []
    fence_start: int | None = None
    for m in _FENCE.finditer(text):
        if fence_start is None:
            fence_start = m.start()
        else:
            fenced.append((fence_start, m.end()))
            fence_start = None
    if fence_start is not None:
        fenced.append((fence_start, len(text)))
    headings = [m for m in _HEADING.finditer(text) if not any(s <= m.start() < e for s, e in fenced)]
    sections: list[tuple[Span, str | None]] = []
    if not headings or headings[0].start() > 0:
        first_end = headings[0].start() if headings else len(text)
        sections.append(((0, first_end), None))
    path: list[tuple[int, str]] = []
    for n, m in enumerate(headings):
        level, title = len(m.group(1)), m.group(2).strip()
        path = [(lv, t) for lv, t in path if lv < level] + [(level, title)]
        end = headings[n + 1].start() if n + 1 < len(headings) else len(text)
        sections.append(((m.start(), end), " > ".join(t for _, t in path)))
    return sections


def chunk_document(doc: Document, config: ChunkerConfig) -> list[Chunk]:
    """Cut one document according to ``config``; chunk ids are ``f"{doc.id}#{i}"``."""
    text = doc.text
    pieces: list[tuple[Span, str | None]] = []
    if config.type == "fixed":
        pieces = [(s, None) for s in _fixed_spans(text, 0, len(text), config.unit, config.size, config.overlap)]
    elif config.type == "sentence":
        sentences = split_sentences(text)
        pieces = [(s, None) for s in _pack(text, sentences, config.unit, config.size, config.overlap)]
    elif config.type == "markdown":
        for (s, e), section in _markdown_sections(text):
            sentences = split_sentences(text, s, e, line_breaks=True)
            pieces.extend((span, section) for span in _pack(text, sentences, config.unit, config.size, config.overlap))
    else:  # pragma: no cover - the config model only allows the three types
        raise ValueError(f"unknown chunker type {config.type!r}")
    chunks = []
    for i, ((s, e), section) in enumerate(pieces):
        meta = dict(doc.metadata)
        if section is not None:
            meta["section"] = section
        chunks.append(Chunk(f"{doc.id}#{i}", doc.id, i, text[s:e], s, e, section, meta))
    return chunks


def chunk_corpus(corpus: Corpus, config: ChunkerConfig) -> list[Chunk]:
    """Chunks of every document, in corpus order."""
    out: list[Chunk] = []
    for doc in corpus:
        out.extend(chunk_document(doc, config))
    return out
