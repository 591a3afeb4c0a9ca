"""Draft a FeatureSpec from any CRM export, for a person to edit.

Every column gets a kind (flag, number, category) or a reason it is left out. Left out are
columns a model must never read (identity, time, the funnel's outcome columns, ``_``
diagnostics) and, unless the person keeps them, columns that should not be features: constants,
timestamps, personal data (e-mail, phone, names), ids, and leaks (a column that alone predicts
the label almost perfectly, so it is most likely written after the outcome). What a person must
check before training comes back as plain-language warnings.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from sklearn.metrics import roc_auc_score

from leadrank.config import RESERVED_COLUMNS, Feature, FeatureKind, FeatureSpec, FunnelSpec
from leadrank.data.schema import FALSE_WORDS, TRUE_WORDS
from leadrank.errors import ConfigurationError

#: Spellings of a flag (the contract's words, and 1.0 / 0.0 as a number column prints them), as the numbers they stand for.
_FLAGS = {**dict.fromkeys(TRUE_WORDS | {"1.0"}, 1.0), **dict.fromkeys(FALSE_WORDS | {"0.0"}, 0.0)}
#: Cells of a number column that mean "not known" (compared stripped and lower-cased).
_MISSING_WORDS = frozenset({"unknown", "n/a", "", "null", "none", "-"})
_TEXT_MIN_MEAN_CHARS = 80  # a string column this long on average is a conversation, not a category
_MAX_CATEGORY_SHARE = 0.5  # more distinct values than this share of rows looks like an id
_MIN_PATTERN_SHARE = 0.5  # this share of values shaped like e-mail addresses or phone numbers makes a column personal
_LEAK_AUC = 0.95  # a single column predicting the label better than this is known only after the outcome
_EXAMPLES = 3
_PERSONAL_NAME = re.compile(
    r"(^|_)(e_?mail|phone|mobile|telephone|cellphone|surname)(_?(address|number|no|num))?$"
    r"|^((first|last|full|given|family|customer|contact|client|person|user)_?)?name$"
)
_EMAIL = r"[^@\s]+@[^@\s]+\.[^@\s]+"
_PHONE = r"\+?\(?\d[\d\s()-]*\d"


@dataclass(frozen=True)
class SpecDraft:
    """A drafted spec, what a person should check before training, and every column left out and why."""

    spec: FeatureSpec
    warnings: list[str]
    left_out: dict[str, str]


def infer_feature_spec(table: pd.DataFrame, funnel: FunnelSpec, *, keep: Collection[str] = ()) -> SpecDraft:
    """Draft a spec from ``table``: flags become ``bool``, numbers ``numeric``, short strings
    ``categorical``, and the longest free-text column the dialogue.

    ``keep`` names columns to use although they look personal, like an id or like a leak.

    Raises:
        ConfigurationError: ``keep`` names a column the table lacks or one that is never a feature.
    """
    _check_keep(table, funnel, keep)
    left_out: dict[str, str] = {}
    warnings: list[str] = []
    supervision = set(funnel.supervision_columns)
    candidates = []
    for column in table.columns:
        role = _role(column, supervision)
        if role:
            left_out[column] = role
        else:
            candidates.append(column)
    dialogue = _dialogue_column(table, candidates)
    labels = _labels(table, funnel.label_column)
    if labels is None:
        warnings.append(
            f"no rows labelled 0 and 1 in {funnel.label_column!r}: the leak check (a column that alone "
            "predicts the outcome) was skipped; draft again on a labelled export"
        )
    features = []
    for column in candidates:
        if column == dialogue:
            continue
        kind, reason, notes = _draft_column(table[column], kept=column in keep)
        warnings += notes
        if kind is not None and labels is not None and column not in keep:
            leak = _leak(table[column], kind, labels)
            if leak:
                kind, reason = None, leak
                warnings.append(
                    f"left out {column!r}: {leak} ({funnel.label_column!r}); it looks like it is known only after "
                    "the outcome, e.g. a post-call duration or a tag set by sales "
                    f"(if it is known at as_of, keep it: --keep {column})"
                )
        if kind is None:
            left_out[column] = reason
        else:
            features.append(Feature(name=column, kind=kind, description=column.replace("_", " ")))
    spec = FeatureSpec(features=features, dialogue_column=dialogue)
    return SpecDraft(spec=spec, warnings=warnings, left_out=left_out)


def _check_keep(table: pd.DataFrame, funnel: FunnelSpec, keep: Collection[str]) -> None:
    absent = [c for c in keep if c not in table.columns]
    if absent:
        raise ConfigurationError(f"keep: {absent} are not columns of the table; its columns are {list(table.columns)}")
    supervision = set(funnel.supervision_columns)
    never = {c: role for c in keep if (role := _role(c, supervision))}
    if never:
        detail = "; ".join(f"{c!r}: {role}" for c, role in never.items())
        raise ConfigurationError(f"keep names columns that are never features ({detail}); remove them from keep")


def _role(column: str, supervision: set[str]) -> str | None:
    """Why ``column`` can never be a feature, or None."""
    if column in RESERVED_COLUMNS:
        return "identity/time column"
    if column in supervision:
        return "supervision column (outcome after as_of)"
    if column.startswith("_"):
        return "diagnostic column ('_' prefix)"
    return None


def _dialogue_column(table: pd.DataFrame, columns: list[str]) -> str | None:
    if "dialogue" in columns:
        return "dialogue"
    lengths = {
        c: table[c].dropna().astype(str).str.len().mean()
        for c in columns
        if not ptypes.is_numeric_dtype(table[c]) and not ptypes.is_bool_dtype(table[c])
    }
    long_text = {c: n for c, n in lengths.items() if n >= _TEXT_MIN_MEAN_CHARS}
    return max(long_text, key=long_text.__getitem__) if long_text else None


def _draft_column(column: pd.Series, kept: bool) -> tuple[FeatureKind | None, str, list[str]]:
    """The column's kind (None when left out), why it is left out, and warnings for a person."""
    name = str(column.name)
    values = column.dropna()
    if values.empty:
        return None, "no values", []
    if values.nunique() == 1:
        reason = f"constant ({values.iloc[0]!r} in every row with a value)"
        return None, reason, [f"left out {name!r}: {reason}, so it tells no leads apart"]
    if _is_flag(column, values):
        return "bool", "", []
    if ptypes.is_datetime64_any_dtype(column) or (not ptypes.is_numeric_dtype(column) and _looks_like_time(values)):
        return None, "timestamp: derive a number such as days since it, then add that column", []
    if not kept:
        suspect = _personal(name, values) or _identifier(name, column, values)
        if suspect:
            return None, suspect, [f"left out {name!r}: {suspect} (if it is a real feature, keep it: --keep {name})"]
    kind, notes = _number_or_category(name, column, values)
    if kind == "categorical" and not kept and values.nunique() > _MAX_CATEGORY_SHARE * len(values):
        reason = "looks like an identifier (too many distinct values)"
        notes.append(f"left out {name!r}: {reason} (if it is a real feature, keep it: --keep {name})")
        return None, reason, notes
    return kind, "", notes


def _is_flag(column: pd.Series, values: pd.Series) -> bool:
    spellings = set(values.astype(str).str.strip().str.lower().unique())
    return ptypes.is_bool_dtype(column) or (spellings <= _FLAGS.keys() and values.nunique() == 2)


def _looks_like_time(values: pd.Series) -> bool:
    """Text that parses as ISO-8601 dates (how timestamps come back from CSV); plain numbers such as '2019' do not count."""
    text = values.astype(str)
    dates = pd.to_datetime(text, format="ISO8601", errors="coerce").notna() & pd.to_numeric(text, errors="coerce").isna()
    return bool(dates.mean() >= 0.95)


def _personal(name: str, values: pd.Series) -> str | None:
    """Why the column looks like personal data (by its name, or by values shaped like e-mail or phone), or None."""
    words = re.sub(r"[^a-z0-9]+", "_", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()).strip("_")
    if _PERSONAL_NAME.search(words):
        return "personal data (the name says e-mail, phone or a person's name)"
    if ptypes.is_numeric_dtype(values):
        return None
    text = values.astype(str).str.strip()
    if text.str.fullmatch(_EMAIL).mean() >= _MIN_PATTERN_SHARE:
        return "personal data (e-mail addresses)"
    phone = text.str.fullmatch(_PHONE) & text.str.count(r"\d").between(7, 15) & text.str.contains(r"[+\s()-]")
    if phone.mean() >= _MIN_PATTERN_SHARE:
        return "personal data (phone numbers)"
    return None


def _identifier(name: str, column: pd.Series, values: pd.Series) -> str | None:
    """Why the column looks like an id (by an ``_id`` name, or a different whole number in every row), or None."""
    if name.endswith("_id"):
        return "identifier column ('_id' suffix)"
    whole = ptypes.is_integer_dtype(column) or (ptypes.is_float_dtype(column) and bool((values % 1 == 0).all()))
    if not whole or len(values) < len(column) or not values.is_unique:
        return None
    for start in (0, 1):
        if values.min() == start and values.max() == start + len(values) - 1:
            return f"identifier (counts the rows {start}..{start + len(values) - 1}, like a row number)"
    return "identifier (a different whole number in every row)"


def _number_or_category(name: str, column: pd.Series, values: pd.Series) -> tuple[FeatureKind, list[str]]:
    """``numeric`` when every value is a number or a missing word ('unknown', 'n/a', ...); else ``categorical``.

    Warns where missing words are read as missing, and where most values are numbers but some
    are other words (the column cannot be numeric until those cells are fixed).
    """
    if ptypes.is_numeric_dtype(column):
        return "numeric", []
    numbers = pd.to_numeric(values, errors="coerce")
    words = values[numbers.isna()]
    missing = words.astype(str).str.strip().str.lower().isin(_MISSING_WORDS)
    others = words[~missing]
    n_numbers = int(numbers.notna().sum())
    if n_numbers == 0:
        return "categorical", []
    if others.empty:
        notes = []
        if missing.any():
            spelled = ", ".join(repr(w) for w in words.unique()[:_EXAMPLES])
            notes.append(
                f"{name!r}: {int(missing.sum()):,} of {len(values):,} values are words for 'unknown' ({spelled}); "
                "drafted as numeric with those cells read as missing: leave them empty in the table"
            )
        return "numeric", notes
    if n_numbers < len(others):
        return "categorical", []
    examples = ", ".join(repr(w) for w in others.unique()[:_EXAMPLES])
    return "categorical", [
        f"{name!r}: {n_numbers:,} of {len(values):,} values are numbers but {len(others):,} are not (e.g. {examples}), "
        "so it is not drafted as numeric; fix those cells (or leave them empty) and draft again"
    ]


def _labels(table: pd.DataFrame, label_column: str) -> np.ndarray | None:
    """The label as 1.0 / 0.0 (NaN where unlabelled), or None when the table holds no two classes."""
    if label_column not in table.columns:
        return None
    labels = _as_flags(table[label_column])
    return labels if len(np.unique(labels[~np.isnan(labels)])) == 2 else None


def _as_flags(column: pd.Series) -> np.ndarray:
    return column.astype("string").str.strip().str.lower().map(_FLAGS).to_numpy(dtype=float, na_value=np.nan)


def _leak(column: pd.Series, kind: str, labels: np.ndarray) -> str | None:
    """Why the column looks like a leak (it alone ranks the labelled rows almost perfectly), or None."""
    auc = _leak_auc(column, kind, labels)
    return f"leak: alone it predicts the label with AUC {auc:.3f}" if auc is not None and auc > _LEAK_AUC else None


def _leak_auc(column: pd.Series, kind: str, labels: np.ndarray) -> float | None:
    """How well the column alone ranks the labelled rows (AUC, 0.5 to 1), or None without two classes.

    Numbers and flags are scored as they are, in whichever direction fits; categories by
    their leave-one-out label mean, so a category seen once or twice cannot predict itself.
    """
    if kind == "categorical":
        scores, either_direction = _target_mean(column, labels), False
    elif kind == "bool":
        scores, either_direction = _as_flags(column), True
    else:
        scores, either_direction = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan), True
    known = ~np.isnan(labels) & ~np.isnan(scores)
    if len(np.unique(labels[known])) < 2:
        return None
    auc = float(roc_auc_score(labels[known], scores[known]))
    return max(auc, 1.0 - auc) if either_direction else auc


def _target_mean(column: pd.Series, labels: np.ndarray) -> np.ndarray:
    """Each row's label mean over the other labelled rows of its category (the overall mean for a category seen once)."""
    frame = pd.DataFrame({"category": column.to_numpy(dtype=object), "label": labels})
    groups = frame.groupby("category", sort=False)["label"]
    sums, counts = groups.transform("sum").to_numpy(dtype=float), groups.transform("count").to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        others = (sums - labels) / (counts - 1)
    scores = np.where(counts > 1, others, np.nanmean(labels))
    return np.where(column.isna().to_numpy(), np.nan, scores)
