"""Reference-based similarity metrics (ROUGE, BLEU, chrF, edit similarity), fast and score-identical.

Every score equals the reference package's: ``rouge_score.rouge_scorer.RougeScorer`` for ROUGE-1/2/L,
``sacrebleu.sentence_bleu`` / ``sentence_chrf`` for BLEU and chrF (divided by 100, so every score is in
[0, 1]) and rapidfuzz's ``Levenshtein.normalized_similarity``. The tokenisation is replicated exactly;
the n-gram statistics are ours, because the references spend their time building Python Counters of
tuples for every pair.

Why it is fast:

- tokens are cached per unique word (Porter stemming, 13a splitting), never recomputed per occurrence;
- the batch functions count matching n-grams of many pairs with ONE numpy sort: each position's
  n-gram is packed into a 64-bit key (pair, n tokens, side), so the n-grams of every order are
  contiguous runs of the sorted array and clipped match counts come out of vectorised run lengths;
- ROUGE-L uses rapidfuzz's bit-parallel LCS on token ids, edit similarity rapidfuzz's ``cpdist``.

Missing values: an output of ``None`` is scored as the empty string; an empty output scores 0 against a
non-empty reference, as in the reference packages (which also give 0, not 1, when both are empty -
except edit similarity, which is 1 for two empty strings). A missing expected value (``None``) makes
the registered metrics return ``None`` (not applicable). A list of expected values is scored the way the
reference packages score several references (best ROUGE F, sacrebleu's multi-reference BLEU and chrF,
best edit similarity).

numpy, rapidfuzz, nltk and sacrebleu are imported lazily so that importing this module stays cheap.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from itertools import chain
from typing import TYPE_CHECKING, Any, NamedTuple

from workbench.metrics.registry import Score, register

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "RougeArrays",
    "RougeScore",
    "bleu_batch",
    "chrf_batch",
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

# Token caches grow with the vocabulary; past this many entries they are cleared (bounded memory).
_CACHE_LIMIT = 1 << 19


def _text(value: Any) -> str:
    """``None`` counts as an empty output; anything else is scored as its string form."""
    return "" if value is None else value if isinstance(value, str) else str(value)


def _references(expected: Any) -> list[str]:
    if isinstance(expected, (list, tuple)):
        return [_text(e) for e in expected]
    return [_text(expected)]


def _fmeasure(precision: float, recall: float) -> float:
    """rouge_score.scoring.fmeasure, same float operations."""
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def _np() -> Any:
    import numpy

    return numpy


def _as_texts(values: Iterable[Any]) -> list[str]:
    return [_text(v) for v in values]


def _check_lengths(a: Sequence[Any], b: Sequence[Any]) -> None:
    if len(a) != len(b):
        raise ValueError(f"got {len(a)} hypotheses but {len(b)} references; the batch functions score pairs")


# ----------------------------------------------------------------------------------------------------
# ROUGE tokenisation (rouge_score.tokenize.tokenize, replicated)
# ----------------------------------------------------------------------------------------------------

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_VALID_TOKEN = re.compile(r"^[a-z0-9]+$")
# For ASCII text ``lower()`` + "non [a-z0-9] -> space" is one C-level translate.
_ROUGE_ASCII = str.maketrans(
    {chr(c): (chr(c).lower() if chr(c).isalnum() else " ") for c in range(128)}
)


def _rouge_words(text: str) -> list[str]:
    """Lowercase, non-alphanumerics to spaces, split: rouge_score's tokens before stemming."""
    if text.isascii():
        return text.translate(_ROUGE_ASCII).split()
    # ``lower()`` first, exactly as rouge_score: some non-ASCII letters lowercase to ASCII ones.
    return _NON_ALNUM.sub(" ", text.lower()).split()


class _StemCache(dict):  # type: ignore[type-arg]
    """word -> Porter stem (nltk, default NLTK_EXTENSIONS mode, as rouge_score), computed once per word.

    rouge_score stems every occurrence; stemming each distinct word once is where most of the ROUGE
    speed-up comes from. Words of 3 characters or fewer are not stemmed (rouge_score's rule).
    """

    def __init__(self) -> None:
        super().__init__()
        self._stem: Callable[[str], str] | None = None
        self.saw_invalid = False

    def __missing__(self, word: str) -> str:
        if len(word) > 3:
            if self._stem is None:
                from nltk.stem import porter

                self._stem = porter.PorterStemmer().stem
            stem = self._stem(word)
            if not _VALID_TOKEN.match(stem):  # rouge_score drops such tokens; "" marks them here
                stem = ""
                self.saw_invalid = True
        else:
            stem = word
        if len(self) >= _CACHE_LIMIT:
            self.clear()
        self[word] = stem
        return stem


_STEMS = _StemCache()


def rouge_tokenize(text: str | None, use_stemmer: bool = True) -> list[str]:
    """The tokens rouge_score's DefaultTokenizer produces (lowercase alphanumerics, optional stemming)."""
    words = _rouge_words(_text(text))
    if not use_stemmer:
        return words
    stems = list(map(_STEMS.__getitem__, words))
    if _STEMS.saw_invalid and "" in stems:
        stems = [s for s in stems if s]
    return stems


# ----------------------------------------------------------------------------------------------------
# 13a tokenisation (sacrebleu.tokenizers.tokenizer_13a.Tokenizer13a, replicated)
# ----------------------------------------------------------------------------------------------------


class _Split13aCache(dict):  # type: ignore[type-arg]
    """whitespace-free chunk of text -> its 13a tokens, computed once per distinct chunk.

    sacrebleu's 13a regexes only look at a character and its direct neighbours, and whitespace is
    neither punctuation nor a digit to them, so tokenising a line equals tokenising each of its
    whitespace-separated chunks on its own (``' ' + chunk + ' '``, as sacrebleu pads the line). Each
    distinct chunk goes through sacrebleu's own regex tokenizer once.
    """

    def __init__(self) -> None:
        super().__init__()
        self._post: Callable[[str], str] | None = None

    def __missing__(self, chunk: str) -> tuple[str, ...]:
        if self._post is None:
            from sacrebleu.tokenizers.tokenizer_re import TokenizerRegexp

            tokenizer = TokenizerRegexp()
            # Call the regexes without sacrebleu's per-line lru_cache: this cache already holds the result.
            uncached = getattr(TokenizerRegexp.__call__, "__wrapped__", None)
            self._post = partial(uncached, tokenizer) if uncached is not None else tokenizer
        tokens = tuple(self._post(f" {chunk} ").split())
        if len(self) >= _CACHE_LIMIT:
            self.clear()
        self[chunk] = tokens
        return tokens


_SPLIT_13A = _Split13aCache()


def _pre_13a(line: str) -> str:
    """The language-independent part of Tokenizer13a, after BLEU's ``rstrip()``."""
    line = line.rstrip()
    if "<skipped>" in line:
        line = line.replace("<skipped>", "")
    if "\n" in line:
        line = line.replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    return line


def tokenize_13a(text: str | None) -> list[str]:
    """sacrebleu's default BLEU tokenisation (``13a``, after ``rstrip()``), as a token list."""
    return list(chain.from_iterable(map(_SPLIT_13A.__getitem__, _pre_13a(_text(text)).split())))


def _tokenize_all(texts: Iterable[Any], tokenize: Callable[[str], list[str]]) -> list[list[str]]:
    """Tokenise a column, each distinct text once (references repeat across a grid's cells)."""
    seen: dict[str, list[str]] = {}
    out = []
    for t in map(_text, texts):
        toks = seen.get(t)
        if toks is None:
            toks = seen[t] = tokenize(t)
        out.append(toks)
    return out


# ----------------------------------------------------------------------------------------------------
# Batch n-gram matching: one sort of packed n-gram keys per chunk of pairs
# ----------------------------------------------------------------------------------------------------

_MAX_CHUNK_POSITIONS = 1 << 21  # bounds the size of the temporary arrays
_MAX_UNIGRAM_BINS = 1 << 22  # unigram counts by bincount while pairs * alphabet stays this small
_SORT_SLICE = 512  # keys are sorted pair by pair (whole pairs, ~this many keys per slice): cache-friendly


def _ngram_matches(ids: np.ndarray, seg_lens: np.ndarray, order: int, bits: int) -> np.ndarray:
    """Clipped n-gram match counts ``sum_g min(count_hyp(g), count_ref(g))`` for n = 1..order, per pair.

    ``ids``: positive symbol ids (< 2**bits) of every segment laid out hyp0, 0, ref0, 0, hyp1, 0, ...
    (a 0 after each segment). ``seg_lens``: the 2 * pairs segment lengths. Each position gets the key
    ``pair | its next `order` ids (0 past the segment end) | side``, i.e. the n-gram starting there for
    every n at once. Once sorted, the n-grams of order n are the runs of equal key prefixes, and a run's
    hyp/ref sizes give its clipped match count. Only runs present on both sides can hold matching
    longer n-grams, so the array shrinks from one order to the next.
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
    if n_pairs << bits <= _MAX_UNIGRAM_BINS:
        # Unigrams by direct counting (no sort needed); only shared symbols can start longer matches.
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
    # Keys are already grouped by pair: sorting slices of whole pairs is the same as one global sort.
    pair_sizes = np.bincount((seg[keep] >> u64(1)).astype(np.intp), minlength=n_pairs)
    offsets = np.concatenate(([0], np.cumsum(pair_sizes)))
    cuts = np.unique(offsets[np.searchsorted(offsets, np.arange(0, keys.size, _SORT_SLICE))])
    for lo, hi in zip(cuts.tolist(), cuts[1:].tolist() + [keys.size]):
        keys[lo:hi].sort()
    ikeys = keys.view(np.int64)  # keys < 2**63: the same bits read as signed ints, no copies
    char_mask = (1 << bits) - 1
    for n in range(first_order, order + 1):
        if ikeys.size == 0:
            break
        prefix = ikeys >> (1 + (order - n) * bits)  # (pair, n-gram)
        bounds = np.concatenate(([0], np.flatnonzero(prefix[1:] != prefix[:-1]) + 1, [ikeys.size]))
        refs_before = np.concatenate(([0], np.cumsum(ikeys & 1)))[bounds]
        n_ref = np.diff(refs_before)
        sizes = np.diff(bounds)
        matched = np.minimum(n_ref, sizes - n_ref)
        out[:, n - 1] = np.bincount(prefix[bounds[:-1]] >> (n * bits), weights=matched, minlength=n_pairs)
        if n < order:  # keep n-grams found on both sides whose (n+1)-gram does not run past the segment
            extends = ((ikeys >> (1 + (order - n - 1) * bits)) & char_mask) != 0
            ikeys = ikeys[np.repeat(matched > 0, sizes) & extends]
    return out


def _key_bits_ok(order: int, bits: int, n_pairs: int) -> bool:
    return order * bits + 1 + max(1, (n_pairs - 1).bit_length()) <= 63


_SEPARATOR = object()


def _token_matches(hyps: list[list[str]], refs: list[list[str]], order: int) -> np.ndarray:
    """Clipped word n-gram match counts (n = 1..order) of token-list pairs; see ``_ngram_matches``.

    Words get dense ids per chunk of pairs, and chunks stay small enough for ``order`` ids to fit a key.
    """
    np = _np()
    n_pairs = len(hyps)
    out = np.zeros((n_pairs, order), dtype=np.int64)
    start = 0
    while start < n_pairs:
        stop, n_tokens = start, 0
        while stop < n_pairs:
            grown = n_tokens + len(hyps[stop]) + len(refs[stop])
            if not _key_bits_ok(order, grown.bit_length(), stop - start + 1) or (
                grown > _MAX_CHUNK_POSITIONS and stop > start
            ):
                break
            n_tokens, stop = grown, stop + 1
        if stop == start:  # one pair too long to pack (> ~32k tokens at order 4): count with Counters
            out[start] = _counter_matches(hyps[start], refs[start], order)
            start += 1
            continue
        vocab: defaultdict[object, int] = defaultdict()
        vocab[_SEPARATOR] = 0
        vocab.default_factory = vocab.__len__  # a new word gets the next id: C-level dense numbering
        sep = (_SEPARATOR,)
        segments: list[Sequence[object]] = []
        for h, r in zip(hyps[start:stop], refs[start:stop]):
            segments += (h, sep, r, sep)
        ids = np.fromiter(map(vocab.__getitem__, chain.from_iterable(segments)), dtype=np.int64,
                          count=n_tokens + 2 * (stop - start))
        lens = np.fromiter(map(len, segments[0::2]), dtype=np.int64, count=2 * (stop - start))
        out[start:stop] = _ngram_matches(ids, lens, order, (len(vocab) - 1).bit_length())
        start = stop
    return out


def _ngram_counter(tokens: Sequence[Any], n: int) -> Counter[Any]:
    if n == 1:
        return Counter(tokens)
    return Counter(zip(*(tokens[i:] for i in range(n))))


def _clipped(hyp: Counter[Any], ref: Counter[Any]) -> int:
    if len(hyp) > len(ref):
        hyp, ref = ref, hyp
    get = ref.get
    return sum(min(c, get(g, 0)) for g, c in hyp.items())


def _counter_matches(hyp: Sequence[Any], ref: Sequence[Any], order: int) -> list[int]:
    return [_clipped(_ngram_counter(hyp, n), _ngram_counter(ref, n)) for n in range(1, order + 1)]


# ----------------------------------------------------------------------------------------------------
# ROUGE
# ----------------------------------------------------------------------------------------------------


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


def _lcs_length(a: Sequence[Any], b: Sequence[Any]) -> int:
    from rapidfuzz.distance import LCSseq

    return int(LCSseq.similarity(a, b))


def _ngram_score(hyp: Sequence[str], ref: Sequence[str], n: int) -> RougeScore:
    """rouge_score._score_ngrams on token lists."""
    matched = _clipped(_ngram_counter(hyp, n), _ngram_counter(ref, n))
    precision = matched / max(len(hyp) - n + 1, 1)
    recall = matched / max(len(ref) - n + 1, 1)
    return RougeScore(precision, recall, _fmeasure(precision, recall))


def _lcs_score(hyp: Sequence[str], ref: Sequence[str]) -> RougeScore:
    """rouge_score._score_lcs on token lists."""
    if not hyp or not ref:
        return RougeScore(0.0, 0.0, 0.0)
    lcs = _lcs_length(ref, hyp)
    precision = lcs / len(hyp)
    recall = lcs / len(ref)
    return RougeScore(precision, recall, _fmeasure(precision, recall))


def _best_rouge(prediction: Any, reference: Any, score: Callable[[list[str], list[str]], RougeScore],
                use_stemmer: bool) -> RougeScore:
    hyp = rouge_tokenize(_text(prediction), use_stemmer)
    scores = [score(hyp, rouge_tokenize(r, use_stemmer)) for r in _references(reference)]
    # rouge_score's score_multi: the reference with the highest F-measure (first one on ties).
    return max(scores, key=lambda s: s.fmeasure) if len(scores) > 1 else scores[0]


def rouge_n(prediction: str | None, reference: str | Sequence[str] | None, n: int = 1,
            use_stemmer: bool = True) -> RougeScore:
    """ROUGE-N of one pair, equal to ``RougeScorer([f"rouge{n}"], use_stemmer).score(reference, prediction)``."""
    if n <= 0:
        raise ValueError(f"rouge_n needs a positive n, got {n}")
    return _best_rouge(prediction, reference, lambda h, r: _ngram_score(h, r, n), use_stemmer)


def rouge_l_score(prediction: str | None, reference: str | Sequence[str] | None,
                  use_stemmer: bool = True) -> RougeScore:
    """ROUGE-L (sentence-level LCS, rouge_score's ``rougeL``, not ``rougeLsum``) of one pair."""
    return _best_rouge(prediction, reference, _lcs_score, use_stemmer)


def _prf(matched: np.ndarray, n_hyp: np.ndarray, n_ref: np.ndarray) -> RougeArrays:
    np = _np()
    precision = matched / np.maximum(n_hyp, 1)
    recall = matched / np.maximum(n_ref, 1)
    total = precision + recall
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(total > 0, 2 * precision * recall / total, 0.0)
    return RougeArrays(precision, recall, f)


ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge_batch(predictions: Sequence[str | None], references: Sequence[str | None], use_stemmer: bool = True,
                rouge_types: Sequence[str] = ROUGE_TYPES) -> dict[str, RougeArrays]:
    """ROUGE-N (``rougeN`` for any N) and ROUGE-L of many pairs, each as precision/recall/F arrays.

    Equal, pair by pair, to ``RougeScorer(rouge_types, use_stemmer).score(reference, prediction)``.
    """
    np = _np()
    _check_lengths(predictions, references)
    orders = []
    for t in rouge_types:
        if t != "rougeL" and not re.fullmatch(r"rouge[1-9]", t):
            raise ValueError(f"unsupported ROUGE type {t!r}; use rouge1..rouge9 or rougeL")
        if t != "rougeL":
            orders.append(int(t[5:]))
    hyps = _tokenize_all(predictions, partial(rouge_tokenize, use_stemmer=use_stemmer))
    refs = _tokenize_all(references, partial(rouge_tokenize, use_stemmer=use_stemmer))
    len_h = np.array([len(h) for h in hyps], dtype=np.int64)
    len_r = np.array([len(r) for r in refs], dtype=np.int64)
    result: dict[str, RougeArrays] = {}
    if orders:
        matches = _token_matches(hyps, refs, max(orders))
        for n in orders:
            result[f"rouge{n}"] = _prf(matches[:, n - 1], np.maximum(len_h - n + 1, 0), np.maximum(len_r - n + 1, 0))
    if "rougeL" in rouge_types:
        lcs = np.array(_lcs_lengths(hyps, refs), dtype=np.int64)
        empty = (len_h == 0) | (len_r == 0)
        lcs[empty] = 0
        result["rougeL"] = _prf(lcs, len_h, len_r)
    return {t: result[t] for t in rouge_types}


def _lcs_lengths(hyps: list[list[str]], refs: list[list[str]]) -> list[int]:
    from rapidfuzz.distance import LCSseq

    sim = LCSseq.similarity
    return [sim(r, h) for h, r in zip(hyps, refs)]


# ----------------------------------------------------------------------------------------------------
# BLEU (sacrebleu.sentence_bleu defaults: 13a, exp smoothing, effective order, max order 4)
# ----------------------------------------------------------------------------------------------------

_BLEU_ORDER = 4


def _bleu_from_stats(correct: Sequence[int], total: Sequence[int], sys_len: int, ref_len: int) -> float:
    """sacrebleu's BLEU.compute_bleu with smooth_method='exp', effective_order=True (0-100)."""
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


def sentence_bleu_stats(hypothesis: str | None, references: str | Sequence[str] | None) -> dict[str, Any]:
    """Sentence BLEU with its statistics: score in [0, 1], unsmoothed n-gram precisions, BP, lengths."""
    hyp = tokenize_13a(hypothesis)
    refs = [tokenize_13a(r) for r in _references(references)]
    hyp_ngrams = [_ngram_counter(hyp, n) for n in range(1, _BLEU_ORDER + 1)]
    correct = [0] * _BLEU_ORDER
    for n, hc in enumerate(hyp_ngrams, start=1):
        if len(refs) == 1:
            correct[n - 1] = _clipped(hc, _ngram_counter(refs[0], n))
        else:  # sacrebleu clips each n-gram by its largest count over the references
            merged: Counter[Any] = Counter()
            for r in refs:
                for g, c in _ngram_counter(r, n).items():
                    if c > merged[g]:
                        merged[g] = c
            correct[n - 1] = _clipped(hc, merged)
    total = [max(len(hyp) - n + 1, 0) for n in range(1, _BLEU_ORDER + 1)]
    ref_len = _closest_ref_len(len(hyp), [len(r) for r in refs])
    score = _bleu_from_stats(correct, total, len(hyp), ref_len)
    bp = 1.0 if len(hyp) >= ref_len else (math.exp(1 - ref_len / len(hyp)) if hyp else 0.0)
    precisions = [c / t if t else 0.0 for c, t in zip(correct, total)]
    return {"score": score / 100, "precisions": precisions, "bp": bp, "hyp_len": len(hyp), "ref_len": ref_len}


def sentence_bleu(hypothesis: str | None, references: str | Sequence[str] | None) -> float:
    """``sacrebleu.sentence_bleu(hypothesis, [reference]).score / 100``: BLEU of one pair in [0, 1]."""
    return float(sentence_bleu_stats(hypothesis, references)["score"])


def bleu_batch(hypotheses: Sequence[str | None], references: Sequence[str | None]) -> np.ndarray:
    """Sentence BLEU (in [0, 1]) of many pairs, equal to ``sacrebleu.sentence_bleu(h, [r]).score / 100``."""
    np = _np()
    _check_lengths(hypotheses, references)
    hyps = _tokenize_all(hypotheses, tokenize_13a)
    refs = _tokenize_all(references, tokenize_13a)
    matches = _token_matches(hyps, refs, _BLEU_ORDER).tolist()
    out = np.empty(len(hyps), dtype=np.float64)
    for i, (h, r, correct) in enumerate(zip(hyps, refs, matches)):
        lh = len(h)
        total = [lh, lh - 1 if lh > 1 else 0, lh - 2 if lh > 2 else 0, lh - 3 if lh > 3 else 0]
        out[i] = _bleu_from_stats(correct, total, lh, len(r)) / 100
    return out


# ----------------------------------------------------------------------------------------------------
# chrF (sacrebleu.sentence_chrf defaults: char order 6, word order 0, beta 2, whitespace removed)
# ----------------------------------------------------------------------------------------------------

_CHRF_ORDER = 6
_CHRF_BETA = 2


def _chrf_from_stats(stats: Sequence[int]) -> float:
    """sacrebleu CHRF._compute_f_score without eps smoothing (0-100); stats are [hyp, ref, match] * order."""
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


def _char_stats(hyp: str, ref: str) -> list[int]:
    """sacrebleu's [hyp count, ref count, matches] per character order, with Counters (one pair)."""
    stats: list[int] = []
    for n in range(1, _CHRF_ORDER + 1):
        h = Counter([hyp[i : i + n] for i in range(len(hyp) - n + 1)])
        r = Counter([ref[i : i + n] for i in range(len(ref) - n + 1)])
        n_ref = max(len(ref) - n + 1, 0)
        stats += [max(len(hyp) - n + 1, 0) if n_ref else 0, n_ref, _clipped(h, r)]
    return stats


def sentence_chrf(hypothesis: str | None, references: str | Sequence[str] | None) -> float:
    """``sacrebleu.sentence_chrf(hypothesis, [reference]).score / 100``: chrF2 of one pair in [0, 1]."""
    hyp = "".join(_text(hypothesis).split())
    best_f, best = -1.0, 0.0
    for ref in _references(references):
        f = _chrf_from_stats(_char_stats(hyp, "".join(ref.split())))
        if f > best_f:  # sacrebleu keeps the reference with the best F score
            best_f, best = f, f
    return best / 100


def _chrf_scores(stats: np.ndarray) -> np.ndarray:
    """Vectorised ``_chrf_from_stats`` (same float operations in the same order), 0-100."""
    np = _np()
    n_rows = stats.shape[0]
    factor = float(_CHRF_BETA**2)
    avg_prec = np.zeros(n_rows)
    avg_rec = np.zeros(n_rows)
    eff = np.zeros(n_rows, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        for i in range(_CHRF_ORDER):
            n_hyp, n_ref, n_match = stats[:, 3 * i], stats[:, 3 * i + 1], stats[:, 3 * i + 2]
            ok = (n_hyp > 0) & (n_ref > 0)
            avg_prec = np.where(ok, avg_prec + n_match / n_hyp, avg_prec)
            avg_rec = np.where(ok, avg_rec + n_match / n_ref, avg_rec)
            eff += ok
        avg_prec = avg_prec / eff
        avg_rec = avg_rec / eff
        score = (1 + factor) * avg_prec * avg_rec
        score = score / ((factor * avg_prec) + avg_rec)
        score = 100 * score
    return np.where((eff > 0) & (avg_prec + avg_rec != 0), score, 0.0)


def chrf_batch(hypotheses: Sequence[str | None], references: Sequence[str | None]) -> np.ndarray:
    """chrF2 (in [0, 1]) of many pairs, equal to ``sacrebleu.sentence_chrf(h, [r]).score / 100``."""
    np = _np()
    _check_lengths(hypotheses, references)
    texts: list[str] = []
    for h, r in zip(_as_texts(hypotheses), _as_texts(references)):
        texts.append("".join(h.split()))
        texts.append("".join(r.split()))
    lens = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    n_pairs = len(texts) // 2
    matches = np.zeros((n_pairs, _CHRF_ORDER), dtype=np.int64)
    start = 0
    while start < n_pairs:
        stop = start
        size = 0
        while stop < n_pairs and (size < _MAX_CHUNK_POSITIONS or stop == start):
            size += int(lens[2 * stop] + lens[2 * stop + 1])
            stop += 1
        _char_matches_chunk(texts, lens, start, stop, matches)
        start = stop
    orders = np.arange(1, _CHRF_ORDER + 1)
    n_hyp = np.maximum(lens[0::2, None] - orders + 1, 0)
    n_ref = np.maximum(lens[1::2, None] - orders + 1, 0)
    n_hyp = np.where(n_ref > 0, n_hyp, 0)  # sacrebleu: no hypothesis count when the reference has none
    stats = np.stack([n_hyp, n_ref, matches], axis=2).reshape(n_pairs, 3 * _CHRF_ORDER)
    return _chrf_scores(stats) / 100


def _char_matches_chunk(texts: list[str], lens: np.ndarray, start: int, stop: int, out: np.ndarray) -> None:
    """Character n-gram matches of pairs start..stop-1 into ``out``; splits chunks with large alphabets."""
    np = _np()
    seg_lens = lens[2 * start : 2 * stop]
    joined = "".join(texts[2 * start : 2 * stop])
    codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
    if codes.size == 0:
        return
    present = np.zeros(int(codes.max()) + 1, dtype=bool)
    present[codes] = True
    alphabet = int(present.sum())
    bits = alphabet.bit_length()  # ids 1..alphabet, 0 is the separator
    if not _key_bits_ok(_CHRF_ORDER, bits, stop - start):
        if stop - start > 1:
            mid = (start + stop) // 2
            _char_matches_chunk(texts, lens, start, mid, out)
            _char_matches_chunk(texts, lens, mid, stop, out)
        else:  # a single pair with thousands of distinct characters
            stats = _char_stats(texts[2 * start], texts[2 * start + 1])
            out[start] = stats[2::3]
        return
    lut = np.cumsum(present, dtype=np.uint64)
    ids = np.zeros(codes.size + seg_lens.size, dtype=np.uint64)
    seg_index = np.repeat(np.arange(seg_lens.size), seg_lens)
    ids[np.arange(codes.size) + seg_index] = lut[codes]
    out[start:stop] = _ngram_matches(ids, seg_lens, _CHRF_ORDER, bits)


# ----------------------------------------------------------------------------------------------------
# Edit similarity
# ----------------------------------------------------------------------------------------------------


def edit_similarity_score(a: str | None, b: str | None) -> float:
    """rapidfuzz ``Levenshtein.normalized_similarity``: 1 - distance / max(len), 1.0 for two empty strings."""
    from rapidfuzz.distance import Levenshtein

    return float(Levenshtein.normalized_similarity(_text(a), _text(b)))


def edit_similarity_batch(a: Sequence[str | None], b: Sequence[str | None], workers: int = 1) -> np.ndarray:
    """Pairwise normalized Levenshtein similarity of many pairs (rapidfuzz ``cpdist``; ``workers=-1``: all cores)."""
    np = _np()
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    _check_lengths(a, b)
    if len(a) == 0:
        return np.zeros(0)
    return np.asarray(
        process.cpdist(_as_texts(a), _as_texts(b), scorer=Levenshtein.normalized_similarity, workers=workers, dtype=np.float64),
        dtype=np.float64,
    )


# ----------------------------------------------------------------------------------------------------
# Registered metrics
# ----------------------------------------------------------------------------------------------------


def rouge1(output: str, expected: Any, use_stemmer: bool = True) -> Score | None:
    """ROUGE-1 F-measure (unigram overlap) against the expected text; precision/recall in the detail."""
    if expected is None:
        return None
    s = rouge_n(output, expected, 1, use_stemmer)
    return Score(s.fmeasure, {"precision": s.precision, "recall": s.recall, "fmeasure": s.fmeasure})


def rouge2(output: str, expected: Any, use_stemmer: bool = True) -> Score | None:
    """ROUGE-2 F-measure (bigram overlap) against the expected text; precision/recall in the detail."""
    if expected is None:
        return None
    s = rouge_n(output, expected, 2, use_stemmer)
    return Score(s.fmeasure, {"precision": s.precision, "recall": s.recall, "fmeasure": s.fmeasure})


def rouge_l(output: str, expected: Any, use_stemmer: bool = True) -> Score | None:
    """ROUGE-L F-measure (longest common subsequence of tokens); precision/recall in the detail."""
    if expected is None:
        return None
    s = rouge_l_score(output, expected, use_stemmer)
    return Score(s.fmeasure, {"precision": s.precision, "recall": s.recall, "fmeasure": s.fmeasure})


def bleu(output: str, expected: Any) -> Score | None:
    """Sentence BLEU in [0, 1] (sacrebleu's score / 100: 13a tokens, exp smoothing, effective order)."""
    if expected is None:
        return None
    stats = sentence_bleu_stats(output, expected)
    return Score(stats["score"], {k: v for k, v in stats.items() if k != "score"})


def chrf(output: str, expected: Any) -> float | None:
    """chrF2 in [0, 1] (sacrebleu's sentence chrF / 100: character 6-grams, beta 2)."""
    if expected is None:
        return None
    return sentence_chrf(output, expected)


def edit_similarity(output: str, expected: Any) -> float | None:
    """Normalized Levenshtein similarity in [0, 1] (1 = identical); best over several expected values."""
    if expected is None:
        return None
    return max(edit_similarity_score(output, e) for e in _references(expected))


register(rouge1, "rouge1", version="1")
register(rouge2, "rouge2", version="1")
register(rouge_l, "rouge_l", version="1")
register(bleu, "bleu", version="1")
register(chrf, "chrf", version="1")
register(edit_similarity, "edit_similarity", version="1")
