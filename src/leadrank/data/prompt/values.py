"""A CRM value as prompt text: one feature value (:func:`format_value`) and the lead-record block (:func:`render_tabular`).

Missing values (None, NaN, ``pd.NA``, ``NaT``, blank text) read ``'unknown'``; numbers are compact
fixed-point text followed by the feature's unit; bools read ``'yes'``/``'no'``.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from leadrank.config import Feature, FeatureSpec
from leadrank.data.schema import FALSE_WORDS, TRUE_WORDS
from leadrank.errors import DataContractError

__all__ = [
    "WHITESPACE",
    "MissingColumnError",
    "format_value",
    "get_column",
    "is_missing",
    "render_tabular",
]

#: What a missing value reads as in the prompt.
_MISSING = "unknown"
#: A run of whitespace: collapsed to one space in category text; answer words must not hold one.
WHITESPACE = re.compile(r"\s+")


class MissingColumnError(DataContractError, KeyError):
    """A column the FeatureSpec needs is not in the lead row/table.

    A :class:`~leadrank.errors.DataContractError` (so a ``ValueError``) and a ``KeyError``,
    so either ``except`` catches it.
    """

    __str__ = ValueError.__str__  # KeyError would quote the whole message


def is_missing(value: Any) -> bool:
    """Whether a cell is unknown: None, NaN, ``pd.NA``, ``NaT`` or blank text."""
    if value is None:
        return True
    kind = type(value)
    if kind is float:
        return value != value  # NaN
    if kind is str:
        return not value.strip()
    if kind is int or kind is bool:
        return False
    try:
        return bool(pd.api.types.is_scalar(value) and pd.isna(value))
    except (TypeError, ValueError):
        return False


def _format_number(value: Any) -> str:
    """Compact fixed-point text: integers bare, at most 4 significant digits otherwise.

    Rule: integral values print as integers (``3.0 -> '3'``). Other values keep
    ``4 - (digits before the point)`` decimals, at least 0 and at most 3, then drop trailing
    zeros (``0.12345 -> '0.123'``, ``12.3456 -> '12.35'``, ``12345.678 -> '12346'``).
    Values so small that this rounds to zero keep 3 significant digits
    (``0.0004567 -> '0.000457'``). Never scientific notation.
    """
    if type(value) is int:
        return str(value)
    if type(value) is not float:
        if isinstance(value, numbers.Integral):
            return str(int(value))
        value = float(value)
    x: float = value
    if x.is_integer():
        return str(int(x))
    if math.isinf(x):
        return "infinity" if x > 0 else "minus infinity"
    size = abs(x)  # decimals = 4 - digits before the point, clipped to 0..3
    text = _fixed(x, 3 if size < 10 else 2 if size < 100 else 1 if size < 1000 else 0)
    if text == "0":  # tiny but non-zero: keep 3 significant digits
        text = _fixed(x, min(20, 2 - math.floor(math.log10(abs(x)))))
    return text


def _fixed(x: float, decimals: int) -> str:
    text = f"{x:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _to_number(value: Any, feature: Feature) -> Any:
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, numbers.Number):
        return value
    try:
        return float(str(value).strip().replace(",", ""))
    except ValueError:
        raise DataContractError(
            f"feature {feature.name!r} is numeric but got {value!r}; store a number "
            f"(or leave it empty for unknown), or declare the feature kind 'categorical'"
        ) from None


def _to_bool(value: Any, feature: Feature) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, numbers.Number) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise DataContractError(
        f"feature {feature.name!r} is bool but got {value!r}; expected True/False, 1/0 or yes/no " f"(or an empty value for unknown)"
    )


def format_value(value: Any, feature: Feature) -> str:
    """Render one feature value for the prompt.

    Parameters
    ----------
    value : Any
        The cell value. ``None``, NaN, ``pd.NA``, ``NaT`` and blank strings render as
        ``'unknown'``.
    feature : Feature
        Decides how the value is read: numbers are compact (see below) and followed by
        ``feature.unit``; bools are ``'yes'``/``'no'``; categories are their text with
        whitespace collapsed to single spaces (numbers among them are compacted too).

    Numbers: integral values print without a decimal part (``3.0 -> '3'``); others keep
    up to 4 significant digits but at most 3 decimals and never round the integer part
    (``0.12345 -> '0.123'``, ``12.3456 -> '12.35'``, ``12345.678 -> '12346'``), with
    trailing zeros dropped and no scientific notation.

    Raises
    ------
    DataContractError
        (a ``ValueError``) A numeric feature holds text that is not a number, or a bool
        feature holds something other than True/False, 1/0, yes/no.

    Examples
    --------
    >>> format_value(12.0, Feature(name="lead_age_days", kind="numeric", unit="days"))
    '12 days'
    >>> format_value(None, Feature(name="city_tier", kind="categorical"))
    'unknown'
    """
    if is_missing(value):
        return _MISSING
    kind = feature.kind
    if kind == "bool":
        return "yes" if _to_bool(value, feature) else "no"
    if kind == "numeric":
        text = _format_number(value if type(value) in (float, int) else _to_number(value, feature))
    elif isinstance(value, bool | np.bool_):
        text = "yes" if value else "no"
    elif isinstance(value, numbers.Number):
        text = _format_number(value)
    else:
        text = WHITESPACE.sub(" ", str(value)).strip()
    return f"{text} {feature.unit}" if feature.unit else text


def get_column(row: Mapping[str, Any], column: str, role: str) -> Any:
    """``row[column]``; a :class:`MissingColumnError` naming the column's ``role`` in the spec when absent."""
    try:
        return row[column]
    except KeyError:
        present = sorted(map(str, row.keys())) if hasattr(row, "keys") else "?"
        raise MissingColumnError(
            f"the lead has no column {column!r}, which the FeatureSpec names as its {role}; "
            f"add the column to the table (empty values mean unknown) or remove it from the spec. "
            f"Columns present: {present}"
        ) from None


def render_tabular(row: Mapping[str, Any], spec: FeatureSpec) -> str:
    """The CRM block: one line ``"- {feature.label}: {value}"`` per feature, in spec order.

    Raises
    ------
    MissingColumnError
        (a ``ValueError`` and ``KeyError``) when the row lacks a feature column.
    """
    return "\n".join(f"- {f.label}: {format_value(get_column(row, f.name, 'feature'), f)}" for f in spec.features)
