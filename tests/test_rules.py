"""Tests for leadrank.rules: evaluation on hand-built tables, missing values, safety, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadrank.rules import Rule, RuleError

ALIASES = {"stage": "funnel_stage"}


def leads() -> pd.DataFrame:
    """Six leads; row 4 has no stage, row 5 has no call duration."""
    return pd.DataFrame(
        {
            "funnel_stage": ["lock", "call", "call", "new", None, "defeat"],
            "call_duration_s": [300.0, 150.0, 119.0, 0.0, 60.0, np.nan],
            "visits": [5, 0, 2, 2, 7, 1],
            "parking": [True, False, True, False, True, False],
        }
    )


def mask(text: str, table: pd.DataFrame | None = None) -> list[bool]:
    return Rule(text, aliases=ALIASES).evaluate(leads() if table is None else table).tolist()


class TestEvaluate:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("visits == 2", [False, False, True, True, False, False]),
            ("visits != 2", [True, True, False, False, True, True]),
            ("visits < 2", [False, True, False, False, False, True]),
            ("visits <= 2", [False, True, True, True, False, True]),
            ("visits > 2", [True, False, False, False, True, False]),
            ("visits >= 2", [True, False, True, True, True, False]),
            ("visits in (0, 7)", [False, True, False, False, True, False]),
            ("visits not in (0, 7)", [True, False, True, True, False, True]),
            ("visits in [5]", [True, False, False, False, False, False]),
            ("call_duration_s >= 119.5", [True, True, False, False, False, False]),
            ("parking == True", [True, False, True, False, True, False]),
            ("funnel_stage < 'd'", [False, True, True, False, False, False]),
        ],
    )
    def test_comparisons(self, text: str, expected: list[bool]) -> None:
        assert mask(text) == expected

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("stage == 'call' and call_duration_s >= 120", [False, True, False, False, False, False]),
            ("stage == 'lock' or visits == 0", [True, True, False, False, False, False]),
            ("not visits >= 2", [False, True, False, False, False, True]),
            ("not (visits >= 2 and parking == True)", [False, True, False, True, False, True]),
            # `and` binds tighter than `or`; parentheses change the answer.
            ("stage == 'lock' or stage == 'call' and visits == 0", [True, True, False, False, False, False]),
            ("stage == 'lock' or (stage == 'call' and visits == 0)", [True, True, False, False, False, False]),
            ("(stage == 'lock' or stage == 'call') and visits == 0", [False, True, False, False, False, False]),
            ("visits > 0 and visits < 7 and parking == True", [True, False, True, False, False, False]),
        ],
    )
    def test_boolean_logic_and_parentheses(self, text: str, expected: list[bool]) -> None:
        assert mask(text) == expected

    def test_alias_refers_to_the_aliased_column(self) -> None:
        rule = Rule("stage in ('call', 'new')", aliases=ALIASES)
        assert rule.columns == frozenset({"funnel_stage"})
        assert rule.constants == {"funnel_stage": {"call", "new"}}
        assert rule.evaluate(leads()).tolist() == [False, True, True, True, False, False]

    def test_without_alias_stage_is_a_plain_column_name(self) -> None:
        table = leads().rename(columns={"funnel_stage": "stage"})
        assert Rule("stage == 'lock'").evaluate(table).tolist() == [True] + [False] * 5
        with pytest.raises(RuleError, match=r"needs column\(s\) \['stage'\]"):
            Rule("stage == 'lock'").evaluate(leads())

    def test_returns_bool_array_in_row_order_for_any_index(self) -> None:
        table = leads().set_axis([50, 3, 7, 10, 0, 2])
        out = Rule("visits >= 2", aliases=ALIASES).evaluate(table)
        assert isinstance(out, np.ndarray)
        assert out.dtype == np.bool_
        assert out.tolist() == [True, False, True, True, True, False]

    def test_empty_table(self) -> None:
        out = Rule("visits >= 2").evaluate(leads().iloc[:0])
        assert out.shape == (0,)
        assert out.dtype == np.bool_


class TestMissingValues:
    @pytest.mark.parametrize(
        "text",
        [
            "stage == 'call'",
            "stage < 'zzz'",
            "stage >= 'a'",
            "stage in ('lock', 'call', 'new', 'defeat')",
            "stage not in ('lock',)",
        ],
    )
    def test_missing_text_makes_comparison_false(self, text: str) -> None:
        assert mask(text)[4] is False

    @pytest.mark.parametrize(
        "text",
        ["call_duration_s >= 0", "call_duration_s < 1e9", "call_duration_s == 0", "call_duration_s not in (1.0,)"],
    )
    def test_missing_number_makes_comparison_false(self, text: str) -> None:
        assert mask(text)[5] is False

    def test_not_in_with_missing_value_is_false(self) -> None:
        assert mask("stage not in ('lock', 'call')") == [False, False, False, True, False, True]

    def test_nullable_integer_missing_is_false(self) -> None:
        table = pd.DataFrame({"x": pd.array([1, None, 3], dtype="Int64")})
        assert Rule("x >= 2").evaluate(table).tolist() == [False, False, True]
        assert Rule("x != 1").evaluate(table).tolist() == [False, False, True]

    def test_not_negates_the_false_of_a_missing_comparison(self) -> None:
        # Documented semantics: the comparison on a missing value is False, and `not` negates it,
        # so `not stage in (...)` is True where `stage not in (...)` is False.
        assert mask("not stage in ('lock', 'call')")[4] is True
        assert mask("stage not in ('lock', 'call')")[4] is False

    @pytest.mark.parametrize(("text", "row"), [("stage != 'lock'", 4), ("call_duration_s != 1", 5)])
    def test_not_equal_with_missing_value_is_false(self, text: str, row: int) -> None:
        assert mask(text)[row] is False


class TestSafety:
    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("__import__('os').system('x')", r"Call is not allowed"),
            ("stage.__class__", r"Attribute is not allowed"),
            ("lambda: 1", r"Lambda is not allowed"),
            ("[x for x in y]", r"ListComp is not allowed"),
            ("stage", r"Name is not allowed"),
            ("a + 1 == 2", r"write each comparison as `column OP value`"),
            ("f(x) == 1", r"write each comparison as `column OP value`"),
            ("1 < x", r"write each comparison as `column OP value`"),
            ("0 < x < 3", r"write each comparison as `column OP value`"),
            ("x is None", r"operator not allowed"),
            ("x == y", r"right side of a comparison must be a constant"),
            ("x == open('f')", r"right side of a comparison must be a constant"),
            ("x == None", r"right side of a comparison must be a constant"),
            ("x in ()", r"right side of a comparison must be a constant"),
            ("x ==", r"is not valid: invalid syntax"),
            ("", r"is not valid"),
            ("import os", r"is not valid"),
        ],
    )
    def test_rejected_at_parse_time(self, text: str, message: str) -> None:
        with pytest.raises(RuleError, match=message):
            Rule(text)

    def test_error_quotes_rule_and_lists_what_is_allowed(self) -> None:
        with pytest.raises(RuleError, match=r"^Rule 'stage\.__class__': .*Allowed: column names, .*parentheses\.$"):
            Rule("stage.__class__")

    def test_rule_error_is_a_value_error(self) -> None:
        assert issubclass(RuleError, ValueError)

    def test_negative_number_constant(self) -> None:
        table = pd.DataFrame({"x": [-3, -1, 0]})
        assert Rule("x >= -1").evaluate(table).tolist() == [False, True, True]


class TestEvaluationErrors:
    def test_missing_column_is_named(self) -> None:
        table = leads().drop(columns=["call_duration_s"])
        rule = Rule("stage == 'call' and call_duration_s >= 120", aliases=ALIASES)
        with pytest.raises(RuleError, match=r"needs column\(s\) \['call_duration_s'\], which the table does not have"):
            rule.evaluate(table)

    def test_missing_aliased_column_names_the_real_column(self) -> None:
        with pytest.raises(RuleError, match=r"needs column\(s\) \['funnel_stage'\]"):
            Rule("stage == 'lock'", aliases=ALIASES).evaluate(leads().drop(columns=["funnel_stage"]))

    @pytest.mark.parametrize("text", ["stage < 5", "stage >= 1", "call_duration_s < 'a'"])
    def test_ordering_text_against_number_raises(self, text: str) -> None:
        with pytest.raises(RuleError, match=r"compares column '(funnel_stage|call_duration_s)' \(dtype .*\) with"):
            Rule(text, aliases=ALIASES).evaluate(leads())

    @pytest.mark.parametrize("text", ["stage == 5", "call_duration_s == 'a'", "stage in (1, 2)"])
    def test_equality_text_against_number_is_false_not_an_error(self, text: str) -> None:
        # Actual behaviour: pandas compares for equality without raising, so nothing matches.
        assert mask(text) == [False] * 6


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.integers(min_value=-(2**40), max_value=2**40), max_size=50),
    threshold=st.integers(min_value=-(2**40), max_value=2**40),
)
def test_greater_equal_matches_numpy(values: list[int], threshold: int) -> None:
    table = pd.DataFrame({"x": np.asarray(values, dtype=np.int64)})
    expected = np.asarray(values, dtype=np.int64) >= threshold
    np.testing.assert_array_equal(Rule(f"x >= {threshold}").evaluate(table), expected)


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.integers(min_value=-1000, max_value=1000)), max_size=50),
    threshold=st.integers(min_value=0, max_value=1000),
    op=st.sampled_from(["<", "<=", ">", ">=", "=="]),
)
def test_float_column_with_gaps_matches_numpy(values: list[int | None], threshold: int, op: str) -> None:
    column = np.array([np.nan if v is None else v for v in values], dtype=float)
    numpy_op = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal, "==": np.equal}[op]
    expected = ~np.isnan(column) & numpy_op(column, threshold)
    got = Rule(f"x {op} {threshold}").evaluate(pd.DataFrame({"x": column}))
    np.testing.assert_array_equal(got, expected)
