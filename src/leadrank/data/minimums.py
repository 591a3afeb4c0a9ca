"""Refuse to train on too few leads of either class.

A model fitted on a few dozen lock-ins ranks noise, and its validation AUC is too unsteady
to tell a better model from a worse one. :func:`check_minimums` stops a run before any model
is loaded, naming the counts found and what to do.
"""

from __future__ import annotations

import pandas as pd

from leadrank.data.schema import label_values
from leadrank.errors import DataContractError

__all__ = ["TooFewLeadsError", "check_minimums"]

_FIX = (
    "Widen the data window (more days of leads), or, for experiments only, lower the minimums: "
    "min_train_positives / min_train_negatives in TrainConfig (the `train:` section of a --config YAML)."
)


class TooFewLeadsError(DataContractError):
    """The table holds fewer positives or negatives than training needs; the message says which."""


def check_minimums(
    table: pd.DataFrame,
    label_column: str,
    *,
    min_positives: int,
    min_negatives: int,
    segment_column: str | None = None,
) -> None:
    """Raise :class:`TooFewLeadsError` unless ``table`` holds enough positives and negatives.

    Args:
        table: Labelled leads (labels already validated as 0/1).
        label_column: The 0/1 outcome column.
        min_positives: Fewest leads with label 1 needed (in every segment, when segmented).
        min_negatives: Fewest leads with label 0 needed (likewise).
        segment_column: When given, every value of this column (a missing value is a
            segment of its own) must meet the minimums on its own.

    Example:
        >>> leads = pd.DataFrame({"label": [1, 0, 0]})
        >>> check_minimums(leads, "label", min_positives=1, min_negatives=2)
        >>> check_minimums(leads, "label", min_positives=2, min_negatives=2)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        leadrank.data.minimums.TooFewLeadsError: Too few leads to train: the table has 1 positive(s) (minimum 2) and 2 negative(s)...
    """
    if segment_column is None:
        groups = {"the table": table[label_column]}
    elif segment_column not in table.columns:
        raise ValueError(f"segment column {segment_column!r} is not in the table; it has columns {list(table.columns)}")
    else:
        groups = {
            f"segment {segment_column}={value!r}": part[label_column]
            for value, part in table.groupby(segment_column, dropna=False, sort=True)
        }
    shortfalls = []
    for name, labels in groups.items():
        positives = int((label_values(labels) == 1).sum())
        negatives = len(labels) - positives
        if positives < min_positives or negatives < min_negatives:
            shortfalls.append(
                f"{name} has {positives} positive(s) (minimum {min_positives}) " f"and {negatives} negative(s) (minimum {min_negatives})"
            )
    if shortfalls:
        raise TooFewLeadsError(f"Too few leads to train: {'; '.join(shortfalls)}. {_FIX}")
