"""Safe reading of zip files someone else made: run archives (``workbench.archive``) and bundles.

Why: a zip's central directory states each member's sizes, and a file of a few hundred KB can inflate to gigabytes
(a zip bomb: 200 MB of zeros deflates to ~200 KB). So every member is judged from the directory alone, before one
byte is inflated: a member inflating more than ``max_ratio`` times its stored size (above ``ratio_floor`` bytes),
a member over ``max_member`` bytes, or members totalling over ``max_total`` bytes refuse the whole file, naming
the member. Reading then never yields more than the declared size: Python's zipfile stops there and fails the
member's CRC, so a header that understates a size is refused as damaged, never inflated past it.
The size limits default to 8 GiB (``LLMOPS_MAX_UNZIP_BYTES``).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

__all__ = ["Limits", "check", "copy_member", "limits", "read_member"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    """How much a zip may inflate to: in total, per member, and per member relative to its stored size."""

    max_total: int = 8 << 30
    max_member: int = 8 << 30
    # deflate reaches ~1030:1 on zeros; Parquet, FAISS and text members of real archives stay well under 100:1
    max_ratio: float = 100.0
    ratio_floor: int = 1 << 20  # members up to 1 MiB may compress any amount: they cannot hurt


def limits() -> Limits:
    """The default limits, with ``LLMOPS_MAX_UNZIP_BYTES`` (bytes) as the total and per-member cap when set."""
    raw = os.environ.get("LLMOPS_MAX_UNZIP_BYTES")
    if not raw:
        return Limits()
    try:
        cap = int(raw)
    except ValueError:
        return Limits()
    return Limits(max_total=cap, max_member=cap)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def check(
    zf: zipfile.ZipFile,
    where: Any,
    error: type[Exception],
    expected_sizes: Mapping[str, int] | None = None,
    bounds: Limits | None = None,
) -> list[zipfile.ZipInfo]:
    """Judge every member from the central directory; returns the file members or raises ``error``.

    ``expected_sizes`` (a manifest's recorded sizes): a listed member whose directory size differs is refused,
    so the total can never exceed what the manifest recorded.
    """
    b = bounds or limits()
    members = [i for i in zf.infolist() if not i.is_dir()]
    total = 0
    for info in members:
        name, size, stored = info.filename, info.file_size, info.compress_size
        if expected_sizes is not None and name in expected_sizes and int(expected_sizes[name]) != size:
            raise error(
                f"{where}: refused, member {name!r} would inflate to {size} bytes but the manifest records "
                f"{int(expected_sizes[name])}: the archive was altered; nothing was extracted. Ask for a fresh export"
            )
        if size > b.max_member:
            raise error(
                f"{where}: refused, member {name!r} would inflate to {_size(size)} (the limit per member is "
                f"{_size(b.max_member)}; raise LLMOPS_MAX_UNZIP_BYTES if it is genuine); nothing was extracted"
            )
        if size > b.ratio_floor and size > b.max_ratio * max(stored, 1):
            raise error(
                f"{where}: refused, member {name!r} would inflate to {_size(size)} from {_size(stored)} "
                f"({size / max(stored, 1):.0f}:1, the limit is {b.max_ratio:.0f}:1): a zip bomb, not a workbench "
                "file; nothing was extracted"
            )
        total += size
        if total > b.max_total:
            raise error(
                f"{where}: refused, members up to {name!r} would inflate to {_size(total)} in total (the limit is "
                f"{_size(b.max_total)}; raise LLMOPS_MAX_UNZIP_BYTES if it is genuine); nothing was extracted"
            )
    return members


def copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: IO[bytes], where: Any, error: type[Exception]) -> int:
    """Inflate one checked member into ``out`` in blocks (at most its declared size); returns bytes written."""
    import zlib

    written = 0
    try:
        with zf.open(info) as src:
            while block := src.read(_CHUNK):
                out.write(block)
                written += len(block)
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
        raise error(
            f"{where}: member {info.filename!r} cannot be read ({exc}); the file is damaged, truncated or altered: "
            "copy it again"
        ) from None
    return written


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: Any, error: type[Exception]) -> bytes:
    """Inflate one checked member into memory (bounded by its declared size)."""
    import io

    buf = io.BytesIO()
    copy_member(zf, info, buf, where, error)
    return buf.getvalue()
