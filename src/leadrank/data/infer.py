"""Draft a FeatureSpec from any CRM export, for a person to edit."""

from __future__ import annotations

import pandas as pd
from pandas.api import types as ptypes

from leadrank.config import RESERVED_COLUMNS, Feature, FeatureSpec, FunnelSpec

_BOOL_VALUES = {"true", "false", "yes", "no", "0", "1", "0.0", "1.0"}
_TEXT_MIN_MEAN_CHARS = 80  # a string column this long on average is a conversation, not a category
_MAX_CATEGORY_SHARE = 0.5  # more distinct values than this share of rows looks like an id


def infer_feature_spec(table: pd.DataFrame, funnel: FunnelSpec) -> tuple[FeatureSpec, dict[str, str]]:
    """Return a draft spec and, for every column left out, why.

    Identity, time, supervision (label, stage, rule columns) and ``_``-prefixed columns are
    never features. Flags become ``bool``, numbers ``numeric``, short strings ``categorical``;
    the longest free-text column becomes the dialogue.
    """
    skipped: dict[str, str] = {}
    supervision = set(funnel.supervision_columns)
    candidates = []
    for column in table.columns:
        if column in RESERVED_COLUMNS:
            skipped[column] = "identity/time column"
        elif column in supervision:
            skipped[column] = "supervision column (outcome after as_of)"
        elif column.startswith("_"):
            skipped[column] = "diagnostic column ('_' prefix)"
        else:
            candidates.append(column)
    dialogue = _dialogue_column(table, candidates)
    features = []
    for column in candidates:
        if column == dialogue:
            continue
        kind, reason = _kind(table[column])
        if kind is None:
            skipped[column] = reason
        else:
            features.append(Feature(name=column, kind=kind, description=column.replace("_", " ")))
    return FeatureSpec(features=features, dialogue_column=dialogue), skipped


def _dialogue_column(table: pd.DataFrame, columns: list[str]) -> str | None:
    if "dialogue" in columns:
        return "dialogue"
    lengths = {
        c: table[c].dropna().astype(str).str.len().mean()
        for c in columns
        if not ptypes.is_numeric_dtype(table[c]) and not ptypes.is_bool_dtype(table[c])
    }
    long_text = {c: n for c, n in lengths.items() if n >= _TEXT_MIN_MEAN_CHARS}
    return max(long_text, key=long_text.get) if long_text else None


def _kind(column: pd.Series) -> tuple[str | None, str]:
    values = column.dropna()
    if values.empty:
        return None, "no values"
    if ptypes.is_bool_dtype(column) or set(values.astype(str).str.strip().str.lower().unique()) <= _BOOL_VALUES and values.nunique() == 2:
        return "bool", ""
    if str(column.name).endswith("_id"):
        return None, "identifier column ('_id' suffix)"
    if ptypes.is_numeric_dtype(column):
        return "numeric", ""
    if ptypes.is_datetime64_any_dtype(column) or _looks_like_time(values):
        return None, "timestamp: derive a number such as days since it, then add that column"
    if values.nunique() > _MAX_CATEGORY_SHARE * len(values):
        return None, "looks like an identifier (too many distinct values)"
    return "categorical", ""


def _looks_like_time(values: pd.Series) -> bool:
    """Text that parses as ISO-8601 dates (how timestamps come back from CSV)."""
    parsed = pd.to_datetime(values.astype(str), format="ISO8601", errors="coerce")
    return bool(parsed.notna().mean() >= 0.95)
