"""Fuzzing leadrank.data.schema: broken lead tables in, only LeadDataError (naming columns) out, no row lost.

Each example starts from a small valid simulated table and breaks it in up to a few ways:
odd cell values (wrong types, NaN, +/-inf, bytes, lone surrogates, 1 MB text, unknown
stages), dropped, extra and repeated columns, duplicate ids, an empty table.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.schema import REASON_COLUMN, LeadDataError, split_valid, validate
from leadrank.data.synth import SynthConfig, simulate

FEATURES = FeatureSpec.nev_default()
FUNNEL = FunnelSpec.paper_default()
BASE = simulate(SynthConfig.preset("dense", n=8, seed=3))
FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MEGABYTE = "Customer: " + "x" * (1 << 20)

ODD_VALUES = st.one_of(
    st.none(),
    st.sampled_from([math.nan, math.inf, -math.inf, np.nan, pd.NaT, pd.NA, 0, 1, -1, 2, 1e308, 10**30, True, False]),
    st.sampled_from(["", " ", "n/a", "abc", "lock", "won", "2024-13-45", "2024-03-01", "1e3", "\ud800", "\udcff", "é", MEGABYTE]),
    st.sampled_from(["42", "2024-03-01T09:30:00+08:00", "2024-03-01T01:30:00Z", "yes", "0"]),  # typed the wrong way
    st.sampled_from([pd.Timestamp("2024-03-01", tz="Asia/Shanghai"), pd.Timestamp("2024-03-01"), np.datetime64("NaT")]),
    st.binary(max_size=8),  # bytes objects, e.g. b"\xff\xfe", as a non-UTF-8 source would give
    st.text(max_size=12),  # includes lone surrogates
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.lists(st.integers(), max_size=2),  # unhashable
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    st.complex_numbers(max_magnitude=10),
)
COLUMN_NAMES = st.sampled_from(list(BASE.columns))


@st.composite
def broken_tables(draw: st.DrawFn) -> pd.DataFrame:
    table = BASE.copy()
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        table = draw(BREAKAGES)(draw, table)
    if draw(st.integers(min_value=0, max_value=19)) == 0:
        table = table.iloc[:0]
    return table


def _set_cell(draw: st.DrawFn, table: pd.DataFrame) -> pd.DataFrame:
    if not len(table.columns) or not len(table):
        return table
    column = draw(st.sampled_from(list(dict.fromkeys(table.columns))))
    if table.columns.tolist().count(column) > 1:
        return table
    row = draw(st.integers(min_value=0, max_value=len(table) - 1))
    values = table[column].tolist()
    values[row] = draw(ODD_VALUES)
    table = table.copy()
    table[column] = pd.Series(values, index=table.index, dtype=object)  # a list or dict stays one cell
    return table


def _drop_column(draw: st.DrawFn, table: pd.DataFrame) -> pd.DataFrame:
    if not len(table.columns):
        return table
    return table.drop(columns=[draw(st.sampled_from(list(dict.fromkeys(table.columns))))])


def _add_column(draw: st.DrawFn, table: pd.DataFrame) -> pd.DataFrame:
    name = draw(st.one_of(st.text(max_size=8), st.sampled_from(["_x", "label ", "Lead_ID", "extra"])))
    if name in table.columns:
        return table
    table = table.copy()
    table[name] = pd.Series([draw(ODD_VALUES) for _ in range(len(table))], index=table.index, dtype=object)
    return table


def _repeat_column(draw: st.DrawFn, table: pd.DataFrame) -> pd.DataFrame:
    if not len(table.columns):
        return table
    name = draw(st.sampled_from(list(dict.fromkeys(table.columns))))
    return pd.concat([table, table.loc[:, [name]]], axis=1)


def _duplicate_id(draw: st.DrawFn, table: pd.DataFrame) -> pd.DataFrame:
    if "lead_id" not in table.columns or table.columns.tolist().count("lead_id") > 1 or len(table) < 2:
        return table
    source, target = draw(st.lists(st.integers(min_value=0, max_value=len(table) - 1), min_size=2, max_size=2, unique=True))
    table = table.copy()
    column = table.columns.get_loc("lead_id")
    table.iat[target, column] = table.iat[source, column]  # one cell, whatever it holds (a list-valued id too)
    return table


# bad values are most of the breakage: table problems (which mask row problems in split_valid) are rarer
BREAKAGES = st.sampled_from([_set_cell] * 6 + [_duplicate_id] * 2 + [_drop_column, _add_column, _repeat_column])


def _check_error(error: LeadDataError, table: pd.DataFrame) -> None:
    message = str(error)
    assert error.problems, "a LeadDataError must list at least one problem"
    for problem in error.problems:
        if problem.column is None:
            assert len(table) == 0, f"only an empty table is a problem of no column; got {problem}"
        else:
            assert f"column {problem.column!r}" in message
        assert all(0 <= row < len(table) for row in problem.rows)


@pytest.mark.parametrize("require_labels", [True, False])
@FUZZ
@given(table=broken_tables())
def test_validate_passes_or_names_the_columns(table: pd.DataFrame, require_labels: bool) -> None:
    before = table.copy()
    try:
        validate(table, FEATURES, FUNNEL, require_labels=require_labels)
    except LeadDataError as error:
        _check_error(error, table)
    pd.testing.assert_frame_equal(table, before)  # validation never changes the data


@pytest.mark.parametrize("require_labels", [True, False])
@FUZZ
@given(table=broken_tables())
def test_split_valid_never_loses_a_row(table: pd.DataFrame, require_labels: bool) -> None:
    try:
        validate(table, FEATURES, FUNNEL, require_labels=require_labels)
        problems = []
    except LeadDataError as error:
        problems = error.problems
    try:
        valid, rejected = split_valid(table, FEATURES, FUNNEL, require_labels=require_labels)
    except LeadDataError as error:
        _check_error(error, table)
        assert any(p.column is None or not p.rows for p in error.problems), "split_valid raises only for table problems"
        return
    assert len(valid) + len(rejected) == len(table)
    assert sorted(valid.index.tolist() + rejected.index.tolist()) == sorted(table.index.tolist())
    pd.testing.assert_frame_equal(valid, table.loc[valid.index])  # valid rows come back untouched
    assert list(rejected.columns) == [*(c for c in table.columns if c != REASON_COLUMN), REASON_COLUMN]
    assert rejected[REASON_COLUMN].map(lambda reason: isinstance(reason, str) and reason != "").all()
    flagged = {table.index[row] for problem in problems for row in problem.rows}
    assert set(rejected.index) == flagged  # exactly the rows validate names


def test_the_fuzzed_base_table_is_valid() -> None:
    validate(BASE, FEATURES, FUNNEL)  # so every problem found above comes from the breakage


@pytest.mark.parametrize("text", ["", MEGABYTE, "Customer: \ud800 broken surrogate", "Kunde: schön"])
def test_any_text_is_a_valid_dialogue(text: str) -> None:
    validate(BASE.assign(dialogue=pd.Series([text] * len(BASE), index=BASE.index, dtype=object)), FEATURES, FUNNEL)


@pytest.mark.parametrize("value", [b"\xff\xfe not UTF-8", 3.5, ["a list"]])
def test_a_dialogue_that_is_not_text_is_named(value: object) -> None:
    table = BASE.assign(dialogue=pd.Series([value] * len(BASE), index=BASE.index, dtype=object))
    with pytest.raises(LeadDataError, match="column 'dialogue': 8 values are not text"):
        validate(table, FEATURES, FUNNEL)
