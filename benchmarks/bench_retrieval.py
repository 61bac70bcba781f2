"""Retrieval engine benchmark: quality on PubMedQA and speed at 100k chunks. Prints figures; asserts nothing.

Usage::

    python benchmarks/bench_retrieval.py [--quick] [--data PATH] [--chunks N] [--artifacts DIR] [--trials 5]

Data: ``--data``, else the full PubMedQA labelled set beside the repository, else the 200 questions the repo
ships (see ``benchmarks/pubmedqa.py``).

Part 1 (quality): the PubMedQA labelled questions (1,000 in the full set) against their abstracts as the
corpus; recall@5, MRR@10, nDCG@10 (gold = the question's abstract) for several chunkings, dense vs hybrid,
HNSW, MMR. Every config builds cold, in its own artifacts folder with the in-process cache emptied, so its
``build s`` always includes chunking and embedding (the ``embedded`` column shows how many texts).

Part 2 (scale): N (default 100,000) synthetic ~100-word chunks made of PubMedQA sentences' words (random
windows with 10% of words swapped, so texts are distinct but realistic). Embedding throughput of the
default embedder through our pipeline vs wordllama called directly; FAISS build time and batch query
throughput for Flat, HNSW (efSearch sweep), IVF (nprobe sweep); HNSW/IVF recall@10 against Flat on
de-duplicated vectors; warm rebuild time (memory and disk cache); peak RSS. The two embedding paths are
timed in ``--trials`` interleaved rounds (order alternating, both warmed up first); medians and all rounds
are printed. Pipeline builds labelled "cold" start from an empty artifacts folder.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import pubmedqa  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_pubmedqa(path: Path) -> list[dict]:
    rows = pubmedqa.load(path)
    return [{"doc_id": r["pmid"], "text": "\n".join(r["contexts"]), "question": r["question"]} for r in rows]


# ---------------------------------------------------------------------------------------------
# part 1


def part1_quality(records: list[dict], artifacts: Path) -> None:
    from workbench.metrics.retrieval import ndcg, recall, reciprocal_rank
    from workbench.retrieval import Corpus, build_retriever, clear_memory_cache

    corpus = Corpus.from_records(records, id_field="doc_id")
    questions = [r["question"] for r in records]
    gold = [[r["doc_id"]] for r in records]
    configs = [
        {"name": "fixed64", "chunker": {"size": 64, "overlap": 8}},
        {"name": "fixed128", "chunker": {"size": 128, "overlap": 16}},
        {"name": "fixed256", "chunker": {"size": 256, "overlap": 32}},
        {"name": "sentence128", "chunker": {"type": "sentence", "size": 128, "overlap": 16}},
        {"name": "fixed128+hnsw", "chunker": {"size": 128, "overlap": 16}, "index": "hnsw"},
        {"name": "fixed128+mmr", "chunker": {"size": 128, "overlap": 16}, "mmr": {"lambda": 0.7, "fetch_k": 30}},
        {"name": "fixed128+bm25 rrf", "chunker": {"size": 128, "overlap": 16}, "hybrid": {"fusion": "rrf"}},
        {"name": "fixed128+bm25 wsum", "chunker": {"size": 128, "overlap": 16}, "hybrid": {"fusion": "weighted"}},
        {"name": "fixed256+bm25 rrf", "chunker": {"size": 256, "overlap": 32}, "hybrid": {"fusion": "rrf"}},
    ]
    print(f"\n== Part 1: PubMedQA quality ({len(questions)} questions, {len(corpus)} abstracts) ==")
    header = (
        f"{'config':<20} {'chunks':>7} {'recall@5':>9} {'MRR@10':>7} {'nDCG@10':>8} {'build s':>8} {'embedded':>9} "
        f"{'ms/query':>9}"
    )
    print(header)
    print("-" * len(header))
    for i, cfg in enumerate(configs):
        clear_memory_cache()  # cold: nothing reused from the previous config, in memory or on disk
        t0 = time.perf_counter()
        r = build_retriever(corpus, {**cfg, "top_k": 10}, artifacts / f"config{i}")
        build_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        results = r.search(questions)
        query_ms = 1000 * (time.perf_counter() - t1) / len(questions)
        docs = [[h.doc_id for h in hits] for hits in results]
        rec5 = sum(recall(d, g, 5) for d, g in zip(docs, gold, strict=True)) / len(docs)
        mrr10 = sum(reciprocal_rank(d, g, 10) for d, g in zip(docs, gold, strict=True)) / len(docs)
        ndcg10 = sum(ndcg(d, g, 10) for d, g in zip(docs, gold, strict=True)) / len(docs)
        row = f"{cfg['name']:<20} {r.n_chunks:>7} {rec5:>9.3f} {mrr10:>7.3f} {ndcg10:>8.3f}"
        print(f"{row} {build_s:>8.2f} {r.build_stats.embedded_texts:>9} {query_ms:>9.2f}")


# ---------------------------------------------------------------------------------------------
# part 2


def synthetic_chunks(records: list[dict], n: int, words_per_chunk: int = 100, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    docs = [re.findall(r"\S+", r["text"]) for r in records]
    docs = [d for d in docs if len(d) > words_per_chunk]
    vocab = sorted({w for d in docs for w in d})
    out = []
    for _ in range(n):
        d = rng.choice(docs)
        start = rng.randrange(0, len(d) - words_per_chunk)
        words = d[start : start + words_per_chunk]
        for j in rng.sample(range(words_per_chunk), words_per_chunk // 10):
            words[j] = rng.choice(vocab)
        out.append(" ".join(words))
    return out


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def timed_cpu(fn, *args, **kwargs):
    """(result, wall seconds, CPU seconds of this process across its threads)."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0, time.process_time() - c0


def load() -> str:
    return "load avg " + "/".join(f"{x:.1f}" for x in os.getloadavg())


def recall_at(truth, found, k: int = 10) -> float:
    import numpy as np

    hits = [len(set(t[:k]) & set(f[:k])) / k for t, f in zip(truth.tolist(), found.tolist(), strict=True)]
    return float(np.mean(hits))


def part2_scale(records: list[dict], n: int, n_queries: int, artifacts: Path, trials: int = 5) -> None:
    import faiss
    import numpy as np

    from workbench.embeddings import _load_wordllama, get_embedder
    from workbench.retrieval import Corpus, build_retriever, clear_memory_cache
    from workbench.retrieval.config import FlatIndex, HNSWIndex, IVFFlatIndex, IVFPQIndex
    from workbench.retrieval.index import build_faiss_index

    print(f"\n== Part 2: scale ({n:,} chunks of ~100 words, {faiss.omp_get_max_threads()} FAISS threads) ==")
    texts = synthetic_chunks(records, n)
    query_texts = [" ".join(t.split()[:20]) for t in synthetic_chunks(records, n_queries, seed=1)]
    print(
        f"texts: {len(texts):,} chunks, {len(set(texts)):,} distinct, mean {np.mean([len(t) for t in texts]):.0f} chars"
    )

    wl = _load_wordllama()
    local = get_embedder("local")
    local.embed(texts[:1000])  # warm-up both paths
    wl.embed(texts[:1000], norm=True)
    # interleaved rounds, order alternating, medians; CPU time too, because wall time on a shared machine is noisy
    sample = texts[: min(len(texts), 10_000)]
    runs: dict[str, list[tuple[float, float]]] = {"direct": [], "ours": []}
    for trial in range(trials):
        order = ["direct", "ours"] if trial % 2 == 0 else ["ours", "direct"]
        for side in order:
            if side == "direct":
                runs["direct"].append(timed_cpu(wl.embed, sample, norm=True)[1:])
            else:
                runs["ours"].append(timed_cpu(local.embed, sample)[1:])
    med = statistics.median
    direct_s, ours_s = med(w for w, _ in runs["direct"]), med(w for w, _ in runs["ours"])
    direct_cpu, ours_cpu = med(c for _, c in runs["direct"]), med(c for _, c in runs["ours"])
    print(
        f"embedding {len(sample):,} texts (median of {trials} interleaved rounds, {load()}): wordllama direct "
        f"{len(sample) / direct_s:,.0f}/s, our LocalEmbedder {len(sample) / ours_s:,.0f}/s; ratio ours/direct wall "
        f"{ours_s / direct_s:.2f}, CPU {ours_cpu / direct_cpu:.2f}"
    )
    for side, values in runs.items():
        walls, cpus = [round(w, 3) for w, _ in values], [round(c, 3) for _, c in values]
        print(f"  {side:<6} wall s per round {walls}, CPU s {cpus}")

    corpus = Corpus.from_records([{"id": f"c{i}", "text": t} for i, t in enumerate(texts)])
    cfg = {"chunker": {"size": 128, "overlap": 0}, "index": "flat"}
    r, cold_s, cold_cpu = timed_cpu(build_retriever, corpus, cfg, artifacts / "flat")
    st = r.build_stats
    per_text_direct = direct_cpu / len(sample)
    print(
        f"pipeline cold build (flat): {cold_s:.1f} s wall = chunk {st.chunk_seconds:.1f} s + embed "
        f"{st.embed_seconds:.1f} s ({st.embedded_texts / st.embed_seconds:,.0f} texts/s) + index "
        f"{st.index_seconds:.2f} s"
        f" + checksummed writes; {r.n_chunks:,} chunks. CPU: {cold_cpu:.1f} s = {cold_cpu / (per_text_direct * n):.2f}x"
        " the CPU of wordllama direct for the same texts (the pipeline figure includes chunking, hashing, writes)"
    )
    _, warm_mem = timed(build_retriever, corpus, cfg, artifacts / "flat")
    clear_memory_cache()
    r2, warm_disk = timed(build_retriever, corpus, cfg, artifacts / "flat")
    print(
        f"second build, same config: {warm_mem * 1000:.1f} ms (in-process cache), {warm_disk:.2f} s from disk with "
        f"checksum verification (embedded {r2.build_stats.embedded_texts}, index builds {r2.build_stats.index_builds})"
        " [excludes corpus hashing: Corpus.hash is computed once per Corpus object]"
    )
    t_hash = time.perf_counter()
    _ = Corpus.from_records([{"id": f"c{i}", "text": t} for i, t in enumerate(texts)]).text_hash
    print(f"  (building + hashing a fresh {n:,}-document Corpus object: {time.perf_counter() - t_hash:.2f} s)")

    # end-to-end batch search through the Retriever (embedding the queries included)
    _, e2e_s = timed(r.search, query_texts, 10)
    qps = len(query_texts) / e2e_s
    print(f"Retriever.search flat, {len(query_texts):,} queries in one batch: {qps:,.0f} q/s end-to-end")

    x = np.asarray(r.vectors(), dtype=np.float32)
    _, uniq = np.unique(np.round(x, 5), axis=0, return_index=True)
    x = np.ascontiguousarray(x[np.sort(uniq)])
    q = local.embed(query_texts)
    print(f"de-duplicated vectors for recall: {len(x):,} of {r.n_chunks:,}; {len(q):,} query vectors")

    (flat, _), flat_build = timed(build_faiss_index, x, FlatIndex())
    cores = faiss.omp_get_max_threads()

    def row(name: str, build: float | None, index, params=None) -> None:
        (_, found), wall, cpu = timed_cpu(index.search, q, 10, params=params)
        built = f"{build:>8.2f}" if build is not None else f"{'':>8}"
        print(
            f"{name:<34} {built} {len(q) / wall:>12,.0f} {cores * len(q) / cpu:>12,.0f} "
            f"{recall_at(truth, found):>10.3f}"
        )

    (_, truth), _ = timed(flat.search, q, 10)
    print(f"\n{'index (' + load() + ')':<34} {'build s':>8} {'q/s (wall)':>12} {'q/s (CPU)':>12} {'recall@10':>10}")
    row("Flat (IndexFlatIP)", flat_build, flat)
    hnsw_cfg = HNSWIndex()
    (hnsw, _), build_s = timed(build_faiss_index, x, hnsw_cfg)
    for ef in (32, 48, 64, 96, 128, 256):
        name = f"HNSW M={hnsw_cfg.M} efC={hnsw_cfg.ef_construction} efSearch={ef}"
        row(name + (" *" if ef == hnsw_cfg.ef_search else ""), build_s, hnsw, faiss.SearchParametersHNSW(efSearch=ef))
        build_s = None
    (ivf, eff), build_s = timed(build_faiss_index, x, IVFFlatIndex())
    for nprobe in (4, 8, 16, 32, 64):
        row(f"IVF-Flat nlist={eff['nlist']} nprobe={nprobe}", build_s, ivf, faiss.SearchParametersIVF(nprobe=nprobe))
        build_s = None
    (pq, eff), build_s = timed(build_faiss_index, x, IVFPQIndex(m=32))
    for nprobe in (16, 64):
        row(f"IVF-PQ m=32 nbits=8 nprobe={nprobe}", build_s, pq, faiss.SearchParametersIVF(nprobe=nprobe))
        build_s = None
    print("(* = default; q/s (CPU) = queries per CPU-second x FAISS threads: throughput on an otherwise idle machine)")

    # HNSW through the pipeline: cold build, then warm
    hcfg = {"chunker": {"size": 128, "overlap": 0}, "index": "hnsw"}
    clear_memory_cache()
    rh, cold = timed(build_retriever, corpus, hcfg, artifacts / "hnsw")  # its own folder: embeds again, truly cold
    clear_memory_cache()
    rh2, warm = timed(build_retriever, corpus, hcfg, artifacts / "hnsw")
    print(
        f"\npipeline HNSW: cold build {cold:.1f} s (embedded {rh.build_stats.embedded_texts}, index builds "
        f"{rh.build_stats.index_builds}); second build from disk {warm:.2f} s (index builds "
        f"{rh2.build_stats.index_builds})"
    )
    _, e2e_s = timed(rh2.search, query_texts, 10)
    qps = len(query_texts) / e2e_s
    print(f"Retriever.search hnsw (defaults), {len(query_texts):,} queries: {qps:,.0f} q/s end-to-end")
    bcfg = {"chunker": {"size": 128, "overlap": 0}, "hybrid": {}}
    rb, bm_build = timed(build_retriever, corpus, bcfg, artifacts / "flat")  # dense part reused from the flat build
    _, first = timed(rb.search, query_texts[:10], 10)  # bm25s' numba backend compiles on first use
    _, e2e_s = timed(rb.search, query_texts, 10)
    print(
        f"hybrid (dense flat + BM25 over {n:,} chunks, bm25s backend {rb._bm25.model.backend}): BM25 build "
        f"(dense embeddings and index reused from the flat build: embedded {rb.build_stats.embedded_texts}) "
        f"{bm_build:.1f} s; first search (JIT) {first:.1f} s; then {len(query_texts) / e2e_s:,.0f} q/s end-to-end"
    )
    print(f"\npeak RSS: {peak_rss_mb():,.0f} MB ({load()})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k chunks and 2k queries instead of 100k / 10k")
    parser.add_argument("--data", "--pubmedqa", dest="data", default=None,
                        help="PubMedQA ori_pqal.json or a .jsonl like the shipped demo (default: see module doc)")
    parser.add_argument("--trials", type=int, default=5, help="interleaved rounds of the embedding comparison")
    parser.add_argument("--chunks", type=int, default=None)
    parser.add_argument("--queries", type=int, default=None)
    parser.add_argument("--artifacts", type=Path, default=None, help="reuse this artifacts dir (default: fresh temp)")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args(argv)
    data = pubmedqa.resolve(args.data)
    n = args.chunks or (20_000 if args.quick else 100_000)
    n_queries = args.queries or (2_000 if args.quick else 10_000)
    records = load_pubmedqa(data)
    print(f"data: {pubmedqa.shown(data)} ({len(records)} abstracts)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-retrieval-")) if args.artifacts is None else args.artifacts
    print(f"artifacts: {tmp}; python {sys.version.split()[0]}; {os.cpu_count()} CPUs")
    try:
        if not args.skip_quality:
            part1_quality(records, tmp / "quality")
        if not args.skip_scale:
            part2_scale(records, n, n_queries, tmp / "scale", args.trials)
    finally:
        if args.artifacts is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
