"""A/B test planning and analysis on simulated sales floors: leadrank.abtest."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers import concentrated_control_outcomes
from leadrank import abtest
from leadrank.abtest import BALANCE_COLUMNS, ABSimConfig, analyze, plan, simulate_outcomes, simulate_specialists
from leadrank.abtest.figures import _cumulative_figure
from leadrank.errors import ConfigurationError, DataContractError

FLOOR = ABSimConfig(n_specialists=40, days=20, seed=3)


@pytest.fixture(scope="module")
def floor() -> pd.DataFrame:
    return simulate_specialists(FLOOR)


@pytest.fixture(scope="module")
def planned(floor: pd.DataFrame) -> abtest.Plan:
    return plan(floor, seed=0)


@pytest.fixture(scope="module")
def outcomes(planned: abtest.Plan) -> pd.DataFrame:
    return simulate_outcomes(planned.assignment, FLOOR)


def run_test(config: ABSimConfig) -> pd.Series:
    """Simulate, plan, run and analyse one test; the treatment row of the summary."""
    assignment = plan(simulate_specialists(config), days=config.days, seed=config.seed).assignment
    summary = analyze(simulate_outcomes(assignment, config), assignment, seed=config.seed).summary
    return summary.set_index("arm").loc["treatment"]


class TestSimulator:
    def test_history_windows_are_nested_and_tiers_even(self, floor: pd.DataFrame) -> None:
        assert (floor["lockins_7d"] <= floor["lockins_14d"]).all()
        assert (floor["lockins_14d"] <= floor["lockins_30d"]).all()
        assert floor["tier"].value_counts().tolist() == [10] * 4

    def test_stronger_tiers_convert_more(self, floor: pd.DataFrame) -> None:
        by_tier = floor.groupby("tier")["_true_rate"].mean()
        assert by_tier.is_monotonic_increasing

    def test_outcomes_carry_the_true_uplift(self, planned: abtest.Plan) -> None:
        config = ABSimConfig(n_specialists=40, days=200, uplift=1.0, seed=3)
        leads = simulate_outcomes(planned.assignment, config).merge(planned.assignment[["specialist_id", "arm", "_true_rate"]])
        expected = leads["_true_rate"] * np.where(leads["arm"] == "control", 1.0, 2.0)
        assert leads["converted"].mean() == pytest.approx(expected.mean(), rel=0.05)

    def test_rejects_impossible_rates(self) -> None:
        with pytest.raises(ValueError, match="baseline_rate"):
            ABSimConfig(baseline_rate=0.3, uplift=1.0)


class TestPlan:
    def test_each_tier_splits_evenly_across_arms(self, planned: abtest.Plan) -> None:
        split = pd.crosstab(planned.assignment["tier"], planned.assignment["arm"])
        assert list(split.columns) == ["control", "treatment"]
        assert (split["control"] == split["treatment"]).all()

    @pytest.mark.parametrize("arms", [3, 4])
    def test_more_arms_stay_even_per_tier_and_overall(self, floor: pd.DataFrame, arms: int) -> None:
        assignment = plan(floor, arms=arms, seed=1).assignment
        split = pd.crosstab(assignment["tier"], assignment["arm"])
        assert list(split.columns) == abtest.arm_names(arms)
        assert (split.max(axis=1) - split.min(axis=1) <= 1).all()
        assert split.sum().max() - split.sum().min() <= 1

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_arms_are_balanced_on_history(self, floor: pd.DataFrame, seed: int) -> None:
        balance = plan(floor, seed=seed).balance
        assert list(balance.index) == list(BALANCE_COLUMNS)
        assert balance["smd_treatment"].abs().max() < 0.1

    def test_balance_table_follows_its_definition(self, planned: abtest.Plan) -> None:
        arm = planned.assignment.set_index("arm")["lockins_7d"]
        control, treated = arm.loc["control"], arm.loc["treatment"]
        smd = (treated.mean() - control.mean()) / np.sqrt((treated.var() + control.var()) / 2)
        row = planned.balance.loc["lockins_7d"]
        assert row["control"] == pytest.approx(control.mean())
        assert row["smd_treatment"] == pytest.approx(smd)

    def test_same_seed_same_assignment_whatever_the_row_order(self, floor: pd.DataFrame, planned: abtest.Plan) -> None:
        shuffled = floor.sample(frac=1.0, random_state=7)
        again = plan(shuffled, seed=0).assignment
        pd.testing.assert_frame_equal(again, planned.assignment)
        other = plan(floor, seed=1).assignment
        assert not other["arm"].equals(planned.assignment["arm"])

    def test_input_is_not_modified(self, floor: pd.DataFrame) -> None:
        before = floor.copy()
        plan(floor, seed=0)
        pd.testing.assert_frame_equal(floor, before)

    def test_derives_quartile_tiers_without_a_tier_column(self, floor: pd.DataFrame) -> None:
        result = plan(floor.drop(columns="tier"), seed=0)
        assignment = result.assignment
        assert result.tiers_derived and not plan(floor, seed=0).tiers_derived
        assert assignment["tier"].value_counts().sort_index().tolist() == [10] * 4
        conversion = (assignment["lockins_30d"] / assignment["followups_30d"]).groupby(assignment["tier"]).mean()
        assert conversion.is_monotonic_increasing
        split = pd.crosstab(assignment["tier"], assignment["arm"])
        assert (split["control"] == split["treatment"]).all()


class TestPower:
    def test_mde_matches_the_normal_approximation(self, planned: abtest.Plan) -> None:
        power = planned.power
        sd = np.sqrt(power.baseline_rate * (1 - power.baseline_rate) * power.design_effect / power.leads_per_specialist)
        z = stats.norm.ppf(1 - power.alpha / 2) + stats.norm.ppf(power.power)
        normal = z * sd * np.sqrt(1 / power.specialists_control + 1 / power.specialists_treatment)
        # The t-test needs a little more than the normal test with 20 specialists per arm.
        assert normal < power.mde_absolute < 1.05 * normal
        assert power.mde_relative == pytest.approx(power.mde_absolute / power.baseline_rate)

    def test_longer_tests_and_busier_specialists_detect_less(self, planned: abtest.Plan) -> None:
        assignment = planned.assignment
        short = abtest.estimate_power(assignment, days=14)
        long = abtest.estimate_power(assignment, days=56)
        busy = abtest.estimate_power(assignment, days=14, leads_per_day=20.0)
        assert long.mde_absolute < short.mde_absolute
        assert busy.mde_absolute < short.mde_absolute
        assert busy.leads_per_specialist == 280.0

    def test_design_effect_grows_with_between_specialist_spread(self, planned: abtest.Plan) -> None:
        uniform = planned.assignment.assign(lockins_30d=15, lockins_14d=7, lockins_7d=3, followups_30d=150)
        flat = abtest.estimate_power(uniform, days=28)
        assert flat.icc == 0.0 and flat.design_effect == 1.0
        spread = abtest.estimate_power(planned.assignment, days=28)
        assert spread.icc > 0 and spread.design_effect > 1
        assert spread.mde_absolute > flat.mde_absolute * 0.9 * np.sqrt(spread.design_effect)

    def test_rejects_bad_duration(self, planned: abtest.Plan) -> None:
        with pytest.raises(ValueError, match="days must be at least 1"):
            abtest.estimate_power(planned.assignment, days=0)


class TestPlanErrors:
    def test_missing_columns_are_named(self, floor: pd.DataFrame) -> None:
        with pytest.raises(ValueError, match=r"lacks column\(s\) \['lockins_14d', 'followups_30d'\]"):
            plan(floor.drop(columns=["lockins_14d", "followups_30d"]))

    def test_bad_values_name_rows_columns_and_values(self, floor: pd.DataFrame) -> None:
        bad = floor.astype({"lockins_7d": object})
        bad.loc[3, "lockins_7d"] = "many"
        bad.loc[5, "specialist_id"] = bad.loc[4, "specialist_id"]
        bad.loc[6, "followups_30d"] = 0
        with pytest.raises(ValueError) as caught:
            plan(bad)
        message = str(caught.value)
        assert "3 problem(s)" in message
        assert "'lockins_7d' needs whole counts >= 0: 1 row(s): 3 ('many')" in message
        assert "'specialist_id' repeats" in message and "5 ('S004')" in message
        assert "'followups_30d' is 0" in message

    def test_swapped_windows_are_caught(self, floor: pd.DataFrame) -> None:
        swapped = floor.rename(columns={"lockins_7d": "lockins_30d", "lockins_30d": "lockins_7d"})
        with pytest.raises(ValueError, match="'lockins_14d' exceeds 'lockins_30d'.*columns swapped"):
            plan(swapped)

    def test_too_few_specialists_or_arms(self, floor: pd.DataFrame) -> None:
        with pytest.raises(ValueError, match="at least 8 specialists"):
            plan(floor.head(7), arms=4)
        with pytest.raises(ValueError, match="arms must be at least 2"):
            plan(floor, arms=1)


class TestAnalyze:
    def test_summary_counts_and_uplift(self, planned: abtest.Plan, outcomes: pd.DataFrame) -> None:
        summary = analyze(outcomes, planned.assignment).summary.set_index("arm")
        joined = outcomes.merge(planned.assignment[["specialist_id", "arm"]], on="specialist_id")
        by_arm = joined.groupby("arm")["converted"].agg(["size", "sum"])
        assert list(summary.index) == ["control", "treatment"]
        assert summary["leads"].tolist() == by_arm["size"].tolist()
        assert summary["conversions"].tolist() == by_arm["sum"].tolist()
        rate = by_arm["sum"] / by_arm["size"]
        assert summary.loc["treatment", "uplift"] == pytest.approx(rate["treatment"] / rate["control"] - 1)
        assert np.isnan(summary.loc["control", "p_value"])

    def test_welch_test_is_on_specialist_rates(self, planned: abtest.Plan, outcomes: pd.DataFrame) -> None:
        treated = analyze(outcomes, planned.assignment).summary.set_index("arm").loc["treatment"]
        joined = outcomes.merge(planned.assignment[["specialist_id", "arm"]], on="specialist_id")
        rates = joined.groupby(["arm", "specialist_id"])["converted"].mean()
        expected = stats.ttest_ind(rates["treatment"], rates["control"], equal_var=False)
        assert treated["p_value"] == pytest.approx(expected.pvalue)
        assert treated["specialists"] == 20

    def test_arm_column_works_without_an_assignment(self, planned: abtest.Plan, outcomes: pd.DataFrame) -> None:
        with_arm = outcomes.merge(planned.assignment[["specialist_id", "arm"]], on="specialist_id")
        pd.testing.assert_frame_equal(analyze(with_arm).summary, analyze(outcomes, planned.assignment).summary)

    def test_bootstrap_is_seeded(self, planned: abtest.Plan, outcomes: pd.DataFrame) -> None:
        first = analyze(outcomes, planned.assignment, seed=5).summary
        pd.testing.assert_frame_equal(first, analyze(outcomes, planned.assignment, seed=5).summary)
        other = analyze(outcomes, planned.assignment, seed=6).summary
        assert other.loc[1, "uplift_low"] != first.loc[1, "uplift_low"]

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_recovers_a_large_true_uplift(self, seed: int) -> None:
        treated = run_test(ABSimConfig(n_specialists=60, uplift=0.6, seed=seed))
        assert treated["uplift_low"] < 0.6 < treated["uplift_high"]
        assert treated["uplift_low"] > 0
        assert treated["p_value"] < 0.05

    def test_no_uplift_ci_covers_zero_at_least_nominally(self) -> None:
        """The stratified, balanced design makes the specialist-level analysis conservative."""
        runs = [run_test(ABSimConfig(n_specialists=40, uplift=0.0, seed=seed)) for seed in range(8)]
        covered = sum(run["uplift_low"] < 0 < run["uplift_high"] for run in runs)
        significant = sum(run["p_value"] < 0.05 for run in runs)
        assert covered >= 7 and significant <= 1

    def test_difference_in_rates_beside_the_relative_uplift(self, planned: abtest.Plan, outcomes: pd.DataFrame) -> None:
        summary = analyze(outcomes, planned.assignment).summary.set_index("arm")
        treated, control = summary.loc["treatment"], summary.loc["control"]
        assert treated["difference"] == pytest.approx(treated["conversion_rate"] - control["conversion_rate"])
        assert treated["difference_low"] < treated["difference"] < treated["difference_high"]
        assert treated["uplift_low"] < treated["uplift"] < treated["uplift_high"]
        assert treated["note"] == "" and control["note"] == ""
        assert control[["difference", "difference_low", "difference_high"]].isna().all()

    def test_uplift_ci_is_missing_with_a_note_when_control_resamples_have_no_conversion(self) -> None:
        """Control's 4 conversions all come from C1: every resample without C1 has a control rate of 0.

        That is 1 - (1 - 1/4)^4, about 68 %, of the resamples; the relative uplift divides by zero
        on them, so its CI must be missing (not NaN by accident, nor a number from the rest), with
        a note, while the difference in rates keeps a finite CI around its estimate.
        """
        outcomes = concentrated_control_outcomes()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no division-by-zero or degenerate-bootstrap warnings leak out
            summary = analyze(outcomes, seed=0).summary.set_index("arm")
        treated = summary.loc["treatment"]
        assert treated["uplift"] == pytest.approx(0.175 / 0.05 - 1)  # the point estimate is defined
        assert np.isnan(treated["uplift_low"]) and np.isnan(treated["uplift_high"])
        assert re.search(r"uplift CI not computed: it is undefined on [\d,]+ of 2,000 bootstrap resamples", treated["note"])
        assert "1 of its 4 specialists" in treated["note"] and "difference_low/difference_high" in treated["note"]
        assert treated["difference"] == pytest.approx(0.125)
        assert np.isfinite(treated["difference_low"]) and np.isfinite(treated["difference_high"])
        assert treated["difference_low"] <= treated["difference"] <= treated["difference_high"]
        assert np.isfinite(treated["p_value"])

    def test_cumulative_ends_at_the_overall_rate(self, planned: abtest.Plan, outcomes: pd.DataFrame) -> None:
        result = analyze(outcomes, planned.assignment)
        cumulative = result.cumulative
        assert cumulative["arm"].unique().tolist() == ["control", "treatment"]
        for arm, rows in cumulative.groupby("arm"):
            assert rows["date"].is_monotonic_increasing and rows["leads"].is_monotonic_increasing
            assert len(rows) == FLOOR.days
            final = result.summary.set_index("arm").loc[arm, "conversion_rate"]
            assert rows["conversion_rate"].iloc[-1] == pytest.approx(final)

    def test_figure_is_a_png_written_atomically(self, tmp_path: Path, planned: abtest.Plan, outcomes: pd.DataFrame) -> None:
        path = abtest.plot_cumulative(analyze(outcomes, planned.assignment), tmp_path / "figs" / "cumulative.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert [p.name for p in path.parent.iterdir()] == ["cumulative.png"]


class TestAnalyzeErrors:
    def test_missing_columns_are_named(self, planned: abtest.Plan, outcomes: pd.DataFrame) -> None:
        with pytest.raises(ValueError, match=r"lacks column\(s\) \['converted'\]"):
            analyze(outcomes.drop(columns="converted"), planned.assignment)
        with pytest.raises(ValueError, match=r"lacks column\(s\) \['arm'\].*pass the assignment"):
            analyze(outcomes)

    def test_unknown_specialist_is_named(self, planned: abtest.Plan, outcomes: pd.DataFrame) -> None:
        stray = outcomes.copy()
        stray.loc[2, "specialist_id"] = "S999"
        with pytest.raises(ValueError, match=r"not in the assignment.*1 row\(s\): 2 \('S999'\)"):
            analyze(stray, planned.assignment)

    def test_arm_without_data(self, planned: abtest.Plan, outcomes: pd.DataFrame) -> None:
        control = planned.assignment.loc[planned.assignment["arm"] == "control", "specialist_id"]
        with pytest.raises(ValueError, match="Arm 'treatment' has no leads"):
            analyze(outcomes[outcomes["specialist_id"].isin(control)], planned.assignment)

    def test_arm_with_one_specialist(self, planned: abtest.Plan, outcomes: pd.DataFrame) -> None:
        assignment = planned.assignment
        keep = set(assignment.loc[assignment["arm"] == "control", "specialist_id"])
        keep.add(assignment.loc[assignment["arm"] == "treatment", "specialist_id"].iloc[0])
        with pytest.raises(ValueError, match="only 1 specialist"):
            analyze(outcomes[outcomes["specialist_id"].isin(keep)], assignment)

    def test_bad_outcome_values(self, planned: abtest.Plan, outcomes: pd.DataFrame) -> None:
        bad = outcomes.astype({"converted": object, "date": object})
        bad.loc[1, "converted"] = "yes"
        bad.loc[4, "converted"] = 2
        bad.loc[8, "date"] = "someday"
        with pytest.raises(ValueError) as caught:
            analyze(bad, planned.assignment)
        message = str(caught.value)
        assert "'converted' must be 0 or 1: 2 row(s): 1 ('yes'), 4 (2)" in message
        assert "'date' is not a date: 1 row(s): 8 ('someday')" in message

    def test_arm_that_contradicts_the_assignment(self, planned: abtest.Plan, outcomes: pd.DataFrame) -> None:
        wrong = outcomes.merge(planned.assignment[["specialist_id", "arm"]], on="specialist_id")
        wrong.loc[0, "arm"] = "treatment" if wrong.loc[0, "arm"] == "control" else "control"
        with pytest.raises(ValueError, match="differs from the assignment's arm"):
            analyze(wrong, planned.assignment)

    def test_needs_a_control_arm(self, planned: abtest.Plan, outcomes: pd.DataFrame) -> None:
        renamed = planned.assignment.replace({"arm": {"control": "baseline"}})
        with pytest.raises(ValueError, match="No arm is called 'control'"):
            analyze(outcomes, renamed)


def _welch_df(n_control: int, n_treatment: int) -> float:
    """Welch–Satterthwaite degrees of freedom when both arms' rates have the same spread."""
    a, b = 1 / n_control, 1 / n_treatment
    return (a + b) ** 2 / (a**2 / (n_control - 1) + b**2 / (n_treatment - 1))


class TestWelchPower:
    @staticmethod
    def _sd(power: abtest.Power) -> float:
        return float(np.sqrt(power.baseline_rate * (1 - power.baseline_rate) * power.design_effect / power.leads_per_specialist))

    def test_unequal_arms_are_sized_for_welchs_test(self, planned: abtest.Plan) -> None:
        """8 control vs 32 treatment specialists: Welch's test has about 11 degrees of freedom, Student's 38."""
        from statsmodels.stats.power import TTestIndPower

        assignment = planned.assignment.assign(arm=["control"] * 8 + ["treatment"] * 32)
        power = abtest.estimate_power(assignment, days=28)
        effect = power.mde_absolute / self._sd(power)
        achieved = TTestIndPower().power(effect, nobs1=8, alpha=0.05, ratio=4.0, df=_welch_df(8, 32))
        assert achieved == pytest.approx(0.8, abs=1e-6)
        student = TTestIndPower().solve_power(nobs1=8, alpha=0.05, power=0.8, ratio=4.0)
        assert effect > 1.02 * student

    def test_equal_arms_match_students_test(self, planned: abtest.Plan) -> None:
        from statsmodels.stats.power import TTestIndPower

        power = planned.power
        student = TTestIndPower().solve_power(nobs1=20, alpha=0.05, power=0.8, ratio=1.0)
        assert power.mde_absolute == pytest.approx(student * self._sd(power), rel=1e-6)

    def test_power_must_exceed_alpha(self, planned: abtest.Plan) -> None:
        with pytest.raises(ConfigurationError, match=r"0 < alpha < power < 1"):
            abtest.estimate_power(planned.assignment, days=28, alpha=0.05, power=0.04)


class TestErrorKinds:
    def test_settings_and_tables_raise_their_kind(self, floor: pd.DataFrame, planned: abtest.Plan, outcomes: pd.DataFrame) -> None:
        with pytest.raises(ConfigurationError):
            plan(floor, arms=1)
        with pytest.raises(ConfigurationError):
            abtest.estimate_power(planned.assignment, days=0)
        with pytest.raises(DataContractError):
            plan(floor.drop(columns="lockins_7d"))
        with pytest.raises(DataContractError):
            analyze(outcomes.assign(converted=2), planned.assignment)


def _early_outcomes() -> pd.DataFrame:
    """On day 1 only C1 of control has leads; from day 2 on, C2 too."""
    rows = [
        ("control", "C1", "2024-03-01", [1, 0, 0]),
        ("control", "C1", "2024-03-02", [0, 1]),
        ("control", "C2", "2024-03-02", [0, 0, 1]),
        ("control", "C2", "2024-03-03", [0, 0]),
        ("treatment", "T1", "2024-03-01", [1, 1, 0]),
        ("treatment", "T2", "2024-03-01", [0, 1]),
        ("treatment", "T1", "2024-03-03", [1, 0]),
        ("treatment", "T2", "2024-03-02", [0, 0, 1]),
    ]
    return pd.DataFrame(
        [{"arm": arm, "specialist_id": who, "date": day, "converted": value} for arm, who, day, values in rows for value in values]
    )


class TestCumulativeInterval:
    def test_final_day_interval_treats_specialists_as_the_unit(self, planned: abtest.Plan, outcomes: pd.DataFrame) -> None:
        cumulative = analyze(outcomes, planned.assignment).cumulative
        joined = outcomes.merge(planned.assignment[["specialist_id", "arm"]], on="specialist_id")
        z = stats.norm.ppf(0.975)
        for arm, rows in cumulative.groupby("arm"):
            per_specialist = joined[joined["arm"] == arm].groupby("specialist_id")["converted"].agg(["size", "sum"])
            n, c = per_specialist["size"].to_numpy(float), per_specialist["sum"].to_numpy(float)
            rate, k = c.sum() / n.sum(), len(n)
            se = np.sqrt(k / (k - 1) * ((c - rate * n) ** 2).sum()) / n.sum()
            last = rows.iloc[-1]
            assert last["conversion_low"] == pytest.approx(rate - z * se)
            assert last["conversion_high"] == pytest.approx(rate + z * se)
            assert (rows["conversion_low"] <= rows["conversion_rate"]).all() and (rows["conversion_rate"] <= rows["conversion_high"]).all()
            first = rows.iloc[0]
            assert first["conversion_high"] - first["conversion_low"] > last["conversion_high"] - last["conversion_low"]

    def test_no_interval_while_one_specialist_has_leads(self) -> None:
        cumulative = analyze(_early_outcomes()).cumulative.set_index(["arm", "date"])
        control = cumulative.loc["control"]
        assert control["leads"].tolist() == [3, 8, 10]
        assert np.isnan(control["conversion_low"].iloc[0]) and np.isnan(control["conversion_high"].iloc[0])
        assert np.isfinite(control["conversion_low"].iloc[1:]).all()
        assert np.isfinite(cumulative.loc["treatment", "conversion_low"]).all()

    def test_figure_draws_bands_a_note_and_a_legend_off_the_plot(self, planned: abtest.Plan, outcomes: pd.DataFrame) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        figure = _cumulative_figure(analyze(outcomes, planned.assignment))
        FigureCanvasAgg(figure).draw()
        (axes,) = figure.axes
        assert len(axes.collections) == 2  # one band per arm
        (legend,) = figure.legends
        assert not legend.get_window_extent().overlaps(axes.get_window_extent())
        assert "swing" in figure.get_supxlabel() and "95%" in figure.get_supxlabel()
