"""The lead-table contract: leadrank.data.schema."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadrank.config import Feature, FeatureSpec, FunnelSpec
from leadrank.data.io import read_table
from leadrank.data.schema import (
    FALSE_WORDS,
    MISSING_WORDS,
    TRUE_WORDS,
    LeadDataError,
    Problem,
    bool_value,
    invalid_rows,
    is_missing,
    parse_as_of,
    split_valid,
    validate,
)
from leadrank.errors import ConfigurationError, DataContractError

NEV = FeatureSpec.nev_default()
FUNNEL = FunnelSpec.paper_default()
SMALL = FeatureSpec(
    features=[
        Feature(name="visits", kind="numeric"),
        Feature(name="city", kind="categorical"),
        Feature(name="parking", kind="bool"),
    ]
)


def nev_table() -> pd.DataFrame:
    """A clean 6-row table for the NEV FeatureSpec and the paper funnel."""
    n = 6
    return pd.DataFrame(
        {
            "lead_id": [f"L{i:03d}" for i in range(n)],
            "as_of": pd.date_range("2024-01-01", periods=n, freq="D"),
            "source": ["web", "store", None, "app", "web", "event"],
            "lead_age_days": np.arange(n, dtype=float),
            "stage_at_as_of": ["new"] * n,
            "customer_age": [35.0, np.nan, 41.0, 29.0, 50.0, 38.0],
            "city_tier": [1, 2, 3, 1, 2, 3],
            "current_car": ["none"] * n,
            "family_size": [3] * n,
            "budget_band": ["200-300k"] * n,
            "has_private_parking": [True, False] * 3,
            "app_visits_7d": [1] * n,
            "app_visits_30d": [4] * n,
            "configurator_sessions": [0] * n,
            "used_financing_calculator": ["yes", "no", "True", "false", 1, 0],
            "store_visits": [0] * n,
            "followup_count": [2] * n,
            "days_since_last_contact": [5.0] * n,
            "dialogue": ["[agent] hello", "", "[customer] price?", "", "", "[agent] test drive?"],
            "label": [1, 0, 0, 0, 0, 0],
            "funnel_stage": ["lock", "defeat", "call", "test_drive", "call", "new"],
            "call_duration_s": [np.nan, np.nan, 200.0, np.nan, 10.0, np.nan],
        }
    )


def small_table(**overrides: list[object]) -> pd.DataFrame:
    """A clean 4-row table for SMALL and the paper funnel; keyword arguments replace columns."""
    columns: dict[str, list[object]] = {
        "lead_id": ["a", "b", "c", "d"],
        "as_of": ["2024-01-01", "2024-01-02", "2024-01-03T09:30:00", "2024-01-04"],
        "visits": [1.0, 2.0, np.nan, 4.0],
        "city": ["x", None, "y", "z"],
        "parking": [True, False, None, True],
        "dialogue": ["hi", "", "", "bye"],
        "label": [0, 1, 0, 0],
        "funnel_stage": ["call", "lock", "new", "defeat"],
        "call_duration_s": [60.0, np.nan, np.nan, np.nan],
    }
    columns.update(overrides)
    return pd.DataFrame(columns)


def problems_of(table: pd.DataFrame, features: FeatureSpec = SMALL, **kwargs: bool | str) -> list[Problem]:
    with pytest.raises(LeadDataError) as info:
        validate(table, features, FUNNEL, **kwargs)
    return info.value.problems


class TestCleanTables:
    def test_nev_table_passes(self) -> None:
        table = nev_table()
        validate(table, NEV, FUNNEL)
        reasons, table_problems = invalid_rows(table, NEV, FUNNEL)
        assert (reasons == "").all() and table_problems == []

    def test_small_table_passes(self) -> None:
        validate(small_table(), SMALL, FUNNEL)

    def test_integer_ids_and_object_numbers_are_accepted(self) -> None:
        visits = pd.Series([1, 2.5, None, np.int64(4)], dtype=object)  # e.g. JSONL numbers with a null
        validate(small_table(lead_id=[10, 11, 12, 13], visits=visits), SMALL, FUNNEL)

    def test_validate_does_not_modify_the_table(self) -> None:
        table = small_table(visits=["1", "x", None, 3])
        before = table.copy()
        with pytest.raises(LeadDataError):
            validate(table, SMALL, FUNNEL)
        pd.testing.assert_frame_equal(table, before)

    def test_not_a_dataframe(self) -> None:
        with pytest.raises(TypeError, match="expected a pandas DataFrame"):
            validate([{"lead_id": "a"}], SMALL, FUNNEL)  # type: ignore[arg-type]


class TestAcceptance:
    """A string in a numeric column, a duplicate id, an unknown stage and a missing column."""

    @staticmethod
    def broken() -> pd.DataFrame:
        table = nev_table().drop(columns=["customer_age"])
        table["lead_age_days"] = table["lead_age_days"].astype(object)
        table.loc[1, "lead_age_days"] = "abc"
        table.loc[2, "lead_id"] = "L000"
        table.loc[3, "funnel_stage"] = "won"
        return table

    def test_one_error_names_all_four(self) -> None:
        with pytest.raises(LeadDataError, match=r"^4 problem\(s\) in the lead table") as info:
            validate(self.broken(), NEV, FUNNEL)
        text = str(info.value)
        assert "column 'customer_age': the column is missing" in text
        assert "leadrank spec infer DATA --out features.yaml" in text
        assert "'L000' at rows 0, 2" in text
        assert "column 'lead_age_days': 1 value is not a number: 'abc'" in text
        assert "not a stage of the funnel: 'won' (1x)" in text
        assert [p.column for p in info.value.problems] == ["customer_age", "lead_id", "lead_age_days", "funnel_stage"]
        assert isinstance(info.value, ValueError)

    def test_rows_and_ids_point_at_the_culprits(self) -> None:
        by_column = {p.column: p for p in problems_of(self.broken(), NEV)}
        assert by_column["lead_age_days"].rows == (1,) and by_column["lead_age_days"].lead_ids == ("L001",)
        assert by_column["lead_id"].rows == (2,) and by_column["lead_id"].lead_ids == ("L000",)
        assert by_column["funnel_stage"].rows == (3,)
        assert by_column["customer_age"].rows == ()

    def test_split_valid_refuses_while_a_column_is_missing(self) -> None:
        with pytest.raises(LeadDataError, match="customer_age"):
            split_valid(self.broken(), NEV, FUNNEL)

    def test_invalid_rows_separates_row_and_table_problems(self) -> None:
        reasons, table_problems = invalid_rows(self.broken(), NEV, FUNNEL)
        assert [p.column for p in table_problems] == ["customer_age"]
        assert reasons.tolist() == [
            "",
            "lead_age_days is not a number: 'abc'",
            "duplicate lead_id 'L000', first seen at row 0",
            "funnel_stage 'won' is not a stage of the funnel",
            "",
            "",
        ]


class TestColumns:
    def test_without_labels_for_scoring(self) -> None:
        table = small_table().drop(columns=["label", "funnel_stage", "call_duration_s"])
        validate(table, SMALL, FUNNEL, require_labels=False)
        problems = problems_of(table)
        assert [p.column for p in problems] == ["label", "funnel_stage", "call_duration_s"]
        assert all("require_labels=False" in p.fix for p in problems)
        assert "read by a tier rule" in problems[2].message

    def test_supervision_columns_are_not_read_without_labels(self) -> None:
        table = small_table(label=[0, 2, "maybe", None], funnel_stage=["won", None, "new", 3], call_duration_s=["long", 1, 2, 3])
        validate(table, SMALL, FUNNEL, require_labels=False)  # scoring: not one of them is read
        columns = [p.column for p in problems_of(table)]
        assert columns == ["label", "label", "funnel_stage", "funnel_stage", "call_duration_s"]

    def test_missing_id_time_and_dialogue(self) -> None:
        table = small_table().drop(columns=["lead_id", "as_of", "dialogue"])
        assert [p.column for p in problems_of(table)] == ["lead_id", "as_of", "dialogue"]

    def test_no_dialogue_column_in_spec(self) -> None:
        spec = FeatureSpec(features=SMALL.features, dialogue_column=None)
        validate(small_table().drop(columns=["dialogue"]), spec, FUNNEL)

    def test_did_you_mean(self) -> None:
        table = small_table().rename(columns={"visits": "Visits"})
        (problem,) = problems_of(table)
        assert "did you mean 'Visits'?" in problem.fix

    def test_repeated_column(self) -> None:
        table = pd.concat([small_table(), small_table()[["visits"]]], axis=1)
        (problem,) = problems_of(table)
        assert problem.column == "visits" and "appears 2 times" in problem.message

    def test_empty_table(self) -> None:
        table = small_table().iloc[:0]
        (problem,) = problems_of(table)
        assert problem.column is None and "no rows" in problem.message
        with pytest.raises(LeadDataError, match="no rows"):
            split_valid(table, SMALL, FUNNEL)


class TestLeakage:
    @pytest.mark.parametrize("column", ["call_duration_s", "label", "funnel_stage"])
    def test_supervision_column_as_feature(self, column: str) -> None:
        spec = FeatureSpec(features=[*SMALL.features, Feature(name=column, kind="numeric")])
        problems = problems_of(small_table(), spec)
        leak = [p for p in problems if "leak" in p.message]
        assert [p.column for p in leak] == [column]
        assert leak[0].fix.startswith(f"remove {column!r} from the FeatureSpec")
        with pytest.raises(LeadDataError, match="leak the outcome"):
            split_valid(small_table(), spec, FUNNEL)

    def test_leak_reported_without_labels_too(self) -> None:
        spec = FeatureSpec(features=[*SMALL.features, Feature(name="call_duration_s", kind="numeric")])
        problems = problems_of(small_table(), spec, require_labels=False)
        assert [p.column for p in problems] == ["call_duration_s"]


class TestValues:
    def test_numeric_gaps_allowed_inf_rejected(self) -> None:
        validate(small_table(visits=[np.nan, None, 1.0, 2.0]), SMALL, FUNNEL)
        (problem,) = problems_of(small_table(visits=[np.inf, 1.0, -np.inf, np.nan]))
        assert problem.message == "2 values are infinite" and problem.rows == (0, 2)
        (problem,) = problems_of(small_table(visits=pd.Series([np.inf, 1, None, 2], dtype=object)))
        assert problem.message == "1 value is infinite" and problem.rows == (0,)

    def test_numeric_text_lists_raw_values(self) -> None:
        (problem,) = problems_of(small_table(visits=["abc", "n/a", "abc", 1]))
        assert problem.message == "3 values are not numbers: 'abc', 'n/a'"
        assert problem.rows == (0, 1, 2) and problem.lead_ids == ("a", "b", "c")

    def test_nullable_numeric_dtype(self) -> None:
        validate(small_table(visits=pd.array([1, None, 3, 4], dtype="Int64")), SMALL, FUNNEL)

    def test_bool_values(self) -> None:
        validate(small_table(parking=["yes", "NO", 1, None]), SMALL, FUNNEL)
        validate(small_table(parking=[0.0, 1.0, np.nan, 1.0]), SMALL, FUNNEL)
        (problem,) = problems_of(small_table(parking=["maybe", True, 2, False]))
        assert problem.rows == (0, 2) and "'maybe', 2" in problem.message

    def test_categorical_accepts_anything(self) -> None:
        validate(small_table(city=[1.5, None, "x", 3]), SMALL, FUNNEL)

    def test_dialogue(self) -> None:
        validate(small_table(dialogue=["", "", "", ""]), SMALL, FUNNEL)
        (problem,) = problems_of(small_table(dialogue=["hi", np.nan, "", None]))
        assert problem.rows == (1, 3)
        assert problem.fix == "use an empty string for leads without conversation"
        (problem,) = problems_of(small_table(dialogue=["hi", 42, "", ""]))
        assert "not text: 42" in problem.message

    def test_label(self) -> None:
        validate(small_table(label=[True, False, 1.0, 0.0]), SMALL, FUNNEL)
        (problem,) = problems_of(small_table(label=[0, 2, 1, 0]))
        assert problem.column == "label" and problem.message == "1 value is not 0/1: 2" and problem.rows == (1,)
        (problem,) = problems_of(small_table(label=[0, None, 1, 0]))
        assert "missing" in problem.message
        validate(small_table(label=["1", "0", "yes", "FALSE "]), SMALL, FUNNEL)  # the boolean vocabulary, as text
        (problem,) = problems_of(small_table(label=["1", "maybe", "yes", "0"]))
        assert problem.rows == (1,) and "maybe" in problem.message

    def test_unknown_stage_counts_and_allowed(self) -> None:
        (problem,) = problems_of(small_table(funnel_stage=["won", "won", "Lock", "call"]))
        assert "3 values are not a stage of the funnel: 'won' (2x), 'Lock' (1x)" in problem.message
        assert "['defeat', 'new', 'call', 'test_drive', 'lock']" in problem.message

    def test_missing_stage(self) -> None:
        (problem,) = problems_of(small_table(funnel_stage=["call", None, "new", "lock"]))
        assert problem.rows == (1,) and "missing" in problem.message

    def test_rule_column_numbers(self) -> None:
        (problem,) = problems_of(small_table(call_duration_s=["long", np.nan, 5, None]))
        assert problem.column == "call_duration_s" and problem.rows == (0,)

    def test_as_of(self) -> None:
        (missing, unparsed) = problems_of(small_table(as_of=["2024-01-01", "yesterday", None, ""]))
        assert missing.rows == (2, 3) and "missing" in missing.message
        assert unparsed.rows == (1,) and "'yesterday'" in unparsed.message

    def test_lead_id_missing_and_duplicates(self) -> None:
        problems = problems_of(small_table(lead_id=["a", None, "a", "a"]))
        assert [p.message for p in problems] == [
            "1 value is missing",
            "1 lead_id appears more than once: 'a' at rows 0, 2, 3 (2 later rows flagged; " "the first row of each id counts as valid)",
        ]
        assert problems[1].rows == (2, 3) and problems[1].lead_ids == ("a",)


class TestRendering:
    def test_problem_shows_five_then_more(self) -> None:
        problem = Problem("x", "bad", "fix it", rows=tuple(range(12)), lead_ids=tuple(f"L{i}" for i in range(12)))
        text = str(problem)
        assert text.splitlines() == [
            "column 'x': bad",
            "  rows (0-based): 0, 1, 2, 3, 4 (+7 more)",
            "  lead_ids: 'L0', 'L1', 'L2', 'L3', 'L4' (+7 more)",
            "  fix: fix it",
        ]

    def test_error_numbers_problems_and_pickles(self) -> None:
        error = LeadDataError([Problem(None, "one", "a"), Problem("c", "two", "b", rows=(3,))])
        lines = str(error).splitlines()
        assert lines[0].startswith("2 problem(s) in the lead table")
        assert lines[1:] == ["1. table: one", "   fix: a", "2. column 'c': two", "   rows (0-based): 3", "   fix: b"]
        again = pickle.loads(pickle.dumps(error))
        assert again.problems == error.problems and str(again) == str(error)


class TestSplitValid:
    def test_keeps_valid_rows_unchanged(self) -> None:
        table = small_table(lead_id=["a", "b", "a", "d"], visits=[1, "x", 3, 4], label=[0, 1, 0, 5]).set_index(pd.Index([10, 20, 30, 40]))
        valid, rejected = split_valid(table, SMALL, FUNNEL)
        pd.testing.assert_frame_equal(valid, table.iloc[[0]])
        assert len(valid) + len(rejected) == len(table)
        assert rejected.index.tolist() == [20, 30, 40]
        pd.testing.assert_frame_equal(rejected.drop(columns=["_reason"]), table.iloc[[1, 2, 3]])
        assert rejected["_reason"].tolist() == [
            "visits is not a number: 'x'",
            "duplicate lead_id 'a', first seen at row 0",
            "label is not 0/1: 5",
        ]

    def test_clean_table_is_all_valid(self) -> None:
        table = nev_table()
        valid, rejected = split_valid(table, NEV, FUNNEL)
        pd.testing.assert_frame_equal(valid, table)
        assert rejected.empty and "_reason" in rejected.columns

    def test_reasons_are_joined(self) -> None:
        table = small_table(visits=["x", 1, 2, 3], label=[7, 0, 0, 0])
        reasons, _ = invalid_rows(table, SMALL, FUNNEL)
        assert reasons.iloc[0] == "visits is not a number: 'x'; label is not 0/1: 7"


class TestTypesAsDeclared:
    """The FeatureSpec is the truth: text and booleans are not numbers, bounds hold."""

    def test_booleans_are_not_numbers(self) -> None:
        (problem,) = problems_of(small_table(visits=pd.Series([True, 1, 2.5, None], dtype=object)))
        assert problem.message == "1 value is a boolean, not a number: True" and problem.rows == (0,)
        (problem,) = problems_of(small_table(visits=[True, False, True, False]))  # a bool column, e.g. JSON true
        assert problem.rows == (0, 1, 2, 3)
        (problem,) = problems_of(small_table(visits=pd.array([True, None, False, None], dtype="boolean")))
        assert problem.rows == (0, 2)

    def test_text_is_not_a_number(self) -> None:
        (problem,) = problems_of(small_table(visits=pd.Series(["42", 7, None, " 2 "], dtype=object)))
        assert problem.message == "2 values are numbers stored as text: '42', ' 2 '" and problem.rows == (0, 3)
        assert "not text" in problem.fix
        reasons, _ = invalid_rows(small_table(visits=pd.Series(["42", 7, None, "abc"], dtype=object)), SMALL, FUNNEL)
        assert reasons.tolist() == ["visits is a number stored as text: '42'", "", "", "visits is not a number: 'abc'"]

    def test_a_string_column_of_numbers_is_named(self) -> None:
        (problem,) = problems_of(small_table(visits=pd.array(["1", "2", None, "4"], dtype="string")))
        assert problem.column == "visits" and problem.rows == (0, 1, 3)
        assert "numbers stored as text" in str(LeadDataError([problem]))

    def test_bounds(self) -> None:
        spec = FeatureSpec(features=[Feature(name="visits", kind="numeric", min=0, max=10), *SMALL.features[1:]])
        validate(small_table(visits=[0, 10, np.nan, 5.5]), spec, FUNNEL)
        below, above = problems_of(small_table(visits=[-1, 0, 10, 11]), spec)
        assert (below.message, below.rows) == ("1 value is below the minimum 0: -1", (0,))
        assert (above.message, above.rows) == ("1 value is above the maximum 10: 11", (3,))
        assert "min/max of 'visits'" in below.fix
        (infinite,) = problems_of(small_table(visits=[np.inf, 0, 1, 2]), spec)  # infinite, not also out of bounds
        assert infinite.message == "1 value is infinite"

    def test_shipped_bounds_reject_negative_counts(self) -> None:
        table = nev_table()
        table.loc[2, "app_visits_7d"] = -3
        (problem,) = problems_of(table, NEV)
        assert (problem.column, problem.rows) == ("app_visits_7d", (2,))

    def test_bool_features_accept_the_vocabulary_as_text(self) -> None:
        validate(small_table(parking=["1", " Yes", "0", "FALSE"]), SMALL, FUNNEL)


class TestFiles:
    """What read_table gives for each format meets the contract when the file does."""

    def test_valid_csv_passes(self, tmp_path: Path) -> None:
        small_table().to_csv(tmp_path / "leads.csv", index=False)
        validate(read_table(tmp_path / "leads.csv"), SMALL, FUNNEL)

    def test_a_yes_in_a_csv_label(self, tmp_path: Path) -> None:
        table = small_table(label=[0, 1, "yes", 0])
        table.to_csv(tmp_path / "leads.csv", index=False)
        validate(read_table(tmp_path / "leads.csv"), SMALL, FUNNEL)
        table.assign(label=[0, 1, "won", 0]).to_csv(tmp_path / "scoring.csv", index=False)
        scoring = read_table(tmp_path / "scoring.csv")
        validate(scoring, SMALL, FUNNEL, require_labels=False)
        (problem,) = problems_of(scoring)
        assert problem.column == "label" and problem.rows == (2,)

    def test_an_empty_or_blank_lead_id_is_rejected_as_the_service_rejects_it(self, tmp_path: Path) -> None:
        path = tmp_path / "leads.jsonl"
        small_table().assign(lead_id=["a", "", "   ", "d"]).to_json(path, orient="records", lines=True)
        (problem,) = problems_of(read_table(path))
        assert problem.column == "lead_id" and problem.rows == (1, 2) and "empty or only whitespace" in problem.message

    def test_one_word_in_a_csv_numeric_column_rejects_that_row_only(self, tmp_path: Path) -> None:
        small_table(visits=[1, 3, "many", 2]).to_csv(tmp_path / "leads.csv", index=False)
        table = read_table(tmp_path / "leads.csv")
        assert not pd.api.types.is_numeric_dtype(table["visits"])  # pandas reads the whole column as text
        (problem,) = problems_of(table)
        assert problem.column == "visits" and problem.rows == (2,) and "not a number" in problem.message
        valid, rejected = split_valid(table, SMALL, FUNNEL)
        assert list(rejected.index) == [2]
        assert valid["visits"].tolist() == [1.0, 3.0, 2.0]  # the valid rows' cells, as the numbers they wrote
        validate(valid.reset_index(drop=True), SMALL, FUNNEL)  # e.g. written to Parquet, they still follow the contract

    def test_the_same_text_numbers_outside_a_csv_are_refused(self) -> None:
        problems = problems_of(small_table(visits=["1", "3", "many", "2"]).astype({"visits": object}))
        assert {p.column for p in problems} == {"visits"}
        assert any("numbers stored as text" in p.message for p in problems)

    def test_jsonl_keeps_json_types(self, tmp_path: Path) -> None:
        path = tmp_path / "leads.jsonl"
        small_table(visits=[1, "42", None, True]).to_json(path, orient="records", lines=True)
        (boolean, text) = problems_of(read_table(path))
        assert (boolean.rows, text.rows) == ((3,), (1,))

    def test_parquet_numbers_stored_as_text(self, tmp_path: Path) -> None:
        path = tmp_path / "leads.parquet"
        small_table(visits=["1", "2", None, "4"]).to_parquet(path)
        (problem,) = problems_of(read_table(path))
        assert problem.column == "visits" and "numbers stored as text" in problem.message


class TestTimeZones:
    MIXED = ["2024-01-01 08:00", "2024-01-01T09:00:00+08:00", "2024-01-01T00:30:00Z", "2024-01-02"]

    def test_naive_and_offset_times_do_not_mix(self) -> None:
        table = small_table(as_of=self.MIXED)
        (problem,) = problems_of(table)
        assert problem.column == "as_of" and problem.rows == ()
        assert "2 values have no UTC offset (e.g. row 0: '2024-01-01 08:00')" in problem.message
        assert "timezone=" in problem.fix
        with pytest.raises(LeadDataError, match="no UTC offset"):
            split_valid(table, SMALL, FUNNEL)
        with pytest.raises(LeadDataError, match="no UTC offset"):
            parse_as_of(table["as_of"])

    def test_a_timezone_says_how_to_read_naive_times(self) -> None:
        validate(small_table(as_of=self.MIXED), SMALL, FUNNEL, timezone="Asia/Shanghai")
        times = parse_as_of(pd.Series(self.MIXED, name="as_of"), timezone="Asia/Shanghai")
        expected = ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 00:30", "2024-01-01 16:00"]
        assert times.tolist() == [pd.Timestamp(t, tz="UTC") for t in expected]

    def test_offsets_alone_are_converted_and_naive_alone_kept(self) -> None:
        aware = parse_as_of(pd.Series(["2024-01-01T09:00:00+08:00", "2024-01-01T00:30:00Z"]))
        assert aware.tolist() == [pd.Timestamp("2024-01-01 01:00", tz="UTC"), pd.Timestamp("2024-01-01 00:30", tz="UTC")]
        naive = parse_as_of(pd.Series(["2024-01-01 08:00", "2024-01-02"]))
        assert naive.tolist() == [pd.Timestamp("2024-01-01 08:00"), pd.Timestamp("2024-01-02")]
        column = pd.Series([pd.Timestamp("2024-01-01 08:00"), pd.Timestamp("2024-01-02")])
        assert parse_as_of(column, timezone="Asia/Shanghai").iloc[0] == pd.Timestamp("2024-01-01 00:00", tz="UTC")

    def test_times_a_daylight_saving_change_skips(self) -> None:
        table = small_table(as_of=["2024-03-31T02:30:00", "2024-03-31T03:30:00", "2024-01-03", "2024-01-04"])
        (problem,) = problems_of(table, timezone="Europe/Berlin")
        assert problem.rows == (0,) and "not one instant in Europe/Berlin" in problem.message
        assert parse_as_of(table["as_of"], timezone="Europe/Berlin").isna().tolist() == [True, False, False, False]

    def test_unknown_timezone_is_a_setting_error(self) -> None:
        with pytest.raises(ConfigurationError, match="unknown time zone 'Mars/Olympus'"):
            validate(small_table(), SMALL, FUNNEL, timezone="Mars/Olympus")

    def test_numbers_are_not_timestamps(self) -> None:
        (problem,) = problems_of(small_table(as_of=[1704067200, "2024-01-02", "2024-01-03", "2024-01-04"]))
        assert problem.rows == (0,) and "not a timestamp" in problem.message


class TestVocabularies:
    def test_bool_value(self) -> None:
        assert [bool_value(v) for v in ("YES ", "no", "1", 0, 1.0, True, None, np.nan)] == [
            True, False, True, False, True, True, None, None,
        ]  # fmt: skip
        with pytest.raises(DataContractError, match="'maybe' is not a boolean value"):
            bool_value("maybe")
        with pytest.raises(DataContractError):
            bool_value(2)

    def test_words(self) -> None:
        assert TRUE_WORDS.isdisjoint(FALSE_WORDS) and {"NA", "", "null"} <= MISSING_WORDS
        assert is_missing(None) and is_missing(pd.NaT) and not is_missing("NA") and not is_missing([1])

    def test_lead_data_error_is_a_data_contract_error(self) -> None:
        error = LeadDataError([Problem(None, "one", "a")])
        assert isinstance(error, DataContractError) and isinstance(error, ValueError) and error.exit_code == 3


# --------------------------------------------------------------------------------------
# Property: random clean tables with randomly corrupted cells
# --------------------------------------------------------------------------------------

_CORRUPTIONS = ["none", "text_in_numeric", "inf", "bad_stage", "bad_label", "missing_label", "nan_dialogue", "duplicate"]


@st.composite
def corrupted_tables(draw: st.DrawFn) -> tuple[pd.DataFrame, set[int], bool]:
    """(table, positions of the rows that must be rejected, whether a column was dropped)."""
    n = draw(st.integers(min_value=1, max_value=12))
    kinds = draw(st.lists(st.sampled_from(_CORRUPTIONS), min_size=n, max_size=n))
    columns: dict[str, list[object]] = {
        "lead_id": [f"id{i}" for i in range(n)],
        "as_of": [f"2024-02-{1 + i % 28:02d}" for i in range(n)],
        "visits": draw(st.lists(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=False)), min_size=n, max_size=n)),
        "city": draw(st.lists(st.one_of(st.none(), st.text(max_size=3)), min_size=n, max_size=n)),
        "parking": draw(st.lists(st.sampled_from([True, False, None, "yes", "NO", 0, 1]), min_size=n, max_size=n)),
        "dialogue": draw(st.lists(st.text(max_size=5), min_size=n, max_size=n)),
        "label": draw(st.lists(st.sampled_from([0, 1]), min_size=n, max_size=n)),
        "funnel_stage": draw(st.lists(st.sampled_from(FUNNEL.stages), min_size=n, max_size=n)),
        "call_duration_s": draw(st.lists(st.one_of(st.none(), st.integers(0, 600)), min_size=n, max_size=n)),
    }
    bad: set[int] = set()
    for row, kind in enumerate(kinds):
        if kind == "text_in_numeric":
            columns["visits"][row] = draw(st.sampled_from(["abc", "n/a", "12 km", "?"]))
        elif kind == "inf":
            columns["visits"][row] = draw(st.sampled_from([np.inf, -np.inf, "inf"]))
        elif kind == "bad_stage":
            columns["funnel_stage"][row] = draw(st.sampled_from(["won", "LOCK", "", 3]))
        elif kind == "bad_label":
            columns["label"][row] = draw(st.sampled_from([2, -1, 0.5, "maybe"]))
        elif kind == "missing_label":
            columns["label"][row] = None
        elif kind == "nan_dialogue":
            columns["dialogue"][row] = None
        elif kind == "duplicate" and row > 0:
            columns["lead_id"][row] = columns["lead_id"][draw(st.integers(0, row - 1))]
        else:
            continue
        bad.add(row)
    table = pd.DataFrame(columns)
    dropped = draw(st.sampled_from([None, None, None, "visits", "label", "as_of"]))
    if dropped:
        table = table.drop(columns=[dropped])
        if dropped == "visits":
            bad -= {r for r, k in enumerate(kinds) if k in ("text_in_numeric", "inf")}
        if dropped == "label":
            bad -= {r for r, k in enumerate(kinds) if k in ("bad_label", "missing_label")}
    return table, bad, dropped is not None


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corrupted_tables())
def test_property_no_row_lost_and_validate_agrees(case: tuple[pd.DataFrame, set[int], bool]) -> None:
    table, bad, dropped = case
    before = table.copy()
    reasons, table_problems = invalid_rows(table, SMALL, FUNNEL)
    assert {i for i, r in enumerate(reasons) if r} == bad
    assert bool(table_problems) == dropped

    raised = False
    try:
        validate(table, SMALL, FUNNEL)
    except LeadDataError as error:
        raised = True
        assert len(error.problems) >= 1
    assert raised == (bool(bad) or dropped)

    if dropped:
        with pytest.raises(LeadDataError):
            split_valid(table, SMALL, FUNNEL)
    else:
        valid, rejected = split_valid(table, SMALL, FUNNEL)
        assert len(valid) + len(rejected) == len(table)
        assert set(rejected.index) == bad
        pd.testing.assert_frame_equal(valid, table.drop(index=sorted(bad)))
    pd.testing.assert_frame_equal(table, before)
