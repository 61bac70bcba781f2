"""Retrieval engine on real data (150 PubMedQA abstracts), real wordllama, real FAISS and real bm25s."""

from __future__ import annotations

import collections
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workbench.embeddings import LOCAL_NAME, get_embedder
from workbench.errors import RetrievalError
from workbench.retrieval import (
    BuildStats,
    ChunkerConfig,
    Corpus,
    Document,
    Hit,
    RetrievalConfig,
    build_retriever,
    chunk_document,
    clear_memory_cache,
    retrieval_eval,
)

DATA = Path(__file__).resolve().parent / "data" / "pubmedqa_corpus_small.jsonl"


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus.from_path(DATA, id_field="doc_id")


@pytest.fixture(scope="module")
def shared_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="module")
def questions(corpus: Corpus) -> list[dict]:
    return [{"question": d.metadata["question"], "gold": d.id} for d in corpus]


class CountingEmbedder:
    """Wraps the real local embedder and counts calls/texts (same name, so it shares the cache)."""

    def __init__(self, name: str = LOCAL_NAME) -> None:
        self.inner = get_embedder("local")
        self.name = name
        self.calls = 0
        self.texts = 0

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        self.texts += len(texts)
        return self.inner.embed(texts)


# ---------------------------------------------------------------------------------------------
# corpus


def test_corpus_from_jsonl(corpus: Corpus) -> None:
    assert len(corpus) == 150
    doc = corpus["21645374"]
    assert doc.text.startswith("Programmed cell death")
    assert set(doc.metadata) == {"question", "year", "decision"}
    assert corpus.hash == Corpus.from_path(DATA, id_field="doc_id").hash
    assert len(corpus.hash) == 64


def test_corpus_hash_tracks_content_and_text_hash_ignores_metadata() -> None:
    a = Corpus.from_records([{"id": "a", "text": "one", "tag": 1}, {"id": "b", "text": "two", "tag": 2}])
    reordered = Corpus.from_records([{"id": "b", "text": "two", "tag": 2}, {"id": "a", "text": "one", "tag": 1}])
    retagged = Corpus.from_records([{"id": "a", "text": "one", "tag": 9}, {"id": "b", "text": "two", "tag": 2}])
    edited = Corpus.from_records([{"id": "a", "text": "one!", "tag": 1}, {"id": "b", "text": "two", "tag": 2}])
    assert a.hash == reordered.hash
    assert a.hash != retagged.hash and a.text_hash == retagged.text_hash
    assert a.hash != edited.hash and a.text_hash != edited.text_hash


def test_corpus_from_dataframe_converts_ids_and_metadata() -> None:
    df = pd.DataFrame({"pmid": [101, 102], "abstract": ["first text", "second text"], "year": [2001, np.nan]})
    c = Corpus.from_dataframe(df, id_col="pmid", text_col="abstract")
    assert c.ids == ["101", "102"]
    assert c["101"].metadata == {"year": 2001.0}
    assert c["102"].metadata == {"year": None}
    with pytest.raises(RetrievalError, match=r"no column\(s\) \['body'\].*pmid"):
        Corpus.from_dataframe(df, id_col="pmid", text_col="body")


def test_corpus_validation_errors(tmp_path: Path) -> None:
    with pytest.raises(RetrievalError, match="empty"):
        Corpus.from_records([])
    with pytest.raises(RetrievalError, match=r"2 duplicate document id\(s\): 'a' \(x2\), 'b' \(x3\)"):
        Corpus.from_records([{"id": i, "text": "t"} for i in ["a", "a", "b", "b", "b", "c"]])
    with pytest.raises(RetrievalError) as info:
        Corpus.from_records([{"id": "a", "text": 3.5}, {"id": "b", "text": None}, {"id": "c", "text": " "}])
    msg = str(info.value)
    assert "3 document(s) have no text" in msg and "float" in msg and "None/NaN" in msg and "'c'" in msg
    with pytest.raises(RetrievalError, match=r"record 2 lacks \['text'\]"):
        Corpus.from_records([{"id": "a", "text": "x"}, {"id": "b", "body": "y"}])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "fine"}\n\n{"id": "b", "text": oops}\n')
    with pytest.raises(RetrievalError, match="line 3 is not valid JSON"):
        Corpus.from_path(bad)
    with pytest.raises(RetrievalError, match="does not exist"):
        Corpus.from_path(tmp_path / "missing.jsonl")


def test_corpus_from_folder(tmp_path: Path) -> None:
    (tmp_path / "guides").mkdir()
    (tmp_path / "guides" / "setup.md").write_text("# Setup\nInstall it.")
    (tmp_path / "readme.txt").write_text("Plain text.")
    (tmp_path / "notes.jsonl").write_text(json.dumps({"id": "n1", "text": "A note.", "kind": "note"}) + "\n")
    (tmp_path / "ignored.bin").write_bytes(b"\x00")
    c = Corpus.from_path(tmp_path)
    assert sorted(c.ids) == ["guides/setup.md", "n1", "readme.txt"]
    assert c["guides/setup.md"].metadata == {"source": "guides/setup.md"}
    assert c["n1"].metadata == {"kind": "note"}


def test_pdf_without_pypdf_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pypdf", None)  # as if the optional extra were not installed
    (tmp_path / "paper.pdf").write_bytes(_pdf(["Anything."]))
    with pytest.raises(RetrievalError, match="pip install pypdf"):
        Corpus.from_path(tmp_path / "paper.pdf")


def _pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF with one line of Helvetica text per page (objects, xref table and trailer)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    kids = []
    for text in pages:
        content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                       b"/Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> >>"
                       % len(objects))
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(pages)} >>".encode()
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_pdf_documents_are_read_with_pypdf(tmp_path: Path) -> None:
    pytest.importorskip("pypdf")
    (tmp_path / "papers").mkdir()
    (tmp_path / "papers" / "aspirin.pdf").write_bytes(_pdf(["Aspirin lowers stroke risk.", "Second page here."]))
    (tmp_path / "papers" / "notes.txt").write_text("Plain notes.")
    corpus = Corpus.from_path(tmp_path / "papers")
    assert sorted(corpus.ids) == ["aspirin.pdf", "notes.txt"]
    text = corpus["aspirin.pdf"].text
    assert "Aspirin lowers stroke risk." in text and "Second page here." in text
    assert text.index("Aspirin") < text.index("Second page")


# ---------------------------------------------------------------------------------------------
# config


def test_config_shorthands_defaults_and_hash() -> None:
    a = RetrievalConfig.parse({"name": "a", "chunker": 128, "index": "hnsw", "hybrid": True, "mmr": True})
    assert a.chunker.size == 128 and a.chunker.overlap == 32
    assert a.index.type == "hnsw" and a.hybrid is not None and a.mmr is not None and a.mmr.lambda_ == 0.5
    b = RetrievalConfig.parse(
        {"name": "b", "chunker": {"size": 128}, "index": {"type": "hnsw"}, "hybrid": {}, "mmr": {}}
    )
    assert a.hash == b.hash, "the name is not part of the hash"
    assert len(a.hash) == 64
    c = RetrievalConfig.parse({"chunker": {"size": 129}, "index": "hnsw", "hybrid": {}, "mmr": {}})
    assert c.hash != a.hash
    assert c.label == f"r-{c.settings_hash[:8]}"  # settings only: naming reads no corpus file
    assert RetrievalConfig.parse({"mmr": {"lambda": 0.2}}).canonical()["mmr"]["lambda"] == 0.2
    assert RetrievalConfig.parse({"query": "title"}).hash != RetrievalConfig.parse({}).hash


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"chunker": {"size": 64, "overlap": 64}},
            r"chunker: .*overlap \(64\) must be smaller than chunker.size \(64\)",
        ),
        (
            {"chunker": {"type": "paragraph"}},
            r"retriever.chunker.type: Input should be 'fixed', 'sentence' or 'markdown'",
        ),
        ({"index": {"type": "annoy"}}, r"retriever.index: .*'flat', 'hnsw', 'ivf_flat', 'ivf_pq'"),
        ({"index": {"type": "hnsw", "M": 1}}, r"retriever.index.hnsw.M: .*greater than or equal to 4"),
        ({"chunker": {"size": 64, "overlapp": 8}}, r"retriever.chunker.overlapp: unknown key"),
        ({"top_k": 0}, r"retriever.top_k"),
        ({"top_k": 10, "mmr": {"fetch_k": 5}}, r"mmr.fetch_k \(5\) must be >= top_k \(10\)"),
        ({"embedder": {"model": "openai/x", "api_key": "sk-1"}}, r"api_key is not allowed"),
        ({"hybrid": {"bm25_weight": 1.5}}, r"retriever.hybrid.bm25_weight"),
        ({"filter": {"year": {"gt": 3}}}, r"filter.year: values must be scalars"),
        ({"surprise": 1}, r"retriever.surprise: unknown key"),
    ],
)
def test_config_errors_name_the_field(data: dict, expected: str) -> None:
    with pytest.raises(RetrievalError, match=expected):
        RetrievalConfig.parse(data)


def test_config_corpus_resolves_relative_to_base_dir(tmp_path: Path) -> None:
    (tmp_path / "docs.jsonl").write_text(json.dumps({"doc_id": "x", "body": "hello"}) + "\n")
    cfg = RetrievalConfig.parse({"corpus": {"path": "docs.jsonl", "id": "doc_id", "text": "body"}}, base_dir=tmp_path)
    assert cfg.load_corpus().ids == ["x"]
    via_context = RetrievalConfig.model_validate({"corpus": "docs.jsonl"}, context={"base_dir": tmp_path})
    assert via_context.corpus is not None and via_context.corpus.resolve(tmp_path) == tmp_path / "docs.jsonl"
    with pytest.raises(RetrievalError, match="has no corpus"):
        RetrievalConfig.parse({}).load_corpus()


# ---------------------------------------------------------------------------------------------
# chunking


def test_fixed_token_chunks_have_exact_offsets_and_overlap(corpus: Corpus) -> None:
    doc = corpus["21645374"]
    chunks = chunk_document(doc, ChunkerConfig(size=50, overlap=10))
    words = doc.text.split()
    assert len(chunks) == 1 + -(-(len(words) - 50) // 40)
    for i, c in enumerate(chunks):
        assert c.chunk_id == f"{doc.id}#{i}" and c.doc_id == doc.id
        assert doc.text[c.start : c.end] == c.text
        assert c.text.split() == words[40 * i : 40 * i + 50]
    assert chunks[0].text.split()[-10:] == chunks[1].text.split()[:10]
    assert chunks[0].metadata["decision"] == doc.metadata["decision"]


def test_char_chunks_respect_size_and_word_boundaries(corpus: Corpus) -> None:
    doc = corpus["21645374"]
    chunks = chunk_document(doc, ChunkerConfig(unit="chars", size=200, overlap=40))
    assert all(len(c.text) <= 200 for c in chunks)
    covered = set()
    for c in chunks:
        assert doc.text[c.start : c.end] == c.text
        assert c.start == 0 or not doc.text[c.start - 1].isalnum(), "chunks start at a word"
        assert c.end == len(doc.text) or not doc.text[c.end].isalnum(), "chunks end at a word"
        covered.update(range(c.start, c.end))
    assert all(i in covered for i, ch in enumerate(doc.text) if not ch.isspace())


def test_sentence_chunks_pack_whole_sentences() -> None:
    text = (
        "One two three four five. Six seven. Eight nine ten eleven. "
        + " ".join(f"w{i}" for i in range(30))
        + ". Omega."
    )
    chunks = chunk_document(Document("d", text), ChunkerConfig(type="sentence", size=8, overlap=3))
    texts = [c.text for c in chunks]
    assert texts[0] == "One two three four five. Six seven."
    assert texts[1] == "Six seven. Eight nine ten eleven.", "overlap carries whole trailing sentences"
    long_parts = texts[2:-1]  # the 30-word sentence is longer than size: cut into fixed windows
    assert len(long_parts) == 6 and all(len(t.split()) <= 8 for t in long_parts)
    assert long_parts[0].split() == [f"w{i}" for i in range(8)]
    assert texts[-1] == "Omega."
    assert all(text[c.start : c.end] == c.text for c in chunks)


def test_markdown_chunks_split_at_headings_with_section_paths() -> None:
    text = (
        "# Guide\nIntro line.\n\n## Install\nRun pip. Then import it.\n```\n# not a heading\n```\n"
        "## Use\nCall it.\n### Details\nMore."
    )
    chunks = chunk_document(Document("g.md", text), ChunkerConfig(type="markdown", size=200, overlap=0))
    sections = [c.section for c in chunks]
    assert sections == ["Guide", "Guide > Install", "Guide > Use", "Guide > Use > Details"]
    assert chunks[1].text.startswith("## Install") and "# not a heading" in chunks[1].text
    assert chunks[3].metadata["section"] == "Guide > Use > Details"


def test_chunk_ids_are_stable(corpus: Corpus) -> None:
    cfg = ChunkerConfig(type="sentence", size=40, overlap=8)
    doc = corpus["21645374"]
    assert [c.chunk_id for c in chunk_document(doc, cfg)] == [c.chunk_id for c in chunk_document(doc, cfg)]


# ---------------------------------------------------------------------------------------------
# artifacts cache


def test_grid_embeds_each_chunking_once_and_second_run_builds_nothing(corpus: Corpus, tmp_path: Path) -> None:
    configs = [
        {"name": f"{t}{s}", "chunker": {"size": s, "overlap": s // 8}, "index": t}
        for s in (64, 128, 256)
        for t in ("flat", "hnsw")
    ]
    first = BuildStats()
    n_texts: dict[int, int] = {}
    for cfg in configs:
        r = build_retriever(corpus, cfg, tmp_path)
        first.add(r.build_stats)
        n_texts[cfg["chunker"]["size"]] = len(set(r.table.texts))
    assert first.chunkings == 3
    assert first.embed_calls == 3
    assert first.embedded_texts == sum(n_texts.values())
    assert first.index_builds == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunks", "embeddings", "indexes", "tmp"]
    assert len(list((tmp_path / "indexes").iterdir())) == 6
    for index_dir in (tmp_path / "indexes").iterdir():
        names = sorted(p.name for p in index_dir.iterdir())
        assert names == ["checksums.sha256", "index.faiss", "manifest.json"]
    assert list((tmp_path / "tmp").iterdir()) == []

    clear_memory_cache()  # as in a new process: everything comes from disk
    second = BuildStats()
    for cfg in configs:
        second.add(build_retriever(corpus, cfg, tmp_path).build_stats)
    assert (second.embedded_texts, second.index_builds, second.chunkings) == (0, 0, 0)
    assert second.cache_hits == 3 + 6  # 3 chunk tables + 6 indexes (embeddings are not even read)
    assert second.integrity_failures == 0

    third = BuildStats()  # same process: served from memory
    for cfg in configs:
        third.add(build_retriever(corpus, cfg, tmp_path).build_stats)
    assert (third.embedded_texts, third.index_builds, third.cache_hits) == (0, 0, 0)
    assert third.memory_hits == 12


def test_search_time_params_share_one_index(corpus: Corpus, tmp_path: Path) -> None:
    a = build_retriever(corpus, {"index": {"type": "hnsw", "ef_search": 16}}, tmp_path)
    b = build_retriever(corpus, {"index": {"type": "hnsw", "ef_search": 256}}, tmp_path)
    assert a.config.hash != b.config.hash
    assert a.keys["index_key"] == b.keys["index_key"]
    assert b.build_stats.index_builds == 0


def test_corrupt_checksum_or_index_is_rebuilt_not_trusted(corpus: Corpus, tmp_path: Path) -> None:
    cfg = {"chunker": {"size": 128, "overlap": 16}, "index": "hnsw"}
    r = build_retriever(corpus, cfg, tmp_path)
    folder = tmp_path / "indexes" / r.keys["index_key"]
    expected = [h.chunk_id for h in r.search(["mitochondria in lace plant leaves"])[0]]

    sums = folder / "checksums.sha256"
    text = sums.read_text()
    digest = text.split()[0]
    sums.write_text(text.replace(digest, ("0" if digest[0] != "0" else "1") + digest[1:], 1))
    clear_memory_cache()
    r2 = build_retriever(corpus, cfg, tmp_path)
    assert r2.build_stats.integrity_failures == 1
    assert r2.build_stats.index_builds == 1
    assert r2.build_stats.embedded_texts == 0  # embeddings were fine and reused
    assert [h.chunk_id for h in r2.search(["mitochondria in lace plant leaves"])[0]] == expected

    blob = folder / "index.faiss"
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    clear_memory_cache()
    r3 = build_retriever(corpus, cfg, tmp_path)
    assert (r3.build_stats.integrity_failures, r3.build_stats.index_builds) == (1, 1)

    (tmp_path / "chunks" / r.keys["chunks_key"] / "checksums.sha256").unlink()  # half-copied folder
    clear_memory_cache()
    r4 = build_retriever(corpus, cfg, tmp_path)
    assert r4.build_stats.chunkings == 1 and r4.build_stats.integrity_failures == 1
    assert r4.build_stats.index_builds == 0, "same chunks -> same keys -> stored index still valid"


def test_corrupt_embeddings_found_late_are_re_embedded(corpus: Corpus, tmp_path: Path, questions) -> None:
    cfg = {"chunker": {"size": 128, "overlap": 16}, "mmr": {"lambda": 0.5, "fetch_k": 20}}
    r = build_retriever(corpus, cfg, tmp_path)
    expected = [[h.chunk_id for h in hits] for hits in r.search([q["question"] for q in questions[:5]])]
    npy = tmp_path / "embeddings" / r.keys["embeddings_key"] / "embeddings.npy"
    data = bytearray(npy.read_bytes())
    data[-7] ^= 0x55  # flip bits inside the last vector
    npy.write_bytes(bytes(data))
    clear_memory_cache()
    r2 = build_retriever(corpus, cfg, tmp_path)  # the index is fine: embeddings are not read yet
    assert (r2.build_stats.index_builds, r2.build_stats.embedded_texts) == (0, 0)
    got = [[h.chunk_id for h in hits] for hits in r2.search([q["question"] for q in questions[:5]])]  # MMR reads them
    assert got == expected
    assert r2.build_stats.integrity_failures == 1
    assert r2.build_stats.embedded_texts == len(set(r2.table.texts)), "re-embedded instead of trusting the file"


def test_interrupted_build_leaves_nothing_trusted(corpus: Corpus, tmp_path: Path, monkeypatch) -> None:
    import faiss

    cfg = {"chunker": {"size": 256, "overlap": 32}}

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("simulated kill while writing the index")

    monkeypatch.setattr(faiss, "write_index", crash)
    with pytest.raises(KeyboardInterrupt):
        build_retriever(corpus, cfg, tmp_path)
    assert not (tmp_path / "indexes").exists() or list((tmp_path / "indexes").iterdir()) == []
    assert list((tmp_path / "tmp").iterdir()) == []
    monkeypatch.undo()
    clear_memory_cache()
    r = build_retriever(corpus, cfg, tmp_path)
    assert r.build_stats.index_builds == 1
    assert r.build_stats.embedded_texts == 0  # the embeddings had been stored before the crash


def test_dimension_mismatch_is_a_clear_error(corpus: Corpus, tmp_path: Path) -> None:
    build_retriever(corpus, {}, tmp_path)

    class Narrow(CountingEmbedder):
        @property
        def dim(self) -> int:
            return 128

        def embed(self, texts: list[str]) -> np.ndarray:
            return super().embed(texts)[:, :128].copy()

    clear_memory_cache()
    with pytest.raises(RetrievalError, match=r"256-dim.*128-dim|128-dim.*256-dim"):
        build_retriever(corpus, {}, tmp_path, embedder=Narrow())

    class Unknown(Narrow):
        _dim = None  # width unknown until called, like a litellm embedder

        @property
        def dim(self) -> int:
            raise RetrievalError("unknown until the first call")

    clear_memory_cache()
    r = build_retriever(corpus, {}, tmp_path, embedder=Unknown())
    with pytest.raises(RetrievalError, match="128-dim query vectors but the index .* 256-dim"):
        r.search(["anything"])


# ---------------------------------------------------------------------------------------------
# search


def test_search_is_batched_and_matches_single_queries(corpus: Corpus, shared_artifacts: Path, questions) -> None:
    emb = CountingEmbedder()
    r = build_retriever(corpus, {"top_k": 5}, shared_artifacts, embedder=emb)
    qs = [q["question"] for q in questions[:20]]
    calls = emb.calls
    batch = r.search(qs)
    assert emb.calls == calls + 1, "all queries embedded in one call"
    assert len(batch) == 20 and all(len(h) == 5 for h in batch)
    for q, hits in zip(qs[:5], batch[:5], strict=True):
        assert [h.chunk_id for h in r.search([q])[0]] == [h.chunk_id for h in hits]
    hit = batch[0][0]
    assert isinstance(hit, Hit) and hit.rank == 1
    assert [h.rank for h in batch[0]] == [1, 2, 3, 4, 5]
    assert all(a.score >= b.score for a, b in zip(batch[0], batch[0][1:]))
    d = hit.to_dict()
    assert set(d) >= {"chunk_id", "doc_id", "text", "score", "rank", "metadata"}
    json.dumps(d)
    assert corpus[d["doc_id"]].text[d["start"] : d["end"]] == d["text"]
    assert len(r.search(qs[:2], top_k=2)[0]) == 2
    assert r.search([]) == []
    with pytest.raises(RetrievalError, match="list of queries"):
        r.search("one query")  # type: ignore[arg-type]


def test_dense_retrieval_finds_pubmedqa_gold_abstracts(corpus: Corpus, shared_artifacts: Path, questions) -> None:
    board = retrieval_eval(questions, [{"name": "dense", "top_k": 4}], corpus, artifacts_dir=shared_artifacts)
    row = board.iloc[0]
    assert row["n"] == 150
    assert row["hit@k"] > 0.85
    assert 0.5 < row["mrr"] <= row["hit@k"]


def test_hnsw_and_ivf_recall_against_flat(corpus: Corpus, shared_artifacts: Path, questions) -> None:
    chunker = {"size": 48, "overlap": 8}
    flat = build_retriever(corpus, {"chunker": chunker, "index": "flat", "top_k": 10}, shared_artifacts)
    hnsw = build_retriever(
        corpus, {"chunker": chunker, "index": {"type": "hnsw", "M": 16, "ef_search": 64}, "top_k": 10}, shared_artifacts
    )
    ivf = build_retriever(
        corpus, {"chunker": chunker, "index": {"type": "ivf_flat", "nprobe": 4}, "top_k": 10}, shared_artifacts
    )
    assert flat.n_chunks > 700
    qs = [q["question"] for q in questions]
    truth = [{h.chunk_id for h in hits} for hits in flat.search(qs)]

    def recall(r) -> float:
        found = r.search(qs)
        return float(np.mean([len(t & {h.chunk_id for h in f}) / 10 for t, f in zip(truth, found, strict=True)]))

    assert recall(hnsw) >= 0.95
    ivf_recall = recall(ivf)
    assert 0.5 < ivf_recall < 1.0, "nprobe=4 of ~110 lists is approximate"
    exhaustive = build_retriever(
        corpus, {"chunker": chunker, "index": {"type": "ivf_flat", "nprobe": 100000}, "top_k": 10}, shared_artifacts
    )
    assert exhaustive.build_stats.index_builds == 0
    assert recall(exhaustive) == 1.0


def test_ivf_pq_builds_and_validates(corpus: Corpus, shared_artifacts: Path) -> None:
    r = build_retriever(
        corpus, {"chunker": {"size": 48, "overlap": 8}, "index": {"type": "ivf_pq", "m": 32}}, shared_artifacts
    )
    assert len(r.search(["lace plant programmed cell death"])[0]) == 4
    with pytest.raises(RetrievalError, match=r"index.m \(30\) must divide the embedding width \(256\)"):
        build_retriever(
            corpus, {"chunker": {"size": 48, "overlap": 8}, "index": {"type": "ivf_pq", "m": 30}}, shared_artifacts
        )
    with pytest.raises(RetrievalError, match="needs at least 65536 chunks"):
        build_retriever(corpus, {"index": {"type": "ivf_pq", "nbits": 16}}, shared_artifacts)
    with pytest.raises(RetrievalError, match=r"index.nlist \(5000\) exceeds the number of chunks"):
        build_retriever(corpus, {"index": {"type": "ivf_flat", "nlist": 5000}}, shared_artifacts)


def _lexical_cases(corpus: Corpus) -> list[dict]:
    """Queries made of each abstract's three rarest long words: a lexical task where BM25 should help."""

    def words(t: str) -> set[str]:
        return set(re.findall(r"[a-z][a-z0-9-]{5,}", t.lower()))

    df = collections.Counter(w for d in corpus for w in words(d.text))
    return [{"question": " ".join(sorted(words(d.text), key=lambda w: (df[w], w))[:3]), "gold": d.id} for d in corpus]


def test_hybrid_beats_dense_on_lexical_queries(corpus: Corpus, shared_artifacts: Path, questions) -> None:
    configs = [
        {"name": "dense", "chunker": {"size": 128, "overlap": 16}},
        {"name": "rrf", "chunker": {"size": 128, "overlap": 16}, "hybrid": {"fusion": "rrf"}},
        {"name": "weighted", "chunker": {"size": 128, "overlap": 16}, "hybrid": {"fusion": "weighted"}},
    ]
    board = retrieval_eval(_lexical_cases(corpus), configs, corpus, artifacts_dir=shared_artifacts).set_index("config")
    assert board.loc["rrf", "hit@k"] >= 0.95 and board.loc["weighted", "hit@k"] >= 0.95
    assert board.loc["rrf", "mrr"] >= board.loc["dense", "mrr"] + 0.1
    assert board.loc["weighted", "mrr"] >= board.loc["dense", "mrr"] + 0.1
    assert board.loc["rrf", "embedded_texts"] == 0 and board.loc["rrf", "index_builds"] == 0  # shares dense's index
    # and hybrid does not hurt on the natural-language PubMedQA questions
    natural = retrieval_eval(questions, configs, corpus, artifacts_dir=shared_artifacts).set_index("config")
    assert natural.loc["rrf", "hit@k"] >= natural.loc["dense", "hit@k"] - 0.02


def test_bm25_only_weight_ranks_exact_term_matches_first(corpus: Corpus, shared_artifacts: Path) -> None:
    r = build_retriever(corpus, {"hybrid": {"bm25_weight": 1.0}, "top_k": 3}, shared_artifacts)
    hits = r.search(["Aponogeton madagascariensis areoles"])[0]
    assert hits[0].doc_id == "21645374"
    assert r.search(["zzzzqqq"])[0] != []  # unknown words: BM25 adds nothing, dense still answers


def test_mmr_diversifies_results(corpus: Corpus, shared_artifacts: Path, questions) -> None:
    chunker = {"size": 32, "overlap": 16}  # heavily overlapping chunks: plain top-k is redundant
    dense = build_retriever(corpus, {"chunker": chunker, "top_k": 5}, shared_artifacts)
    mmr = build_retriever(
        corpus, {"chunker": chunker, "top_k": 5, "mmr": {"lambda": 0.3, "fetch_k": 30}}, shared_artifacts
    )
    pure = build_retriever(
        corpus, {"chunker": chunker, "top_k": 5, "mmr": {"lambda": 1.0, "fetch_k": 30}}, shared_artifacts
    )
    assert mmr.build_stats.index_builds == 0
    qs = [q["question"] for q in questions[:40]]
    matrix = dense.vectors()
    assert matrix.shape == (dense.n_chunks, 256)
    pos = {cid: i for i, cid in enumerate(dense.table.chunk_ids)}

    def redundancy(results) -> float:
        vals = []
        for hits in results:
            v = np.asarray(matrix[[pos[h.chunk_id] for h in hits]])
            s = v @ v.T
            vals.append(s[np.triu_indices(len(hits), 1)].mean())
        return float(np.mean(vals))

    d, m = dense.search(qs), mmr.search(qs)
    assert redundancy(m) < redundancy(d) - 0.02
    assert [h.chunk_id for h in d[0]][0] == [h.chunk_id for h in m[0]][0], "MMR keeps the most relevant first"
    assert [[h.chunk_id for h in x] for x in pure.search(qs)] == [[h.chunk_id for h in x] for x in d]
    both = build_retriever(
        corpus, {"chunker": chunker, "top_k": 5, "hybrid": {}, "mmr": {"lambda": 0.3, "fetch_k": 30}}, shared_artifacts
    )
    hb = both.search(qs)
    assert all(len(h) == 5 and len({x.chunk_id for x in h}) == 5 for h in hb)
    assert redundancy(hb) < redundancy(d)


def test_metadata_filter(corpus: Corpus, shared_artifacts: Path, questions) -> None:
    qs = [q["question"] for q in questions[:30]]
    r = build_retriever(corpus, {"top_k": 5, "filter": {"decision": "no"}}, shared_artifacts)
    for hits in r.search(qs):
        assert len(hits) == 5 and all(h.metadata["decision"] == "no" for h in hits)
    years = {2001, 2002}
    rare = [d.id for d in corpus if d.metadata["year"] in years]
    assert 0 < len(rare) < 10
    flat = build_retriever(corpus, {"top_k": 10, "filter": {"year": sorted(years)}}, shared_artifacts)
    hnsw = build_retriever(
        corpus,
        {"top_k": 10, "index": {"type": "hnsw", "ef_search": 16}, "filter": {"year": sorted(years)}},
        shared_artifacts,
    )
    f_hits, h_hits = flat.search(qs), hnsw.search(qs)
    n_allowed = sum(1 for d in flat.table.doc_ids if d in rare)
    for a, b in zip(f_hits, h_hits, strict=True):
        assert len(a) == min(10, n_allowed) and {h.doc_id for h in a} <= set(rare)
        assert [h.chunk_id for h in a] == [h.chunk_id for h in b], "selective filters stay exact on HNSW"
    hybrid = build_retriever(corpus, {"top_k": 5, "filter": {"decision": "maybe"}, "hybrid": {}}, shared_artifacts)
    assert all(h.metadata["decision"] == "maybe" for hits in hybrid.search(qs) for h in hits)
    none = build_retriever(corpus, {"filter": {"decision": "never"}}, shared_artifacts)
    assert none.search(qs[:2]) == [[], []]


def test_retrieval_eval_leaderboard(corpus: Corpus, shared_artifacts: Path, questions) -> None:
    cases = pd.DataFrame(questions).rename(columns={"question": "q", "gold": "pmid"})
    cases.loc[0, "pmid"] = None  # no gold: skipped
    configs = [{"name": "s64", "chunker": {"size": 64, "overlap": 8}}, {"name": "s256", "chunker": 256}]
    board = retrieval_eval(
        cases, configs, corpus, artifacts_dir=shared_artifacts, question_col="q", gold_col="pmid", k=5
    )
    assert list(board.columns) == [
        "config",
        "config_hash",
        "k",
        "n",
        "hit@k",
        "recall@k",
        "precision@k",
        "mrr",
        "ndcg@k",
        "build_s",
        "query_ms",
        "embedded_texts",
        "index_builds",
    ]
    assert set(board["config"]) == {"s64", "s256"} and (board["n"] == 149).all() and (board["k"] == 5).all()
    assert board["ndcg@k"].is_monotonic_decreasing
    for _, row in board.iterrows():
        assert row["mrr"] <= row["hit@k"] and row["precision@k"] <= row["hit@k"] / 5 + 1e-12
        assert row["query_ms"] > 0
    detail = retrieval_eval(
        cases, configs, corpus, artifacts_dir=shared_artifacts, question_col="q", gold_col="pmid", per_case=True
    )
    assert len(detail) == 2 * 149
    assert detail.groupby("config")["hit@k"].mean().round(6).to_dict() == pytest.approx(
        retrieval_eval(cases, configs, corpus, artifacts_dir=shared_artifacts, question_col="q", gold_col="pmid")
        .set_index("config")["hit@k"]
        .round(6)
        .to_dict()
    )


def test_retrieval_eval_errors(corpus: Corpus, shared_artifacts: Path) -> None:
    with pytest.raises(RetrievalError, match=r"no gold column .gold."):
        retrieval_eval(pd.DataFrame({"question": ["q"]}), [{}], corpus, artifacts_dir=shared_artifacts)
    with pytest.raises(RetrievalError, match="none of the gold ids"):
        retrieval_eval([{"question": "q", "gold": "nope"}], [{}], corpus, artifacts_dir=shared_artifacts)
    with pytest.raises(RetrievalError, match="names must be unique"):
        retrieval_eval(
            [{"question": "q", "gold": "21645374"}],
            [{"name": "a"}, {"name": "a"}],
            corpus,
            artifacts_dir=shared_artifacts,
        )
    with pytest.raises(RetrievalError, match="no corpus"):
        retrieval_eval([{"question": "q", "gold": "21645374"}], [{}], None, artifacts_dir=shared_artifacts)


def test_config_corpus_is_loaded_by_build_and_eval(tmp_path: Path) -> None:
    lines = DATA.read_text().splitlines()[:20]
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    cfg = {"name": "c", "corpus": {"path": "corpus.jsonl", "id": "doc_id"}, "top_k": 3}
    r = build_retriever(None, cfg, tmp_path / "art", base_dir=tmp_path / "spec")
    assert len(r.corpus) == 20
    cases = [{"question": json.loads(line)["question"], "gold": json.loads(line)["doc_id"]} for line in lines]
    board = retrieval_eval(cases, [cfg], artifacts_dir=tmp_path / "art", base_dir=tmp_path / "spec")
    assert board.loc[0, "hit@k"] > 0.8 and board.loc[0, "embedded_texts"] == 0


# ---------------------------------------------------------------------------------------------
# litellm embeddings over real HTTP


def test_litellm_embedder_in_the_pipeline_caches_and_never_stores_keys(
    fake_llm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-secret-never-stored-123"
    fake_llm.configure(auth_key=secret)
    monkeypatch.setenv("WB_EMBED_KEY", secret)
    small = Corpus.from_records([json.loads(x) for x in DATA.read_text().splitlines()[:30]], id_field="doc_id")
    cfg = {
        "embedder": {
            "model": "openai/test-embed",
            "api_base": fake_llm.base_url,
            "api_key_env": "WB_EMBED_KEY",
            "batch_size": 16,
        },
        "chunker": {"size": 64, "overlap": 8},
    }
    r = build_retriever(small, cfg, tmp_path)
    n = len(set(r.table.texts))
    stats = fake_llm.stats()
    assert stats["embedding_inputs"] == n
    assert stats["embeddings"] == -(-n // 16)
    assert r.dim == 64 and r.build_stats.embedded_texts == n
    assert len(r.search(["lace plant"])[0]) == 4
    clear_memory_cache()
    before = fake_llm.stats()["embedding_inputs"]
    r2 = build_retriever(small, cfg, tmp_path)
    assert r2.build_stats.embedded_texts == 0 and r2.build_stats.index_builds == 0
    assert fake_llm.stats()["embedding_inputs"] == before
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"API key written to {path}"
