"""LightGBM baselines, the tabular encoder and the baseline comparison.

leadrank.baselines.gbdt, leadrank.encoding, leadrank.experiments.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from leadrank.baselines import GBDTBaseline, GBDTConfig
from leadrank.config import Feature, FeatureSpec, FunnelSpec
from leadrank.data.split import TimeSplit, time_split
from leadrank.data.synth import SynthConfig, simulate
from leadrank.encoding import TabularEncoder, as_bool_float
from leadrank.experiments import compare_baselines
from leadrank.metrics import MIN_LEADS_FOR_PRECISION, score_row

NEV = FeatureSpec.nev_default()
FUNNEL = FunnelSpec.paper_default()
NO_DIALOGUE = NEV.model_copy(update={"dialogue_column": None})
#: Fewer trees than the default: enough to test determinism, a fraction of the time.
QUICK = GBDTConfig(n_estimators=30)


@pytest.fixture(scope="module")
def split() -> TimeSplit:
    """Dense preset (about 10 % positives), latest 30 % of leads as test."""
    return time_split(simulate(SynthConfig.preset("dense", n=6000, seed=3)), 0.3)


@pytest.fixture(scope="module", params=[False, True], ids=["tabular", "tfidf"])
def fitted(request: pytest.FixtureRequest, split: TimeSplit) -> GBDTBaseline:
    return GBDTBaseline(NEV, use_dialogue=request.param).fit(split.train)


def with_unseen_categories(table: pd.DataFrame, rows: int = 10) -> pd.DataFrame:
    changed = table.copy()
    changed.loc[changed.index[:rows], "source"] = "tiktok"
    changed.loc[changed.index[:rows], "budget_band"] = "free"
    return changed


class TestGBDTBaseline:
    def test_one_probability_per_test_row(self, fitted: GBDTBaseline, split: TimeSplit) -> None:
        scores = fitted.predict(split.test)
        assert scores.shape == (len(split.test),)
        assert np.isfinite(scores).all()
        assert ((scores >= 0) & (scores <= 1)).all()

    def test_ranks_clearly_better_than_random(self, fitted: GBDTBaseline, split: TimeSplit) -> None:
        assert roc_auc_score(split.test["label"], fitted.predict(split.test)) > 0.65

    def test_names(self) -> None:
        assert GBDTBaseline(NEV).name == "LightGBM tabular"
        assert GBDTBaseline(NEV, use_dialogue=True).name == "LightGBM tabular + TF-IDF"

    @pytest.mark.parametrize("use_dialogue", [False, True], ids=["tabular", "tfidf"])
    def test_deterministic_for_a_fixed_seed(self, split: TimeSplit, use_dialogue: bool) -> None:
        def scores(seed: int) -> np.ndarray:
            config = GBDTConfig(n_estimators=QUICK.n_estimators, seed=seed)
            return GBDTBaseline(NEV, use_dialogue=use_dialogue, config=config).fit(split.train).predict(split.test)

        first = scores(seed=5)
        np.testing.assert_array_equal(first, scores(seed=5))
        assert not np.array_equal(first, scores(seed=6))  # the seed is really used (row and column sampling)

    def test_dialogue_needs_a_dialogue_column(self, split: TimeSplit) -> None:
        model = GBDTBaseline(NO_DIALOGUE, use_dialogue=True)
        with pytest.raises(ValueError, match=r"use_dialogue=True needs a FeatureSpec with a dialogue_column; this spec has none"):
            model.fit(split.train)

    def test_construction_does_no_work(self) -> None:
        # sklearn convention: validation happens in fit, so a bad combination still constructs.
        model = GBDTBaseline(NO_DIALOGUE, use_dialogue=True)
        assert not hasattr(model, "model_")

    def test_unseen_categories_do_not_crash(self, fitted: GBDTBaseline, split: TimeSplit) -> None:
        scores = fitted.predict(split.test)
        changed = fitted.predict(with_unseen_categories(split.test))
        assert changed.shape == scores.shape
        assert ((changed >= 0) & (changed <= 1)).all()
        np.testing.assert_array_equal(changed[10:], scores[10:])  # other rows are untouched

    def test_label_column_is_configurable(self, split: TimeSplit) -> None:
        train = split.train.rename(columns={"label": "won"})
        model = GBDTBaseline(NEV, label_column="won", config=QUICK).fit(train)
        assert model.predict(split.test).shape == (len(split.test),)


class TestAsBoolFloat:
    def test_accepted_spellings(self) -> None:
        values = pd.Series(["yes", "no", True, 0, 1, "TRUE", "False", " Yes ", 1.0, 0.0, np.True_], name="flag")
        np.testing.assert_array_equal(as_bool_float(values), [1, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1])

    def test_missing_is_nan(self) -> None:
        result = as_bool_float(pd.Series([None, np.nan, pd.NA, "yes"], name="flag", dtype=object))
        assert np.isnan(result[:3]).all() and result[3] == 1.0

    @pytest.mark.parametrize("bad", ["maybe", 2, "y"])
    def test_other_values_raise_naming_the_column(self, bad: object) -> None:
        with pytest.raises(ValueError, match=rf"column 'opted_in': {bad!r} is not a yes/no value; run `leadrank validate` first"):
            as_bool_float(pd.Series(["yes", bad], name="opted_in"))


class TestTabularEncoder:
    SPEC = FeatureSpec(
        features=[
            Feature(name="city", kind="categorical"),
            Feature(name="parking", kind="bool"),
            Feature(name="visits", kind="numeric"),
        ],
        dialogue_column=None,
    )

    def test_categories_are_learned_on_train_only(self) -> None:
        train = pd.DataFrame({"city": ["b", "a", None, "b"], "parking": ["yes"] * 4, "visits": [1, 2, 3, 4]})
        test = pd.DataFrame({"city": ["a", "c", None], "parking": ["no"] * 3, "visits": [1, 2, 3]})
        encoder = TabularEncoder(self.SPEC).fit(train)
        assert encoder.categories_ == {"city": ["a", "b"]}
        city = encoder.transform(test)["city"]
        assert list(city.cat.categories) == ["a", "b"]
        assert city.iloc[0] == "a"
        assert city.isna().tolist() == [False, True, True]  # unseen 'c' and the gap are both missing

    def test_output_types_and_index(self) -> None:
        table = pd.DataFrame({"city": ["a", "b"], "parking": [True, "no"], "visits": ["3", None]}, index=pd.Index([7, 9]))
        encoded = TabularEncoder(self.SPEC).fit(table).transform(table)
        assert list(encoded.columns) == ["city", "parking", "visits"]
        assert encoded.index.tolist() == [7, 9]
        assert isinstance(encoded["city"].dtype, pd.CategoricalDtype)
        np.testing.assert_array_equal(encoded["parking"], [1.0, 0.0])
        np.testing.assert_array_equal(encoded["visits"], [3.0, np.nan])

    def test_bad_flag_raises_naming_the_column(self) -> None:
        table = pd.DataFrame({"city": ["a"], "parking": ["maybe"], "visits": [1]})
        encoder = TabularEncoder(self.SPEC).fit(table.assign(parking="yes"))
        with pytest.raises(ValueError, match=r"column 'parking': 'maybe' is not a yes/no value"):
            encoder.transform(table)

    def test_unseen_categories_need_no_deprecated_pandas_behaviour(self) -> None:
        train = pd.DataFrame({"city": ["a", "b"], "parking": ["yes"] * 2, "visits": [1, 2]})
        encoder = TabularEncoder(self.SPEC).fit(train)
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            encoder.transform(train.assign(city=["a", "c"]))

    def test_integer_codes_match_across_int_and_float_columns(self) -> None:
        train = pd.DataFrame({"city": [1, 2, np.nan], "parking": ["yes"] * 3, "visits": [1, 2, 3]})
        score = pd.DataFrame({"city": [1, 2], "parking": ["yes"] * 2, "visits": [1, 2]})
        city = TabularEncoder(self.SPEC).fit(train).transform(score)["city"]
        assert city.notna().all()


class TestScoreRow:
    def test_columns_and_values(self) -> None:
        labels = np.array([1, 0] * 1000)
        row = score_row("m", labels, labels.astype(float))
        assert list(row) == ["model", "auc", "pr_auc", "p@0.1%", "p@1%", "p@5%", "r@5%"]
        assert row["model"] == "m" and row["auc"] == 1.0
        assert np.isnan(row["p@0.1%"])  # 2 leads in the top 0.1 %
        assert row["p@1%"] == 1.0 and row["p@5%"] == 1.0  # 20 and 100 leads

    def test_precision_at_the_threshold(self) -> None:
        rng = np.random.default_rng(0)
        n = 1000 * MIN_LEADS_FOR_PRECISION  # the top 0.1 % holds exactly 20 leads
        row = score_row("m", rng.integers(0, 2, n), rng.random(n))
        assert not np.isnan(row["p@0.1%"])

    def test_precision_when_the_rounded_top_set_reaches_the_threshold(self) -> None:
        rng = np.random.default_rng(0)
        n = 1000 * MIN_LEADS_FOR_PRECISION - 1
        row = score_row("m", rng.integers(0, 2, n), rng.random(n))
        assert not np.isnan(row["p@0.1%"])


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    small = time_split(simulate(SynthConfig.preset("dense", n=2000, seed=4)), 0.3)
    return compare_baselines(small, NEV, FUNNEL, seed=0)


class TestCompareBaselines:
    def test_three_rows_oracle_last(self, results: pd.DataFrame) -> None:
        assert results["model"].tolist() == ["LightGBM tabular", "LightGBM tabular + TF-IDF", "oracle (true propensity)"]
        assert list(results.columns) == ["model", "auc", "pr_auc", "p@0.1%", "p@1%", "p@5%", "r@5%"]

    def test_only_the_top_tenth_of_a_percent_needs_twenty_leads(self, results: pd.DataFrame) -> None:
        # About 600 test leads: the top 0.1 % holds fewer than 20 leads and is not reported; P@1 %
        # and P@5 % are the fallback, always reported (the bench suites add their intervals).
        assert results["p@0.1%"].isna().all()
        assert results["p@1%"].notna().all()
        assert results["p@5%"].notna().all()

    def test_oracle_is_the_ceiling(self, results: pd.DataFrame) -> None:
        oracle = results.iloc[-1]
        assert (results["auc"].iloc[:-1] < oracle["auc"]).all()

    def test_without_dialogue_or_oracle(self) -> None:
        small = time_split(simulate(SynthConfig.preset("dense", n=1000, seed=5)).drop(columns="_true_propensity"), 0.3)
        results = compare_baselines(small, NO_DIALOGUE, FUNNEL)
        assert results["model"].tolist() == ["LightGBM tabular"]
