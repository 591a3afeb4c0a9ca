"""Tests for leadrank.metrics: hand-computed values, scikit-learn parity, ties, validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from leadrank import metrics
from leadrank.metrics import (
    auc,
    bootstrap_difference,
    bootstrap_intervals,
    brier,
    ece,
    k_label,
    lift_table,
    pr_auc,
    precision_at,
    ranking_report,
    recall_at,
)

# 10 leads; by score the order is rows 1, 4, 2, 8, 0, 3, 5, 6, 7, 9.
# Top-3 labels are 1, 1, 0; there are 4 positives in all.
Y10 = np.array([0, 1, 0, 1, 1, 0, 0, 0, 1, 0])
S10 = np.array([0.50, 0.95, 0.80, 0.45, 0.90, 0.40, 0.30, 0.20, 0.60, 0.10])


def _random(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, y * 0.5 + rng.normal(size=n)


class TestAuc:
    def test_hand_value(self) -> None:
        # Pairs (pos, neg): (0.35 > 0.1), (0.35 < 0.4), (0.8 > 0.1), (0.8 > 0.4) -> 3/4.
        assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)

    def test_matches_sklearn(self) -> None:
        y, s = _random()
        assert auc(y, s) == pytest.approx(roc_auc_score(y, s))

    def test_pr_auc_matches_sklearn(self) -> None:
        y, s = _random(seed=1)
        assert pr_auc(y, s) == pytest.approx(average_precision_score(y, s))
        assert pr_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx((1 + 2 / 3) / 2)

    def test_one_class_is_refused(self) -> None:
        with pytest.raises(ValueError, match=r"AUC needs both classes; y_true has only 0s \(n=3\)\. Evaluate on a larger"):
            auc([0, 0, 0], [0.1, 0.2, 0.3])
        with pytest.raises(ValueError, match=r"only 1s \(n=2\)"):
            auc([1, 1], [0.1, 0.2])

    def test_pr_auc_needs_a_positive(self) -> None:
        with pytest.raises(ValueError, match=r"PR AUC needs at least one positive; y_true has only 0s \(n=2\)"):
            pr_auc([0, 0], [0.1, 0.2])


class TestPrecisionRecallAt:
    def test_known_top_three(self) -> None:
        assert precision_at(Y10, S10, 0.3) == pytest.approx(2 / 3)
        assert recall_at(Y10, S10, 0.3) == pytest.approx(2 / 4)

    def test_top_size_is_ceil(self) -> None:
        # ceil(0.25 * 10) = 3 leads, the same top-3 as above.
        assert precision_at(Y10, S10, 0.25) == pytest.approx(2 / 3)
        # Top 4 adds row 8 (a positive): 3/4 precision, 3/4 recall.
        assert precision_at(Y10, S10, 0.4) == pytest.approx(3 / 4)
        assert recall_at(Y10, S10, 0.4) == pytest.approx(3 / 4)

    def test_whole_list(self) -> None:
        assert precision_at(Y10, S10, 1.0) == pytest.approx(Y10.mean())
        assert recall_at(Y10, S10, 1.0) == 1.0

    def test_tiny_k_keeps_one_lead(self) -> None:
        # Top lead is row 1 (positive); then with the label flipped the answer flips.
        assert precision_at(Y10, S10, 1e-9) == 1.0
        assert recall_at(Y10, S10, 1e-9) == pytest.approx(1 / 4)
        flipped = Y10.copy()
        flipped[1] = 0
        assert precision_at(flipped, S10, 1e-9) == 0.0

    def test_float_noise_does_not_add_a_lead(self) -> None:
        # 0.07 * 100 == 7.000000000000001; the top set must be 7 leads, not 8.
        y = np.array([1] * 7 + [0] * 93)
        s = -np.arange(100.0)
        assert precision_at(y, s, 0.07) == 1.0

    def test_all_ties_take_first_rows(self) -> None:
        s = np.full(10, 0.5)
        y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
        assert precision_at(y, s, 0.2) == 1.0
        assert precision_at(y[::-1], s, 0.2) == 0.0
        assert recall_at(y, s, 0.1) == 0.5

    def test_partial_ties_keep_row_order(self) -> None:
        # Row 1 leads; rows 0, 2, 3 tie, so row 0 comes next (a negative), then row 2.
        y = [0, 0, 1, 1]
        s = [0.5, 0.9, 0.5, 0.5]
        assert precision_at(y, s, 0.5) == 0.0
        assert precision_at(y, s, 0.75) == pytest.approx(1 / 3)

    def test_accepts_pandas_and_bool_labels(self) -> None:
        y = pd.Series(Y10.astype(bool))
        assert precision_at(y, pd.Series(S10), 0.3) == pytest.approx(2 / 3)

    @pytest.mark.parametrize("k", [0, -0.1, 1.5, float("nan"), True, "0.1"])
    def test_k_outside_range(self, k: object) -> None:
        with pytest.raises(ValueError, match=r"k must be a fraction of leads in \(0, 1\].*got k="):
            precision_at(Y10, S10, k)  # type: ignore[arg-type]

    def test_recall_needs_a_positive(self) -> None:
        with pytest.raises(ValueError, match=r"recall_at needs at least one positive; y_true has only 0s \(n=3\)"):
            recall_at([0, 0, 0], [0.1, 0.2, 0.3], 0.5)


class TestCalibration:
    def test_brier_hand_and_sklearn(self) -> None:
        assert brier([0, 1], [0.1, 0.9]) == pytest.approx(0.01)
        y, _ = _random()
        p = np.linspace(0.01, 0.99, len(y))
        assert brier(y, p) == pytest.approx(brier_score_loss(y, p))

    def test_ece_zero_when_calibrated(self) -> None:
        # 10 leads at 0.2 with 2 buyers, 10 leads at 0.8 with 8 buyers; each bin is one group.
        p = np.repeat([0.8, 0.2], 10)
        y = np.array([1] * 8 + [0] * 2 + [1] * 2 + [0] * 8)
        assert ece(y, p, n_bins=2) == pytest.approx(0.0, abs=1e-12)

    def test_ece_hand_value(self) -> None:
        # Bins: p=0.1 with rate 0.4 -> 0.3; p=0.6 with rate 1.0 -> 0.4; equal weights -> 0.35.
        p = np.repeat([0.1, 0.6], 5)
        y = np.array([1, 1, 0, 0, 0, 1, 1, 1, 1, 1])
        assert ece(y, p, n_bins=2) == pytest.approx(0.35)

    def test_ece_equal_mass_uneven_split(self) -> None:
        # 5 leads into 2 bins -> sizes 3 and 2 (array_split puts the extra lead first).
        # (3/5)*|0.1 - 1/3| + (2/5)*|0.9 - 1| = 0.14 + 0.04.
        assert ece([0, 0, 1, 1, 1], [0.1, 0.1, 0.1, 0.9, 0.9], n_bins=2) == pytest.approx(0.18)

    def test_ece_bins_follow_probability_not_row_order(self) -> None:
        p = [0.6, 0.1, 0.6, 0.1, 0.6, 0.1, 0.6, 0.1, 0.6, 0.1]
        y = [1, 1, 1, 0, 1, 1, 1, 0, 1, 0]
        assert ece(y, p, n_bins=2) == pytest.approx(0.35)

    def test_probabilities_must_be_in_unit_interval(self) -> None:
        with pytest.raises(ValueError, match=r"probabilities must lie in \[0, 1\]; got range \[-0.5, 0.5\]"):
            brier([0, 1], [-0.5, 0.5])
        with pytest.raises(ValueError, match=r"probabilities must lie in \[0, 1\]"):
            ece([0, 1], [0.5, 1.5], n_bins=1)

    @pytest.mark.parametrize("n_bins", [0, -1, 2.0])
    def test_bad_n_bins(self, n_bins: object) -> None:
        with pytest.raises(ValueError, match=r"n_bins must be a positive integer; got n_bins="):
            ece([0, 1], [0.2, 0.8], n_bins=n_bins)  # type: ignore[arg-type]

    def test_more_bins_than_leads(self) -> None:
        with pytest.raises(ValueError, match=r"n_bins=10 is more than the 3 leads; use n_bins <= 3"):
            ece([0, 1, 1], [0.2, 0.8, 0.9])


class TestLiftTable:
    def test_hand_values(self) -> None:
        # Rank-ordered labels: 1 1 0 | 1 0 1 | 0 0 | 0 0 (sizes 3, 3, 2, 2); overall rate 0.4.
        table = lift_table(Y10, S10, n_bins=4)
        assert list(table.columns) == [
            "bin",
            "leads",
            "positives",
            "rate",
            "lift",
            "cumulative_positives",
            "cumulative_recall",
        ]
        assert table["bin"].tolist() == [1, 2, 3, 4]
        assert table["leads"].tolist() == [3, 3, 2, 2]
        assert table["positives"].tolist() == [2, 2, 0, 0]
        np.testing.assert_allclose(table["rate"], [2 / 3, 2 / 3, 0, 0])
        np.testing.assert_allclose(table["lift"], [(2 / 3) / 0.4, (2 / 3) / 0.4, 0, 0])
        assert table["cumulative_positives"].tolist() == [2, 4, 4, 4]
        np.testing.assert_allclose(table["cumulative_recall"], [0.5, 1.0, 1.0, 1.0])

    def test_sums(self) -> None:
        y, s = _random(n=203, seed=3)
        table = lift_table(y, s)
        assert len(table) == 10
        assert table["leads"].sum() == len(y)
        assert table["positives"].sum() == y.sum()
        assert table["cumulative_recall"].iloc[-1] == pytest.approx(1.0)
        # Weighted mean lift is 1 by construction.
        assert np.average(table["lift"], weights=table["leads"]) == pytest.approx(1.0)

    def test_ties_by_row_order(self) -> None:
        table = lift_table([1, 0, 0, 1], [0.5, 0.5, 0.5, 0.5], n_bins=2)
        assert table["positives"].tolist() == [1, 1]
        table = lift_table([1, 1, 0, 0], [0.5, 0.5, 0.5, 0.5], n_bins=2)
        assert table["positives"].tolist() == [2, 0]

    def test_needs_a_positive(self) -> None:
        with pytest.raises(ValueError, match=r"lift_table needs at least one positive"):
            lift_table([0, 0, 0], [0.1, 0.2, 0.3], n_bins=3)


class TestReport:
    @pytest.mark.parametrize(
        ("k", "label"),
        [(0.001, "0.1%"), (0.01, "1%"), (0.05, "5%"), (1.0, "100%"), (0.0025, "0.25%"), (0.07, "7%"), (0.5, "50%")],
    )
    def test_k_label(self, k: float, label: str) -> None:
        assert k_label(k) == label

    def test_k_label_checks_range(self) -> None:
        with pytest.raises(ValueError, match=r"got k=2"):
            k_label(2)

    def test_keys_without_probabilities(self) -> None:
        y, s = _random(n=1000)
        report = ranking_report(y, s)
        assert set(report) == {"n", "positives", "auc", "pr_auc", "p@0.1%", "p@1%", "p@5%", "r@0.1%", "r@1%", "r@5%"}
        assert report["n"] == 1000
        assert report["positives"] == y.sum()
        assert report["auc"] == pytest.approx(roc_auc_score(y, s))
        assert report["p@1%"] == pytest.approx(precision_at(y, s, 0.01))
        assert report["r@5%"] == pytest.approx(recall_at(y, s, 0.05))

    def test_probabilities_add_calibration(self) -> None:
        y, s = _random(n=100)
        p = 1 / (1 + np.exp(-s))
        report = ranking_report(y, s, probabilities=p, ks=(0.1,))
        assert set(report) == {"n", "positives", "auc", "pr_auc", "p@10%", "r@10%", "brier", "ece"}
        assert report["brier"] == pytest.approx(brier_score_loss(y, p))
        assert report["ece"] == pytest.approx(ece(y, p))

    def test_duplicate_labels_refused(self) -> None:
        with pytest.raises(ValueError, match=r"ks must give distinct percentages"):
            ranking_report(Y10, S10, ks=(0.01, 0.0100000000001))


class TestValidation:
    def test_length_mismatch(self) -> None:
        with pytest.raises(ValueError, match=r"y_true and scores must have the same length; got 3 and 2"):
            auc([0, 1, 0], [0.1, 0.2])

    def test_two_dimensional(self) -> None:
        with pytest.raises(ValueError, match=r"scores must be 1-D; got shape \(2, 1\)"):
            auc([0, 1], [[0.1], [0.2]])
        with pytest.raises(ValueError, match=r"y_true must be 1-D; got shape \(1, 2\)"):
            auc([[0, 1]], [0.1, 0.2])

    def test_labels_not_binary(self) -> None:
        with pytest.raises(ValueError, match=r"y_true must hold only 0 and 1; got other values \[2\]"):
            precision_at([0, 1, 2], [0.1, 0.2, 0.3], 0.5)
        with pytest.raises(ValueError, match=r"y_true must hold 0/1 numbers; got dtype <U3"):
            precision_at(["yes", "no"], [0.1, 0.2], 0.5)

    @pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
    def test_non_finite_scores(self, bad: float) -> None:
        with pytest.raises(ValueError, match=r"scores must be finite; got 1 NaN/inf value\(s\)"):
            precision_at([0, 1, 0], [0.1, bad, 0.3], 0.5)

    def test_non_numeric_scores(self) -> None:
        with pytest.raises(ValueError, match=r"scores must be numbers"):
            auc([0, 1], ["high", "low"])

    def test_empty(self) -> None:
        with pytest.raises(ValueError, match=r"Need at least one lead"):
            precision_at([], [], 0.5)


class TestBootstrap:
    def test_perfect_scores_give_one(self) -> None:
        y = np.array([1] * 30 + [0] * 170)
        result = bootstrap_intervals(y, {"perfect": y * 2.0 - 1}, n_boot=200)
        assert result == {"perfect": {"auc": (1.0, 1.0, 1.0), "p@1%": (1.0, 1.0, 1.0), "p@5%": (1.0, 1.0, 1.0)}}

    def test_points_are_the_plain_metrics(self) -> None:
        y, s = _random(n=1000, seed=4)
        result = bootstrap_intervals(y, {"m": s}, ["auc", "p@1%", "p@5%", "p@0.5%"], n_boot=50)["m"]
        assert result["auc"][0] == pytest.approx(auc(y, s))
        for name, k in (("p@1%", 0.01), ("p@5%", 0.05), ("p@0.5%", 0.005)):
            assert result[name][0] == pytest.approx(precision_at(y, s, k))
        assert all(low <= point <= high for point, low, high in result.values())

    @pytest.mark.parametrize("n", [7, 60, 300])
    def test_resamples_match_the_plain_metrics(self, n: int) -> None:
        # Each column of counts is one resample; rebuilding it as rows must give the same metrics.
        rng = np.random.default_rng(n)
        y = (rng.random(n) < 0.3).astype(np.int64)
        y[:2] = [0, 1]
        s = np.round(y * 0.7 + rng.normal(size=n), 1)  # rounded: many ties
        counts = metrics._stratified_counts(y, 100, rng)
        assert (counts.sum(axis=0) == n).all() and (counts[y == 1].sum(axis=0) == y.sum()).all()
        aucs = metrics._sampler("auc", y, s)(counts)
        precisions = {k: metrics._sampler(f"p@{k * 100:g}%", y, s)(counts) for k in (0.01, 0.2, 1.0)}
        for b in range(counts.shape[1]):
            rows = np.repeat(np.arange(n), counts[:, b])
            assert aucs[b] == pytest.approx(auc(y[rows], s[rows]))
            for k, values in precisions.items():
                assert values[b] == pytest.approx(precision_at(y[rows], s[rows], k))

    def test_random_scores_cover_one_half(self) -> None:
        rng = np.random.default_rng(5)
        y = (rng.random(5000) < 0.3).astype(int)
        _, low, high = bootstrap_intervals(y, {"noise": rng.normal(size=5000)}, ["auc"])["noise"]["auc"]
        assert low < 0.5 < high
        assert high - low < 0.05

    def test_same_seed_same_result(self) -> None:
        y, s = _random(n=500)
        first = bootstrap_intervals(y, {"m": s}, n_boot=100, seed=3)
        assert bootstrap_intervals(y, {"m": s}, n_boot=100, seed=3) == first
        assert bootstrap_intervals(y, {"m": s}, n_boot=100, seed=4) != first

    def test_every_model_sees_the_same_resamples(self) -> None:
        y, s = _random(n=500)
        _, other = _random(n=500, seed=9)
        alone = bootstrap_intervals(y, {"a": s}, n_boot=100)
        together = bootstrap_intervals(y, {"b": other, "a": s, "copy": s.copy()}, n_boot=100)
        assert together["a"] == together["copy"] == alone["a"]

    def test_intervals_widen_with_fewer_leads(self) -> None:
        def width(n: int) -> float:
            y, s = _random(n=n, seed=6)
            _, low, high = bootstrap_intervals(y, {"m": s}, ["auc"], n_boot=300)["m"]["auc"]
            return high - low

        assert width(200) > 2 * width(5000)

    def test_higher_level_is_wider(self) -> None:
        y, s = _random(n=500)
        _, low50, high50 = bootstrap_intervals(y, {"m": s}, ["auc"], level=0.5)["m"]["auc"]
        _, low99, high99 = bootstrap_intervals(y, {"m": s}, ["auc"], level=0.99)["m"]["auc"]
        assert low99 < low50 < high50 < high99

    def test_difference_with_itself_is_zero(self) -> None:
        y, s = _random(n=500)
        assert bootstrap_difference(y, s, s) == (0.0, 0.0, 0.0)
        assert bootstrap_difference(y, s, s, "p@5%") == (0.0, 0.0, 0.0)

    def test_difference_of_a_better_model(self) -> None:
        rng = np.random.default_rng(7)
        y = (rng.random(2000) < 0.2).astype(int)
        strong, weak = y + rng.normal(size=2000), y * 0.2 + rng.normal(size=2000)
        difference, low, high = bootstrap_difference(y, strong, weak, n_boot=300)
        assert difference == pytest.approx(auc(y, strong) - auc(y, weak))
        assert 0 < low < difference < high
        reverse = bootstrap_difference(y, weak, strong, n_boot=300)
        assert reverse == pytest.approx((-difference, -high, -low))

    def test_length_mismatch(self) -> None:
        with pytest.raises(ValueError, match=r"y_true and scores of 'b' must have the same length; got 3 and 2"):
            bootstrap_intervals([0, 1, 0], {"a": [0.1, 0.2, 0.3], "b": [0.1, 0.2]})
        with pytest.raises(ValueError, match=r"y_true and scores of 'b' must have the same length; got 3 and 4"):
            bootstrap_difference([0, 1, 0], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3, 0.4])

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"metrics": ["pr_auc"]}, r"Unknown bootstrap metric 'pr_auc'; use 'auc' or 'p@<percent>%'"),
            ({"metrics": ["p@200%"]}, r"k must be a fraction of leads in \(0, 1\]"),
            ({"n_boot": 0}, r"n_boot must be a positive integer"),
            ({"level": 1.5}, r"level must lie in \(0, 1\)"),
        ],
    )
    def test_bad_arguments(self, kwargs: dict, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            bootstrap_intervals(Y10, {"m": S10}, **kwargs)

    def test_needs_both_classes_and_a_model(self) -> None:
        with pytest.raises(ValueError, match=r"Bootstrap intervals need both classes; y_true has only 0s \(n=3\)"):
            bootstrap_intervals([0, 0, 0], {"m": [0.1, 0.2, 0.3]})
        with pytest.raises(ValueError, match=r"scores_by_model is empty"):
            bootstrap_intervals(Y10, {})


# --- properties ---------------------------------------------------------------------------

_leads = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
        # Few distinct scores so ties are common.
        st.lists(st.sampled_from([-1.0, 0.0, 0.25, 0.5, 3.0]) | st.floats(-1e6, 1e6), min_size=n, max_size=n),
    )
)
_k = st.floats(1e-6, 1.0)


@settings(max_examples=60, deadline=None)
@given(_leads)
def test_whole_list_precision_is_mean_label(leads: tuple[list[int], list[float]]) -> None:
    y, s = leads
    assert precision_at(y, s, 1.0) == pytest.approx(np.mean(y))


@settings(max_examples=60, deadline=None)
@given(_leads, _k, _k)
def test_recall_non_decreasing_in_k(leads: tuple[list[int], list[float]], k1: float, k2: float) -> None:
    y, s = leads
    if sum(y) == 0:
        y = [1, *y[1:]]
    lo, hi = sorted((k1, k2))
    assert recall_at(y, s, lo) <= recall_at(y, s, hi)


@settings(max_examples=60, deadline=None)
@given(_leads, _k)
def test_precision_and_recall_count_the_same_top_set(leads: tuple[list[int], list[float]], k: float) -> None:
    y, s = leads
    if sum(y) == 0:
        y = [1, *y[1:]]
    n_top = max(1, int(np.ceil(round(k * len(y), 9))))
    # Reference: explicit sort key (-score, row) gives the documented tie order.
    top = sorted(range(len(y)), key=lambda i: (-s[i], i))[:n_top]
    hits = sum(y[i] for i in top)
    assert precision_at(y, s, k) == pytest.approx(hits / n_top)
    assert recall_at(y, s, k) == pytest.approx(hits / sum(y))


@settings(max_examples=50, deadline=None)
@given(_leads, st.integers(1, 10))
def test_lift_table_invariants(leads: tuple[list[int], list[float]], n_bins: int) -> None:
    y, s = leads
    if sum(y) == 0:
        y = [1, *y[1:]]
    n_bins = min(n_bins, len(y))
    table = lift_table(y, s, n_bins=n_bins)
    assert table["leads"].sum() == len(y)
    assert table["positives"].sum() == sum(y)
    assert table["cumulative_recall"].iloc[-1] == pytest.approx(1.0)
    assert (table["cumulative_recall"].diff().dropna() >= 0).all()
