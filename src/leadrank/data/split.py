"""Strict time-ordered splits: every training lead was seen before every test lead.

A random split lets a model learn from leads seen after the ones it is scored on, which
flatters it. :func:`time_split` cuts the table at one ``as_of`` value, the cutoff:
``train`` holds the rows seen strictly before it and ``test`` the rows seen at or after
it, so leads that share an ``as_of`` always land on the same side.

:func:`check_no_leakage` guards the other way a model can see the future: reading an
outcome column as a feature.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadrank.config import ID_COLUMN, TIME_COLUMN
from leadrank.data.schema import parse_as_of
from leadrank.errors import DataContractError

__all__ = ["TimeSplit", "check_no_leakage", "time_split", "validation_slice"]

_LABEL_COLUMN = "label"
_ROWS_SHOWN = 5


@dataclass(frozen=True, eq=False)
class TimeSplit:
    """The two parts of a time-ordered split: ``train[time] < cutoff <= test[time]``.

    Attributes:
        train: Rows seen before ``cutoff``, in their original order.
        test: Rows seen at or after ``cutoff``, in their original order.
        cutoff: The first ``as_of`` in ``test``.
        time_column: The column the split was made on.
        requested_test_fraction: The fraction asked for; ties in ``time_column`` can make the
            realised one (:attr:`test_fraction`) differ.
    """

    train: pd.DataFrame
    test: pd.DataFrame
    cutoff: pd.Timestamp
    time_column: str = TIME_COLUMN
    requested_test_fraction: float | None = None

    @property
    def test_fraction(self) -> float:
        """The share of rows in ``test``."""
        return len(self.test) / (len(self.train) + len(self.test))

    def summary(self) -> str:
        """A few lines for logs: rows, positives (when a ``label`` column exists), time ranges."""
        lines = [f"time split on {self.time_column!r} at cutoff {self.cutoff} (train < cutoff <= test)"]
        for name, part in (("train", self.train), ("test", self.test)):
            times = _parse_times(part, self.time_column)
            line = f"  {name + ':':6} {len(part):>9,} rows"
            if _LABEL_COLUMN in part.columns:
                positives = int((part[_LABEL_COLUMN] == 1).sum())
                line += f", {positives:,} positives ({positives / len(part):.1%})"
            line += f", {self.time_column} {times.min()} .. {times.max()}"
            lines.append(line)
        fraction = f"  test fraction {self.test_fraction:.3f}"
        if self.requested_test_fraction is not None:
            fraction += f" (requested {self.requested_test_fraction:.3f}"
            if not np.isclose(self.test_fraction, self.requested_test_fraction, atol=0.005):
                fraction += f"; rows sharing one {self.time_column} stay on one side"
            fraction += ")"
        lines.append(fraction)
        return "\n".join(lines)


TEST_FRACTION = 0.3
"""The default share of leads in the later (test) part: the paper's 70/30 split."""


def time_split(table: pd.DataFrame, test_fraction: float = TEST_FRACTION, time_column: str = TIME_COLUMN) -> TimeSplit:
    """Split ``table`` at one point in time, the latest ``test_fraction`` of rows going to test.

    The cutoff is the ``time_column`` value at position ``(1 - test_fraction) * len(table)``
    of the sorted times. Rows tied at a time cannot be separated, so when ties straddle that
    position the cutoff is the distinct time whose split comes closest to the requested
    fraction (on a tie, the earlier one; never the earliest time, which would leave train
    empty). ``summary()`` reports the realised fraction.

    Args:
        table: Leads, one row per lead seen at ``time_column``.
        test_fraction: Share of rows wanted in test, strictly between 0 and 1.
        time_column: Timestamps, or ISO 8601 text such as ``'2024-03-01T09:30:00'``.

    Returns:
        A :class:`TimeSplit`; each part keeps the table's row order, index and values
        (``time_column`` is parsed for the split, not rewritten).

    Raises:
        ValueError: ``test_fraction`` out of range, ``time_column`` missing or holding
            values that are not times (the rows are named), or fewer than two distinct times.

    Example:
        >>> leads = pd.DataFrame({"lead_id": ["a", "b", "c", "d"],
        ...                       "as_of": ["2024-01-01", "2024-01-02", "2024-01-02", "2024-01-03"]})
        >>> split = time_split(leads, test_fraction=0.5)
        >>> list(split.train.lead_id), list(split.test.lead_id), str(split.cutoff.date())
        (['a'], ['b', 'c', 'd'], '2024-01-02')
    """
    return _split(table, test_fraction, time_column, fraction_name="test_fraction")


def validation_slice(train: pd.DataFrame, fraction: float = 0.1, time_column: str = TIME_COLUMN) -> TimeSplit:
    """Hold out the most recent ``fraction`` of a training table for validation.

    The same cut as :func:`time_split`: the returned ``train`` is what to fit on and ``test``
    is the validation slice, all of it seen at or after everything in ``train``.
    """
    return _split(train, fraction, time_column, fraction_name="fraction")


def _split(table: pd.DataFrame, fraction: float, time_column: str, *, fraction_name: str) -> TimeSplit:
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"{fraction_name} must be strictly between 0 and 1; got {fraction!r}")
    if len(table) == 0:
        raise ValueError("cannot split an empty table; it has no rows")
    times = _parse_times(table, time_column)
    ordered = times.sort_values(ignore_index=True)
    # Position where each distinct time starts in sorted order = rows strictly before it.
    starts = np.flatnonzero(ordered.ne(ordered.shift()).to_numpy())
    candidates = starts[1:]  # the earliest time as cutoff would leave train empty
    if len(candidates) == 0:
        raise ValueError(
            f"cannot split {len(table)} lead(s) in time: all share {time_column}={ordered.iloc[0]}. "
            f"A time split needs at least two distinct {time_column} values so that train < cutoff <= test."
        )
    target = (1.0 - fraction) * len(table)
    train_rows = candidates[np.argmin(np.abs(candidates - target))]
    cutoff = pd.Timestamp(ordered.iloc[train_rows])
    in_train = (times < cutoff).to_numpy()
    return TimeSplit(
        train=table[in_train],
        test=table[~in_train],
        cutoff=cutoff,
        time_column=time_column,
        requested_test_fraction=fraction,
    )


def _parse_times(table: pd.DataFrame, time_column: str) -> pd.Series:
    """``table[time_column]`` read by the contract's rule (:func:`~leadrank.data.schema.parse_as_of`).

    Raise naming the rows that are not times.
    """
    if time_column not in table.columns:
        raise DataContractError(f"no {time_column!r} column to split on; the table has columns {list(table.columns)}")
    column = table[time_column]
    is_time = isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(column.dtype)
    if not (is_time or pd.api.types.is_string_dtype(column.dtype) or column.dtype == object):
        raise DataContractError(
            f"{time_column!r} must hold timestamps or ISO 8601 text such as '2024-03-01T09:30:00'; "
            f"got dtype {column.dtype}. Convert it with pd.to_datetime first."
        )
    times = parse_as_of(column)
    bad = times.isna().to_numpy()
    if bad.any():
        raise DataContractError(
            f"{int(bad.sum())} row(s) have no valid {time_column} (missing or not a time): "
            f"{_describe_rows(table, bad, time_column)}. Fix or drop these rows; "
            f"{time_column} should be ISO 8601 text such as '2024-03-01T09:30:00'."
        )
    return times


def _describe_rows(table: pd.DataFrame, rows: np.ndarray, column: str) -> str:
    positions = np.flatnonzero(rows)
    shown = []
    for position in positions[:_ROWS_SHOWN]:
        value = table[column].iloc[position]
        who = f"{ID_COLUMN} {table[ID_COLUMN].iloc[position]!r}" if ID_COLUMN in table.columns else f"row {position}"
        shown.append(f"{who} ({column}={value!r})")
    more = f" and {len(positions) - _ROWS_SHOWN} more" if len(positions) > _ROWS_SHOWN else ""
    return ", ".join(shown) + more


def check_no_leakage(feature_columns: Iterable[str], supervision_columns: Iterable[str]) -> None:
    """Refuse features that describe the outcome or are diagnostics.

    Args:
        feature_columns: Columns a model will read (e.g. ``FeatureSpec.input_columns``).
        supervision_columns: Outcome columns (e.g. ``FunnelSpec.supervision_columns``).

    Raises:
        ValueError: Naming every offending feature and what to do about it.
    """
    supervision = set(supervision_columns)
    problems = []
    for name in feature_columns:
        if name in supervision:
            problems.append(f"feature {name!r} is a supervision column (outcome after {TIME_COLUMN}); " "remove it from the FeatureSpec")
        elif name.startswith("_"):
            problems.append(
                f"feature {name!r} starts with '_', which marks a diagnostic column (e.g. the simulator's true "
                "propensity), never an input; remove it from the FeatureSpec"
            )
    if problems:
        raise ValueError("; ".join(problems))
