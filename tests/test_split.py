"""leadrank.data.split: time-ordered splits and the leakage guard."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadrank.config import FunnelSpec
from leadrank.data.split import TimeSplit, check_no_leakage, time_split, validation_slice


def table(days: list[int], **extra: list[object]) -> pd.DataFrame:
    """Leads seen on 2024-01-01 + ``days``, ids 'L0', 'L1', ... in the given (unsorted) order."""
    return pd.DataFrame(
        {
            "lead_id": [f"L{i}" for i in range(len(days))],
            "as_of": pd.Timestamp("2024-01-01") + pd.to_timedelta(days, unit="D"),
            **extra,
        }
    )


class TestTimeSplit:
    def test_ties_at_the_cutoff_stay_together(self) -> None:
        # Sorted: 0 1 2 3 3 3 3 3 4 5; the 70% position (row 7) falls inside the run of day 3.
        leads = table([3, 0, 5, 3, 1, 3, 4, 3, 2, 3])
        split = time_split(leads, test_fraction=0.3)
        day3 = set(leads.lead_id[leads.as_of == pd.Timestamp("2024-01-04")])
        assert len(day3) == 5 and day3 <= set(split.train.lead_id)
        # Cutting before day 3 leaves 3 train rows, after it 8: 8 is the one closest to 7.
        assert split.cutoff == pd.Timestamp("2024-01-05")
        assert (len(split.train), len(split.test)) == (8, 2)
        assert split.train.as_of.max() < split.cutoff <= split.test.as_of.min()

    def test_ties_pick_the_closest_cutoff(self) -> None:
        # 70% of 10 rows = 7; cutoff at day 1 gives 1 train row, at day 2 gives 9 train rows.
        split = time_split(table([0] + [1] * 8 + [2]), test_fraction=0.3)
        assert (len(split.train), len(split.test)) == (9, 1)
        assert "test fraction 0.100 (requested 0.300; rows sharing one as_of stay on one side)" in split.summary()

    def test_keeps_original_order_and_index(self) -> None:
        leads = table([5, 1, 4, 2, 3, 0]).set_index(pd.Index([10, 11, 12, 13, 14, 15]))
        split = time_split(leads, test_fraction=0.5)
        assert split.train.lead_id.tolist() == ["L1", "L3", "L5"]
        assert split.test.lead_id.tolist() == ["L0", "L2", "L4"]
        assert split.test.index.tolist() == [10, 12, 14]

    def test_iso_text_is_parsed_and_kept(self) -> None:
        leads = pd.DataFrame(
            {
                "lead_id": ["a", "b", "c", "d"],
                "as_of": ["2024-01-02", "2024-01-01T09:30:00", "2024-01-03", "2024-01-04"],
            }
        )
        split = time_split(leads, test_fraction=0.5)
        assert split.train.lead_id.tolist() == ["a", "b"]
        assert split.test.as_of.tolist() == ["2024-01-03", "2024-01-04"]  # values not rewritten
        assert split.cutoff == pd.Timestamp("2024-01-03")

    def test_timezone_aware_times(self) -> None:
        leads = table([0, 1, 2, 3])
        leads["as_of"] = leads.as_of.dt.tz_localize("Asia/Shanghai")
        split = time_split(leads, test_fraction=0.25)
        assert split.cutoff == pd.Timestamp("2024-01-04", tz="Asia/Shanghai")
        assert split.test.lead_id.tolist() == ["L3"]

    def test_summary(self) -> None:
        leads = table([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], label=[1, 0, 0, 1, 0, 0, 0, 1, 1, 0])
        text = time_split(leads, test_fraction=0.3).summary()
        assert "cutoff 2024-01-08 00:00:00" in text
        assert "train:         7 rows, 2 positives (28.6%), as_of 2024-01-01 00:00:00 .. 2024-01-07 00:00:00" in text
        assert "test:          3 rows, 2 positives (66.7%), as_of 2024-01-08 00:00:00 .. 2024-01-10 00:00:00" in text
        assert "test fraction 0.300 (requested 0.300)" in text

    def test_all_one_time_is_refused(self) -> None:
        with pytest.raises(ValueError, match=r"all share as_of=2024-01-01 00:00:00.*at least two distinct as_of"):
            time_split(table([0, 0, 0]))

    @pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
    def test_fraction_out_of_range(self, fraction: float) -> None:
        with pytest.raises(ValueError, match=rf"test_fraction must be strictly between 0 and 1; got {fraction}"):
            time_split(table([0, 1]), test_fraction=fraction)

    def test_unparseable_rows_are_named(self) -> None:
        leads = pd.DataFrame({"lead_id": ["007", "008", "009"], "as_of": ["2024-01-01", "yesterday", None]})
        expected = r"2 row\(s\) have no valid as_of .*: lead_id '008' \(as_of='yesterday'\), lead_id '009'"
        with pytest.raises(ValueError, match=expected):
            time_split(leads)

    def test_numeric_time_column_is_refused(self) -> None:
        with pytest.raises(ValueError, match="must hold timestamps or ISO 8601 text.*got dtype int64"):
            time_split(pd.DataFrame({"lead_id": ["a", "b"], "as_of": [1, 2]}))

    def test_missing_time_column(self) -> None:
        expected = r"no 'seen_at' column to split on; the table has columns \['lead_id', 'as_of'\]"
        with pytest.raises(ValueError, match=expected):
            time_split(table([0, 1]), time_column="seen_at")

    def test_empty_table(self) -> None:
        with pytest.raises(ValueError, match="cannot split an empty table"):
            time_split(table([]))


class TestValidationSlice:
    def test_takes_the_most_recent_rows(self) -> None:
        train = time_split(table(list(range(20))), test_fraction=0.25).train
        fit = validation_slice(train, fraction=0.2)
        assert isinstance(fit, TimeSplit)
        assert fit.test.lead_id.tolist() == ["L12", "L13", "L14"]
        assert fit.train.as_of.max() < fit.test.as_of.min()

    def test_error_names_its_own_argument(self) -> None:
        with pytest.raises(ValueError, match="fraction must be strictly between 0 and 1; got 0"):
            validation_slice(table([0, 1]), fraction=0)


@settings(max_examples=150, deadline=None)
@given(
    days=st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=60),
    fraction=st.floats(min_value=0.01, max_value=0.99),
)
def test_split_properties(days: list[int], fraction: float) -> None:
    leads = table(days)
    if len(set(days)) < 2:
        with pytest.raises(ValueError, match="at least two distinct as_of"):
            time_split(leads, test_fraction=fraction)
        return
    split = time_split(leads, test_fraction=fraction)
    train, test = set(split.train.lead_id), set(split.test.lead_id)
    assert train | test == set(leads.lead_id)  # no row lost
    assert not train & test  # no row in both
    assert len(split.train) + len(split.test) == len(leads)
    assert split.train.as_of.max() < split.cutoff == split.test.as_of.min()
    # No other possible cutoff comes closer to the requested fraction.
    target = (1 - fraction) * len(leads)
    best = min(abs(sum(d < c for d in days) - target) for c in set(days) - {min(days)})
    assert abs(len(split.train) - target) == pytest.approx(best)


class TestLeakage:
    def test_supervision_column_is_refused(self) -> None:
        with pytest.raises(
            ValueError,
            match=r"^feature 'funnel_stage' is a supervision column \(outcome after as_of\); " r"remove it from the FeatureSpec$",
        ):
            check_no_leakage(["visits", "funnel_stage"], ["label", "funnel_stage"])

    def test_diagnostic_column_is_refused(self) -> None:
        with pytest.raises(ValueError, match="feature '_true_propensity' starts with '_'"):
            check_no_leakage(iter(["visits", "_true_propensity"]), iter(["label"]))

    def test_every_problem_is_listed(self) -> None:
        with pytest.raises(ValueError, match=r"'label' is a supervision column.*; feature '_p' starts with '_'"):
            check_no_leakage(["label", "_p"], ["label"])

    def test_clean_features_pass_with_paper_funnel(self) -> None:
        funnel = FunnelSpec.paper_default()
        check_no_leakage(["days_since_contact", "visits", "dialogue"], funnel.supervision_columns)
        with pytest.raises(ValueError, match="'call_duration_s' is a supervision column"):
            check_no_leakage(["call_duration_s"], funnel.supervision_columns)
