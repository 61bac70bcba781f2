"""Zip bombs and lying sizes: run archives (``import_run``) and bundles refuse them before inflating anything.

The bomb is real: 200 MB of zeros deflated to ~200 KB. Refusal must name the member, leave the workspace as it
was, and never inflate the bomb (the peak of Python allocations during the refusal stays far below its size).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import pytest

import workbench as wb
from workbench.errors import ArchiveError, BundleError

ROOT = Path(__file__).resolve().parent.parent
BOMB_BYTES = 200 << 20


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> wb.Run:
    ws = wb.open(tmp_path_factory.mktemp("src") / "ws")
    ds = ws.add_dataset("qa", [{"id": f"c{i}", "question": f"Context: Cats nap. Dogs bark.\nQuestion: Do dogs "
                                                            f"bark {i}?", "answer": "Dogs bark."} for i in range(6)],
                        id="id")
    exp = ws.experiment(ds, [wb.Prompt("p", "{{ question }}")], [{"name": "b", "model": "local/extractive"}],
                        metrics=[{"name": "exact_match", "expected": "answer"}])
    return exp.run(progress=False)


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _write(path: Path, members: dict[str, bytes], bomb: str | None = None) -> Path:
    """A zip of ``members`` (deflated), plus a real zip bomb member named ``bomb`` (200 MB of zeros)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if bomb:
            with zf.open(bomb, "w", force_zip64=True) as out:
                block = bytes(1 << 20)
                for _ in range(BOMB_BYTES >> 20):
                    out.write(block)
    return path


def _lie_about_size(path: Path, member: str, size: int) -> None:
    """Patch the central directory so ``member`` declares ``size`` uncompressed bytes (its data is unchanged)."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        pos = zf.start_dir
    while raw[pos : pos + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = struct.unpack("<HHH", raw[pos + 28 : pos + 34])
        name = raw[pos + 46 : pos + 46 + name_len].decode()
        if name == member:
            raw[pos + 24 : pos + 28] = struct.pack("<I", size)
        pos += 46 + name_len + extra_len + comment_len
    path.write_bytes(bytes(raw))


def _refused_lightly(fn, error: type[Exception], match: str) -> str:
    """Run ``fn``, expect ``error`` matching ``match``; the refusal must not allocate anything near the bomb."""
    tracemalloc.start()
    try:
        with pytest.raises(error, match=match) as info:
            fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20, f"refusing allocated {peak} bytes: the bomb was inflated"
    return str(info.value)


def test_a_run_archive_zip_bomb_is_refused_before_anything_is_inflated(small_run, tmp_path):
    archive = small_run.archive(tmp_path / "run.zip")
    members = _members(archive)
    manifest = json.loads(members["manifest.json"])
    assert manifest["sizes"] == {n: len(b) for n, b in members.items() if n != "manifest.json"}
    ws = wb.open(tmp_path / "dst")
    # a bomb as an extra member
    bomb = _write(tmp_path / "bomb.zip", members, bomb="zeros.parquet")
    assert bomb.stat().st_size < 2 << 20  # ~200 KB of bomb: 200 MB inflated
    msg = _refused_lightly(lambda: ws.import_run(bomb), ArchiveError, "zeros.parquet")
    assert "zip bomb" in msg and "nothing was extracted" in msg
    # a consistent but malicious archive: the bomb replaces scores.parquet and the manifest vouches for it
    forged = dict(members)
    del forged["scores.parquet"]
    zeros = hashlib.sha256(bytes(BOMB_BYTES)).hexdigest()
    manifest["files"]["scores.parquet"], manifest["sizes"]["scores.parquet"] = zeros, BOMB_BYTES
    forged["manifest.json"] = json.dumps(manifest).encode()
    vouched = _write(tmp_path / "vouched.zip", forged, bomb="scores.parquet")
    _refused_lightly(lambda: ws.import_run(vouched), ArchiveError, r"'scores.parquet'.*zip bomb")
    assert len(ws.runs()) == 0 and ws.sql("SELECT count(*) AS n FROM responses")["n"][0] == 0
    # the CLI says the same, with a non-zero exit and no traceback
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "import-run", str(bomb), "-w", str(ws.path)],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode != 0 and "zeros.parquet" in out.stderr + out.stdout and "Traceback" not in out.stderr


def test_a_member_whose_size_lies_is_refused(small_run, tmp_path):
    archive = small_run.archive(tmp_path / "run.zip")
    members = _members(archive)
    ws = wb.open(tmp_path / "dst")
    first = ws.import_run(archive)  # a workspace with a run in it: a refused import must not touch it
    before = first.results()
    # the manifest records a size the member does not have
    manifest = json.loads(members["manifest.json"])
    manifest["sizes"]["cells.parquet"] += 1
    lied = _write(tmp_path / "manifest-lies.zip", {**members, "manifest.json": json.dumps(manifest).encode()})
    msg = _refused_lightly(lambda: ws.import_run(lied), ArchiveError, "'cells.parquet' would inflate to")
    assert "manifest records" in msg and "nothing was extracted" in msg
    # the zip's own directory understates a member's size: never inflated past it, refused as altered
    manifest = json.loads(members["manifest.json"])
    manifest["sizes"]["run.json"] = 10
    header = _write(tmp_path / "header-lies.zip", {**members, "manifest.json": json.dumps(manifest).encode()})
    _lie_about_size(header, "run.json", 10)
    msg = _refused_lightly(lambda: ws.import_run(header), ArchiveError, "'run.json' cannot be read")
    # a manifest whose sizes skip a member is refused too
    manifest = json.loads(members["manifest.json"])
    del manifest["sizes"]["scores.parquet"]
    partial = _write(tmp_path / "partial.zip", {**members, "manifest.json": json.dumps(manifest).encode()})
    with pytest.raises(ArchiveError, match="records sizes for other members"):
        ws.import_run(partial)
    assert list(ws.runs()["run_id"]) == [first.run_id]
    import pandas as pd

    pd.testing.assert_frame_equal(ws.get_run(first.run_id).results(), before)
    # archives written before sizes were recorded still import
    manifest = json.loads(members["manifest.json"])
    del manifest["sizes"]
    old = _write(tmp_path / "old.zip", {**members, "manifest.json": json.dumps(manifest).encode()})
    assert wb.open(tmp_path / "other").import_run(old).results().equals(before)


def test_a_bundle_zip_bomb_is_refused_before_anything_is_inflated(small_run, tmp_path):
    bundle = small_run.export(tmp_path / "bundle", small_run.info["spec"]["variants"][0]["name"], zip=True)
    assert wb.load_bundle(bundle) is not None  # the genuine bundle loads
    members = _members(bundle)
    bomb = _write(tmp_path / "bomb.zip", members, bomb="eval/zeros.bin")
    before = set(Path(__import__("tempfile").gettempdir()).glob("llmops-bundle-*"))
    msg = _refused_lightly(lambda: wb.load_bundle(bomb), BundleError, "'eval/zeros.bin'.*zip bomb")
    assert "nothing was extracted" in msg
    assert set(Path(__import__("tempfile").gettempdir()).glob("llmops-bundle-*")) == before  # no folder made
    # a member whose header understates its size is refused as altered, not inflated past the claim
    name = next(n for n in members if n.endswith(".json") and n != "manifest.json")
    lied = _write(tmp_path / "lied.zip", members)
    _lie_about_size(lied, name, 5)
    _refused_lightly(lambda: wb.load_bundle(lied), BundleError, f"'{name}' cannot be read")
