"""The lead-table contract and its validation.

One row is one lead as seen at ``as_of`` (see the data contract in the design notes):

========================  ===============================================================
``lead_id``               identity; no missing values, unique (text or integers)
``as_of``                 snapshot time; parseable timestamps, no missing values
numeric features          numbers (or text that parses as a number); gaps allowed, not +/-inf
bool features             true/false, 1/0, yes/no (any case); gaps allowed
categorical features      anything; gaps allowed
dialogue column           text, may be empty; a missing value is an error
``label``                 0/1, no gaps (training tables only)
stage column              one of ``FunnelSpec.stages`` (training tables only)
tier-rule columns         e.g. ``call_duration_s``; numbers when the rules compare numbers
========================  ===============================================================

Validation never stops at the first problem and never changes the data: every problem is
collected into one :class:`LeadDataError`, and :func:`split_valid` hands back the original
rows untouched. Problems come in two kinds:

* **table problems** (an empty table, a missing or repeated column, a supervision column
  listed as a feature) that dropping rows cannot fix, and
* **row problems** (a value that breaks the contract), which :func:`invalid_rows` and
  :func:`split_valid` attribute to single rows.

Row numbers everywhere are **0-based positions** in the table, as in ``DataFrame.iloc``
(not index labels; for a CSV with a header line, row ``r`` is on line ``r + 2``).

Example
-------
>>> from leadrank.config import FeatureSpec, FunnelSpec
>>> features, funnel = FeatureSpec.nev_default(), FunnelSpec.paper_default()
>>> validate(table, features, funnel)  # doctest: +SKIP
>>> valid, rejected = split_valid(table, features, funnel)  # doctest: +SKIP
>>> rejected["_reason"].head()  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from numbers import Real

import numpy as np
import pandas as pd

from leadrank.config import ID_COLUMN, TIME_COLUMN, FeatureSpec, FunnelSpec

__all__ = ["REASON_COLUMN", "LeadDataError", "Problem", "invalid_rows", "split_valid", "validate"]

#: Column that :func:`split_valid` adds to the rejected rows.
REASON_COLUMN = "_reason"

_SHOW = 5  # rows, ids and sample values shown per problem before "+N more"
_BOOL_WORDS = frozenset({"true", "false", "yes", "no"})
_NO_LABELS_FIX = "or, when the table has no outcomes yet (e.g. for scoring), pass require_labels=False (CLI: --no-labels)"


# --------------------------------------------------------------------------------------
# Public types
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One way a lead table breaks the contract.

    Attributes
    ----------
    column : str or None
        The column at fault; ``None`` for problems of the whole table.
    message : str
        What we found, e.g. ``"2 values are not numbers: 'abc', 'n/a'"``.
    fix : str
        What to do about it.
    rows : tuple of int
        0-based positions (``iloc``) of the affected rows; empty for table problems.
    lead_ids : tuple of str
        ``lead_id`` of the affected rows (distinct, in row order; rows without an id are skipped).
    """

    column: str | None
    message: str
    fix: str
    rows: tuple[int, ...] = ()
    lead_ids: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """The problem as text lines: headline, rows, lead ids, fix."""
        where = f"column {self.column!r}" if self.column is not None else "table"
        lines = [f"{where}: {self.message}"]
        if self.rows:
            lines.append(f"rows (0-based): {_shorten([str(r) for r in self.rows])}")
        if self.lead_ids:
            lines.append(f"lead_ids: {_shorten([repr(i) for i in self.lead_ids])}")
        lines.append(f"fix: {self.fix}")
        return lines

    def __str__(self) -> str:
        return "\n  ".join(self.lines())


class LeadDataError(ValueError):
    """A lead table that breaks the contract; ``.problems`` lists every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__(self._render())

    def _render(self) -> str:
        count = len(self.problems)
        lines = [f"{count} problem(s) in the lead table (row numbers are 0-based positions, as in DataFrame.iloc):"]
        for number, problem in enumerate(self.problems, start=1):
            head, *rest = problem.lines()
            prefix = f"{number}. "
            lines.append(prefix + head)
            lines += [" " * len(prefix) + line for line in rest]
        return "\n".join(lines)

    def __reduce__(self) -> tuple[type[LeadDataError], tuple[list[Problem]]]:
        return (type(self), (self.problems,))


# --------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------


def validate(table: pd.DataFrame, features: FeatureSpec, funnel: FunnelSpec, *, require_labels: bool = True) -> None:
    """Check ``table`` against the lead-table contract; raise once, listing every problem.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per lead. Not modified.
    features : FeatureSpec
        The columns a model reads; each must be present and of its declared kind.
    funnel : FunnelSpec
        Stages and tier rules; says which supervision columns exist.
    require_labels : bool, default=True
        Require the label, the stage column and every column a tier rule reads (training).
        With ``False`` (scoring) they may be absent, but are still checked when present.

    Raises
    ------
    LeadDataError
        With one :class:`Problem` per missing column, leaking feature and kind of bad value.
    """
    problems = _inspect(table, features, funnel, require_labels=require_labels).problems()
    if problems:
        raise LeadDataError(problems)


def invalid_rows(
    table: pd.DataFrame, features: FeatureSpec, funnel: FunnelSpec, *, require_labels: bool = True
) -> tuple[pd.Series, list[Problem]]:
    """Say which rows break the contract and why, without raising.

    Returns
    -------
    reasons : pandas.Series of str
        Aligned with ``table.index``: ``""`` for a valid row, otherwise its reasons joined
        with ``"; "``. Of rows sharing a ``lead_id`` the first is valid, later ones are not.
    table_problems : list of Problem
        Problems of the whole table (empty table, missing or repeated column, leaking
        feature) that dropping rows cannot fix.
    """
    findings = _inspect(table, features, funnel, require_labels=require_labels)
    return findings.reasons(table.index), list(findings.table_problems)


def split_valid(
    table: pd.DataFrame, features: FeatureSpec, funnel: FunnelSpec, *, require_labels: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``table`` into the rows that satisfy the contract and those that do not.

    Nothing is coerced: ``valid`` holds the original rows unchanged (same index, columns and
    dtypes); ``rejected`` holds the other rows plus a ``_reason`` column (an existing
    ``_reason`` column is replaced there). ``len(valid) + len(rejected) == len(table)``.

    Raises
    ------
    LeadDataError
        If the table has table problems (which no choice of rows fixes); the error lists
        the row problems too.
    """
    findings = _inspect(table, features, funnel, require_labels=require_labels)
    if findings.table_problems:
        raise LeadDataError(findings.problems())
    reasons = findings.reasons(table.index)
    bad = (reasons != "").to_numpy(dtype=bool)
    valid = table[~bad]
    rejected = table[bad].copy()
    rejected[REASON_COLUMN] = reasons[bad].to_numpy(dtype=object)
    return valid, rejected


# --------------------------------------------------------------------------------------
# The checks (one pass, shared by validate / invalid_rows / split_valid)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RowCheck:
    """One row problem: which rows, a per-row reason, and the summary for the error."""

    column: str
    rows: np.ndarray  # 0-based positions, ascending
    reasons: list[str]  # aligned with rows
    message: str
    fix: str


@dataclass
class _Findings:
    table_problems: list[Problem] = field(default_factory=list)
    row_checks: list[_RowCheck] = field(default_factory=list)
    ids: np.ndarray | None = None  # raw lead_id values, when the column is usable

    def problems(self) -> list[Problem]:
        return self.table_problems + [self._problem(check) for check in self.row_checks]

    def _problem(self, check: _RowCheck) -> Problem:
        lead_ids: list[str] = []
        if self.ids is not None:
            for row in check.rows:
                value = self.ids[row]
                if not _is_missing(value):
                    lead_ids.append(str(value))
        return Problem(
            column=check.column,
            message=check.message,
            fix=check.fix,
            rows=tuple(int(r) for r in check.rows),
            lead_ids=tuple(dict.fromkeys(lead_ids)),
        )

    def reasons(self, index: pd.Index) -> pd.Series:
        per_row: list[list[str]] = [[] for _ in range(len(index))]
        for check in self.row_checks:
            for row, reason in zip(check.rows, check.reasons, strict=True):
                per_row[row].append(reason)
        return pd.Series(["; ".join(r) for r in per_row], index=index, name=REASON_COLUMN, dtype=object)


def _inspect(table: pd.DataFrame, features: FeatureSpec, funnel: FunnelSpec, *, require_labels: bool) -> _Findings:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame of leads, got {type(table).__name__}")
    findings = _Findings()
    problems, checks = findings.table_problems, findings.row_checks
    present = [str(c) for c in table.columns]
    counts = pd.Series(present, dtype=object).value_counts(sort=False)
    repeated = {name: int(n) for name, n in counts.items() if n > 1}

    def column(name: str) -> np.ndarray | None:
        """Raw values of a usable column (present exactly once), else None."""
        if name not in counts.index or name in repeated:
            return None
        return table.iloc[:, present.index(name)].to_numpy(dtype=object)

    def series(name: str) -> pd.Series:
        return table.iloc[:, present.index(name)]

    # ---- table problems -------------------------------------------------------------
    if len(table) == 0:
        problems.append(
            Problem(None, "the table has no rows", "pass a table with at least one lead (check the file and any filters)")
        )
    for name, n in repeated.items():
        problems.append(
            Problem(name, f"the column appears {n} times", "rename or drop the repeated columns so each name appears once")
        )
    for name, role, fix in _required_columns(features, funnel, require_labels=require_labels):
        if name not in counts.index:
            problems.append(Problem(name, f"the column is missing ({role})", fix + _did_you_mean(name, present)))
    supervision = set(funnel.supervision_columns)
    for name in features.input_columns:
        if name in supervision:
            problems.append(
                Problem(
                    name,
                    "a supervision column (label, stage or read by a tier rule) is listed as a model input: "
                    "it would leak the outcome into the model",
                    f"remove {name!r} from the FeatureSpec (supervision columns are never inputs)",
                )
            )
        elif name.startswith("_"):
            problems.append(
                Problem(
                    name,
                    "a diagnostics column (name starts with '_') is listed as a model input",
                    f"remove {name!r} from the FeatureSpec (columns starting with '_' are never inputs)",
                )
            )

    # ---- row problems ---------------------------------------------------------------
    ids = column(ID_COLUMN)
    findings.ids = ids
    if ids is not None:
        checks += _check_lead_id(ids)
    if (values := column(TIME_COLUMN)) is not None:
        checks += _check_as_of(series(TIME_COLUMN), values)
    for feature in features.features:
        if (values := column(feature.name)) is None:
            continue
        if feature.kind == "numeric":
            checks += _check_numeric(series(feature.name), values, feature.name)
        elif feature.kind == "bool":
            checks += _check_bool(series(feature.name), values, feature.name)
    if features.dialogue_column and (values := column(features.dialogue_column)) is not None:
        checks += _check_dialogue(values, features.dialogue_column)
    if (values := column(funnel.label_column)) is not None:
        checks += _check_label(series(funnel.label_column), values, funnel.label_column)
    if (values := column(funnel.stage_column)) is not None:
        checks += _check_stage(values, funnel)
    for name in _numeric_rule_columns(funnel):
        if (values := column(name)) is not None:
            checks += _check_numeric(series(name), values, name)
    return findings


def _required_columns(
    features: FeatureSpec, funnel: FunnelSpec, *, require_labels: bool
) -> list[tuple[str, str, str]]:
    """(column, role, fix) for every column the table must have, without repeats."""
    spec_fix = (
        "add the column, or pass a FeatureSpec without it "
        "(draft one with `leadrank spec infer DATA --out features.yaml`)"
    )
    required: list[tuple[str, str, str]] = [
        (ID_COLUMN, "every lead table needs it", "add the column (rename yours if it has another name)"),
        (TIME_COLUMN, "every lead table needs it", "add the column (rename yours if it has another name)"),
    ]
    required += [(f.name, f"{f.kind} feature in the FeatureSpec", spec_fix) for f in features.features]
    if features.dialogue_column:
        required.append((features.dialogue_column, "dialogue column of the FeatureSpec", spec_fix))
    if require_labels:
        required.append((funnel.label_column, "label of the FunnelSpec", f"add the column, {_NO_LABELS_FIX}"))
        required.append((funnel.stage_column, "stage column of the FunnelSpec", f"add the column, {_NO_LABELS_FIX}"))
        for name in funnel.supervision_columns:
            if name not in (funnel.label_column, funnel.stage_column):
                required.append(
                    (
                        name,
                        "read by a tier rule of the FunnelSpec",
                        f"add the column, use a FunnelSpec whose tiers do not read it, {_NO_LABELS_FIX}",
                    )
                )
    seen: set[str] = set()
    unique = []
    for entry in required:
        if entry[0] not in seen:
            seen.add(entry[0])
            unique.append(entry)
    return unique


def _numeric_rule_columns(funnel: FunnelSpec) -> list[str]:
    """Tier-rule columns (besides label and stage) that the rules only compare with numbers."""
    constants: dict[str, list[object]] = {}
    for tier in funnel.tiers:
        for side in ("winner", "loser"):
            for name, values in funnel.rule(tier, side).constants.items():
                constants.setdefault(name, []).extend(values)
    skip = {funnel.label_column, funnel.stage_column}
    return [
        name
        for name in funnel.supervision_columns
        if name not in skip and constants.get(name) and all(_is_number(v) for v in constants[name])
    ]


# ---- one function per kind of column ---------------------------------------------------


def _check_lead_id(ids: np.ndarray) -> list[_RowCheck]:
    missing = pd.isna(ids)
    checks = _flag_missing(
        missing, ID_COLUMN, "give every lead an id; split_valid() separates the rows without one"
    )
    first_seen: dict[object, int] = {}
    dup_rows: list[int] = []
    dup_reasons: list[str] = []
    groups: dict[object, list[int]] = {}
    for row, value in enumerate(ids):
        if missing[row]:
            continue
        key = _hashable(value)
        if key in first_seen:
            dup_rows.append(row)
            dup_reasons.append(f"duplicate lead_id {value!r}, first seen at row {first_seen[key]}")
            groups.setdefault(key, [first_seen[key]]).append(row)
        else:
            first_seen[key] = row
    if dup_rows:
        shown = [f"{ids[rows[0]]!r} at rows {', '.join(map(str, rows))}" for rows in list(groups.values())[:_SHOW]]
        more = f" (+{len(groups) - _SHOW} more)" if len(groups) > _SHOW else ""
        checks.append(
            _RowCheck(
                ID_COLUMN,
                np.asarray(dup_rows),
                dup_reasons,
                f"{_count(len(groups), 'lead_id appears', 'lead_ids appear')} more than once: {'; '.join(shown)}{more} "
                f"({_count(len(dup_rows), 'later row')} flagged; the first row of each id counts as valid)",
                "keep one row per lead: deduplicate on 'lead_id' (e.g. keep the latest as_of) "
                "or give distinct leads distinct ids",
            )
        )
    return checks


def _check_as_of(series: pd.Series, values: np.ndarray) -> list[_RowCheck]:
    missing = _blank(values)
    checks = _flag_missing(missing, TIME_COLUMN, "give every lead the time its snapshot was taken")
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return checks
    # Fast pass over the whole column, then the per-value verdict on the rows it could not parse.
    try:
        parsed = pd.to_datetime(pd.Series(values, dtype=object), errors="coerce", format="mixed", utc=True)
        candidates = parsed.isna().to_numpy(dtype=bool) & ~missing
    except (TypeError, ValueError, OverflowError):
        candidates = ~missing
    unparsed = np.zeros(len(values), dtype=bool)
    for row in np.flatnonzero(candidates):
        unparsed[row] = not _parses_as_time(values[row])
    checks += _flag_values(
        values,
        unparsed,
        TIME_COLUMN,
        "not a timestamp",
        "not timestamps",
        "store as_of as ISO-8601 timestamps such as '2024-03-01' or '2024-03-01T09:30:00'",
    )
    return checks


def _check_numeric(series: pd.Series, values: np.ndarray, name: str) -> list[_RowCheck]:
    if pd.api.types.is_bool_dtype(series.dtype):
        return []
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_complex_dtype(series.dtype):
        numbers = series.to_numpy(dtype=float, na_value=np.nan)
        not_number = np.zeros(len(values), dtype=bool)
    else:
        blank = _blank(values)
        try:
            converted = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
        except (TypeError, ValueError):
            converted = None
        if converted is not None and converted.dtype.kind in "iufb":
            numbers = converted.to_numpy(dtype=float, na_value=np.nan)
        else:  # complex or odd objects: decide value by value
            numbers = np.array([_to_float(v) for v in values], dtype=float)
        not_number = np.isnan(numbers) & ~blank
    checks = _flag_values(
        values,
        not_number,
        name,
        "not a number",
        "not numbers",
        f"store plain numbers in {name!r} (no units or words such as 'n/a'); leave unknown values empty",
    )
    infinite = np.isinf(numbers)
    if infinite.any():
        rows = np.flatnonzero(infinite)
        checks.append(
            _RowCheck(
                name,
                rows,
                [f"{name} is infinite ({values[r]!r})" for r in rows],
                f"{_count(len(rows), 'value is', 'values are')} infinite",
                f"replace +/-inf in {name!r} with a finite number, or leave the cell empty if it is unknown",
            )
        )
    return checks


def _check_bool(series: pd.Series, values: np.ndarray, name: str) -> list[_RowCheck]:
    if pd.api.types.is_bool_dtype(series.dtype):
        return []
    bad = _flag(values, lambda v: not (_is_missing(v) or _is_bool_value(v)))
    return _flag_values(
        values,
        bad,
        name,
        "not true/false",
        "not true/false",
        f"use true/false, yes/no or 1/0 in {name!r} and leave unknown values empty, "
        "or declare the feature as categorical in the FeatureSpec",
    )


def _check_dialogue(values: np.ndarray, name: str) -> list[_RowCheck]:
    missing = pd.isna(values)
    checks = _flag_missing(missing, name, "use an empty string for leads without conversation")
    not_text = _flag(values, lambda v: not isinstance(v, str)) & ~missing
    checks += _flag_values(
        values, not_text, name, "not text", "not text", f"store the transcript and notes in {name!r} as text"
    )
    return checks


def _check_label(series: pd.Series, values: np.ndarray, name: str) -> list[_RowCheck]:
    missing = pd.isna(values)
    checks = _flag_missing(
        missing,
        name,
        f"give every lead its outcome (1 = order locked in the horizon, 0 = not); "
        f"split_valid() separates the rows without one, {_NO_LABELS_FIX}",
    )
    if pd.api.types.is_bool_dtype(series.dtype):
        return checks
    bad = _flag(values, lambda v: not _is_label_value(v)) & ~missing
    checks += _flag_values(
        values,
        bad,
        name,
        "not 0/1",
        "not 0/1",
        f"store {name!r} as 1 (order locked within the horizon) or 0 (not), as numbers or booleans",
    )
    return checks


def _check_stage(values: np.ndarray, funnel: FunnelSpec) -> list[_RowCheck]:
    name = funnel.stage_column
    missing = pd.isna(values)
    checks = _flag_missing(
        missing, name, f"give every lead the furthest stage it reached, one of {funnel.stages}; {_NO_LABELS_FIX}"
    )
    stages = set(funnel.stages)
    unknown = _flag(values, lambda v: not _in(v, stages)) & ~missing
    if unknown.any():
        rows = np.flatnonzero(unknown)
        tally = pd.Series([repr(values[r]) for r in rows], dtype=object).value_counts(sort=True)
        shown = ", ".join(f"{value} ({n}x)" for value, n in list(tally.items())[:_SHOW])
        more = f" (+{len(tally) - _SHOW} more)" if len(tally) > _SHOW else ""
        checks.append(
            _RowCheck(
                name,
                rows,
                [f"{name} {values[r]!r} is not a stage of the funnel" for r in rows],
                f"{_count(len(rows), 'value is', 'values are')} not a stage of the funnel: {shown}{more}; "
                f"allowed: {funnel.stages}",
                f"use one of {funnel.stages} (the spelling must match), or add the stage to the FunnelSpec's stages",
            )
        )
    return checks


# ---- helpers ---------------------------------------------------------------------------


def _flag(values: np.ndarray, predicate: Callable[[object], bool]) -> np.ndarray:
    return np.fromiter((predicate(v) for v in values), dtype=bool, count=len(values))


def _flag_missing(missing: np.ndarray, name: str, fix: str) -> list[_RowCheck]:
    if not missing.any():
        return []
    rows = np.flatnonzero(missing)
    return [
        _RowCheck(name, rows, [f"{name} is missing"] * len(rows), f"{_count(len(rows), 'value is', 'values are')} missing", fix)
    ]


def _flag_values(
    values: np.ndarray, bad: np.ndarray, name: str, what_one: str, what_many: str, fix: str
) -> list[_RowCheck]:
    """A check naming the bad raw values: ``"3 values are not numbers: 'abc', 'n/a'"``."""
    if not bad.any():
        return []
    rows = np.flatnonzero(bad)
    samples = list(dict.fromkeys(_short_repr(values[r]) for r in rows))
    message = f"{len(rows)} {'value is ' + what_one if len(rows) == 1 else 'values are ' + what_many}: {_shorten(samples)}"
    return [_RowCheck(name, rows, [f"{name} is {what_one}: {_short_repr(values[r])}" for r in rows], message, fix)]


def _shorten(items: Sequence[str], limit: int = _SHOW) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def _short_repr(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _did_you_mean(name: str, present: Iterable[str]) -> str:
    lowered = {c.lower(): c for c in present}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.75)
    return f" (did you mean {', '.join(repr(lowered[c]) for c in close)}?)" if close else ""


def _is_missing(value: object) -> bool:
    try:
        result = pd.isna(value)
    except (TypeError, ValueError):
        return False
    return bool(result) if isinstance(result, (bool, np.bool_)) else False


def _blank(values: np.ndarray) -> np.ndarray:
    """Missing values and whitespace-only strings (what a CSV cell with nothing in it means)."""
    return pd.isna(values) | _flag(values, lambda v: isinstance(v, str) and not v.strip())


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, (bool, np.bool_))


def _to_float(value: object) -> float:
    """``value`` as a float, NaN when it is not a real number (text is parsed like pd.to_numeric)."""
    if isinstance(value, (bool, np.bool_)) or _is_number(value):
        return float(value)  # type: ignore[arg-type]
    if isinstance(value, str):
        try:
            return float(pd.to_numeric(value))
        except (TypeError, ValueError, OverflowError):
            return math.nan
    return math.nan


def _parses_as_time(value: object) -> bool:
    try:
        return not _is_missing(pd.to_datetime(value, errors="coerce"))
    except (TypeError, ValueError, OverflowError):
        return False


def _is_bool_value(value: object) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return True
    if isinstance(value, str):
        return value.lower() in _BOOL_WORDS
    return _is_number(value) and value in (0, 1)


def _is_label_value(value: object) -> bool:
    return isinstance(value, (bool, np.bool_)) or (_is_number(value) and value in (0, 1))


def _in(value: object, allowed: set[str]) -> bool:
    try:
        return value in allowed
    except TypeError:  # unhashable
        return False


def _hashable(value: object) -> object:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value
