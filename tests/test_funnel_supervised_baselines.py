"""Funnel supervision outside the LLM: the total-order funnel, pair sampling and the pair loss,
logistic regression and LightGBM with HPRO, CatBoost with the dialogue as a text feature.

leadrank.configs/funnel_order.yaml, leadrank.baselines.pairwise, .linear, .gbdt, .catboost_text.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import logit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from leadrank.baselines import (
    CatBoostTextBaseline,
    GBDTBaseline,
    GBDTConfig,
    GBDTHPROBaseline,
    LogisticBaseline,
    PairwiseLogisticBaseline,
)
from leadrank.baselines.gbdt import HPROObjective
from leadrank.baselines.pairwise import TierPairSampler, funnel_tiers, pair_loss
from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.split import TimeSplit, time_split
from leadrank.data.synth import SynthConfig, simulate
from leadrank.encoding import SideEncoder
from leadrank.funnel import funnel_pairs, tier_membership

NEV = FeatureSpec.nev_default()
PAPER = FunnelSpec.paper_default()
ORDER = FunnelSpec.total_order()
QUICK = GBDTConfig(n_estimators=30)


@pytest.fixture(scope="module")
def split() -> TimeSplit:
    """Dense preset (about 10 % positives), latest 30 % of 3,000 leads as test."""
    return time_split(simulate(SynthConfig.preset("dense", n=3000, seed=3)), 0.3)


def tiny_case(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """12 leads over every stage: total-order membership and margins, labels, random raw scores."""
    stages = ["defeat", "new", "new", "call", "call", "call", "call", "test_drive", "test_drive", "lock", "lock", "defeat"]
    table = pd.DataFrame({"funnel_stage": stages, "label": [int(s == "lock") for s in stages]})
    membership, margins = funnel_tiers(table, ORDER, who="test")
    scores = np.random.default_rng(seed).normal(0.0, 1.5, len(table))
    return membership, margins, table["label"].to_numpy(float), scores


# --------------------------------------------------------------------------------------------
# The total-order funnel
# --------------------------------------------------------------------------------------------


class TestTotalOrderFunnel:
    STAGES = ["defeat", "new", "call", "test_drive", "lock", "call", "lock"]

    def test_same_stages_and_columns_as_the_paper(self) -> None:
        assert ORDER.stages == PAPER.stages
        assert (ORDER.stage_column, ORDER.label_column) == (PAPER.stage_column, PAPER.label_column)
        assert len(ORDER.tiers) == 10
        assert ORDER.supervision_columns == ["label", "funnel_stage"]

    def test_pairs_are_every_lead_at_a_higher_stage_over_every_lead_at_a_lower_one(self) -> None:
        table = pd.DataFrame({"funnel_stage": self.STAGES})
        membership = torch.from_numpy(tier_membership(table, ORDER))
        pairs = funnel_pairs(membership, torch.tensor([t.margin for t in ORDER.tiers]))
        rank = {stage: i for i, stage in enumerate(ORDER.stages)}
        found = {(w, lo): m for w, lo, m in zip(pairs.winners.tolist(), pairs.losers.tolist(), pairs.margins.tolist(), strict=True)}
        expected = {
            (w, lo): 0.25 * (rank[self.STAGES[w]] - rank[self.STAGES[lo]])
            for w in range(len(self.STAGES))
            for lo in range(len(self.STAGES))
            if rank[self.STAGES[w]] > rank[self.STAGES[lo]]
        }
        assert len(pairs) == len(found)  # no pair twice
        assert found.keys() == expected.keys()
        for pair, margin in expected.items():
            assert found[pair] == pytest.approx(margin)

    def test_lock_beats_call_by_half_and_equal_stages_are_never_paired(self) -> None:
        table = pd.DataFrame({"funnel_stage": self.STAGES})
        membership = torch.from_numpy(tier_membership(table, ORDER))
        pairs = funnel_pairs(membership, torch.tensor([t.margin for t in ORDER.tiers]))
        found = {(w, lo): m for w, lo, m in zip(pairs.winners.tolist(), pairs.losers.tolist(), pairs.margins.tolist(), strict=True)}
        assert found[(4, 2)] == pytest.approx(0.5)  # lock over call
        assert found[(6, 5)] == pytest.approx(0.5)
        assert found[(4, 0)] == pytest.approx(1.0)  # lock over defeat keeps the paper's margin
        same_stage = [(w, lo) for w, lo in found if self.STAGES[w] == self.STAGES[lo]]
        assert same_stage == []

    def test_the_paper_never_pairs_a_lock_with_a_call(self) -> None:
        table = pd.DataFrame({"funnel_stage": ["lock", "call"], "call_duration_s": [300.0, 300.0]})
        pairs = funnel_pairs(torch.from_numpy(tier_membership(table, PAPER)), torch.tensor([t.margin for t in PAPER.tiers]))
        assert len(pairs) == 0


# --------------------------------------------------------------------------------------------
# Pair sampling and the pair loss
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return simulate(SynthConfig.preset("dense", n=2000, seed=1))


class TestTierPairSampler:
    @pytest.mark.parametrize("funnel", [PAPER, ORDER], ids=["paper", "total_order"])
    def test_every_pair_is_a_winner_and_a_loser_of_its_tier(self, table: pd.DataFrame, funnel: FunnelSpec) -> None:
        membership, margins = funnel_tiers(table, funnel, who="test")
        pairs = TierPairSampler(membership, margins, pairs_per_lead=2, seed=0).sample()
        assert len(pairs) > 0
        assert (membership[pairs.winners, pairs.tiers] == 1).all()
        assert (membership[pairs.losers, pairs.tiers] == -1).all()
        np.testing.assert_array_equal(pairs.margins, margins[pairs.tiers])

    def test_pair_count_per_tier_is_linear_in_leads(self, table: pd.DataFrame) -> None:
        membership, margins = funnel_tiers(table, ORDER, who="test")
        pairs = TierPairSampler(membership, margins, pairs_per_lead=3, seed=0).sample()
        counts = np.bincount(pairs.tiers, minlength=len(ORDER.tiers))
        for t in range(len(ORDER.tiers)):
            winners, losers = (membership[:, t] == 1).sum(), (membership[:, t] == -1).sum()
            assert counts[t] == min(winners * losers, 3 * max(winners, losers))

    def test_small_tiers_give_all_pairs_large_ones_a_new_draw_each_time(self, table: pd.DataFrame) -> None:
        membership, margins = funnel_tiers(table, ORDER, who="test")
        sampler = TierPairSampler(membership, margins, pairs_per_lead=2, seed=0)
        first, second = sampler.sample(), sampler.sample()
        assert not np.array_equal(first.winners, second.winners)  # resampled
        everything = TierPairSampler(membership[:40], margins, pairs_per_lead=10_000, seed=0)
        np.testing.assert_array_equal(everything.sample().winners, everything.sample().winners)

    def test_same_seed_same_draws(self, table: pd.DataFrame) -> None:
        membership, margins = funnel_tiers(table, PAPER, who="test")
        a = TierPairSampler(membership, margins, pairs_per_lead=2, seed=4).sample()
        b = TierPairSampler(membership, margins, pairs_per_lead=2, seed=4).sample()
        np.testing.assert_array_equal(a.losers, b.losers)

    def test_pairs_per_lead_must_be_a_positive_whole_number(self) -> None:
        with pytest.raises(ValueError, match=r"pairs_per_lead must be a whole number >= 1; got 0"):
            TierPairSampler(np.zeros((3, 1), np.int8), np.zeros(1), pairs_per_lead=0, seed=0)

    def test_a_funnel_without_tiers_pairs_positives_over_negatives(self) -> None:
        table = pd.DataFrame({"label": [1, 0, 0, 1]})
        membership, margins = funnel_tiers(table, FunnelSpec(stages=["a", "b"]), who="test")
        np.testing.assert_array_equal(membership[:, 0], [1, -1, -1, 1])
        np.testing.assert_array_equal(margins, [0.0])


class TestPairLoss:
    def test_matches_the_torch_preference_loss(self) -> None:
        from leadrank.funnel import Pairs
        from leadrank.losses import preference_loss

        membership, margins, _, scores = tiny_case()
        pairs = TierPairSampler(membership, margins, pairs_per_lead=100, seed=0).sample()
        torch_pairs = Pairs(
            torch.from_numpy(pairs.winners),
            torch.from_numpy(pairs.losers),
            torch.tensor(pairs.margins, dtype=torch.float32),
            torch.from_numpy(pairs.tiers),
        )
        expected, _ = preference_loss(torch.tensor(scores, dtype=torch.float32), torch_pairs, len(ORDER.tiers))
        assert pair_loss(scores, pairs) == pytest.approx(float(expected), rel=1e-5)


# --------------------------------------------------------------------------------------------
# LightGBM's objective: gradient, hessian, one draw per round
# --------------------------------------------------------------------------------------------


class TestHPROObjective:
    @pytest.mark.parametrize("hpro_weight", [0.0, 1.0, 2.5])
    def test_gradient_matches_finite_differences_of_the_loss(self, hpro_weight: float) -> None:
        membership, margins, labels, scores = tiny_case()
        objective = HPROObjective(labels, TierPairSampler(membership, margins, pairs_per_lead=1, seed=0), hpro_weight)
        grad, _ = objective(scores)
        pairs = objective.pairs_  # held fixed for the check
        step = 1e-6
        numeric = np.array(
            [
                (objective.loss(scores + step * e, pairs) - objective.loss(scores - step * e, pairs)) / (2 * step)
                for e in np.eye(len(scores))
            ]
        )
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)

    def test_hessian_is_positive_and_the_pairs_add_curvature(self) -> None:
        membership, margins, labels, scores = tiny_case()
        bce_only = HPROObjective(labels, TierPairSampler(membership, margins, pairs_per_lead=1, seed=0), 0.0)
        with_pairs = HPROObjective(labels, TierPairSampler(membership, margins, pairs_per_lead=1, seed=0), 1.0)
        _, hess_bce = bce_only(scores)
        _, hess = with_pairs(scores)
        assert (hess > 0).all()
        in_pairs = np.union1d(with_pairs.pairs_.winners, with_pairs.pairs_.losers)
        assert (hess[in_pairs] > hess_bce[in_pairs]).all()

    def test_hessian_is_the_diagonal_of_the_second_derivative(self) -> None:
        membership, margins, labels, scores = tiny_case(seed=2)
        objective = HPROObjective(labels, TierPairSampler(membership, margins, pairs_per_lead=1, seed=0), 1.0)
        _, hess = objective(scores)
        pairs, step = objective.pairs_, 1e-4
        numeric = [
            (objective.loss(scores + step * e, pairs) - 2 * objective.loss(scores, pairs) + objective.loss(scores - step * e, pairs))
            / step**2
            for e in np.eye(len(scores))
        ]
        np.testing.assert_allclose(hess, numeric, rtol=1e-3, atol=1e-6)

    def test_new_pairs_every_boosting_round(self, split: TimeSplit, monkeypatch: pytest.MonkeyPatch) -> None:
        draws: list[int] = []
        sample = TierPairSampler.sample

        def counting(self: TierPairSampler):  # noqa: ANN202
            draws.append(1)
            return sample(self)

        monkeypatch.setattr(TierPairSampler, "sample", counting)
        GBDTHPROBaseline(NEV, PAPER, config=GBDTConfig(n_estimators=7)).fit(split.train)
        assert len(draws) == 7


# --------------------------------------------------------------------------------------------
# LightGBM + HPRO
# --------------------------------------------------------------------------------------------


class TestGBDTHPROBaseline:
    def test_names(self) -> None:
        assert GBDTHPROBaseline(NEV, PAPER).name == "LightGBM tabular + HPRO"
        assert GBDTHPROBaseline(NEV, PAPER, use_dialogue=True).name == "LightGBM tabular + TF-IDF + HPRO"

    def test_without_the_pair_term_it_is_lightgbm_binary(self, split: TimeSplit) -> None:
        # Column sampling draws differently under a custom objective (inside LightGBM), so it is off here.
        config = GBDTConfig(n_estimators=30, colsample_bytree=1.0)
        plain = GBDTBaseline(NEV, config=config).fit(split.train).predict(split.test)
        hpro = GBDTHPROBaseline(NEV, PAPER, config=config, hpro_weight=0.0).fit(split.train)
        np.testing.assert_allclose(hpro.predict(split.test), plain, rtol=0, atol=1e-9)
        assert hpro.init_score_ == pytest.approx(logit(split.train["label"].mean()))

    @pytest.mark.parametrize("funnel", [PAPER, ORDER], ids=["paper", "total_order"])
    def test_the_pair_term_changes_the_fit_and_ranks_better_than_random(self, split: TimeSplit, funnel: FunnelSpec) -> None:
        config = GBDTConfig(n_estimators=30, colsample_bytree=1.0)
        plain = GBDTHPROBaseline(NEV, funnel, config=config, hpro_weight=0.0).fit(split.train).decision_function(split.test)
        scores = GBDTHPROBaseline(NEV, funnel, config=config).fit(split.train).decision_function(split.test)
        assert np.abs(scores - plain).max() > 0.05
        assert roc_auc_score(split.test["label"], scores) > 0.65

    def test_dialogue_and_extra_inputs(self, split: TimeSplit) -> None:
        extra = logit(split.train[["_true_propensity"]].to_numpy())
        model = GBDTHPROBaseline(NEV, ORDER, use_dialogue=True, config=QUICK).fit(split.train, extra=extra)
        scores = model.predict(split.test, extra=logit(split.test[["_true_propensity"]].to_numpy()))
        assert scores.shape == (len(split.test),)
        assert ((scores > 0) & (scores < 1)).all()
        assert roc_auc_score(split.test["label"], scores) > 0.7
        with pytest.raises(ValueError, match=r"pass extra= to predict exactly when it was passed to fit"):
            model.predict(split.test)

    def test_deterministic_for_a_fixed_seed(self, split: TimeSplit) -> None:
        def scores(seed: int) -> np.ndarray:
            config = GBDTConfig(n_estimators=20, seed=seed)
            return GBDTHPROBaseline(NEV, ORDER, config=config).fit(split.train).predict(split.test)

        first = scores(5)
        np.testing.assert_array_equal(first, scores(5))
        assert not np.array_equal(first, scores(6))

    def test_needs_the_funnel_columns(self, split: TimeSplit) -> None:
        with pytest.raises(ValueError, match=r"the table has no column\(s\) \['funnel_stage'\]"):
            GBDTHPROBaseline(NEV, ORDER, config=QUICK).fit(split.train.drop(columns="funnel_stage"))

    def test_negative_weight_is_refused(self, split: TimeSplit) -> None:
        with pytest.raises(ValueError, match=r"hpro_weight must be >= 0 \(0 turns the pair term off\); got -1.0"):
            GBDTHPROBaseline(NEV, ORDER, hpro_weight=-1.0).fit(split.train)


# --------------------------------------------------------------------------------------------
# Logistic regression + HPRO
# --------------------------------------------------------------------------------------------


class TestPairwiseLogisticBaseline:
    def test_name(self) -> None:
        assert PairwiseLogisticBaseline(NEV, PAPER).name == "Logistic regression + HPRO"

    def test_without_the_pair_term_it_is_logistic_regression(self, split: TimeSplit) -> None:
        encoder = SideEncoder(NEV).fit(split.train)
        reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(
            encoder.transform(split.train).astype(float), split.train["label"]
        )
        model = PairwiseLogisticBaseline(NEV, PAPER, hpro_weight=0.0).fit(split.train)
        expected = reference.predict_proba(encoder.transform(split.test).astype(float))[:, 1]
        np.testing.assert_allclose(model.predict(split.test), expected, atol=1e-4)
        # The same model as the sklearn baseline (which stops at lbfgs's looser default tolerance).
        np.testing.assert_allclose(model.predict(split.test), LogisticBaseline(NEV).fit(split.train).predict(split.test), atol=1e-2)

    @pytest.mark.parametrize("funnel", [PAPER, ORDER], ids=["paper", "total_order"])
    def test_the_pair_term_changes_the_fit_towards_the_pairs(self, split: TimeSplit, funnel: FunnelSpec) -> None:
        plain = PairwiseLogisticBaseline(NEV, funnel, hpro_weight=0.0).fit(split.train)
        paired = PairwiseLogisticBaseline(NEV, funnel, hpro_weight=1.0).fit(split.train)
        assert np.abs(paired.coef_ - plain.coef_).max() > 0.05
        membership, margins = funnel_tiers(split.train, funnel, who="test")
        pairs = TierPairSampler(membership, margins, pairs_per_lead=16, seed=0).sample()
        assert pair_loss(paired.decision_function(split.train), pairs) < pair_loss(plain.decision_function(split.train), pairs) - 0.01
        assert roc_auc_score(split.test["label"], paired.predict(split.test)) > 0.65

    def test_extra_columns(self, split: TimeSplit) -> None:
        extra = logit(split.train[["_true_propensity"]].to_numpy())
        model = PairwiseLogisticBaseline(NEV, ORDER).fit(split.train, extra=extra)
        assert model.coef_.shape == (SideEncoder(NEV).fit(split.train).width + 1,)
        test_extra = logit(split.test[["_true_propensity"]].to_numpy())
        with_extra = roc_auc_score(split.test["label"], model.predict(split.test, extra=test_extra))
        without = roc_auc_score(split.test["label"], PairwiseLogisticBaseline(NEV, ORDER).fit(split.train).predict(split.test))
        assert with_extra > without
        with pytest.raises(ValueError, match=r"extra has 2 columns but the model was fitted with 1"):
            model.predict(split.test, extra=np.hstack([test_extra, test_extra]))

    def test_predict_before_fit_says_so(self, split: TimeSplit) -> None:
        with pytest.raises(ValueError, match=r"Logistic regression \+ HPRO is not fitted yet; call fit\(train_table\) first"):
            PairwiseLogisticBaseline(NEV, PAPER).predict(split.test)

    def test_bad_arguments_are_refused(self, split: TimeSplit) -> None:
        with pytest.raises(ValueError, match=r"C must be positive; got 0"):
            PairwiseLogisticBaseline(NEV, PAPER, C=0).fit(split.train)
        with pytest.raises(ValueError, match=r"hpro_weight must be >= 0"):
            PairwiseLogisticBaseline(NEV, PAPER, hpro_weight=-0.5).fit(split.train)


# --------------------------------------------------------------------------------------------
# CatBoost with the dialogue as a text feature
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catboost_fitted(split: TimeSplit) -> CatBoostTextBaseline:
    return CatBoostTextBaseline(NEV, iterations=30, learning_rate=0.2).fit(split.train)


class TestCatBoostTextBaseline:
    def test_names(self) -> None:
        assert CatBoostTextBaseline(NEV).name == "CatBoost tabular + text"
        assert CatBoostTextBaseline(NEV.model_copy(update={"dialogue_column": None})).name == "CatBoost tabular"

    def test_probabilities_that_rank(self, catboost_fitted: CatBoostTextBaseline, split: TimeSplit) -> None:
        scores = catboost_fitted.predict(split.test)
        assert scores.shape == (len(split.test),)
        assert ((scores > 0) & (scores < 1)).all()
        assert roc_auc_score(split.test["label"], scores) > 0.65

    def test_reads_the_dialogue_as_text(self, catboost_fitted: CatBoostTextBaseline, split: TimeSplit) -> None:
        importance = dict(zip(catboost_fitted.model_.feature_names_, catboost_fitted.model_.get_feature_importance(), strict=True))
        assert importance["dialogue"] > 0
        assert catboost_fitted.model_.get_text_feature_indices() == [len(NEV.features)]

    def test_stops_on_the_latest_tenth_of_the_training_table(self, catboost_fitted: CatBoostTextBaseline) -> None:
        assert "validation" in catboost_fitted.model_.get_best_score()
        assert catboost_fitted.model_.tree_count_ == catboost_fitted.model_.best_iteration_ + 1

    def test_unseen_and_missing_categories_do_not_crash(self, catboost_fitted: CatBoostTextBaseline, split: TimeSplit) -> None:
        changed = split.test.copy()
        changed.loc[changed.index[:5], "source"] = "tiktok"
        changed.loc[changed.index[5:10], "budget_band"] = None
        scores = catboost_fitted.predict(changed)
        np.testing.assert_array_equal(scores[10:], catboost_fitted.predict(split.test)[10:])

    def test_needs_as_of_for_the_validation_slice(self, split: TimeSplit) -> None:
        with pytest.raises(ValueError, match=r"the table has no column\(s\) \['as_of'\]"):
            CatBoostTextBaseline(NEV, iterations=5).fit(split.train.drop(columns="as_of"))
