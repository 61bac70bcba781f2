"""Reference-based similarity metrics (ROUGE, BLEU, chrF, edit similarity): fast and score-identical.

Every score equals the reference package's: ``rouge_score.rouge_scorer.RougeScorer`` for ROUGE-1/2/L,
``sacrebleu.sentence_bleu`` / ``sentence_chrf`` for BLEU and chrF (divided by 100, so that every score
is in [0, 1]) and rapidfuzz's ``Levenshtein.normalized_similarity``. The tokenisation is replicated
exactly; the n-gram statistics are ours, because the references spend most of their time building
Python Counters of tuples, pair after pair.

Why it is fast:

- tokens are cached per distinct word or whitespace-separated chunk (Porter stemming, 13a splitting)
  and become small integer ids, instead of being recomputed at every occurrence;
- the batch functions count the matching n-grams of many pairs at once: the n-gram starting at each
  position is packed into a 64-bit key (pair, n ids, side), and after sorting, the n-grams of every
  order are contiguous runs whose hyp/ref sizes give the clipped match counts (numpy, no Python loop);
- ROUGE-L uses rapidfuzz's bit-parallel LCS on token ids, edit similarity rapidfuzz's ``cpdist``.

Missing values: an output of ``None`` is scored as the empty string. An empty output scores 0 against
a non-empty reference, as in the reference packages, which also give 0 (not 1) when both are empty;
edit similarity gives 1.0 for two empty strings (rapidfuzz). The registered metrics return ``None``
(not applicable) when the expected value is ``None``. A list of expected values is scored the way the
reference packages score several references: best ROUGE F-measure (``score_multi``), sacrebleu's
multi-reference BLEU and chrF, best edit similarity.

numpy, rapidfuzz, nltk and sacrebleu are imported lazily so that importing this module stays cheap.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache, partial
from itertools import chain, filterfalse, islice
from operator import methodcaller
from typing import TYPE_CHECKING, Any, NamedTuple

from workbench.metrics.registry import Score, register
from workbench.text import as_text

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "ROUGE_TYPES",
    "RougeArrays",
    "RougeScore",
    "bleu_batch",
    "chrf_batch",
    "clear_caches",
    "edit_similarity_batch",
    "edit_similarity_score",
    "rouge_batch",
    "rouge_l_score",
    "rouge_n",
    "rouge_tokenize",
    "sentence_bleu",
    "sentence_bleu_stats",
    "sentence_chrf",
    "tokenize_13a",
]

# ----------------------------------------------------------------------------------------------------
# Small shared helpers
# ----------------------------------------------------------------------------------------------------


def _references(expected: Any) -> list[str]:
    if isinstance(expected, (list, tuple)):
        return [as_text(e) for e in expected]
    return [as_text(expected)]


def _fmeasure(precision: float, recall: float) -> float:
    """rouge_score.scoring.fmeasure, same float operations."""
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def _np() -> Any:
    import numpy

    return numpy


def _check_lengths(a: Sequence[Any], b: Sequence[Any]) -> None:
    if len(a) != len(b):
        raise ValueError(f"got {len(a)} hypotheses but {len(b)} references; the batch functions score pairs")


# ----------------------------------------------------------------------------------------------------
# Token ids. Every tokeniser below maps a text to a list of small positive ints (0 is reserved);
# ``_Vocabulary.tokens`` turns them back into strings. Caches are cleared between calls once they hold
# more than _CACHE_LIMIT entries, never during one (ids handed out in a call must stay valid).
# ----------------------------------------------------------------------------------------------------

_CACHE_LIMIT = 1 << 20


class _Vocabulary:
    """Token string -> id (1, 2, ...), assigned in C: ``ids[token]`` numbers a new token ``len(ids)``."""

    def __init__(self) -> None:
        self.ids: defaultdict[Any, int] = defaultdict()
        self.ids[None] = 0  # reserves id 0, so that real tokens start at 1
        self.ids.default_factory = self.ids.__len__
        self.id = self.ids.__getitem__
        self._tokens: list[str] = []

    @property
    def tokens(self) -> list[str]:
        """id -> token string. Ids follow insertion order: the key list, extended with the newest keys."""
        new = len(self.ids) - len(self._tokens)
        if new:
            self._tokens.extend(reversed(list(islice(reversed(self.ids), new))))
        return self._tokens


# rouge_score.tokenize.tokenize: lowercase, non-[a-z0-9] runs to spaces, split, Porter-stem words longer
# than 3 characters, drop tokens that are not [a-z0-9]+.
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_VALID_TOKEN = re.compile(r"^[a-z0-9]+$")
# For ASCII text ``lower()`` + "non [a-z0-9] -> space" is one C-level translate.
_ROUGE_ASCII = str.maketrans({chr(c): (chr(c).lower() if chr(c).isalnum() else " ") for c in range(128)})


def _rouge_words(text: str) -> list[str]:
    """rouge_score's tokens before stemming."""
    if text.isascii():
        return text.translate(_ROUGE_ASCII).split()
    # ``lower()`` first, exactly as rouge_score: some non-ASCII letters lowercase to ASCII ones.
    return _NON_ALNUM.sub(" ", text.lower()).split()


_PORTER_LOCK = threading.Lock()


def porter_stem() -> Callable[[str], str]:
    """nltk's PorterStemmer().stem (the stemmer rouge_score uses), without importing all of nltk.

    ``import nltk`` runs its package ``__init__``, which imports scipy.stats and most of nltk: ~2.5 s of a
    cold ``llmops demo``. The stemmer needs three small modules, so they are loaded under temporary
    package stand-ins that are removed again (a later ``import nltk`` is the full, normal one). Any
    surprise in nltk's layout falls back to the normal import: only the speed depends on this.
    """
    import sys

    with _PORTER_LOCK:
        if "nltk" not in sys.modules:
            try:
                return _isolated_porter(sys.modules)
            except Exception:  # noqa: BLE001 - a different nltk layout: the full import below is still right
                pass
        from nltk.stem import porter

        return porter.PorterStemmer().stem  # type: ignore[no-any-return]


def _isolated_porter(modules: dict[str, Any]) -> Callable[[str], str]:
    import importlib
    import importlib.util
    import os
    import types

    spec = importlib.util.find_spec("nltk")  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("nltk is not installed")
    root = list(spec.submodule_search_locations)[0]
    before = set(modules)
    try:
        for name, path in (("nltk", root), ("nltk.stem", os.path.join(root, "stem"))):
            stand_in = types.ModuleType(name)
            stand_in.__path__ = [path]
            modules[name] = stand_in
        module = importlib.import_module("nltk.stem.porter")
        return module.PorterStemmer().stem  # type: ignore[no-any-return]
    finally:
        for name in set(modules) - before:
            if name == "nltk" or name.startswith("nltk."):
                del modules[name]


class _RougeIds(dict):  # type: ignore[type-arg]
    """word -> id of its (stemmed) token, 0 for a token rouge_score drops; each word stemmed once.

    rouge_score stems every occurrence with nltk's PorterStemmer (default NLTK_EXTENSIONS mode);
    stemming each distinct word once is most of the ROUGE speed-up.
    """

    def __init__(self, use_stemmer: bool) -> None:
        super().__init__()
        self.use_stemmer = use_stemmer
        self.vocab = _Vocabulary()
        self.saw_invalid = False
        self._stem: Callable[[str], str] | None = None

    def __missing__(self, word: str) -> int:
        token = word
        if self.use_stemmer and len(word) > 3:
            if self._stem is None:
                self._stem = porter_stem()
            token = self._stem(word)
        if _VALID_TOKEN.match(token):
            i = self.vocab.id(token)
        else:
            i = 0
            self.saw_invalid = True
        self[word] = i
        return i

    def ids(self, text: str) -> list[int]:
        ids = list(map(self.__getitem__, _rouge_words(text)))
        if self.saw_invalid and 0 in ids:
            ids = [i for i in ids if i]
        return ids


class _Chunk13aIds(dict):  # type: ignore[type-arg]
    """whitespace-free chunk of a line -> ids of its 13a tokens, each distinct chunk tokenised once.

    sacrebleu's 13a regexes only look at a character and its direct neighbours, and whitespace is
    neither punctuation nor a digit to them, so tokenising a line equals tokenising each of its
    whitespace-separated chunks on its own, padded with spaces as sacrebleu pads the line. New chunks
    go through sacrebleu's own regexes together, joined by newlines (only ever next to the padding
    spaces, so no pattern can match across them).
    """

    def __init__(self) -> None:
        super().__init__()
        self.vocab = _Vocabulary()
        self._steps: list[Callable[[str], str]] | None = None

    @staticmethod
    def _regex_steps() -> list[Callable[[str], str]]:
        """sacrebleu's regex substitutions, in order; the first one as an equivalent ``str.translate``.

        The first regex pads single punctuation characters (and spaces) with spaces; done by the regex
        engine it calls Python code for every match, the translate table does the same in C. The table
        is derived from sacrebleu's own pattern.
        """
        from sacrebleu.tokenizers.tokenizer_re import TokenizerRegexp

        regexes = list(TokenizerRegexp()._re)
        steps: list[Callable[[str], str]] = [partial(regex.sub, repl) for regex, repl in regexes]
        first, repl = regexes[0]
        if repl == r" \1 " and first.groups == 1 and not first.search("".join(map(chr, range(128, 0x10000)))):
            table = str.maketrans({chr(c): f" {chr(c)} " for c in range(128) if first.fullmatch(chr(c))})
            steps[0] = methodcaller("translate", table)
        return steps

    def fill(self, chunks: Iterable[str]) -> None:
        missing = list(filterfalse(self.__contains__, set(chunks)))
        if not missing:
            return
        if self._steps is None:
            self._steps = self._regex_steps()
        joined = "\n".join([f" {c} " for c in missing])
        for step in self._steps:
            joined = step(joined)
        parts = joined.split("\n")
        if len(parts) != len(missing):  # cannot happen: chunks hold no whitespace, the regexes add none
            raise RuntimeError("13a tokenisation: chunk boundaries were lost")
        token_id = self.vocab.id
        for chunk, part in zip(missing, parts):
            self[chunk] = tuple(map(token_id, part.split()))

    def __missing__(self, chunk: str) -> tuple[int, ...]:
        self.fill((chunk,))
        return self[chunk]  # type: ignore[no-any-return]


def _pre_13a(line: str) -> str:
    """BLEU's ``rstrip()`` and the language-independent part of sacrebleu's Tokenizer13a."""
    line = line.rstrip()
    if "<skipped>" in line:
        line = line.replace("<skipped>", "")
    if "\n" in line:
        line = line.replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    return line


_ROUGE_CACHES = {True: _RougeIds(True), False: _RougeIds(False)}
_CHUNKS_13A = _Chunk13aIds()


# Held while a call resets caches and turns its texts into ids: ids of one call come from one vocabulary
# even when metrics run in several threads.
_LOCK = threading.RLock()


def clear_caches() -> None:
    """Drop every token cache (frees memory; benchmarks use it to time cold starts)."""
    global _CHUNKS_13A
    with _LOCK:
        _ROUGE_CACHES[True] = _RougeIds(True)
        _ROUGE_CACHES[False] = _RougeIds(False)
        _CHUNKS_13A = _Chunk13aIds()
        _cached_rouge_ids.cache_clear()
        _cached_13a_ids.cache_clear()


def _reset_large_caches() -> None:
    """Bound memory: drop token caches that grew past the limit (only between calls, under _LOCK)."""
    for stemmed, cache in list(_ROUGE_CACHES.items()):
        if len(cache) > _CACHE_LIMIT:
            _ROUGE_CACHES[stemmed] = _RougeIds(stemmed)
            _cached_rouge_ids.cache_clear()
    global _CHUNKS_13A
    if len(_CHUNKS_13A) > _CACHE_LIMIT:
        _CHUNKS_13A = _Chunk13aIds()
        _cached_13a_ids.cache_clear()


def _ids_13a(text: str) -> list[int]:
    chunks = _pre_13a(text).split()
    _CHUNKS_13A.fill(chunks)  # new chunks through the regexes together, not one by one
    return list(chain.from_iterable(map(_CHUNKS_13A.__getitem__, chunks)))


# The registered metrics see one cell at a time, and rouge1/rouge2/rouge_l (or bleu) read the same
# two texts: these small caches tokenise each text once per cell, not once per metric.
@lru_cache(maxsize=512)
def _cached_rouge_ids(text: str, use_stemmer: bool) -> tuple[int, ...]:
    return tuple(_ROUGE_CACHES[use_stemmer].ids(text))


@lru_cache(maxsize=512)
def _cached_13a_ids(text: str) -> tuple[int, ...]:
    return tuple(_ids_13a(text))


def rouge_tokenize(text: str | None, use_stemmer: bool = True) -> list[str]:
    """The tokens of rouge_score's DefaultTokenizer (lowercase alphanumeric words, Porter-stemmed)."""
    with _LOCK:
        _reset_large_caches()
        cache = _ROUGE_CACHES[use_stemmer]
        ids = cache.ids(as_text(text))
        tokens = cache.vocab.tokens
        return [tokens[i] for i in ids]


def tokenize_13a(text: str | None) -> list[str]:
    """The tokens sacrebleu's BLEU compares (``13a`` tokenizer applied to the right-stripped text)."""
    with _LOCK:
        _reset_large_caches()
        ids = _ids_13a(as_text(text))
        tokens = _CHUNKS_13A.vocab.tokens
        return [tokens[i] for i in ids]


def _distinct_ids(texts: Sequence[Any], tokenize: Callable[[str], list[int]]) -> list[list[int]]:
    """Token ids of a column, each distinct text tokenised once (references repeat across a grid)."""
    seen: dict[str, list[int]] = {}
    out = []
    for t in map(as_text, texts):
        ids = seen.get(t)
        if ids is None:
            ids = seen[t] = tokenize(t)
        out.append(ids)
    return out


def _batch_13a_ids(texts: Sequence[Any]) -> list[list[int]]:
    """13a token ids of a column; the new chunks of all texts go through the regexes in one call."""
    distinct = {t: _pre_13a(t).split() for t in map(as_text, texts)}
    _CHUNKS_13A.fill(chain.from_iterable(distinct.values()))
    lookup = _CHUNKS_13A.__getitem__
    ids = {t: list(chain.from_iterable(map(lookup, chunks))) for t, chunks in distinct.items()}
    return [ids[t] for t in map(as_text, texts)]


# ----------------------------------------------------------------------------------------------------
# Batch n-gram matching: one sort of packed n-gram keys per chunk of pairs
# ----------------------------------------------------------------------------------------------------

_MAX_UNIGRAM_BINS = 1 << 22  # unigrams are counted by bincount while pairs * 2**bits stays small
_SORT_SLICE = 512  # keys are sorted a few whole pairs at a time (~this many keys): cache-friendly


def _ngram_matches(ids: np.ndarray, seg_lens: np.ndarray, order: int, bits: int) -> np.ndarray:
    """Clipped n-gram match counts ``sum_g min(count_hyp(g), count_ref(g))`` for n = 1..order, per pair.

    ``ids``: symbol ids in [1, 2**bits) of every segment laid out hyp0, 0, ref0, 0, hyp1, 0, ... (a 0
    after each segment). ``seg_lens``: the 2 * pairs segment lengths. Each position gets the key
    ``pair | its next `order` ids (0 past the segment end) | side``: the n-gram starting there, for
    every n at once. Once sorted, the n-grams of order n are the runs of equal key prefixes, and a
    run's hyp/ref sizes give its clipped match count. Only runs present on both sides can hold longer
    matches, so the array shrinks from one order to the next.
    """
    np = _np()
    n_pairs = seg_lens.size // 2
    out = np.zeros((n_pairs, order), dtype=np.int64)
    total = ids.size
    if total == 0:
        return out
    u64 = np.uint64
    padded = np.zeros(total + order, dtype=u64)
    padded[:total] = ids
    gram = padded[:total] << u64((order - 1) * bits)
    for k in range(1, order):
        gram |= padded[k : total + k] << u64((order - 1 - k) * bits)
    seg = np.repeat(np.arange(2 * n_pairs, dtype=u64), seg_lens + 1)
    keys = ((seg >> u64(1)) << u64(order * bits + 1)) | (gram << u64(1)) | (seg & u64(1))
    first = padded[:total]
    keep = first != 0
    first_order = 1
    if n_pairs << bits <= min(_MAX_UNIGRAM_BINS, 4 * total):
        # Unigrams by direct counting (no sort); only shared symbols can start longer matches.
        unigram = ((seg >> u64(1)) << u64(bits)) | first
        is_ref = (seg & u64(1)).astype(bool)
        bins = n_pairs << bits
        in_hyp = np.bincount(unigram[keep & ~is_ref], minlength=bins)
        in_ref = np.bincount(unigram[keep & is_ref], minlength=bins)
        out[:, 0] = np.minimum(in_hyp, in_ref).reshape(n_pairs, 1 << bits).sum(axis=1)
        if order == 1:
            return out
        shared = (in_hyp > 0) & (in_ref > 0)
        keep &= shared[unigram] & (padded[1 : total + 1] != 0)
        first_order = 2
    keys = keys[keep]
    # Keys are already grouped by pair: sorting slices of whole pairs equals one global sort.
    pair_sizes = np.bincount((seg[keep] >> u64(1)).astype(np.intp), minlength=n_pairs)
    offsets = np.concatenate(([0], np.cumsum(pair_sizes)))
    cuts = np.unique(offsets[np.searchsorted(offsets, np.arange(0, keys.size, _SORT_SLICE))])
    for lo, hi in zip(cuts.tolist(), cuts[1:].tolist() + [keys.size]):
        keys[lo:hi].sort()
    ikeys = keys.view(np.int64)  # keys < 2**63: the same bits as signed ints, no copy
    id_mask = (1 << bits) - 1
    for n in range(first_order, order + 1):
        if ikeys.size == 0:
            break
        prefix = ikeys >> (1 + (order - n) * bits)  # (pair, n-gram)
        bounds = np.concatenate(([0], np.flatnonzero(prefix[1:] != prefix[:-1]) + 1, [ikeys.size]))
        n_ref = np.diff(np.concatenate(([0], np.cumsum(ikeys & 1)))[bounds])
        sizes = np.diff(bounds)
        matched = np.minimum(n_ref, sizes - n_ref)
        out[:, n - 1] = np.bincount(prefix[bounds[:-1]] >> (n * bits), weights=matched, minlength=n_pairs)
        if n < order:  # keep n-grams found on both sides whose (n+1)-gram stays inside the segment
            extends = ((ikeys >> (1 + (order - n - 1) * bits)) & id_mask) != 0
            ikeys = ikeys[np.repeat(matched > 0, sizes) & extends]
    return out


def _fits(order: int, bits: int, n_pairs: int) -> bool:
    """Whether (pair, `order` ids of `bits` bits, side) fits a key below 2**63."""
    return order * bits + 1 + max(1, (n_pairs - 1).bit_length()) <= 63


def _packed_matches(flat: np.ndarray, seg_lens: np.ndarray, order: int, chunk_positions: int) -> np.ndarray:
    """``_ngram_matches`` over any number of pairs: chunks of pairs, ids renumbered densely per chunk.

    ``flat``: int64 ids >= 1 laid out as for ``_ngram_matches``. A chunk whose ids still need too many
    bits is halved; a single pair that cannot be packed (tens of thousands of distinct tokens at order
    4, thousands of distinct characters at order 6) is counted with Counters.
    """
    np = _np()
    n_pairs = seg_lens.size // 2
    out = np.zeros((n_pairs, order), dtype=np.int64)
    pair_end = np.cumsum(seg_lens[0::2] + seg_lens[1::2] + 2)
    pair_start = pair_end - (seg_lens[0::2] + seg_lens[1::2] + 2)
    # Initial chunks: consecutive pairs holding about chunk_positions positions.
    cut = np.searchsorted(
        pair_end, np.arange(chunk_positions, int(pair_end[-1]) if n_pairs else 0, chunk_positions), side="right"
    )
    bounds = sorted({0, n_pairs, *cut.tolist()})
    todo = [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo][::-1]
    while todo:
        lo, hi = todo.pop()
        ids = flat[pair_start[lo] : pair_end[hi - 1]]
        bits = int(ids.max()).bit_length() if ids.size else 1
        if not _fits(order, bits, hi - lo):  # renumber the ids present in this chunk 1..k (0 stays 0)
            present = np.zeros(int(ids.max()) + 1, dtype=bool)
            present[ids] = True
            present[0] = True
            ids = (np.cumsum(present) - 1)[ids]
            bits = int(ids.max()).bit_length()
        if _fits(order, bits, hi - lo):
            out[lo:hi] = _ngram_matches(ids, seg_lens[2 * lo : 2 * hi], order, bits)
        elif hi - lo > 1:
            mid = (lo + hi) // 2
            todo += [(mid, hi), (lo, mid)]
        else:
            h_len = int(seg_lens[2 * lo])
            out[lo] = _counter_matches(ids[:h_len].tolist(), ids[h_len + 1 : -1].tolist(), order)
    return out


def _flatten(hyps: Sequence[Sequence[int]], refs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Lay id sequences out as hyp0, 0, ref0, 0, ...: (flat ids, segment lengths)."""
    np = _np()
    sep = (0,)
    segments: list[Sequence[int]] = []
    for h, r in zip(hyps, refs):
        segments += (h, sep, r, sep)
    lens = np.fromiter(map(len, segments[0::2]), dtype=np.int64, count=2 * len(hyps))
    flat = np.fromiter(chain.from_iterable(segments), dtype=np.int64, count=int(lens.sum()) + 2 * len(hyps))
    return flat, lens


def _ngram_counter(tokens: Sequence[Any], n: int) -> Counter[Any]:
    if n == 1:
        return Counter(tokens)
    return Counter(zip(*(tokens[i:] for i in range(n))))


def _clipped(hyp: Counter[Any], ref: Counter[Any]) -> int:
    """sum over n-grams of min(hyp count, ref count)."""
    if len(hyp) > len(ref):
        hyp, ref = ref, hyp
    get = ref.get
    return sum([min(c, get(g, 0)) for g, c in hyp.items()])


def _counter_matches(hyp: Sequence[Any], ref: Sequence[Any], order: int) -> list[int]:
    return [_clipped(_ngram_counter(hyp, n), _ngram_counter(ref, n)) for n in range(1, order + 1)]


# ----------------------------------------------------------------------------------------------------
# ROUGE (rouge_score RougeScorer: rougeN and rougeL, not rougeLsum)
# ----------------------------------------------------------------------------------------------------

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
_WORD_CHUNK = 1 << 17  # positions per chunk: small arrays stay in cache and reuse freed memory


class RougeScore(NamedTuple):
    """Precision, recall and F-measure of one ROUGE type (rouge_score's ``Score``)."""

    precision: float
    recall: float
    fmeasure: float


class RougeArrays(NamedTuple):
    """Per-pair precision, recall and F-measure arrays of one ROUGE type."""

    precision: np.ndarray
    recall: np.ndarray
    fmeasure: np.ndarray


def _ngram_score(hyp: Sequence[int], ref: Sequence[int], n: int) -> RougeScore:
    """rouge_score._score_ngrams on token ids."""
    matched = _clipped(_ngram_counter(hyp, n), _ngram_counter(ref, n))
    precision = matched / max(len(hyp) - n + 1, 1)
    recall = matched / max(len(ref) - n + 1, 1)
    return RougeScore(precision, recall, _fmeasure(precision, recall))


def _lcs_score(hyp: Sequence[int], ref: Sequence[int]) -> RougeScore:
    """rouge_score._score_lcs on token ids."""
    if not hyp or not ref:
        return RougeScore(0.0, 0.0, 0.0)
    from rapidfuzz.distance import LCSseq

    lcs = LCSseq.similarity(ref, hyp)
    precision = lcs / len(hyp)
    recall = lcs / len(ref)
    return RougeScore(precision, recall, _fmeasure(precision, recall))


def _best_rouge(
    prediction: Any, reference: Any, score: Callable[[Sequence[int], Sequence[int]], RougeScore], use_stemmer: bool
) -> RougeScore:
    with _LOCK:
        _reset_large_caches()
        hyp = _cached_rouge_ids(as_text(prediction), use_stemmer)
        refs = [_cached_rouge_ids(r, use_stemmer) for r in _references(reference)]
    scores = [score(hyp, r) for r in refs]
    # rouge_score's score_multi: the reference with the highest F-measure (the first one on ties).
    return max(scores, key=lambda s: s.fmeasure)


def rouge_n(
    prediction: str | None, reference: str | Sequence[str] | None, n: int = 1, use_stemmer: bool = True
) -> RougeScore:
    """ROUGE-N of one pair: ``RougeScorer([f"rouge{n}"], use_stemmer).score(reference, prediction)``."""
    if n <= 0:
        raise ValueError(f"rouge_n needs a positive n, got {n}")
    return _best_rouge(prediction, reference, lambda h, r: _ngram_score(h, r, n), use_stemmer)


def rouge_l_score(
    prediction: str | None, reference: str | Sequence[str] | None, use_stemmer: bool = True
) -> RougeScore:
    """ROUGE-L of one pair (LCS over the whole text: rouge_score's ``rougeL``, not ``rougeLsum``)."""
    return _best_rouge(prediction, reference, _lcs_score, use_stemmer)


def _prf(matched: np.ndarray, n_hyp: np.ndarray, n_ref: np.ndarray) -> RougeArrays:
    """Vectorised precision/recall/fmeasure with rouge_score's float operations."""
    np = _np()
    precision = matched / np.maximum(n_hyp, 1)
    recall = matched / np.maximum(n_ref, 1)
    total = precision + recall
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(total > 0, 2 * precision * recall / total, 0.0)
    return RougeArrays(precision, recall, f)


def rouge_batch(
    predictions: Sequence[str | None],
    references: Sequence[str | None],
    use_stemmer: bool = True,
    rouge_types: Sequence[str] = ROUGE_TYPES,
) -> dict[str, RougeArrays]:
    """ROUGE of many pairs: for each type (``rouge1``..``rouge9``, ``rougeL``) precision/recall/F arrays.

    Pair ``i`` equals ``RougeScorer(rouge_types, use_stemmer).score(references[i], predictions[i])``.
    """
    np = _np()
    _check_lengths(predictions, references)
    orders = []
    for t in rouge_types:
        if t != "rougeL" and not re.fullmatch(r"rouge[1-9]", t):
            raise ValueError(f"unsupported ROUGE type {t!r}: use rouge1..rouge9 or rougeL (rougeLsum is not offered)")
        if t != "rougeL":
            orders.append(int(t[5:]))
    with _LOCK:
        _reset_large_caches()
        tokenize = _ROUGE_CACHES[use_stemmer].ids
        hyps = _distinct_ids(predictions, tokenize)
        refs = _distinct_ids(references, tokenize)
    len_h = np.fromiter(map(len, hyps), dtype=np.int64, count=len(hyps))
    len_r = np.fromiter(map(len, refs), dtype=np.int64, count=len(refs))
    result: dict[str, RougeArrays] = {}
    if orders and hyps:
        flat, seg_lens = _flatten(hyps, refs)
        matches = _packed_matches(flat, seg_lens, max(orders), _WORD_CHUNK)
        for n in orders:
            result[f"rouge{n}"] = _prf(matches[:, n - 1], np.maximum(len_h - n + 1, 0), np.maximum(len_r - n + 1, 0))
    elif orders:
        empty = np.zeros(0)
        result.update({f"rouge{n}": RougeArrays(empty, empty, empty) for n in orders})
    if "rougeL" in rouge_types:
        from rapidfuzz.distance import LCSseq

        similarity = LCSseq.similarity
        lcs = np.fromiter(
            (similarity(r, h) if h and r else 0 for h, r in zip(hyps, refs)), dtype=np.int64, count=len(hyps)
        )
        result["rougeL"] = _prf(lcs, len_h, len_r)
    return {t: result[t] for t in rouge_types}


# ----------------------------------------------------------------------------------------------------
# BLEU (sacrebleu.sentence_bleu defaults: 13a, exp smoothing, effective order, max n-gram order 4)
# ----------------------------------------------------------------------------------------------------

_BLEU_ORDER = 4
_BLEU_CHUNK = 1 << 14  # 4 word ids per key: chunks small enough that their vocabulary fits 14 bits


def _bleu_from_stats(correct: Sequence[int], total: Sequence[int], sys_len: int, ref_len: int) -> float:
    """sacrebleu's BLEU.compute_bleu with smooth_method='exp' and effective_order=True (0-100)."""
    bp = 1.0
    if sys_len < ref_len:
        bp = math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0
    if not any(correct):
        return 0.0
    precisions = [0.0] * _BLEU_ORDER
    smooth_mteval = 1.0
    eff_order = _BLEU_ORDER
    for n in range(1, _BLEU_ORDER + 1):
        if total[n - 1] == 0:
            break
        eff_order = n
        if correct[n - 1] == 0:
            smooth_mteval *= 2
            precisions[n - 1] = 100.0 / (smooth_mteval * total[n - 1])
        else:
            precisions[n - 1] = 100.0 * correct[n - 1] / total[n - 1]
    logs = sum([math.log(p) if p != 0.0 else -9999999999 for p in precisions[:eff_order]])
    return bp * math.exp(logs / eff_order)


def _closest_ref_len(hyp_len: int, ref_lens: Sequence[int]) -> int:
    """sacrebleu: the reference length closest to the hypothesis length, the shorter one on ties."""
    closest_diff, closest_len = -1, -1
    for ref_len in ref_lens:
        diff = abs(hyp_len - ref_len)
        if closest_diff == -1 or diff < closest_diff:
            closest_diff, closest_len = diff, ref_len
        elif diff == closest_diff and ref_len < closest_len:
            closest_len = ref_len
    return closest_len


def _totals(hyp_len: int) -> list[int]:
    return [max(hyp_len - n + 1, 0) for n in range(1, _BLEU_ORDER + 1)]


def sentence_bleu_stats(hypothesis: str | None, references: str | Sequence[str] | None) -> dict[str, Any]:
    """Sentence BLEU with its evidence: ``score`` in [0, 1], unsmoothed n-gram ``precisions``, ``bp``, lengths.

    Several references are combined as sacrebleu does: each n-gram is clipped by its largest count in
    any reference, and the brevity penalty uses the reference length closest to the hypothesis length.
    """
    with _LOCK:
        _reset_large_caches()
        hyp = _cached_13a_ids(as_text(hypothesis))
        refs = [_cached_13a_ids(r) for r in _references(references)]
    correct = [0] * _BLEU_ORDER
    for n in range(1, _BLEU_ORDER + 1):
        ref_counts = _ngram_counter(refs[0], n)
        for other in refs[1:]:
            for g, c in _ngram_counter(other, n).items():
                if c > ref_counts[g]:
                    ref_counts[g] = c
        correct[n - 1] = _clipped(_ngram_counter(hyp, n), ref_counts)
    total = _totals(len(hyp))
    ref_len = _closest_ref_len(len(hyp), [len(r) for r in refs])
    score = _bleu_from_stats(correct, total, len(hyp), ref_len)
    bp = 1.0 if len(hyp) >= ref_len else (math.exp(1 - ref_len / len(hyp)) if hyp else 0.0)
    precisions = [c / t if t else 0.0 for c, t in zip(correct, total)]
    return {"score": score / 100, "precisions": precisions, "bp": bp, "hyp_len": len(hyp), "ref_len": ref_len}


def sentence_bleu(hypothesis: str | None, references: str | Sequence[str] | None) -> float:
    """BLEU of one pair in [0, 1]: ``sacrebleu.sentence_bleu(hypothesis, [reference]).score / 100``."""
    return float(sentence_bleu_stats(hypothesis, references)["score"])


def bleu_batch(hypotheses: Sequence[str | None], references: Sequence[str | None]) -> np.ndarray:
    """Sentence BLEU in [0, 1] of many pairs: ``sacrebleu.sentence_bleu(h, [r]).score / 100`` each."""
    np = _np()
    _check_lengths(hypotheses, references)
    with _LOCK:
        _reset_large_caches()
        hyps = _batch_13a_ids(hypotheses)
        refs = _batch_13a_ids(references)
    out = np.zeros(len(hyps), dtype=np.float64)
    if not hyps:
        return out
    flat, seg_lens = _flatten(hyps, refs)
    matches = _packed_matches(flat, seg_lens, _BLEU_ORDER, _BLEU_CHUNK).tolist()
    for i, (lh, lr, correct) in enumerate(zip(seg_lens[0::2].tolist(), seg_lens[1::2].tolist(), matches)):
        out[i] = _bleu_from_stats(correct, _totals(lh), lh, lr) / 100
    return out


# ----------------------------------------------------------------------------------------------------
# chrF (sacrebleu.sentence_chrf defaults: character order 6, word order 0, beta 2, whitespace removed)
# ----------------------------------------------------------------------------------------------------

_CHRF_ORDER = 6
_CHRF_BETA = 2
_CHAR_CHUNK = 1 << 17


def _chrf_from_stats(stats: Sequence[int]) -> float:
    """sacrebleu's CHRF._compute_f_score without eps smoothing (0-100); stats: [hyp, ref, match] * order."""
    factor = _CHRF_BETA**2
    avg_prec, avg_rec = 0.0, 0.0
    effective_order = 0
    for i in range(_CHRF_ORDER):
        n_hyp, n_ref, n_match = stats[3 * i : 3 * i + 3]
        if n_hyp > 0 and n_ref > 0:
            avg_prec += n_match / n_hyp
            avg_rec += n_match / n_ref
            effective_order += 1
    if effective_order == 0:
        return 0.0
    avg_prec /= effective_order
    avg_rec /= effective_order
    if avg_prec + avg_rec:
        score = (1 + factor) * avg_prec * avg_rec
        score /= (factor * avg_prec) + avg_rec
        return 100 * score
    return 0.0


def _chrf_stats(hypotheses: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """sacrebleu's chrF statistics [hyp count, ref count, matches] per character order, one row per pair."""
    np = _np()
    texts: list[str] = []
    for h, r in zip(hypotheses, references):
        texts += ("".join(h.split()), "".join(r.split()))
    seg_lens = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    n_pairs = len(hypotheses)
    codes = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    flat = np.zeros(codes.size + seg_lens.size, dtype=np.int64)  # a 0 after each segment
    flat[np.arange(codes.size) + np.repeat(np.arange(seg_lens.size), seg_lens)] = codes.astype(np.int64) + 1
    matches = _packed_matches(flat, seg_lens, _CHRF_ORDER, _CHAR_CHUNK) if n_pairs else np.zeros((0, _CHRF_ORDER))
    orders = np.arange(1, _CHRF_ORDER + 1)
    n_hyp = np.maximum(seg_lens[0::2, None] - orders + 1, 0)
    n_ref = np.maximum(seg_lens[1::2, None] - orders + 1, 0)
    n_hyp = np.where(n_ref > 0, n_hyp, 0)  # sacrebleu: no hypothesis count when the reference has none
    return np.stack([n_hyp, n_ref, matches.astype(np.int64)], axis=2).reshape(n_pairs, 3 * _CHRF_ORDER)


def _chrf_scores(stats: np.ndarray) -> np.ndarray:
    """Vectorised ``_chrf_from_stats``: the same float operations in the same order (0-100)."""
    np = _np()
    factor = float(_CHRF_BETA**2)
    avg_prec = np.zeros(stats.shape[0])
    avg_rec = np.zeros(stats.shape[0])
    effective = np.zeros(stats.shape[0], dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        for i in range(_CHRF_ORDER):
            n_hyp, n_ref, n_match = stats[:, 3 * i], stats[:, 3 * i + 1], stats[:, 3 * i + 2]
            ok = (n_hyp > 0) & (n_ref > 0)
            avg_prec = np.where(ok, avg_prec + n_match / n_hyp, avg_prec)
            avg_rec = np.where(ok, avg_rec + n_match / n_ref, avg_rec)
            effective += ok
        avg_prec = avg_prec / effective
        avg_rec = avg_rec / effective
        score = (1 + factor) * avg_prec * avg_rec
        score = score / ((factor * avg_prec) + avg_rec)
        score = 100 * score
    return np.where((effective > 0) & (avg_prec + avg_rec != 0), score, 0.0)


def sentence_chrf(hypothesis: str | None, references: str | Sequence[str] | None) -> float:
    """chrF2 of one pair in [0, 1]: ``sacrebleu.sentence_chrf(hypothesis, [reference]).score / 100``.

    With several references, sacrebleu keeps the one with the best score (the first one on ties).
    """
    refs = _references(references)
    stats = _chrf_stats([as_text(hypothesis)] * len(refs), refs)
    return max(_chrf_from_stats(row) for row in stats.tolist()) / 100


def chrf_batch(hypotheses: Sequence[str | None], references: Sequence[str | None]) -> np.ndarray:
    """chrF2 in [0, 1] of many pairs: ``sacrebleu.sentence_chrf(h, [r]).score / 100`` each."""
    _check_lengths(hypotheses, references)
    stats = _chrf_stats([as_text(h) for h in hypotheses], [as_text(r) for r in references])
    return _chrf_scores(stats) / 100


# ----------------------------------------------------------------------------------------------------
# Edit similarity (rapidfuzz)
# ----------------------------------------------------------------------------------------------------


def edit_similarity_score(a: str | None, b: str | None) -> float:
    """``rapidfuzz.distance.Levenshtein.normalized_similarity``: 1 - distance / max length (1.0 if both empty)."""
    from rapidfuzz.distance import Levenshtein

    return float(Levenshtein.normalized_similarity(as_text(a), as_text(b)))


def edit_similarity_batch(a: Sequence[str | None], b: Sequence[str | None], workers: int = 1) -> np.ndarray:
    """Normalized Levenshtein similarity of many pairs (rapidfuzz ``cpdist``; ``workers=-1`` uses all cores)."""
    np = _np()
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    _check_lengths(a, b)
    if len(a) == 0:
        return np.zeros(0)
    scores = process.cpdist(
        [as_text(x) for x in a],
        [as_text(x) for x in b],
        scorer=Levenshtein.normalized_similarity,
        workers=workers,
        dtype=np.float64,
    )
    return np.asarray(scores, dtype=np.float64)


# ----------------------------------------------------------------------------------------------------
# Registered metrics
# ----------------------------------------------------------------------------------------------------


def _rouge_result(s: RougeScore) -> Score:
    return Score(s.fmeasure, {"precision": s.precision, "recall": s.recall, "fmeasure": s.fmeasure})


def rouge1(output: str, expected: Any, use_stemmer: bool = True) -> Score | None:
    """ROUGE-1 F-measure (unigram overlap, as rouge_score); precision and recall in the detail."""
    return None if expected is None else _rouge_result(rouge_n(output, expected, 1, use_stemmer))


def rouge2(output: str, expected: Any, use_stemmer: bool = True) -> Score | None:
    """ROUGE-2 F-measure (bigram overlap, as rouge_score); precision and recall in the detail."""
    return None if expected is None else _rouge_result(rouge_n(output, expected, 2, use_stemmer))


def rouge_l(output: str, expected: Any, use_stemmer: bool = True) -> Score | None:
    """ROUGE-L F-measure (longest common token subsequence, rouge_score's rougeL); P/R in the detail."""
    return None if expected is None else _rouge_result(rouge_l_score(output, expected, use_stemmer))


def bleu(output: str, expected: Any) -> Score | None:
    """Sentence BLEU in [0, 1]: sacrebleu's sentence_bleu / 100 (13a tokens, exp smoothing)."""
    if expected is None:
        return None
    stats = sentence_bleu_stats(output, expected)
    return Score(stats["score"], {k: v for k, v in stats.items() if k != "score"})


def chrf(output: str, expected: Any) -> float | None:
    """chrF2 in [0, 1]: sacrebleu's sentence_chrf / 100 (character 1-6-grams, recall weighted)."""
    return None if expected is None else sentence_chrf(output, expected)


def edit_similarity(output: str, expected: Any) -> float | None:
    """Normalized Levenshtein similarity in [0, 1] (1 = identical); the best over several expected values."""
    if expected is None:
        return None
    return max(edit_similarity_score(output, e) for e in _references(expected))


def _rouge_batch_metric(rouge_type: str) -> Callable[..., list[Score]]:
    def batch(outputs: Sequence[str | None], expected: Sequence[str], use_stemmer: bool = True) -> list[Score]:
        arrays = rouge_batch(outputs, expected, use_stemmer, rouge_types=(rouge_type,))[rouge_type]
        return [
            Score(float(f), {"precision": float(p), "recall": float(r), "fmeasure": float(f)})
            for p, r, f in zip(arrays.precision, arrays.recall, arrays.fmeasure)
        ]

    return batch


def _plain_batch(fn: Callable[..., Any]) -> Callable[..., list[float]]:
    def batch(outputs: Sequence[str | None], expected: Sequence[str]) -> list[float]:
        return [float(x) for x in fn(outputs, expected)]

    return batch


register(rouge1, "rouge1", batch=_rouge_batch_metric("rouge1"))
register(rouge2, "rouge2", batch=_rouge_batch_metric("rouge2"))
register(rouge_l, "rouge_l", batch=_rouge_batch_metric("rougeL"))
register(bleu, "bleu")
register(chrf, "chrf", batch=_plain_batch(chrf_batch))
register(edit_similarity, "edit_similarity", batch=_plain_batch(edit_similarity_batch))


def embedding_cosine(output: str, expected: Any, embedder: str = "local") -> float | None:
    """Cosine similarity of output and expected embeddings (workspace embedder; best over several expected)."""
    if expected is None:
        return None
    from workbench.embeddings import get_embedder

    refs = list(_references(expected))
    vectors = get_embedder(embedder).embed([output or "", *refs])  # rows are L2-normalised
    return float(max(vectors[1:] @ vectors[0]))


register(embedding_cosine, "embedding_cosine")
