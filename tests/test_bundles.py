"""Bundles: export, verified load, replay, and refusal of tampered / truncated / incomplete / unsafe bundles."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import zipfile
from pathlib import Path

import pytest
from served import demo_run

import workbench as wb
from workbench.bundles import bundle_hash, verify
from workbench.cli import main
from workbench.errors import BundleError


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("bundles")
    run = demo_run(folder, n_cases=30)
    rag = run.export(folder / "rag", "rag-hybrid128", constraints=["token_f1>=0.05", "latency_p95_ms<=60000"])
    zipped = run.export(folder / "qonly", "gold-context", zip=True)  # a bundle without a retriever
    return folder, run, rag, zipped


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst) if src.is_dir() else shutil.copy(src, dst)
    return dst


def test_manifest_contract(demo):
    _, run, rag, _ = demo
    m = json.loads((rag / "manifest.json").read_text())
    for key in (
        "format_version",
        "workbench_version",
        "created_at",
        "bundle_hash",
        "files",
        "run_id",
        "variant",
        "dataset",
        "prompt",
        "model",
        "retriever",
        "metrics",
        "gates",
        "eval",
    ):
        assert key in m, key
    assert m["format_version"] == 1 and m["run_id"] == run.run_id and m["variant"] == "rag-hybrid128"
    assert m["created_at"].endswith("Z")
    assert (
        m["bundle_hash"]
        == hashlib.sha256(json.dumps(m["files"], sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    )
    on_disk = {p.relative_to(rag).as_posix() for p in rag.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(m["files"]) == on_disk
    for rel, digest in m["files"].items():
        assert hashlib.sha256((rag / rel).read_bytes()).hexdigest() == digest
    assert {"retriever/chunks.parquet", "retriever/index.faiss", "eval/cases.parquet", "report.html"} <= on_disk
    assert set(m["dataset"]) >= {"name", "hash", "version"} and set(m["model"]) >= {"name", "hash", "model"}
    assert m["retriever"]["name"] == "hybrid128" and len(m["retriever"]["hash"]) == 64
    assert [x["label"] for x in m["metrics"]] == ["token_f1", "rouge_l", "contains", "recall_at_k"]
    assert [(g["metric"], g["op"], g["passed"]) for g in m["gates"]] == [
        ("token_f1", ">=", True),
        ("latency_p95_ms", "<=", True),
    ]
    board = m["eval"]["leaderboard"]
    assert board["variant"] == "rag-hybrid128" and board["n"] == 30 and m["eval"]["n_cases"] == 30
    ci = board["ci"]["token_f1"]
    assert ci["ci_low"] <= ci["mean"] <= ci["ci_high"]
    assert abs(ci["mean"] - float(run.leaderboard().set_index("variant").loc["rag-hybrid128", "token_f1"])) < 1e-9
    assert m["eval"]["runner_up"]["variant"] in ("gold-context", "rag-dense32")
    # the eval cases carry the recorded outputs and scores
    cases = wb.load_bundle(rag).cases()
    assert {"case_id", "inputs", "output", "token_f1", "rouge_l", "contains", "recall_at_k"} <= set(cases.columns)
    res = run.results().set_index("case_id")
    res = res[res["variant"] == "rag-hybrid128"]
    for row in cases.itertuples():
        assert row.output == res.loc[row.case_id, "output"]
        assert set(json.loads(row.inputs)) >= {"question", "context", "long_answer", "final_decision"}
    # pinned requirements from this environment
    req = (rag / "requirements.txt").read_text()
    import faiss

    assert f"faiss-cpu=={faiss.__version__}" in req and "fastapi==" in req


def test_no_pickle_and_native_formats(demo):
    _, _, rag, _ = demo
    import faiss
    import pyarrow.parquet as pq

    for p in rag.rglob("*"):
        if p.is_file():
            assert p.suffix in (".json", ".parquet", ".faiss", ".html", ".txt", ".npy"), p
            assert b"\x80\x04\x95" not in p.read_bytes()[:3]  # a pickle protocol-4 header
    assert (
        faiss.read_index(str(rag / "retriever" / "index.faiss")).ntotal
        == pq.read_metadata(rag / "retriever" / "chunks.parquet").num_rows
    )


def test_load_answer_and_replay_identical(demo):
    _, run, rag, zipped = demo
    bundle = wb.load_bundle(rag)
    a = bundle.answer(question="Is there a link between smoking and lung cancer?")
    assert a.answer and a.error is None and len(a.retrieved) == 3
    assert all({"chunk_id", "doc_id", "score"} <= set(h) for h in a.retrieved)
    assert a.latency_ms > 0 and a.prompt_tokens and a.completion_tokens
    answers = bundle.batch([{"question": "What is aspirin?"}, {"question": "Does exercise help?"}])
    assert len(answers) == 2 and all(x.answer for x in answers)
    report = bundle.replay()
    assert report.identical, str(report)
    assert report.metrics["token_f1"]["identical"] == 30 and report.metrics["recall_at_k"]["identical"] == 30
    zb = wb.load_bundle(zipped)
    assert zb.retriever is None and zb.replay().identical


def test_replay_reports_differences(demo, tmp_path):
    """A bundle whose recorded outputs differ from what the model now says is reported, not hidden."""
    _, run, rag, _ = demo
    b = wb.load_bundle(rag)
    cases = b.cases()
    cases.loc[0, "token_f1"] = cases.loc[0, "token_f1"] + 0.5
    copy = _copy(rag, tmp_path / "b")
    cases.to_parquet(copy / "eval" / "cases.parquet", index=False)
    with pytest.raises(BundleError, match="eval/cases.parquet does not match its sha256"):
        wb.load_bundle(copy)
    # re-seal it as a forger would have to, then the replay shows the gap
    m = json.loads((copy / "manifest.json").read_text())
    m["files"]["eval/cases.parquet"] = hashlib.sha256((copy / "eval/cases.parquet").read_bytes()).hexdigest()
    m["bundle_hash"] = bundle_hash(m["files"])
    from workbench.bundles import manifest_digest

    m["manifest_digest"] = manifest_digest(m)
    (copy / "manifest.json").write_text(json.dumps(m))
    report = wb.load_bundle(copy).replay()
    assert not report.identical
    assert report.metrics["token_f1"]["identical"] == 29
    assert abs(report.metrics["token_f1"]["max_abs_diff"] - 0.5) < 1e-9
    assert "differs on 1 case(s)" in str(report)


@pytest.mark.parametrize(
    ("damage", "names"),
    [
        ("flip", "retriever/chunks.parquet"),
        ("truncate", "retriever/index.faiss"),
        ("delete", "eval/cases.parquet"),
        ("extra", "notes.txt"),
        ("manifest", "manifest.json"),
        ("symlink", "prompt.json"),
    ],
)
def test_damaged_directories_are_refused(demo, tmp_path, damage, names):
    _, _, rag, _ = demo
    b = _copy(rag, tmp_path / "b")
    if damage == "flip":
        data = bytearray((b / names).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (b / names).write_bytes(bytes(data))
    elif damage == "truncate":
        (b / names).write_bytes((b / names).read_bytes()[:100])
    elif damage == "delete":
        (b / names).unlink()
    elif damage == "extra":
        (b / names).write_text("hello")
    elif damage == "manifest":
        m = json.loads((b / names).read_text())
        m["gates"] = [{"metric": "token_f1", "op": ">=", "threshold": 0.0, "value": 1.0, "passed": True}]
        (b / names).write_text(json.dumps(m))
    elif damage == "symlink":
        target = tmp_path / "elsewhere.json"
        shutil.copy(b / names, target)
        (b / names).unlink()
        os.symlink(target, b / names)
    with pytest.raises(BundleError, match=names.replace(".", r"\.")):
        wb.load_bundle(b)


def test_damaged_archives_are_refused(demo, tmp_path):
    _, _, _, zipped = demo
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(zipped.read_bytes()[: zipped.stat().st_size // 2])
    with pytest.raises(BundleError, match="truncated"):
        wb.load_bundle(truncated)

    def with_member(name: str, data: bytes = b"x", link: bool = False) -> Path:
        out = tmp_path / f"{abs(hash(name))}.zip"
        with zipfile.ZipFile(zipped) as src, zipfile.ZipFile(out, "w") as dst:
            for item in src.infolist():
                dst.writestr(item, src.read(item))
            info = zipfile.ZipInfo(name)
            if link:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            dst.writestr(info, data)
        return out

    outside = tmp_path.parent / "zip-slip-proof.txt"
    with pytest.raises(BundleError, match=r"\.\./\.\./zip-slip-proof\.txt.*outside"):
        wb.load_bundle(with_member("../../zip-slip-proof.txt"))
    assert not outside.exists()
    with pytest.raises(BundleError, match="absolute path"):
        wb.load_bundle(with_member("/tmp/evil.txt"))
    with pytest.raises(BundleError, match="symbolic link"):
        wb.load_bundle(with_member("link", b"/etc/passwd", link=True))
    with pytest.raises(BundleError, match="not listed in the manifest"):
        wb.load_bundle(with_member("retriever/extra.bin"))
    not_zip = tmp_path / "x.zip"
    not_zip.write_text("hello")
    with pytest.raises(BundleError, match="not a readable zip"):
        wb.load_bundle(not_zip)
    with pytest.raises(BundleError, match="does not exist"):
        wb.load_bundle(tmp_path / "nope")


def test_export_choices_and_gates(demo, tmp_path):
    _, run, _, _ = demo
    with pytest.raises(BundleError, match="has 3 variants"):
        run.export(tmp_path / "x")
    with pytest.raises(wb.NotFoundError, match="no variant 'nope'"):
        run.export(tmp_path / "x", "nope")
    with pytest.raises(BundleError, match=r"fails its gate\(s\): token_f1"):
        run.export(tmp_path / "x", "rag-dense32", constraints=["token_f1>=0.5"])
    assert not (tmp_path / "x").exists()
    out = run.export(tmp_path / "x", "rag-dense32", constraints=["token_f1>=0.5"], allow_failing_gates=True)
    gate = json.loads((out / "manifest.json").read_text())["gates"][0]
    assert gate["passed"] is False and gate["value"] < 0.5
    winner = run.export(tmp_path / "w", metric="token_f1")
    expected = run.winner("token_f1").winner
    assert json.loads((winner / "manifest.json").read_text())["variant"] == expected
    with pytest.raises(BundleError, match="already exists"):
        run.export(tmp_path / "w", metric="token_f1")


def test_secrets_stay_names_and_report_is_escaped(tmp_path, fake_llm, monkeypatch):
    monkeypatch.setenv("WB_BUNDLE_TEST_KEY", "sk-very-secret-value-123456")
    ws = wb.open(tmp_path / "ws")
    ds = ws.add_dataset(
        "evil",
        [
            {"id": "1", "question": "<script>alert('x')</script> is this safe?", "answer": "no"},
            {"id": "2", "question": "plain question?", "answer": "yes"},
        ],
        id="id",
    )
    model = {
        "name": "m",
        "model": "openai/test-model",
        "api_base": fake_llm.base_url,
        "api_key_env": "WB_BUNDLE_TEST_KEY",
    }
    run = ws.experiment(
        ds, [wb.Prompt("p", "{{ question }}")], [model], [{"name": "exact_match", "expected": "answer"}]
    ).run(progress=False)
    out = run.export(tmp_path / "b")
    for p in out.rglob("*"):
        if p.is_file():
            assert b"sk-very-secret-value-123456" not in p.read_bytes(), p
    cfg = json.loads((out / "model.json").read_text())
    assert cfg["api_key_env"] == "WB_BUNDLE_TEST_KEY" and "api_key" not in cfg
    page = (out / "report.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert verify(out)[1]["secrets"] == {"env": ["WB_BUNDLE_TEST_KEY"]}


def test_cli_export_and_verify(demo, tmp_path, capsys):
    folder, run, _, _ = demo
    ws = str(folder / "ws")
    assert main(["export", "-w", ws, run.run_id, "rag-hybrid128", str(tmp_path / "c"), "--zip", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["path"].endswith(".zip") and out["variant"] == "rag-hybrid128"
    assert main(["bundle", "verify", out["path"]]) == 0
    assert "files verified" in capsys.readouterr().out
    assert main(["bundle", "verify", out["path"], "--replay", "--json", "--limit", "5"]) == 0
    rep = json.loads(capsys.readouterr().out)["replay"]
    assert rep["cases"] == 5 and rep["identical"] is True
    Path(out["path"]).write_bytes(Path(out["path"]).read_bytes()[:-200])
    assert main(["bundle", "verify", out["path"]]) == 2
    assert "error:" in capsys.readouterr().err
