"""The paper's baselines: the funnel + recency rule, logistic regression, the six CTR models, funnel + CTR.

leadrank.baselines.rules, .linear, .ctr, .funnel_ctr.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from leadrank.baselines import (
    CTR_MODELS,
    CTR_TUNED,
    CTRBaseline,
    FunnelDirect,
    FunnelRecencyRule,
    FunnelTwoStage,
    LogisticBaseline,
)
from leadrank.baselines._columns import spec_without
from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.split import TimeSplit, time_split
from leadrank.data.synth import SynthConfig, simulate

NEV = FeatureSpec.nev_default()
#: Two epochs without a validation slice: enough to beat random, a second per model.
QUICK = {"epochs": 2, "validation_fraction": None}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Keep the CPU use of these tests modest; restore the thread count afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def split() -> TimeSplit:
    """Dense preset (about 10 % positives), latest 30 % of 3,000 leads as test."""
    return time_split(simulate(SynthConfig.preset("dense", n=3000, seed=3)), 0.3)


def auc(split: TimeSplit, scores: np.ndarray) -> float:
    return float(roc_auc_score(split.test["label"], scores))


def with_unseen_categories(table: pd.DataFrame, rows: int = 10) -> pd.DataFrame:
    changed = table.copy()
    changed.loc[changed.index[:rows], "source"] = "tiktok"
    changed.loc[changed.index[:rows], "budget_band"] = "free"
    return changed


def assert_scores(scores: np.ndarray, table: pd.DataFrame) -> None:
    assert scores.shape == (len(table),)
    assert scores.dtype == np.float64
    assert np.isfinite(scores).all()


class TestFunnelRecencyRule:
    def test_beats_random(self, split: TimeSplit) -> None:
        rule = FunnelRecencyRule(NEV).fit(split.train)
        scores = rule.predict(split.test)
        assert_scores(scores, split.test)
        assert auc(split, scores) > 0.55
        assert rule.name == "Funnel + recency rule"

    def test_stage_first_then_most_recent(self) -> None:
        table = pd.DataFrame(
            {
                "stage_at_as_of": ["new", "call", "call", "test_drive", "call", None],
                "days_since_last_contact": [0.0, 9.0, 1.0, 300.0, np.nan, 0.0],
            }
        )
        scores = FunnelRecencyRule(NEV).fit(table).predict(table)
        # test drive (even 300 days ago) > call 1 day > call 9 days > call never > new > missing stage
        assert np.argsort(-scores).tolist() == [3, 2, 1, 4, 0, 5]

    def test_larger_is_recent(self) -> None:
        table = pd.DataFrame({"stage": ["b", "b", "a"], "visits_7d": [1, 5, 50]})
        rule = FunnelRecencyRule(NEV, stage_column="stage", stage_order=["a", "b"], recency_column="visits_7d", recent="larger")
        assert np.argsort(-rule.fit(table).predict(table)).tolist() == [1, 0, 2]

    def test_missing_column_is_named(self, split: TimeSplit) -> None:
        with pytest.raises(ValueError, match=r"no column\(s\) \['days_since_last_contact'\]"):
            FunnelRecencyRule(NEV).fit(split.train.drop(columns="days_since_last_contact"))

    def test_unknown_stage_is_named(self, split: TimeSplit) -> None:
        with pytest.raises(ValueError, match=r"holds stage\(s\) \['test_drive'\] that are not in stage_order \['new', 'call'\]"):
            FunnelRecencyRule(NEV, stage_order=["new", "call"]).fit(split.train)

    def test_outcome_columns_are_refused(self, split: TimeSplit) -> None:
        with pytest.raises(ValueError, match=r"stage_column='funnel_stage' is an outcome \(supervision\) column"):
            FunnelRecencyRule(NEV, stage_column="funnel_stage").fit(split.train)
        with pytest.raises(ValueError, match=r"recency_column='_true_propensity' starts with '_'"):
            FunnelRecencyRule(NEV, recency_column="_true_propensity", recent="larger").fit(split.train)

    def test_the_outcome_columns_of_a_users_own_funnel_are_refused(self, split: TimeSplit) -> None:
        """A real-estate funnel: its stage column 'deal_stage' and rule column 'viewing_minutes' are outcomes."""
        funnel = FunnelSpec.model_validate(
            {
                "stages": ["lost", "enquiry", "viewing", "offer", "signed"],
                "stage_column": "deal_stage",
                "label_column": "signed",
                "tiers": [
                    {
                        "name": "long viewing",
                        "winner": "stage == 'viewing' and viewing_minutes >= 30",
                        "loser": "stage == 'viewing' and viewing_minutes < 30",
                        "margin": 0.2,
                    }
                ],
            }
        )
        table = split.train.assign(deal_stage="enquiry", viewing_minutes=10.0)
        for column in ("deal_stage", "viewing_minutes"):
            with pytest.raises(ValueError, match=rf"stage_column='{column}' is an outcome \(supervision\) column"):
                FunnelRecencyRule(NEV, stage_column=column, funnel=funnel).fit(table)
        with pytest.raises(ValueError, match=r"extra_dense='viewing_minutes' is an outcome"):
            CTRBaseline(NEV, extra_dense=["viewing_minutes"], funnel=funnel, **QUICK).fit(table)
        assert CTRBaseline(NEV, funnel=funnel).label_column == "signed"

    def test_bad_direction(self, split: TimeSplit) -> None:
        with pytest.raises(ValueError, match=r"recent must be 'smaller' or 'larger'; got 'newer'"):
            FunnelRecencyRule(NEV, recent="newer").fit(split.train)


@pytest.fixture(scope="module")
def logistic(split: TimeSplit) -> LogisticBaseline:
    return LogisticBaseline(NEV).fit(split.train)


class TestLogisticBaseline:
    def test_probabilities_that_beat_random(self, logistic: LogisticBaseline, split: TimeSplit) -> None:
        scores = logistic.predict(split.test)
        assert_scores(scores, split.test)
        assert ((scores >= 0) & (scores <= 1)).all()
        assert auc(split, scores) > 0.6
        assert logistic.name == "Logistic regression"

    def test_deterministic(self, logistic: LogisticBaseline, split: TimeSplit) -> None:
        again = LogisticBaseline(NEV).fit(split.train).predict(split.test)
        np.testing.assert_array_equal(logistic.predict(split.test), again)

    def test_unseen_categories_and_gaps(self, logistic: LogisticBaseline, split: TimeSplit) -> None:
        changed = with_unseen_categories(split.test)
        changed.loc[changed.index[:5], "customer_age"] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            scores = logistic.predict(changed)
        assert_scores(scores, changed)
        np.testing.assert_array_equal(scores[10:], logistic.predict(split.test)[10:])

    def test_gaps_in_training(self, split: TimeSplit) -> None:
        train = split.train.copy()
        train.loc[train.index[::7], "customer_age"] = np.nan
        assert_scores(LogisticBaseline(NEV).fit(train).predict(split.test), split.test)

    def test_missing_column_is_named(self, logistic: LogisticBaseline, split: TimeSplit) -> None:
        with pytest.raises(ValueError, match=r"Logistic regression: the table has no column\(s\) \['store_visits'\]"):
            logistic.predict(split.test.drop(columns="store_visits"))
        with pytest.raises(ValueError, match=r"no column\(s\) \['label'\]"):
            LogisticBaseline(NEV).fit(split.train.drop(columns="label"))


@pytest.mark.parametrize("model", list(CTR_MODELS))
class TestEveryCTRModel:
    def test_fits_beats_random_deterministic(self, model: str, split: TimeSplit) -> None:
        first = CTRBaseline(NEV, model, **QUICK).fit(split.train)
        scores = first.predict(split.test)
        assert_scores(scores, split.test)
        assert ((scores >= 0) & (scores <= 1)).all()
        assert auc(split, scores) > 0.6, f"{model}: AUC {auc(split, scores):.3f}"
        np.testing.assert_array_equal(scores, CTRBaseline(NEV, model, **QUICK).fit(split.train).predict(split.test))
        unseen = first.predict(with_unseen_categories(split.test))
        assert_scores(unseen, split.test)
        np.testing.assert_array_equal(unseen[10:], scores[10:])

    def test_tuned_variant(self, model: str, split: TimeSplit) -> None:
        tuned = CTRBaseline.tuned(NEV, model, **QUICK)
        assert tuned.name == f"{CTR_MODELS[model].display} (tuned)"
        assert tuned.embedding_dim == 16 and tuned.epochs == 2
        assert_scores(tuned.fit(split.train).predict(split.test), split.test)


class TestCTRBaseline:
    def test_names_and_tuned_table(self) -> None:
        names = [CTRBaseline(NEV, m).name for m in CTR_MODELS]
        assert names == ["Wide&Deep", "DeepFM", "xDeepFM", "DCN", "DCN-M", "AutoInt"]
        assert CTRBaseline(NEV, label="DeepFM + asLLR embedding").name == "DeepFM + asLLR embedding"
        assert set(CTR_TUNED) == set(CTR_MODELS)

    def test_seed_is_used(self, split: TimeSplit) -> None:
        one = CTRBaseline(NEV, seed=1, **QUICK).fit(split.train).predict(split.test)
        two = CTRBaseline(NEV, seed=2, **QUICK).fit(split.train).predict(split.test)
        assert not np.array_equal(one, two)

    def test_leaves_the_global_rng_alone(self, split: TimeSplit) -> None:
        state = torch.get_rng_state()
        CTRBaseline(NEV, **QUICK).fit(split.train)
        assert torch.equal(state, torch.get_rng_state())

    def test_early_stopping_keeps_the_best_epoch(self, split: TimeSplit) -> None:
        model = CTRBaseline(NEV, epochs=6, patience=2).fit(split.train)
        history = model.history_
        assert 1 <= len(history) <= 6
        assert model.best_epoch_ == int(np.argmax(history)) + 1
        assert len(history) == 6 or len(history) - model.best_epoch_ == 2

    def test_one_class_validation_slice_falls_back_to_fixed_epochs(self, split: TimeSplit) -> None:
        train = split.train.copy()
        latest = train["as_of"] >= train["as_of"].quantile(0.85)
        train.loc[latest, "label"] = 0
        with pytest.warns(UserWarning, match=r"holds one class only, so there is no validation AUC; training on all"):
            model = CTRBaseline(NEV, epochs=2).fit(train)
        assert model.history_ == [] and model.best_epoch_ == 2

    def test_gaps_get_a_missing_indicator(self, split: TimeSplit) -> None:
        train = split.train.copy()
        train.loc[train.index[::5], "customer_age"] = np.nan
        model = CTRBaseline(NEV, **QUICK).fit(train)
        indicators = {name for name, _, _, indicator in model.inputs_.dense if indicator}
        assert indicators == {"customer_age"}
        test = split.test.copy()
        test.loc[test.index[:5], ["customer_age", "store_visits"]] = np.nan
        assert_scores(model.predict(test), test)

    def test_extra_inputs_change_the_scores_and_are_checked(self, split: TimeSplit) -> None:
        rng = np.random.default_rng(0)
        noisy_truth = split.train["_true_propensity"].to_numpy()[:, None] + rng.normal(0, 0.05, (len(split.train), 3))
        test_extra = split.test["_true_propensity"].to_numpy()[:, None] + rng.normal(0, 0.05, (len(split.test), 3))
        plain = CTRBaseline(NEV, **QUICK).fit(split.train)
        hybrid = CTRBaseline(NEV, **QUICK).fit(split.train, extra=noisy_truth)
        scores = hybrid.predict(split.test, extra=test_extra)
        assert_scores(scores, split.test)
        assert not np.allclose(scores, plain.predict(split.test))
        assert auc(split, scores) > auc(split, plain.predict(split.test))  # an informative input helps
        with pytest.raises(ValueError, match=r"extra has 5 rows but the table has \d+"):
            hybrid.predict(split.test, extra=test_extra[:5])
        with pytest.raises(ValueError, match=r"extra has \d+ rows but the table has \d+"):
            CTRBaseline(NEV, **QUICK).fit(split.train, extra=noisy_truth[1:])
        with pytest.raises(ValueError, match=r"extra has 2 columns but the model was fitted with 3"):
            hybrid.predict(split.test, extra=test_extra[:, :2])
        with pytest.raises(ValueError, match=r"extra must be a 2-D array \(rows x k\); got shape \(\d+,\)"):
            hybrid.predict(split.test, extra=test_extra[:, 0])
        with pytest.raises(ValueError, match=r"fitted with extra inputs of width 3; pass extra="):
            hybrid.predict(split.test)
        with pytest.raises(ValueError, match=r"fitted without extra inputs; predict got extra="):
            plain.predict(split.test, extra=test_extra)

    def test_extra_dense_columns(self, split: TimeSplit) -> None:
        train = split.train.assign(emb_0=np.linspace(0, 1, len(split.train)))
        test = split.test.assign(emb_0=np.linspace(0, 1, len(split.test)))
        model = CTRBaseline(NEV, extra_dense=["emb_0"], **QUICK).fit(train)
        assert_scores(model.predict(test), test)
        with pytest.raises(ValueError, match=r"no column\(s\) \['emb_0'\]"):
            model.predict(split.test)
        with pytest.raises(ValueError, match=r"extra_dense='_true_propensity' starts with '_'"):
            CTRBaseline(NEV, extra_dense=["_true_propensity"], **QUICK).fit(train)
        with pytest.raises(ValueError, match=r"extra_dense='label' is an outcome \(supervision\) column"):
            CTRBaseline(NEV, extra_dense=["label"], **QUICK).fit(train)

    def test_missing_column_is_named(self, split: TimeSplit) -> None:
        with pytest.raises(ValueError, match=r"DeepFM: the table has no column\(s\) \['budget_band'\]"):
            CTRBaseline(NEV, **QUICK).fit(split.train.drop(columns="budget_band"))
        with pytest.raises(ValueError, match=r"no column\(s\) \['as_of'\]"):
            CTRBaseline(NEV).fit(split.train.drop(columns="as_of"))

    def test_bad_arguments_fail_in_fit_not_in_the_constructor(self, split: TimeSplit) -> None:
        model = CTRBaseline(NEV, "fm")
        assert not hasattr(model, "network_")
        with pytest.raises(ValueError, match=r"model must be one of \['autoint', 'dcn', 'dcnmix', 'deepfm', 'wdl', 'xdeepfm'\]; got 'fm'"):
            model.fit(split.train)
        with pytest.raises(ValueError, match=r"epochs must be a whole number >= 1; got 0"):
            CTRBaseline(NEV, epochs=0).fit(split.train)
        with pytest.raises(ValueError, match=r"does not accept these options"):
            CTRBaseline(NEV, model_options={"no_such_option": 1}, **QUICK).fit(split.train)
        with pytest.raises(ValueError, match=r"not fitted yet"):
            CTRBaseline(NEV).predict(split.test)

    def test_importing_leadrank_does_not_import_deepctr(self) -> None:
        code = "import sys, leadrank.baselines, leadrank.experiments; print('deepctr_torch' in sys.modules)"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert result.stdout.strip() == "False"


@pytest.fixture(scope="module")
def two_stage(split: TimeSplit) -> FunnelTwoStage:
    return FunnelTwoStage(NEV, ctr_options=QUICK).fit(split.train)


class TestFunnelTwoStage:
    def test_beats_random_and_orders_by_stage_first(self, two_stage: FunnelTwoStage, split: TimeSplit) -> None:
        scores = two_stage.predict(split.test)
        assert_scores(scores, split.test)
        assert auc(split, scores) > 0.6
        stage = split.test["stage_at_as_of"].to_numpy()
        assert scores[stage == "new"].max() < scores[stage == "call"].min()
        assert scores[stage == "call"].max() < scores[stage == "test_drive"].min()
        assert two_stage.name == "Funnel + DeepFM, two-stage"

    def test_each_stage_has_a_model_without_the_stage_column(self, two_stage: FunnelTwoStage) -> None:
        assert sorted(two_stage.groups_) == [1, 2, 3]
        for group in two_stage.groups_.values():
            assert isinstance(group, CTRBaseline)
            assert "stage_at_as_of" not in group.inputs_.features.names

    def test_deterministic_and_robust_to_unseen_categories(self, two_stage: FunnelTwoStage, split: TimeSplit) -> None:
        scores = two_stage.predict(split.test)
        again = FunnelTwoStage(NEV, ctr_options=QUICK).fit(split.train).predict(split.test)
        np.testing.assert_array_equal(scores, again)
        assert_scores(two_stage.predict(with_unseen_categories(split.test)), split.test)

    def test_small_groups_fall_back_to_their_positive_rate(self, split: TimeSplit) -> None:
        model = FunnelTwoStage(NEV, min_positives=10_000).fit(split.train)
        rates = split.train.groupby("stage_at_as_of")["label"].mean()
        assert model.groups_ == pytest.approx({1: rates["new"], 2: rates["call"], 3: rates["test_drive"]})
        scores = model.predict(split.test)
        assert auc(split, scores) > 0.55  # the stage alone

    def test_missing_stage_column_is_named(self, split: TimeSplit) -> None:
        with pytest.raises(ValueError, match=r"no column\(s\) \['stage_at_as_of'\]"):
            FunnelTwoStage(NEV, ctr_options=QUICK).fit(split.train.drop(columns="stage_at_as_of"))

    def test_ctr_options_cannot_change_the_model(self, split: TimeSplit) -> None:
        with pytest.raises(ValueError, match=r"ctr_options may not set 'model'"):
            FunnelTwoStage(NEV, ctr_options={"model": "wdl"}).fit(split.train)


class TestFunnelDirect:
    def test_is_deepfm_when_the_spec_has_the_stage(self, split: TimeSplit) -> None:
        direct = FunnelDirect(NEV, **QUICK).fit(split.train)
        scores = direct.predict(split.test)
        assert_scores(scores, split.test)
        assert auc(split, scores) > 0.6
        assert direct.name == "Funnel + DeepFM, direct"
        np.testing.assert_array_equal(scores, CTRBaseline(NEV, "deepfm", **QUICK).fit(split.train).predict(split.test))

    def test_adds_the_stage_when_the_spec_lacks_it(self, split: TimeSplit) -> None:
        without = spec_without(NEV, "stage_at_as_of")
        direct = FunnelDirect(without, **QUICK).fit(split.train)
        assert direct.inputs_.features.names[-1] == "stage_at_as_of"
        assert_scores(direct.predict(split.test), split.test)
        with pytest.raises(ValueError, match=r"no column\(s\) \['stage_at_as_of'\]"):
            direct.predict(split.test.drop(columns="stage_at_as_of"))

    def test_refuses_an_outcome_stage(self, split: TimeSplit) -> None:
        with pytest.raises(ValueError, match=r"stage_column='funnel_stage' is an outcome"):
            FunnelDirect(NEV, stage_column="funnel_stage", **QUICK).fit(split.train)
