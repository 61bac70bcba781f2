"""Similarity metrics must give the reference packages' scores (rouge-score, sacrebleu, rapidfuzz).

Every expected value below is computed by the reference package in the test itself, never copied from
our own output.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rouge_score")
pytest.importorskip("sacrebleu")
np = pytest.importorskip("numpy")

import sacrebleu  # noqa: E402
from rapidfuzz.distance import Levenshtein  # noqa: E402
from rouge_score import rouge_scorer, tokenizers  # noqa: E402
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a  # noqa: E402

import workbench.metrics as wm  # noqa: E402
from workbench.metrics import CellView, Score  # noqa: E402
from workbench.metrics import similarity as sim  # noqa: E402

DATA = Path(__file__).parent / "data" / "pubmedqa_pairs.jsonl"
TOL = 1e-6
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")


def _load_pairs() -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["hypothesis"], r["reference"]) for r in rows]


PAIRS = _load_pairs()
HYPS = [h for h, _ in PAIRS]
REFS = [r for _, r in PAIRS]

# Strings built to hit the tokenisers' corner cases: 13a's period/comma/dash rules next to digits, HTML
# entities, <skipped>, "-\n" joins, runs of punctuation, overlapping repeated n-grams, non-ASCII letters
# that lowercase to ASCII (Kelvin sign), combining marks, non-breaking and other Unicode whitespace.
EDGE_TEXTS = [
    "",
    " ",
    "\t\n",
    "...",
    "!!! ??? ,,, ---",
    "a",
    "aaaa aaaa aaaa",
    "abababab",
    "3.14, 2,5 and 1-2-3 vs. a-b; (x) [y] {z} <w> 10.000.",
    "end with a period .",
    "e.g., i.e., U.S.A., etc.,.",
    "&quot;quoted&quot; &amp; &lt;tag&gt; <skipped> word<skipped>s",
    "hyphen-\nated line\nbreaks\n",
    "naïve café — Zürich, São Paulo; αβγ δ μg/kg ≥ 5 °C ± 0.2",
    "\u212a elvin İstanbul STRASSE straße ﬁne",
    "non\u00a0breaking\u2009thin\u2003em\u2028line",
    "東京は日本の首都です。大阪も大きい。",
    "running runs ran runner easily fairly generously sky skies dying news",
    "The patients (n=42; 95% CI 1.2-3.4, p<0.05) improved.",
    "UPPER lower MiXeD 123abc abc123 a1b2c3",
]


def _random_text(rng: random.Random, alphabet: str, max_words: int = 12) -> str:
    words = []
    for _ in range(rng.randint(0, max_words)):
        words.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))))
    seps = [" ", " ", " ", "  ", "\t", "\n", "-\n"]
    return "".join(w + rng.choice(seps) for w in words).strip(" ") if words else ""


def _fuzz_pairs(n: int = 300, seed: int = 7) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    alphabets = [
        "ab",
        "abc .,-",
        "ab12.,-&;()",
        "xyz0123456789.,-/:",
        "aé ßK\u212a.,\u00a0!?\"'",
        "the cat sat on mat.",
    ]
    pairs = []
    for _ in range(n):
        alphabet = rng.choice(alphabets)
        pairs.append((_random_text(rng, alphabet), _random_text(rng, alphabet)))
    return pairs


FUZZ = _fuzz_pairs()
EDGE_PAIRS = [(a, b) for a in EDGE_TEXTS for b in EDGE_TEXTS[::3]] + [(t, t) for t in EDGE_TEXTS]
ALL_PAIRS = PAIRS + FUZZ + EDGE_PAIRS


def _ref_bleu(h: str, r: str | list[str]) -> float:
    return float(sacrebleu.sentence_bleu(h, r if isinstance(r, list) else [r]).score) / 100


def _ref_chrf(h: str, r: str | list[str]) -> float:
    return float(sacrebleu.sentence_chrf(h, r if isinstance(r, list) else [r]).score) / 100


# ----------------------------------------------------------------------------------------------------
# The data file
# ----------------------------------------------------------------------------------------------------


def test_data_file_is_small_real_text() -> None:
    assert DATA.stat().st_size < 200_000
    assert len(PAIRS) >= 150
    assert all(h and r for h, r in PAIRS)
    assert any(not h.isascii() for h in HYPS + REFS)  # exercises the non-ASCII paths


# ----------------------------------------------------------------------------------------------------
# Tokenisers
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_stemmer", [True, False])
def test_rouge_tokenize_matches_rouge_score(use_stemmer: bool) -> None:
    reference = tokenizers.DefaultTokenizer(use_stemmer=use_stemmer)
    texts = HYPS + REFS + EDGE_TEXTS + [t for pair in FUZZ for t in pair]
    for text in texts:
        assert sim.rouge_tokenize(text, use_stemmer) == reference.tokenize(text), text


def test_tokenize_13a_matches_sacrebleu() -> None:
    reference = Tokenizer13a()
    texts = HYPS + REFS + EDGE_TEXTS + [t for pair in FUZZ for t in pair]
    for text in texts:
        # sacrebleu's BLEU right-strips a segment before tokenising it
        assert sim.tokenize_13a(text) == reference(text.rstrip()).split(), repr(text)


def test_tokenize_13a_fuzz_dense_punctuation() -> None:
    """Chunk-wise 13a tokenisation equals sacrebleu's whole-line regexes on punctuation-dense strings."""
    rng = random.Random(11)
    reference = Tokenizer13a()
    alphabet = "a1.,-'&;:()[]/ \t\n" + "9" * 3 + "." * 3
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        assert sim.tokenize_13a(text) == reference(text.rstrip()).split(), repr(text)


def _all_bmp_texts() -> list[str]:
    """Every BMP character (lone surrogates included) between letters, digits, dots and spaces."""
    chars = [chr(c) for c in range(0x10000)]
    texts = []
    for start in range(0, len(chars), 64):
        block = chars[start : start + 64]
        texts.append(" ".join(f"a{c}1{c}.{c}{c} b{c}" for c in block))
    return texts


def test_tokenizers_on_every_bmp_character() -> None:
    texts = _all_bmp_texts()
    rouge = tokenizers.DefaultTokenizer(use_stemmer=True)
    bleu = Tokenizer13a()
    for text in texts:
        assert sim.tokenize_13a(text) == bleu(text.rstrip()).split()
        assert sim.rouge_tokenize(text) == rouge.tokenize(text)


def test_chrf_on_every_bmp_character() -> None:
    texts = _all_bmp_texts()
    ours = sim.chrf_batch(texts, texts[1:] + texts[:1])
    for i, text in enumerate(texts[:: len(texts) // 40]):
        j = i * (len(texts) // 40)
        assert float(ours[j]) == pytest.approx(_ref_chrf(text, texts[(j + 1) % len(texts)]), abs=TOL)
    assert sim.sentence_chrf(texts[5], texts[5]) == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------------
# ROUGE
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_stemmer", [True, False])
def test_rouge_batch_matches_rouge_score(use_stemmer: bool) -> None:
    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=use_stemmer)
    hyps = [h for h, _ in ALL_PAIRS]
    refs = [r for _, r in ALL_PAIRS]
    ours = sim.rouge_batch(hyps, refs, use_stemmer=use_stemmer)
    assert set(ours) == set(ROUGE_KEYS)
    for i, (h, r) in enumerate(ALL_PAIRS):
        expected = scorer.score(r, h)  # rouge_score takes (target, prediction)
        for key in ROUGE_KEYS:
            for field in ("precision", "recall", "fmeasure"):
                got = float(getattr(ours[key], field)[i])
                assert got == pytest.approx(getattr(expected[key], field), abs=TOL), (key, field, h, r)


@pytest.mark.parametrize("use_stemmer", [True, False])
def test_rouge_single_pair_functions_match_rouge_score(use_stemmer: bool) -> None:
    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=use_stemmer)
    for h, r in ALL_PAIRS:
        expected = scorer.score(r, h)
        for got, key in (
            (sim.rouge_n(h, r, 1, use_stemmer), "rouge1"),
            (sim.rouge_n(h, r, 2, use_stemmer), "rouge2"),
            (sim.rouge_l_score(h, r, use_stemmer), "rougeL"),
        ):
            assert tuple(got) == pytest.approx(tuple(expected[key]), abs=TOL), (key, h, r)


def test_rouge_higher_orders_and_type_selection() -> None:
    scorer = rouge_scorer.RougeScorer(["rouge3", "rouge4"], use_stemmer=True)
    ours = sim.rouge_batch(HYPS, REFS, rouge_types=("rouge4", "rouge3"))
    assert list(ours) == ["rouge4", "rouge3"]
    for i, (h, r) in enumerate(PAIRS):
        expected = scorer.score(r, h)
        assert float(ours["rouge3"].fmeasure[i]) == pytest.approx(expected["rouge3"].fmeasure, abs=TOL)
        assert float(ours["rouge4"].fmeasure[i]) == pytest.approx(expected["rouge4"].fmeasure, abs=TOL)
        assert tuple(sim.rouge_n(h, r, 3)) == pytest.approx(tuple(expected["rouge3"]), abs=TOL)
    with pytest.raises(ValueError, match="rougeLsum"):
        sim.rouge_batch(HYPS[:2], REFS[:2], rouge_types=("rougeLsum",))
    with pytest.raises(ValueError, match="positive"):
        sim.rouge_n("a", "a", 0)


def test_rouge_multiple_references_use_score_multi() -> None:
    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)
    for (h, r1), (_, r2) in zip(PAIRS[:40], PAIRS[1:41]):
        expected = scorer.score_multi([r2, r1], h)
        assert tuple(sim.rouge_n(h, [r2, r1], 1)) == pytest.approx(tuple(expected["rouge1"]), abs=TOL)
        assert tuple(sim.rouge_l_score(h, [r2, r1])) == pytest.approx(tuple(expected["rougeL"]), abs=TOL)


# ----------------------------------------------------------------------------------------------------
# BLEU and chrF
# ----------------------------------------------------------------------------------------------------


def test_bleu_batch_and_single_match_sacrebleu() -> None:
    hyps = [h for h, _ in ALL_PAIRS]
    refs = [r for _, r in ALL_PAIRS]
    ours = sim.bleu_batch(hyps, refs)
    assert ours.shape == (len(ALL_PAIRS),)
    for i, (h, r) in enumerate(ALL_PAIRS):
        expected = _ref_bleu(h, r)
        assert float(ours[i]) == pytest.approx(expected, abs=TOL), (h, r)
        assert sim.sentence_bleu(h, r) == pytest.approx(expected, abs=TOL), (h, r)
    assert np.any(ours > 0.05)  # real text with overlap, not a trivially zero column


def test_bleu_multiple_references_match_sacrebleu() -> None:
    for (h, r1), (_, r2) in zip(PAIRS[:40], PAIRS[1:41]):
        expected = _ref_bleu(h, [r1, r2, h[: len(h) // 2]])
        assert sim.sentence_bleu(h, [r1, r2, h[: len(h) // 2]]) == pytest.approx(expected, abs=TOL)
    # Two references equally far from the hypothesis length: sacrebleu takes the shorter one (BP = 1 here).
    hyp, longer, shorter = "a b c d e", "a b c d e f", "a b c x"
    for refs in ([longer, shorter], [shorter, longer]):
        assert sim.sentence_bleu(hyp, refs) == pytest.approx(_ref_bleu(hyp, refs), abs=TOL)
        assert sim.sentence_bleu_stats(hyp, refs)["bp"] == 1.0


def test_bleu_detail_reports_sacrebleu_statistics() -> None:
    h, r = PAIRS[0]
    ref = sacrebleu.sentence_bleu(h, [r])
    stats = sim.sentence_bleu_stats(h, r)
    assert stats["hyp_len"] == ref.sys_len and stats["ref_len"] == ref.ref_len
    assert stats["bp"] == pytest.approx(ref.bp)
    expected_precisions = [c / t if t else 0.0 for c, t in zip(ref.counts, ref.totals)]
    assert stats["precisions"] == pytest.approx(expected_precisions)


def test_chrf_batch_and_single_match_sacrebleu() -> None:
    hyps = [h for h, _ in ALL_PAIRS]
    refs = [r for _, r in ALL_PAIRS]
    ours = sim.chrf_batch(hyps, refs)
    for i, (h, r) in enumerate(ALL_PAIRS):
        expected = _ref_chrf(h, r)
        assert float(ours[i]) == pytest.approx(expected, abs=TOL), (h, r)
        assert sim.sentence_chrf(h, r) == pytest.approx(expected, abs=TOL), (h, r)


def test_chrf_multiple_references_match_sacrebleu() -> None:
    for (h, r1), (_, r2) in zip(PAIRS[:40], PAIRS[1:41]):
        assert sim.sentence_chrf(h, [r2, r1]) == pytest.approx(_ref_chrf(h, [r2, r1]), abs=TOL)


def test_large_alphabets_and_vocabularies_fall_back_correctly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands of distinct characters or words cannot be packed in one key: chunks split, then Counters."""
    fallbacks = []
    counter_matches = sim._counter_matches

    def spy(hyp: list[int], ref: list[int], order: int) -> list[int]:
        fallbacks.append(order)
        return counter_matches(hyp, ref, order)

    monkeypatch.setattr(sim, "_counter_matches", spy)
    rng = random.Random(3)
    cjk = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
    big_h = "".join(rng.choice(cjk) for _ in range(4000))
    big_r = big_h[1000:3000] + "".join(rng.choice(cjk) for _ in range(500))
    words = [f"w{i}" for i in range(40000)]
    many_h = " ".join(words)
    many_r = " ".join(words[5000:30000] + words[:100])
    hyps = [PAIRS[0][0], big_h, PAIRS[1][0], many_h, "abc abd"]
    refs = [PAIRS[0][1], big_r, PAIRS[1][1], many_r, "abd abc"]
    chrf = sim.chrf_batch(hyps, refs)
    bleu = sim.bleu_batch(hyps, refs)
    for i, (h, r) in enumerate(zip(hyps, refs)):
        assert float(chrf[i]) == pytest.approx(_ref_chrf(h, r), abs=TOL)
        assert float(bleu[i]) == pytest.approx(_ref_bleu(h, r), abs=TOL)
    assert chrf[1] > 0.1 and bleu[3] > 0.1
    assert sorted(fallbacks) == [4, 6]  # exactly the two oversized pairs were counted with Counters


# ----------------------------------------------------------------------------------------------------
# Edit similarity
# ----------------------------------------------------------------------------------------------------


def test_edit_similarity_matches_rapidfuzz() -> None:
    hyps = [h for h, _ in ALL_PAIRS]
    refs = [r for _, r in ALL_PAIRS]
    ours = sim.edit_similarity_batch(hyps, refs)
    assert ours.dtype == np.float64
    for i, (h, r) in enumerate(ALL_PAIRS):
        expected = Levenshtein.normalized_similarity(h, r)
        assert float(ours[i]) == pytest.approx(expected, abs=1e-12)
        assert sim.edit_similarity_score(h, r) == pytest.approx(expected, abs=1e-12)
    assert np.array_equal(sim.edit_similarity_batch(hyps, refs, workers=2), ours)


# ----------------------------------------------------------------------------------------------------
# Edge cases
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [t for t in EDGE_TEXTS if sim.rouge_tokenize(t) and len("".join(t.split())) >= 6])
def test_identical_strings_score_one(text: str) -> None:
    assert sim.rouge_n(text, text, 1).fmeasure == pytest.approx(1.0)
    assert sim.rouge_l_score(text, text).fmeasure == pytest.approx(1.0)
    assert sim.sentence_bleu(text, text) == pytest.approx(1.0)
    assert sim.sentence_chrf(text, text) == pytest.approx(1.0)
    assert sim.edit_similarity_score(text, text) == 1.0
    assert float(sim.bleu_batch([text], [text])[0]) == pytest.approx(1.0)
    assert float(sim.chrf_batch([text], [text])[0]) == pytest.approx(1.0)


def test_empty_and_none_outputs() -> None:
    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)
    ref = PAIRS[0][1]
    # An empty output against a real reference scores 0 everywhere, as in the reference packages.
    for output in ("", None, "   "):
        assert sim.rouge_n(output, ref, 1).fmeasure == scorer.score(ref, "")["rouge1"].fmeasure == 0.0
        assert sim.rouge_l_score(output, ref).fmeasure == 0.0
        assert sim.sentence_bleu(output, ref) == _ref_bleu("", ref) == 0.0
        assert sim.sentence_chrf(output, ref) == _ref_chrf("", ref) == 0.0
    # Both empty: the references give 0 for ROUGE/BLEU/chrF; rapidfuzz gives 1 for two empty strings.
    assert sim.rouge_n("", "", 1).fmeasure == scorer.score("", "")["rouge1"].fmeasure == 0.0
    assert sim.sentence_bleu("", "") == _ref_bleu("", "") == 0.0
    assert sim.sentence_chrf("", "") == _ref_chrf("", "") == 0.0
    assert sim.edit_similarity_score(None, "") == 1.0
    batch = sim.rouge_batch([None, "", "x"], ["", ref, ""])
    assert batch["rougeL"].fmeasure.tolist() == [0.0, 0.0, 0.0]
    assert sim.bleu_batch([None], [ref]).tolist() == [0.0]
    assert sim.chrf_batch([None], [ref]).tolist() == [0.0]


def test_punctuation_only_output() -> None:
    # No ROUGE tokens at all, but 13a and chrF still see the punctuation characters.
    out, ref = "?! ... ,,", "Yes. It works, mostly!"
    assert sim.rouge_tokenize(out) == []
    assert sim.rouge_n(out, ref, 1).fmeasure == 0.0
    assert sim.sentence_bleu(out, ref) == pytest.approx(_ref_bleu(out, ref), abs=TOL)
    assert sim.sentence_chrf(out, ref) == pytest.approx(_ref_chrf(out, ref), abs=TOL)
    assert sim.sentence_chrf(out, ref) > 0.0


def test_empty_batches_and_length_mismatch() -> None:
    assert sim.bleu_batch([], []).shape == (0,)
    assert sim.chrf_batch([], []).shape == (0,)
    assert sim.edit_similarity_batch([], []).shape == (0,)
    assert sim.rouge_batch([], [])["rouge1"].fmeasure.shape == (0,)
    with pytest.raises(ValueError, match="pairs"):
        sim.bleu_batch(["a"], [])


def test_small_cache_limit_resets_between_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Caches are dropped between calls once large; ids from before and after must never mix."""
    monkeypatch.setattr(sim, "_CACHE_LIMIT", 50)
    scorer = rouge_scorer.RougeScorer(["rouge2"], use_stemmer=True)
    for start in (0, 20, 40, 60):
        if start == 60:
            sim.clear_caches()
        hyps, refs = HYPS[start : start + 20], REFS[start : start + 20]
        rouge = sim.rouge_batch(hyps, refs, rouge_types=("rouge2",))["rouge2"].fmeasure
        bleu = sim.bleu_batch(hyps, refs)
        for i, (h, r) in enumerate(zip(hyps, refs)):
            assert float(rouge[i]) == pytest.approx(scorer.score(r, h)["rouge2"].fmeasure, abs=TOL)
            assert float(bleu[i]) == pytest.approx(_ref_bleu(h, r), abs=TOL)
            assert sim.rouge_n(h, r, 2).fmeasure == pytest.approx(scorer.score(r, h)["rouge2"].fmeasure, abs=TOL)
    assert len(sim._ROUGE_CACHES[True]) < 5000


# ----------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------


def _call(name: str, options: Mapping[str, Any], case: Mapping[str, Any], output: str | None) -> Any:
    bound = wm.bind(name, options)
    return bound.definition.fn(**bound.call_kwargs(CellView(case=case, output=output)))


def test_registered_metrics_through_bind_match_references() -> None:
    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)
    plain = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    for h, r in PAIRS[:25]:
        case = {"ref": r, "question": "unused"}
        expected = scorer.score(r, h)
        got = _call("rouge_l", {"expected": "ref"}, case, h)
        assert isinstance(got, Score)
        assert got.value == pytest.approx(expected["rougeL"].fmeasure, abs=TOL)
        assert got.detail is not None
        assert got.detail["precision"] == pytest.approx(expected["rougeL"].precision, abs=TOL)
        assert got.detail["recall"] == pytest.approx(expected["rougeL"].recall, abs=TOL)
        unstemmed = _call("rouge_l", {"expected": "ref", "use_stemmer": False}, case, h)
        assert unstemmed.value == pytest.approx(plain.score(r, h)["rougeL"].fmeasure, abs=TOL)
        assert _call("rouge1", {"expected": "ref"}, case, h).value == pytest.approx(
            expected["rouge1"].fmeasure, abs=TOL
        )
        assert _call("rouge2", {"expected": "ref"}, case, h).value == pytest.approx(
            expected["rouge2"].fmeasure, abs=TOL
        )
        assert _call("bleu", {"expected": "ref"}, case, h).value == pytest.approx(_ref_bleu(h, r), abs=TOL)
        assert _call("chrf", {"expected": "ref"}, case, h) == pytest.approx(_ref_chrf(h, r), abs=TOL)
        assert _call("edit_similarity", {"expected": "ref"}, case, h) == pytest.approx(
            Levenshtein.normalized_similarity(h, r), abs=1e-12
        )


def test_registered_metrics_defaults_and_missing_expected() -> None:
    names = ("rouge1", "rouge2", "rouge_l", "bleu", "chrf", "edit_similarity")
    known = wm.all_metrics()
    for name in names:
        definition = known[name]
        assert definition.injected == ("output",) and definition.columns == ("expected",)
        assert definition.description
        # the default column is called "expected"; a missing gold answer is "not applicable"
        assert _call(name, {}, {"expected": None}, "some output") is None
        value = _call(name, {}, {"expected": "the same words"}, "the same words")
        assert (value.value if isinstance(value, Score) else value) == pytest.approx(1.0)
    assert known["rouge1"].optional_options == ("use_stemmer",)
    with pytest.raises(Exception, match="does not take"):
        wm.bind("bleu", {"expected": "ref", "use_stemmer": True})


def test_registered_metric_with_list_of_expected_answers() -> None:
    h, r = PAIRS[2]
    other = PAIRS[3][1]
    case = {"answers": [other, r]}
    got = _call("rouge1", {"expected": "answers"}, case, h)
    expected = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True).score_multi([other, r], h)["rouge1"]
    assert got.value == pytest.approx(expected.fmeasure, abs=TOL)
    assert _call("chrf", {"expected": "answers"}, case, h) == pytest.approx(_ref_chrf(h, [other, r]), abs=TOL)
    assert _call("edit_similarity", {"expected": "answers"}, case, h) == pytest.approx(
        max(Levenshtein.normalized_similarity(h, x) for x in (other, r))
    )


def test_module_import_stays_light() -> None:
    code = (
        "import sys, workbench.metrics.similarity as s; "
        "heavy = [m for m in ('numpy', 'nltk', 'sacrebleu', 'rapidfuzz', 'rouge_score') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.stdout.strip() == ""


def test_embedding_cosine_uses_the_workspace_embedder():
    import numpy as np

    from workbench.embeddings import get_embedder
    from workbench.metrics import CellView, bind

    bound = bind("embedding_cosine", {"expected": "ref"})
    out, ref = "Aspirin reduces the risk of stroke.", "Stroke risk is lowered by aspirin."
    value = bound.definition.fn(**bound.call_kwargs(CellView(case={"ref": ref}, output=out)))
    a, b = get_embedder("local").embed([out, ref])
    expected = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert value == pytest.approx(expected, abs=1e-6)
    unrelated = bound.definition.fn(**bound.call_kwargs(CellView(case={"ref": "The train leaves at noon."},
                                                                 output=out)))
    assert value > unrelated
    same = bound.definition.fn(**bound.call_kwargs(CellView(case={"ref": out}, output=out)))
    assert same == pytest.approx(1.0, abs=1e-5)


def test_porter_stem_loads_alone_and_matches_nltk_on_real_words() -> None:
    """The isolated stemmer is nltk's own: same stems as the full import, and it leaves no stand-in behind."""
    root = Path(__file__).resolve().parents[1]
    code = """
import re, sys
from workbench.metrics.similarity import porter_stem
stem = porter_stem()
assert not any(m == "nltk" or m.startswith("nltk.") for m in sys.modules), "stand-in left in sys.modules"
assert "scipy.stats" not in sys.modules
import nltk
from nltk.stem.porter import PorterStemmer
assert hasattr(nltk, "word_tokenize"), "a later import nltk must be the full package"
ref = PorterStemmer().stem
words = set()
for line in open(sys.argv[1], encoding="utf-8"):
    words |= set(re.findall("[a-z0-9]+", line.lower()))
bad = [w for w in sorted(words) if stem(w) != ref(w)]
print(len(words), len(bad), bad[:5])
"""
    data = root / "workbench" / "data" / "pubmedqa_demo.jsonl"
    out = subprocess.run([sys.executable, "-c", code, str(data)], capture_output=True, text=True, cwd=root,
                         env={**os.environ, "PYTHONPATH": str(root)}, timeout=300)
    assert out.returncode == 0, out.stderr
    n, bad = out.stdout.split()[:2]
    assert int(n) > 1000 and bad == "0", out.stdout
