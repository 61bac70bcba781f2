"""How tables look in a notebook: numbers rounded the same way everywhere, text not cut at 50 characters.

``Table`` is a pandas DataFrame (every pandas operation works and returns a plain DataFrame); only its
notebook and text display differ from pandas' defaults. The values themselves are never rounded.
"""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd

# text cells longer than this are cut in the display (pandas' default is 50, which cut metric descriptions)
MAX_COLWIDTH = 400


def fmt_number(x: Any) -> str:
    """Round for reading: 4 significant digits below 1, 3 decimals below 100, 1 decimal above."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return str(x)
    if float(x).is_integer() and abs(x) < 1e15:
        return f"{int(x):d}"
    a = abs(x)
    if a >= 100:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.3f}"
    return f"{x:.4g}"


class Table(pd.DataFrame):
    """A DataFrame that displays rounded numbers, full text and blanks for missing values."""

    @property
    def _constructor(self) -> type[pd.DataFrame]:  # type: ignore[override]
        return pd.DataFrame  # anything derived from a Table is an ordinary DataFrame

    def _display_frame(self) -> pd.DataFrame:
        """Missing values blank in every column, timestamps to the second."""
        out = pd.DataFrame(self).copy()
        for col in out.columns:
            series = out[col]
            if pd.api.types.is_datetime64_any_dtype(series):
                out[col] = series.dt.strftime("%Y-%m-%d %H:%M:%S").astype(object).where(series.notna(), "")
            elif not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
                out[col] = series.astype(object).where(series.notna(), "")
        return out

    def _repr_html_(self) -> str | None:
        with pd.option_context("display.max_colwidth", MAX_COLWIDTH):
            return self._html()

    def _html(self) -> str:
        return self._display_frame().to_html(
            na_rep="",
            float_format=fmt_number,
            max_rows=pd.get_option("display.max_rows"),
            max_cols=60,
            show_dimensions=len(self) > pd.get_option("display.max_rows"),
            notebook=True,
        )

    def __repr__(self) -> str:
        with pd.option_context("display.max_colwidth", MAX_COLWIDTH, "display.width", 200):
            return self._display_frame().to_string(
                na_rep="", float_format=fmt_number, max_rows=pd.get_option("display.max_rows"), max_cols=60
            )


def table(frame: pd.DataFrame) -> Table:
    """Wrap a DataFrame for display (no copy of the data)."""
    return Table(frame)


def kv_html(title: str, items: dict[str, Any]) -> str:
    """A small two-column HTML table: the notebook face of summary objects (Workspace, Plan)."""
    rows = "".join(
        f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td style='text-align:left'>"
        f"{html.escape(fmt_number(v) if isinstance(v, (int, float)) else str(v))}</td></tr>"
        for k, v in items.items()
    )
    return f"<b>{html.escape(title)}</b><table>{rows}</table>"
