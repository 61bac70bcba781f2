"""Exports of results that are safe to open: CSV for spreadsheets.

Why: model outputs are untrusted text. A cell starting with ``=``, ``+``, ``-``, ``@``, tab or carriage
return is a formula to Excel / LibreOffice / Google Sheets (``=HYPERLINK(...)`` runs when the file is
opened), so by default such cells get a leading ``'`` as the OWASP CSV-injection guidance advises
(``escape_formulas=False`` writes them verbatim). Rows end in ``\\r\\n`` (RFC 4180) so that every field
holding ``\\r`` or ``\\n`` is quoted and no output can split a row; nested values (``messages``,
``retrieved``) are written as JSON, not Python reprs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: str) -> str:
    """A text cell a spreadsheet would evaluate, made inert with a leading quote (OWASP)."""
    return "'" + value if value.startswith(FORMULA_START) else value


def _cell(value: Any, escape: bool) -> Any:
    if isinstance(value, (dict, list, tuple)):
        value = json.dumps(value, ensure_ascii=False, default=str)
    elif hasattr(value, "tolist") and not isinstance(value, (str, bytes)) and getattr(value, "ndim", 0) > 0:
        value = json.dumps(value.tolist(), ensure_ascii=False, default=str)
    if escape and isinstance(value, str):
        return neutralise(value)
    return value


def csv_frame(frame: pd.DataFrame, escape_formulas: bool = True) -> pd.DataFrame:
    """The frame as it is written: nested values as JSON, formula-looking text neutralised."""
    import pandas as pd

    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_object_dtype(out[col].dtype) or pd.api.types.is_string_dtype(out[col].dtype):
            out[col] = pd.Series([_cell(v, escape_formulas) for v in out[col]], index=out.index, dtype=object)
    return out


def to_csv(frame: pd.DataFrame, target: str | os.PathLike[str] | None = None, escape_formulas: bool = True) -> str:
    """CSV text of ``frame`` (also written to ``target`` when given); see the module docstring for why."""
    text = csv_frame(frame, escape_formulas).to_csv(index=False, lineterminator="\r\n")
    if target is not None:
        Path(target).write_text(text, encoding="utf-8", newline="")
    return text


def check_output_path(target: str | os.PathLike[str]) -> Path:
    """A path we can write a file to, or a ValidationError saying why not (before any work is done)."""
    from workbench.errors import ValidationError

    path = Path(target)
    if path.is_dir():
        raise ValidationError(f"output {path} is a folder; give a file name inside it, e.g. {path / 'results.csv'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValidationError(f"cannot write {path}: folder {parent} does not exist; create it first (mkdir -p)")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValidationError(f"cannot write {path}: permission denied; choose a writable location")
    return path


def write(
    frame: pd.DataFrame, fmt: str, target: str | os.PathLike[str] | None = None, escape_formulas: bool = True
) -> str | None:
    """Results as csv / json / parquet: written to ``target`` or returned as text (parquet needs a target)."""
    from workbench.errors import ValidationError

    if fmt not in ("csv", "json", "parquet"):
        raise ValidationError(f"unknown format {fmt!r}; use csv, json or parquet")
    path = check_output_path(target) if target is not None else None
    try:
        if fmt == "parquet":
            if path is None:
                raise ValidationError("parquet is binary: give a file to write it to (-o FILE)")
            frame.to_parquet(path, index=False)
            return None
        if fmt == "csv":
            text = to_csv(frame, escape_formulas=escape_formulas)
        else:
            text = frame.to_json(orient="records", indent=2, date_format="iso", force_ascii=False) + "\n"
        if path is None:
            return text
        path.write_text(text, encoding="utf-8", newline="")
    except OSError as exc:
        raise ValidationError(f"cannot write {target}: {exc.strerror or exc}") from None
    return None
