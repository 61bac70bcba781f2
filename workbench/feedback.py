"""Human feedback on cells: thumbs, 1-5 ratings, labels and comments, queryable like a metric.

Why rows and not columns on cells: several people rate the same cell, at different times, and the
agreement between judges and humans is computed over those rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from workbench.errors import NotFoundError, ValidationError
from workbench.store import Store

if TYPE_CHECKING:
    import pandas as pd

KINDS = ("thumbs", "rating", "label", "comment")


@dataclass(frozen=True)
class Feedback:
    feedback_id: int
    run_id: str
    case_id: str
    variant: str
    repeat: int
    kind: str
    value: float | None
    label: str | None
    comment: str | None
    author: str | None


def add(
    store: Store,
    run_id: str,
    case_id: str,
    variant: str,
    *,
    repeat: int = 0,
    thumbs: bool | None = None,
    rating: float | None = None,
    label: str | None = None,
    comment: str | None = None,
    author: str | None = None,
) -> Feedback:
    """Record one rating of a stored cell; exactly one of thumbs / rating / label (a comment may go with it)."""
    given = [k for k, v in (("thumbs", thumbs), ("rating", rating), ("label", label)) if v is not None]
    if len(given) > 1:
        raise ValidationError(f"give one of thumbs, rating or label per feedback, not {given}; record them separately")
    if not given and not comment:
        raise ValidationError("feedback needs thumbs=True/False, rating=1..5, label='...' or a comment")
    kind = given[0] if given else "comment"
    value: float | None = None
    if thumbs is not None:
        if not isinstance(thumbs, bool):
            raise ValidationError(f"thumbs must be True or False, got {thumbs!r}")
        value = 1.0 if thumbs else 0.0
    if rating is not None:
        if isinstance(rating, bool) or not isinstance(rating, (int, float)) or not 1 <= rating <= 5:
            raise ValidationError(f"rating must be a number from 1 to 5, got {rating!r}")
        value = float(rating)
    if label is not None and (not isinstance(label, str) or not label.strip()):
        raise ValidationError(f"label must be a non-empty string, got {label!r}")
    info = store.get_run(run_id)
    run_id = info["run_id"]
    if not store.cell_exists(run_id, case_id, variant, repeat):
        raise NotFoundError(
            f"run {run_id} has no stored cell (case {case_id!r}, variant {variant!r}, repeat {repeat}); "
            "check run.results() for the case ids and variant names"
        )
    rec = {
        "run_id": run_id,
        "case_id": case_id,
        "variant": variant,
        "repeat": repeat,
        "kind": kind,
        "value": value,
        "label": label,
        "comment": comment,
        "author": author,
    }
    fid = store.insert_feedback(rec)
    return Feedback(fid, run_id, case_id, variant, repeat, kind, value, label, comment, author)


def per_cell(store: Store, run_id: str) -> pd.DataFrame:
    """One row per rated cell: mean thumbs and rating over raters, latest label, number of ratings."""
    import pandas as pd

    fb = store.feedback(run_id)
    keys = ["case_id", "variant", "repeat"]
    if fb.empty:
        return pd.DataFrame(columns=[*keys, "human_thumbs", "human_rating", "human_label", "human_n"])
    numeric = fb[fb["kind"].isin(["thumbs", "rating"])].pivot_table(
        index=keys, columns="kind", values="value", aggfunc="mean"
    )
    numeric.columns = [f"human_{c}" for c in numeric.columns]
    labels = fb[fb["kind"] == "label"].groupby(keys)["label"].last().rename("human_label")
    counts = fb.groupby(keys).size().rename("human_n")
    out = pd.concat([numeric, labels, counts], axis=1).reset_index()
    for col in ("human_thumbs", "human_rating", "human_label"):
        if col not in out.columns:
            out[col] = None
    return out[[*keys, "human_thumbs", "human_rating", "human_label", "human_n"]]
