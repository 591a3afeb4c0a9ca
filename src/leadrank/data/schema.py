"""The lead-table contract and its validation.

One row is one lead as seen at ``as_of`` (see the data contract in the design notes). The
FeatureSpec is the truth: a value must already be of the declared kind, nothing is coerced.

========================  ===============================================================
``lead_id``               identity; no missing values, unique (text or integers)
``as_of``                 snapshot time: ISO 8601 text or datetimes, no missing values;
                          naive and UTC-offset values mix only with ``timezone=``
numeric features          numbers (not text such as ``'42'``, not booleans); gaps allowed,
                          not +/-inf, within the feature's ``min``/``max`` when it has them
bool features             the boolean vocabulary (:data:`TRUE_WORDS`, :data:`FALSE_WORDS`,
                          booleans, 0/1); gaps allowed
categorical features      anything; gaps allowed
dialogue column           text, may be empty; a missing value is an error
``label``                 the boolean vocabulary, no gaps (training tables only)
stage column              one of ``FunnelSpec.stages`` (training tables only)
tier-rule columns         e.g. ``call_duration_s``; numbers when the rules compare numbers
                          (training tables only)
========================  ===============================================================

With ``require_labels=False`` (scoring) the label, stage and tier-rule columns are neither
required nor read.

Validation never stops at the first problem and never changes the data: every problem is
collected into one :class:`LeadDataError`, and :func:`split_valid` hands back the original
rows untouched. Problems come in two kinds:

* **table problems** (an empty table, a missing or repeated column, a supervision column
  listed as a feature, an ``as_of`` mixing naive and offset times) that dropping rows
  cannot fix, and
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
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from numbers import Real
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from leadrank.config import ID_COLUMN, TIER_SIDES, TIME_COLUMN, FeatureSpec, FunnelSpec
from leadrank.errors import ConfigurationError, DataContractError

__all__ = [
    "FALSE_WORDS",
    "MISSING_WORDS",
    "REASON_COLUMN",
    "TRUE_WORDS",
    "LeadDataError",
    "Problem",
    "bool_value",
    "invalid_rows",
    "is_missing",
    "parse_as_of",
    "split_valid",
    "validate",
]

#: Column that :func:`split_valid` adds to the rejected rows.
REASON_COLUMN = "_reason"

# The contract's vocabularies (see bool_value and is_missing).
#: Text meaning true, compared after stripping surrounding spaces, in any case.
TRUE_WORDS = frozenset({"true", "yes", "1"})
#: Text meaning false, compared like TRUE_WORDS.
FALSE_WORDS = frozenset({"false", "no", "0"})
#: Text that a text file (CSV) uses for "no value": pandas' default ``na_values``, exact
#: spelling. Readers turn these cells into missing values in every column but the dialogue
#: (there ``'NA'`` is a word); the validator then sees them as missing.
MISSING_WORDS = frozenset(
    {
        "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
        "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
    }
)  # fmt: skip

_SHOW = 5  # rows, ids and sample values shown per problem before "+N more"
_NO_LABELS_FIX = "or, when the table has no outcomes yet (e.g. for scoring), pass require_labels=False (CLI: --no-labels)"
_BOOL_SPELLINGS = "true/false, yes/no or 1/0 (any case), or booleans"
_TIMEZONE_FIX = "timezone='Asia/Shanghai' (CLI: --timezone Asia/Shanghai)"

# What a cell of a numeric column holds.
_NUMBER, _BOOLEAN, _TEXT_NUMBER, _NOT_NUMBER, _NO_NUMBER = range(5)
# What a cell of the as_of column holds.
_NO_TIME, _NAIVE, _AWARE, _NOT_TIME = range(4)


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


class LeadDataError(DataContractError):
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


def validate(
    table: pd.DataFrame,
    features: FeatureSpec,
    funnel: FunnelSpec,
    *,
    require_labels: bool = True,
    timezone: str | None = None,
) -> None:
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
        Require and check the label, the stage column and every column a tier rule reads
        (training). With ``False`` (scoring) they are neither required nor read.
    timezone : str, optional
        IANA name of the zone naive ``as_of`` values were recorded in (e.g. ``'Asia/Shanghai'``);
        needed only when ``as_of`` mixes naive values and values with a UTC offset
        (see :func:`parse_as_of`).

    Raises
    ------
    LeadDataError
        With one :class:`Problem` per missing column, leaking feature and kind of bad value.
    ConfigurationError
        ``timezone`` is not a known time zone.
    """
    problems = _inspect(table, features, funnel, require_labels=require_labels, timezone=timezone).problems()
    if problems:
        raise LeadDataError(problems)


def invalid_rows(
    table: pd.DataFrame,
    features: FeatureSpec,
    funnel: FunnelSpec,
    *,
    require_labels: bool = True,
    timezone: str | None = None,
) -> tuple[pd.Series, list[Problem]]:
    """Say which rows break the contract and why, without raising (arguments as for :func:`validate`).

    Returns
    -------
    reasons : pandas.Series of str
        Aligned with ``table.index``: ``""`` for a valid row, otherwise its reasons joined
        with ``"; "``. Of rows sharing a ``lead_id`` the first is valid, later ones are not.
    table_problems : list of Problem
        Problems of the whole table (empty table, missing or repeated column, leaking
        feature, mixed time zones) that dropping rows cannot fix.
    """
    findings = _inspect(table, features, funnel, require_labels=require_labels, timezone=timezone)
    return findings.reasons(table.index), list(findings.table_problems)


def split_valid(
    table: pd.DataFrame,
    features: FeatureSpec,
    funnel: FunnelSpec,
    *,
    require_labels: bool = True,
    timezone: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``table`` into the rows that satisfy the contract and those that do not.

    Nothing is coerced: ``valid`` holds the original rows unchanged (same index, columns and
    dtypes), but for a CSV table (:func:`is_text_source`), whose every cell is text, a declared
    numeric column of the valid rows holds the numbers its cells wrote; ``rejected`` holds the
    other rows plus a ``_reason`` column (an existing ``_reason`` column is replaced there).
    ``len(valid) + len(rejected) == len(table)``.
    Arguments as for :func:`validate`.

    Raises
    ------
    LeadDataError
        If the table has table problems (which no choice of rows fixes); the error lists
        the row problems too.
    """
    findings = _inspect(table, features, funnel, require_labels=require_labels, timezone=timezone)
    if findings.table_problems:
        raise LeadDataError(findings.problems())
    reasons = findings.reasons(table.index)
    bad = (reasons != "").to_numpy(dtype=bool)
    valid = _numbers_from_text(table[~bad], features, funnel) if is_text_source(table) else table[~bad]
    rejected = table[bad].copy()
    rejected[REASON_COLUMN] = reasons[bad].to_numpy(dtype=object)
    return valid, rejected


TEXT_SOURCE = "leadrank_text_source"
"""``DataFrame.attrs`` key that ``read_table`` sets on a CSV table: every cell arrived as text."""


def is_text_source(table: pd.DataFrame) -> bool:
    """Whether ``table`` was read from a CSV file, so a number written as text in a numeric column is a number."""
    return bool(table.attrs.get(TEXT_SOURCE, False))


def _numbers_from_text(valid: pd.DataFrame, features: FeatureSpec, funnel: FunnelSpec) -> pd.DataFrame:
    """The valid rows of a CSV table with each declared numeric column (a text column there) as numbers."""
    names = [f.name for f in features.features if f.kind == "numeric"] + _numeric_rule_columns(funnel)
    text = [n for n in dict.fromkeys(names) if n in valid.columns and not pd.api.types.is_numeric_dtype(valid[n].dtype)]
    if not text:
        return valid
    return valid.assign(**{n: pd.to_numeric(valid[n].map(lambda v: np.nan if is_missing(v) else v)) for n in text})


def parse_as_of(column: pd.Series, timezone: str | None = None) -> pd.Series:
    """Read ``as_of`` values as comparable times, by the contract's rule.

    A value is a datetime, or ISO 8601 text that both Python (``datetime.fromisoformat``) and
    pandas (``format="ISO8601"``) read: ``'2024-03-01'``, ``'2024-03-01T09:30:00'``,
    ``'2024-03-01 09:30'``, optionally with ``'Z'`` or an offset such as ``'+08:00'``.

    * No value has a UTC offset and ``timezone`` is None: naive datetimes, as written.
    * Otherwise: UTC. Values with an offset are converted; naive ones are taken as wall-clock
      time in ``timezone``.

    Parameters
    ----------
    column : pandas.Series
        The ``as_of`` column (any time column of a lead table). Not modified.
    timezone : str, optional
        IANA name of the zone naive values were recorded in, e.g. ``'UTC'`` or ``'Asia/Shanghai'``.

    Returns
    -------
    pandas.Series
        Datetimes aligned with ``column``; ``NaT`` where a value is missing, not a time, or
        (naive, with ``timezone``) skipped or repeated by a daylight-saving change.
        :func:`validate` names those rows.

    Raises
    ------
    LeadDataError
        ``timezone`` is None and naive values mix with values that have an offset.
    ConfigurationError
        ``timezone`` is not a known time zone.
    """
    times = _read_times(column, _zone(timezone))
    if timezone is None:
        name = TIME_COLUMN if column.name is None else str(column.name)
        mixed = _mixed_offsets(name, column.to_numpy(dtype=object), times.kinds)
        if mixed is not None:
            raise LeadDataError([mixed])
    return times.instants


def is_missing(value: object) -> bool:
    """Whether one cell holds no value: ``None``, NaN, ``NaT`` or ``pd.NA`` (text is a value)."""
    try:
        result = pd.isna(value)
    except (TypeError, ValueError):
        return False
    return bool(result) if isinstance(result, (bool, np.bool_)) else False


def bool_value(value: object) -> bool | None:
    """The flag one cell of a bool feature or label spells; ``None`` when it is missing.

    The contract's boolean vocabulary: booleans, the numbers 0 and 1, and the text of
    :data:`TRUE_WORDS` / :data:`FALSE_WORDS` (surrounding spaces and case ignored). Missing
    is :func:`is_missing`; in CSV files the reader has already turned :data:`MISSING_WORDS`
    into missing values.

    Raises
    ------
    DataContractError
        ``value`` is neither missing nor in the vocabulary.
    """
    if is_missing(value):
        return None
    flag = _flag_of(value)
    if flag is None:
        raise DataContractError(f"{value!r} is not a boolean value; use {_BOOL_SPELLINGS}, or leave the cell empty")
    return flag


def label_values(column: pd.Series) -> np.ndarray:
    """The 0/1 outcomes of a validated label column: numbers, booleans or the contract's true/false words."""
    if pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
        return column.to_numpy().astype(int)
    return np.fromiter((int(_label_flag(v)) for v in column), dtype=int, count=len(column))


def _label_flag(value: object) -> bool:
    flag = bool_value(value)
    if flag is None:
        raise DataContractError(f"label {value!r} is missing; validate the table before reading its labels")
    return flag


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
                if not is_missing(value):
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


def _inspect(table: pd.DataFrame, features: FeatureSpec, funnel: FunnelSpec, *, require_labels: bool, timezone: str | None) -> _Findings:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame of leads, got {type(table).__name__}")
    zone = _zone(timezone)
    text_source = is_text_source(table)
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
        problems.append(Problem(None, "the table has no rows", "pass a table with at least one lead (check the file and any filters)"))
    for name, n in repeated.items():
        problems.append(Problem(name, f"the column appears {n} times", "rename or drop the repeated columns so each name appears once"))
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
        times = _read_times(series(TIME_COLUMN), zone)
        checks += _check_as_of(values, times, zone)
        if zone is None and (mixed := _mixed_offsets(TIME_COLUMN, values, times.kinds)) is not None:
            problems.append(mixed)
    for feature in features.features:
        if (values := column(feature.name)) is None:
            continue
        if feature.kind == "numeric":
            checks += _check_numeric(series(feature.name), values, feature.name, feature.min, feature.max, text_source=text_source)
        elif feature.kind == "bool":
            checks += _check_bool(series(feature.name), values, feature.name)
    if features.dialogue_column and (values := column(features.dialogue_column)) is not None:
        checks += _check_dialogue(values, features.dialogue_column)
    if not require_labels:
        return findings
    if (values := column(funnel.label_column)) is not None:
        checks += _check_label(series(funnel.label_column), values, funnel.label_column)
    if (values := column(funnel.stage_column)) is not None:
        checks += _check_stage(values, funnel)
    for name in _numeric_rule_columns(funnel):
        if (values := column(name)) is not None:
            checks += _check_numeric(series(name), values, name, text_source=text_source)
    return findings


def _required_columns(features: FeatureSpec, funnel: FunnelSpec, *, require_labels: bool) -> list[tuple[str, str, str]]:
    """(column, role, fix) for every column the table must have, without repeats."""
    spec_fix = "add the column, or pass a FeatureSpec without it " "(draft one with `leadrank spec infer DATA --out features.yaml`)"
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
        for side in TIER_SIDES:
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
    checks = _flag_missing(missing, ID_COLUMN, "give every lead an id; split_valid() separates the rows without one")
    blank = np.array([isinstance(v, str) and not v.strip() for v in ids], dtype=bool)
    checks += _flag_values(ids, blank, ID_COLUMN, "empty or only whitespace", "empty or only whitespace", "give every lead a real id")
    missing = missing | blank
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
                "keep one row per lead: deduplicate on 'lead_id' (e.g. keep the latest as_of) " "or give distinct leads distinct ids",
            )
        )
    return checks


def _check_as_of(values: np.ndarray, times: _Times, zone: ZoneInfo | None) -> list[_RowCheck]:
    checks = _flag_missing(times.kinds == _NO_TIME, TIME_COLUMN, "give every lead the time its snapshot was taken")
    checks += _flag_values(
        values,
        times.kinds == _NOT_TIME,
        TIME_COLUMN,
        "not a timestamp",
        "not timestamps",
        "store as_of as datetimes or ISO-8601 text such as '2024-03-01', '2024-03-01T09:30:00' " "or '2024-03-01T09:30:00+08:00'",
    )
    checks += _flag_values(
        values,
        times.unplaceable,
        TIME_COLUMN,
        f"not one instant in {zone}",
        f"not one instant in {zone}",
        f"these wall-clock times are skipped or repeated by a daylight-saving change in {zone}: "
        "write them with their UTC offset, e.g. '2024-10-27T02:30:00+01:00'",
    )
    return checks


def _mixed_offsets(name: str, values: np.ndarray, kinds: np.ndarray) -> Problem | None:
    """The table problem of naive times mixed with times that carry a UTC offset, if any."""
    naive, aware = np.flatnonzero(kinds == _NAIVE), np.flatnonzero(kinds == _AWARE)
    if not (len(naive) and len(aware)):
        return None
    return Problem(
        name,
        f"{_count(len(naive), 'value has', 'values have')} no UTC offset (e.g. row {naive[0]}: "
        f"{_short_repr(values[naive[0]])}) and {_count(len(aware), 'value has', 'values have')} one "
        f"(e.g. row {aware[0]}: {_short_repr(values[aware[0]])}): without the time zone of the naive ones "
        "their order is unknown",
        f"say which time zone the naive values were recorded in, e.g. {_TIMEZONE_FIX}, or write every {name} "
        "with an offset ('2024-03-01T09:30:00+08:00', '2024-03-01T01:30:00Z') or every one without",
    )


def _check_numeric(
    series: pd.Series,
    values: np.ndarray,
    name: str,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    text_source: bool = False,
) -> list[_RowCheck]:
    numbers, kinds = _numbers(series, values, text_source)
    checks = _flag_values(
        values,
        kinds == _BOOLEAN,
        name,
        "a boolean, not a number",
        "booleans, not numbers",
        f"store numbers in {name!r}, not true/false (if the column is a flag, declare it as a bool feature " "in the FeatureSpec)",
    )
    checks += _flag_values(
        values,
        kinds == _TEXT_NUMBER,
        name,
        "a number stored as text",
        "numbers stored as text",
        f"store {name!r} as numbers, not text: a numeric column in Parquet or DuckDB, numbers without quotes in JSON",
    )
    checks += _flag_values(
        values,
        kinds == _NOT_NUMBER,
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
                [f"{name} is infinite ({_short_repr(values[r])})" for r in rows],
                f"{_count(len(rows), 'value is', 'values are')} infinite",
                f"replace +/-inf in {name!r} with a finite number, or leave the cell empty if it is unknown",
            )
        )
    fix = f"correct these values, or widen min/max of {name!r} in the FeatureSpec if they are real"
    if minimum is not None:
        below = np.isfinite(numbers) & (numbers < minimum)
        checks += _flag_values(values, below, name, f"below the minimum {minimum:g}", f"below the minimum {minimum:g}", fix)
    if maximum is not None:
        above = np.isfinite(numbers) & (numbers > maximum)
        checks += _flag_values(values, above, name, f"above the maximum {maximum:g}", f"above the maximum {maximum:g}", fix)
    return checks


def _numbers(series: pd.Series, values: np.ndarray, text_source: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(the values as floats, NaN where there is no number; what each cell holds).

    With ``text_source`` (a CSV table, where every cell is text), a number written as text is a number.
    """
    if pd.api.types.is_bool_dtype(series.dtype):
        kinds = np.where(pd.isna(values), _NO_NUMBER, _BOOLEAN)
        return np.full(len(values), np.nan), kinds
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_complex_dtype(series.dtype):
        return series.to_numpy(dtype=float, na_value=np.nan), np.full(len(values), _NUMBER)
    kinds = np.fromiter((_number_kind(v) for v in values), dtype=np.int8, count=len(values))
    if text_source:
        kinds[kinds == _TEXT_NUMBER] = _NUMBER
    numbers = np.full(len(values), np.nan)
    is_number = kinds == _NUMBER
    numbers[is_number] = [_as_float(v) for v in values[is_number]]
    return numbers, kinds


def _check_bool(series: pd.Series, values: np.ndarray, name: str) -> list[_RowCheck]:
    if pd.api.types.is_bool_dtype(series.dtype):
        return []
    bad = _flag(values, lambda v: _flag_of(v) is None and not is_missing(v))
    return _flag_values(
        values,
        bad,
        name,
        "not true/false",
        "not true/false",
        f"use {_BOOL_SPELLINGS} in {name!r} and leave unknown values empty, " "or declare the feature as categorical in the FeatureSpec",
    )


def _check_dialogue(values: np.ndarray, name: str) -> list[_RowCheck]:
    missing = pd.isna(values)
    checks = _flag_missing(missing, name, "use an empty string for leads without conversation")
    not_text = _flag(values, lambda v: not isinstance(v, str)) & ~missing
    checks += _flag_values(values, not_text, name, "not text", "not text", f"store the transcript and notes in {name!r} as text")
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
    bad = _flag(values, lambda v: _flag_of(v) is None) & ~missing
    checks += _flag_values(
        values,
        bad,
        name,
        "not 0/1",
        "not 0/1",
        f"store {name!r} as 1 (order locked within the horizon) or 0 (not); {_BOOL_SPELLINGS} also work",
    )
    return checks


def _check_stage(values: np.ndarray, funnel: FunnelSpec) -> list[_RowCheck]:
    name = funnel.stage_column
    missing = pd.isna(values)
    checks = _flag_missing(missing, name, f"give every lead the furthest stage it reached, one of {funnel.stages}; {_NO_LABELS_FIX}")
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
                f"{_count(len(rows), 'value is', 'values are')} not a stage of the funnel: {shown}{more}; " f"allowed: {funnel.stages}",
                f"use one of {funnel.stages} (the spelling must match), or add the stage to the FunnelSpec's stages",
            )
        )
    return checks


# ---- reading as_of ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Times:
    """A time column read by the contract's rule (see :func:`parse_as_of`)."""

    instants: pd.Series  # naive, or UTC when any value has an offset or a zone is given; NaT where unusable
    kinds: np.ndarray  # _NO_TIME / _NAIVE / _AWARE / _NOT_TIME per row
    unplaceable: np.ndarray  # naive values that name no single instant in the given zone


def _zone(timezone: str | None) -> ZoneInfo | None:
    if timezone is None:
        return None
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigurationError(f"unknown time zone {timezone!r}; use an IANA name such as 'UTC' or 'Asia/Shanghai'") from None


def _read_times(column: pd.Series, zone: ZoneInfo | None) -> _Times:
    missing = column.isna().to_numpy(dtype=bool)
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        kinds = np.where(missing, _NO_TIME, _AWARE)
        parsed = column.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(column.dtype):
        kinds = np.where(missing, _NO_TIME, _NAIVE)
        parsed = column.dt.tz_localize("UTC")
    else:
        values = column.to_numpy(dtype=object)
        kinds = np.fromiter((_time_kind(v) for v in values), dtype=np.int8, count=len(values))
        usable = (kinds == _NAIVE) | (kinds == _AWARE)
        readable = pd.Series(np.where(usable, values, None), index=column.index, dtype=object)
        parsed = pd.to_datetime(readable, format="ISO8601", utc=True, errors="coerce")
        kinds[usable & parsed.isna().to_numpy(dtype=bool)] = _NOT_TIME
    naive = kinds == _NAIVE
    if zone is None:
        instants = parsed if (kinds == _AWARE).any() else parsed.dt.tz_localize(None)
        return _Times(instants, kinds, np.zeros(len(kinds), dtype=bool))
    local = parsed.dt.tz_localize(None).dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    unplaceable = naive & local.isna().to_numpy(dtype=bool)
    return _Times(local.where(naive, parsed), kinds, unplaceable)


def _time_kind(value: object) -> int:
    """What one cell of a time column holds: nothing, a naive time, a time with an offset, or no time."""
    if isinstance(value, str):
        if not value.strip():
            return _NO_TIME
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return _NOT_TIME
    if value is pd.NaT:
        return _NO_TIME
    if isinstance(value, datetime):
        return _NAIVE if value.tzinfo is None else _AWARE
    if isinstance(value, date):
        return _NAIVE
    if isinstance(value, np.datetime64):
        return _NO_TIME if np.isnat(value) else _NAIVE
    return _NO_TIME if is_missing(value) else _NOT_TIME


# ---- helpers ---------------------------------------------------------------------------


def _flag(values: np.ndarray, predicate: Callable[[object], bool]) -> np.ndarray:
    return np.fromiter((predicate(v) for v in values), dtype=bool, count=len(values))


def _flag_missing(missing: np.ndarray, name: str, fix: str) -> list[_RowCheck]:
    if not missing.any():
        return []
    rows = np.flatnonzero(missing)
    return [_RowCheck(name, rows, [f"{name} is missing"] * len(rows), f"{_count(len(rows), 'value is', 'values are')} missing", fix)]


def _flag_values(values: np.ndarray, bad: np.ndarray, name: str, what_one: str, what_many: str, fix: str) -> list[_RowCheck]:
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


def _is_number(value: object) -> bool:
    return isinstance(value, (Real, Decimal)) and not isinstance(value, (bool, np.bool_))


#: A number as text: ASCII digits, an optional sign, decimal point and exponent, surrounding
#: spaces (what pandas' CSV reader and ``pd.to_numeric`` read). Python's ``float()`` also takes
#: '1_000', full-width or Arabic-Indic digits and 'nan' / 'inf', which the readers do not.
_DECIMAL_TEXT = re.compile(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*")


def _number_kind(value: object) -> int:
    """What one cell of a numeric column holds (NaN counts as a number: the float of a gap)."""
    if isinstance(value, (bool, np.bool_)):
        return _BOOLEAN
    if _is_number(value):
        return _NUMBER
    if isinstance(value, str):
        return _TEXT_NUMBER if _DECIMAL_TEXT.fullmatch(value) else _NOT_NUMBER
    return _NO_NUMBER if is_missing(value) else _NOT_NUMBER


def _as_float(value: object) -> float:
    """A real number as a float; an integer too large for a float is +/-inf."""
    try:
        return float(value)  # type: ignore[arg-type]
    except OverflowError:
        return math.inf if value > 0 else -math.inf  # type: ignore[operator]


def _flag_of(value: object) -> bool | None:
    """The flag ``value`` spells in the boolean vocabulary, else None (missing values too)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        return True if word in TRUE_WORDS else (False if word in FALSE_WORDS else None)
    if _is_number(value) and value in (0, 1):
        return bool(value)
    return None


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
