"""Embedders: the offline wordllama default (no network, ever) and litellm embeddings over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from workbench.embeddings import (
    EmbeddingInputError,
    LiteLLMEmbedder,
    LocalEmbedder,
    get_embedder,
    normalize_rows,
)
from workbench.errors import RetrievalError

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [
    "Programmed cell death shapes the leaves of the lace plant.",
    "Mitochondria change during cell death.",
    "",
    "Statins lower cholesterol in adults with diabetes.",
    "a",
]


def _run_isolated(code: str, tmp_path: Path) -> dict:
    """Run ``code`` in a fresh interpreter with HOME in tmp, HF offline and socket connects forbidden."""
    prelude = textwrap.dedent(
        """
        import json, socket, sys
        attempts = []
        def _refuse(self, address, *a, **k):
            attempts.append(repr(address))
            raise OSError("network access attempted in an offline test: " + repr(address))
        socket.socket.connect = _refuse
        socket.socket.connect_ex = _refuse
        socket.create_connection = lambda address, *a, **k: _refuse(None, address)
        """
    )
    env = dict(os.environ, HOME=str(tmp_path), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    env.pop("LITELLM_LOCAL_MODEL_COST_MAP", None)
    proc = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_local_embedder_loads_offline_without_any_socket(tmp_path: Path) -> None:
    out = _run_isolated(
        """
        import logging
        handlers_before = list(logging.getLogger().handlers)
        from workbench.embeddings import get_embedder
        e = get_embedder("local")
        v = e.embed(["offline embedding works", "second text"])
        import numpy as np
        print(json.dumps({
            "shape": list(v.shape), "dtype": str(v.dtype), "norms": np.linalg.norm(v, axis=1).tolist(),
            "attempts": attempts, "name": e.name,
            "root_handlers_unchanged": logging.getLogger().handlers == handlers_before,
        }))
        """,
        tmp_path,
    )
    assert out["shape"] == [2, 256]
    assert out["dtype"] == "float32"
    assert out["norms"] == pytest.approx([1.0, 1.0], abs=1e-5)
    assert out["attempts"] == []
    assert out["name"] == "wordllama-l2-supercat-256"
    assert out["root_handlers_unchanged"], "importing wordllama must not reconfigure the user's logging"
    assert not (tmp_path / ".cache" / "wordllama").exists(), "nothing may be downloaded into the user cache"


def test_import_is_lazy(tmp_path: Path) -> None:
    # Import time itself is measured in benchmarks/bench_grid.py, not asserted here (a timed test fails under load).
    out = _run_isolated(
        """
        import workbench, workbench.embeddings, workbench.retrieval, workbench.metrics.retrieval
        heavy = [m for m in ("numpy", "faiss", "wordllama", "bm25s", "pandas", "litellm") if m in sys.modules]
        print(json.dumps({"heavy": heavy}))
        """,
        tmp_path,
    )
    assert out["heavy"] == []


def test_local_embeddings_are_unit_rows_in_order_and_match_wordllama() -> None:
    from workbench.embeddings import _load_wordllama

    e = get_embedder("local")
    assert get_embedder("local") is e  # one instance (and one model) per process
    v = e.embed(TEXTS)
    assert v.shape == (len(TEXTS), 256) and v.dtype == np.float32
    norms = np.linalg.norm(v, axis=1)
    assert np.allclose(norms[[0, 1, 3, 4]], 1.0, atol=1e-5)
    assert norms[2] == 0.0, "empty text gives a zero row, not NaN"
    # same vectors as calling wordllama directly (our length-sorted batching must not change results)
    direct = _load_wordllama().embed([t for t in TEXTS if t], norm=True)
    ours = v[[0, 1, 3, 4]]
    assert np.allclose(ours, direct, atol=1e-5)
    # batch composition does not matter
    assert np.allclose(e.embed([TEXTS[3]])[0], v[3], atol=1e-6)
    # related texts are closer than unrelated ones
    assert float(v[0] @ v[1]) > float(v[0] @ v[3])


def test_embed_rejects_bad_input() -> None:
    e = get_embedder("local")
    with pytest.raises(RetrievalError, match="list of strings"):
        e.embed("one string")  # type: ignore[arg-type]
    with pytest.raises(RetrievalError, match="positions \\[1\\]"):
        e.embed(["ok", 3])  # type: ignore[list-item]
    assert e.embed([]).shape == (0, 256)


def test_normalize_rows_keeps_zero_rows() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float64)
    out = normalize_rows(x)
    assert out.dtype == np.float32
    assert out.tolist() == [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]


@pytest.mark.parametrize(
    "spec",
    ["no-such-embedder-model", "", {"api_base": "http://x"}, 42, {"model": "openai/x", "bogus": 1}],
)
def test_get_embedder_rejects_unknown_specs(spec: object) -> None:
    with pytest.raises(RetrievalError) as info:
        get_embedder(spec)
    msg = str(info.value)
    assert "local" in msg or "accepted keys" in msg
    if spec == "no-such-embedder-model":
        assert "no-such-embedder-model" in msg


def test_get_embedder_refuses_api_keys_in_config() -> None:
    with pytest.raises(RetrievalError, match="environment"):
        get_embedder({"model": "openai/text-embedding-3-small", "api_key": "sk-123"})


def test_get_embedder_forms() -> None:
    assert isinstance(get_embedder(None), LocalEmbedder)
    assert isinstance(get_embedder({"model": "local"}), LocalEmbedder)
    lit = get_embedder("litellm:openai/some-embed")
    assert isinstance(lit, LiteLLMEmbedder) and lit.name == "litellm:openai/some-embed"
    wide = get_embedder({"model": "openai/some-embed", "api_base": "http://127.0.0.1:9/v1", "dimensions": 32})
    assert wide.name == 'litellm:openai/some-embed?{"dimensions":32}'
    assert get_embedder(lit) is lit


# ---------------------------------------------------------------------------------------------
# litellm over real HTTP (tests/openai_server.py)


def _litellm(fake_llm, **kw: object) -> LiteLLMEmbedder:
    # a fresh instance (not the per-process shared one) so each test starts with an empty text cache
    return LiteLLMEmbedder("openai/test-embed", api_base=fake_llm.base_url, **kw)  # type: ignore[arg-type]


def test_litellm_embedder_batches_and_embeds_each_text_once(fake_llm) -> None:
    e = _litellm(fake_llm, batch_size=2)
    v = e.embed(["alpha", "beta", "gamma", "alpha", "delta"])
    assert v.shape == (5, 64)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(v[0], v[3])
    stats = fake_llm.stats()
    assert stats["embedding_inputs"] == 4  # 'alpha' sent once
    assert stats["embeddings"] == 2  # 4 distinct texts in batches of 2
    v2 = e.embed(["beta", "epsilon"])
    assert np.array_equal(v2[0], v[1])
    stats = fake_llm.stats()
    assert stats["embedding_inputs"] == 5 and stats["embeddings"] == 3
    assert e.dim == 64


def test_litellm_embedder_retries_429_honouring_retry_after(fake_llm) -> None:
    e = _litellm(fake_llm)
    fake_llm.configure(script=[{"status": 429, "retry_after": 0.3}])
    t0 = time.perf_counter()
    v = e.embed(["rate limited once"])
    elapsed = time.perf_counter() - t0
    assert v.shape == (1, 64)
    assert e.retries == 1
    assert fake_llm.stats()["requests"] == 2
    assert elapsed >= 0.3, "Retry-After must be honoured"


def test_litellm_embedder_retries_server_errors_then_gives_up(fake_llm) -> None:
    e = _litellm(fake_llm, max_retries=2, backoff_base=0.01)
    fake_llm.configure(script=[{"status": 500}, {"status": 503}])
    assert e.embed(["two failures then ok"]).shape == (1, 64)
    assert e.retries == 2
    fake_llm.configure(script=[{"status": 500}] * 3)
    with pytest.raises(RetrievalError, match="after 3 attempts"):
        e.embed(["always failing"])


def test_litellm_embedder_names_too_long_documents(fake_llm) -> None:
    e = _litellm(fake_llm)
    too_long = {"status": 400, "message": "This model's maximum context length is 8192 tokens, you requested 9000"}
    # batch [a, b, c, d] fails; bisect: [a, b] fails, [a] fails, [b] ok; [c, d] ok
    fake_llm.configure(script=[too_long, too_long, too_long])
    texts = ["huge document " * 3, "fine b", "fine c", "fine d"]
    with pytest.raises(EmbeddingInputError) as info:
        e.embed(texts)
    assert list(info.value.failures) == [0]
    assert "maximum context length" in info.value.failures[0]
    assert "smaller chunk size" in str(info.value)
    sent = fake_llm.stats()["embedding_inputs"]
    e.embed(texts[1:])  # the others were embedded and cached: nothing is sent again
    assert fake_llm.stats()["embedding_inputs"] == sent


def test_litellm_embedder_other_bad_requests_fail_fast(fake_llm) -> None:
    e = _litellm(fake_llm)
    fake_llm.configure(script=[{"status": 400, "message": "unsupported parameter: foo"}])
    with pytest.raises(RetrievalError, match="rejected the request"):
        e.embed(["x", "y"])
    assert fake_llm.stats()["requests"] == 1


def test_litellm_embedder_auth_error_says_where_keys_go(fake_llm, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_llm.configure(auth_key="sk-right")
    monkeypatch.setenv("WB_TEST_EMBED_KEY", "sk-wrong")
    with pytest.raises(RetrievalError, match="environment"):
        _litellm(fake_llm, api_key_env="WB_TEST_EMBED_KEY").embed(["x"])
    monkeypatch.setenv("WB_TEST_EMBED_KEY", "sk-right")
    assert _litellm(fake_llm, api_key_env="WB_TEST_EMBED_KEY").embed(["x"]).shape == (1, 64)
    monkeypatch.delenv("WB_TEST_EMBED_KEY")
    with pytest.raises(RetrievalError, match="WB_TEST_EMBED_KEY"):
        _litellm(fake_llm, api_key_env="WB_TEST_EMBED_KEY").embed(["y"])
