"""Tests for leadrank.losses: hand-computed values, stable numerics, and that HPRO changes gradients."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from leadrank.funnel import Pairs, funnel_pairs, label_pairs
from leadrank.losses import LearnedMargins, LossWeights, answer_ce, bce_loss, preference_loss

PAPER_MARGINS = torch.tensor([1.0, 0.5, 0.1])


def _nls(x: float) -> float:
    """-log(sigmoid(x)), by hand."""
    return -math.log(1.0 / (1.0 + math.exp(-x)))


def _pairs(winners: list[int], losers: list[int], margins: list[float], tiers: list[int]) -> Pairs:
    return Pairs(
        torch.tensor(winners, dtype=torch.long),
        torch.tensor(losers, dtype=torch.long),
        torch.tensor(margins, dtype=torch.float32),
        torch.tensor(tiers, dtype=torch.long),
    )


def test_loss_weights_are_the_papers() -> None:
    assert (LossWeights().bce, LossWeights().hpro, LossWeights().ce) == (2.0, 1.0, 0.5)


class TestBce:
    def test_hand_value(self) -> None:
        logits = torch.tensor([0.5, -1.0, 2.0, 0.0])
        labels = torch.tensor([1, 0, 1, 0])  # ints: converted to float
        expected = (_nls(0.5) + _nls(1.0) + _nls(2.0) + math.log(2.0)) / 4  # -log(1 - σ(x)) = -log σ(-x)
        assert bce_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)

    def test_float32_result_from_bfloat16_logits(self) -> None:
        logits = torch.tensor([0.5, -1.0], dtype=torch.bfloat16, requires_grad=True)
        loss = bce_loss(logits, torch.tensor([1.0, 0.0]))
        assert loss.dtype == torch.float32
        assert loss.item() == pytest.approx((_nls(0.5) + _nls(1.0)) / 2, rel=1e-6)
        loss.backward()
        assert torch.isfinite(logits.grad.float()).all()


class TestAnswerCe:
    def test_hand_value(self) -> None:
        logits = torch.tensor([[0.0, 1.0, 2.0, 3.0, -1.0], [2.0, 0.5, 0.0, 1.0, 0.0]])
        yes_id, no_id = 3, 1
        labels = torch.tensor([1.0, 0.0])

        def neg_log_softmax(row: list[float], index: int) -> float:
            return -(row[index] - math.log(sum(math.exp(v) for v in row)))

        expected = (neg_log_softmax(logits[0].tolist(), yes_id) + neg_log_softmax(logits[1].tolist(), no_id)) / 2
        assert answer_ce(logits, labels, yes_id, no_id).item() == pytest.approx(expected, rel=1e-6)

    def test_swapping_ids_changes_the_loss(self) -> None:
        logits = torch.tensor([[0.0, 1.0, 2.0, 3.0, -1.0]])
        labels = torch.tensor([1.0])
        right = answer_ce(logits, labels, yes_id=3, no_id=1).item()
        wrong = answer_ce(logits, labels, yes_id=1, no_id=3).item()
        assert right < wrong


class TestPreferenceLossHandCase:
    # Scores of 4 leads; tier 0 has one pair, tier 1 three pairs (one of them mis-ordered), tier 2 none.
    SCORES = [2.0, 0.5, -1.0, 0.0]
    PAIRS = _pairs(
        winners=[0, 0, 3, 2],
        losers=[1, 2, 2, 3],
        margins=[1.0, 0.5, 0.5, 0.5],
        tiers=[0, 1, 1, 1],
    )

    def test_loss_is_mean_over_present_tiers_of_mean_over_pairs(self) -> None:
        s = self.SCORES
        tier0 = _nls(s[0] - s[1] - 1.0)
        tier1 = (_nls(s[0] - s[2] - 0.5) + _nls(s[3] - s[2] - 0.5) + _nls(s[2] - s[3] - 0.5)) / 3
        loss, _ = preference_loss(torch.tensor(s), self.PAIRS, n_tiers=3)
        assert loss.dtype == torch.float32
        assert loss.item() == pytest.approx((tier0 + tier1) / 2, rel=1e-6)

    def test_stats_pairs_and_accuracy(self) -> None:
        _, stats = preference_loss(torch.tensor(self.SCORES), self.PAIRS, n_tiers=3)
        assert stats["pairs"].tolist() == [1.0, 3.0, 0.0]
        # tier 0: 2 > 0.5; tier 1: 2 > -1, 0 > -1, -1 < 0 -> 2/3; tier 2: no pairs -> 0.
        torch.testing.assert_close(stats["accuracy"], torch.tensor([1.0, 2.0 / 3.0, 0.0]))

    def test_tie_is_not_counted_as_correct(self) -> None:
        _, stats = preference_loss(torch.tensor([1.0, 1.0]), _pairs([0], [1], [0.0], [0]), n_tiers=1)
        assert stats["accuracy"].tolist() == [0.0]

    def test_gradient_by_hand(self) -> None:
        # d/ds_w -log σ(s_w - s_l - m) = -(1 - σ(s_w - s_l - m)) = -σ(-(gap - m)); opposite for s_l.
        scores = torch.tensor([2.0, 0.5], requires_grad=True)
        loss, _ = preference_loss(scores, _pairs([0], [1], [1.0], [0]), n_tiers=1)
        loss.backward()
        g = 1.0 / (1.0 + math.exp(2.0 - 0.5 - 1.0))
        torch.testing.assert_close(scores.grad, torch.tensor([-g, g]))

    def test_funnel_pairs_feed_the_loss(self) -> None:
        # rows: lock, defeat, test_drive, call (key loser); global tier 1 pair, key tier 2 pairs.
        membership = torch.tensor([[1, 0, 0], [-1, -1, 0], [0, 1, 0], [0, -1, 0]], dtype=torch.int8)
        scores = [1.5, -0.5, 0.25, 0.75]
        loss, stats = preference_loss(torch.tensor(scores), funnel_pairs(membership, PAPER_MARGINS), n_tiers=3)
        tier_global = _nls(1.5 - (-0.5) - 1.0)
        tier_key = (_nls(0.25 - (-0.5) - 0.5) + _nls(0.25 - 0.75 - 0.5)) / 2
        assert loss.item() == pytest.approx((tier_global + tier_key) / 2, rel=1e-6)
        assert stats["pairs"].tolist() == [1.0, 2.0, 0.0]
        torch.testing.assert_close(stats["accuracy"], torch.tensor([1.0, 0.5, 0.0]))


class TestTiersAveragedNotPairs:
    def test_one_pair_tier_weighs_as_much_as_a_hundred_pair_tier(self) -> None:
        # tier 0: row 0 ≻ row 1 (1 pair); tier 1: rows 2..11 ≻ rows 12..21 (10 x 10 = 100 pairs).
        membership = torch.zeros((22, 2), dtype=torch.int8)
        membership[0, 0], membership[1, 0] = 1, -1
        membership[2:12, 1], membership[12:22, 1] = 1, -1
        scores = torch.zeros(22)
        scores[0] = 3.0
        scores[2:12] = 1.0
        pairs = funnel_pairs(membership, torch.tensor([1.0, 0.5]))
        assert len(pairs) == 101
        loss, stats = preference_loss(scores, pairs, n_tiers=2)
        tier0 = _nls(3.0 - 0.0 - 1.0)
        tier1 = _nls(1.0 - 0.0 - 0.5)
        assert stats["pairs"].tolist() == [1.0, 100.0]
        assert loss.item() == pytest.approx((tier0 + tier1) / 2, rel=1e-6)
        assert loss.item() != pytest.approx((tier0 + 100 * tier1) / 101, rel=1e-3)

    def test_duplicating_a_tiers_pairs_leaves_the_loss_unchanged(self) -> None:
        scores = torch.tensor([2.0, 0.5, -1.0])
        once = _pairs([0, 1], [1, 2], [1.0, 0.5], [0, 1])
        thrice = _pairs([0, 1, 1, 1], [1, 2, 2, 2], [1.0, 0.5, 0.5, 0.5], [0, 1, 1, 1])
        a, _ = preference_loss(scores, once, n_tiers=2)
        b, _ = preference_loss(scores, thrice, n_tiers=2)
        assert a.item() == pytest.approx(b.item(), rel=1e-6)


class TestMargins:
    @settings(max_examples=50, deadline=None)
    @given(
        low=st.floats(0.0, 5.0),
        extra=st.floats(0.01, 5.0),
        s_w=st.floats(-10.0, 10.0),
        s_l=st.floats(-10.0, 10.0),
    )
    def test_larger_margin_larger_loss(self, low: float, extra: float, s_w: float, s_l: float) -> None:
        scores = torch.tensor([s_w, s_l])
        small, _ = preference_loss(scores, _pairs([0], [1], [low], [0]), n_tiers=1)
        large, _ = preference_loss(scores, _pairs([0], [1], [low + extra], [0]), n_tiers=1)
        assert large.item() > small.item()

    def test_margin_zero_is_plain_bradley_terry(self) -> None:
        loss, _ = preference_loss(torch.tensor([1.0, 0.0]), _pairs([0], [1], [0.0], [0]), n_tiers=1)
        assert loss.item() == pytest.approx(math.log1p(math.exp(-1.0)), rel=1e-6)


class TestNumerics:
    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
    @pytest.mark.parametrize("gap", [100.0, -100.0])
    def test_extreme_gaps_stay_finite(self, dtype: torch.dtype, gap: float) -> None:
        scores = torch.tensor([gap, 0.0], dtype=dtype, requires_grad=True)
        loss, stats = preference_loss(scores, _pairs([0], [1], [1.0], [0]), n_tiers=1)
        assert loss.dtype == torch.float32
        assert math.isfinite(loss.item())
        loss.backward()
        assert scores.grad is not None
        assert scores.grad.dtype == dtype
        assert torch.isfinite(scores.grad.float()).all()
        if gap > 0:  # σ(99) == 1 in float32: loss ~ 0, gradient ~ 0
            assert loss.item() == pytest.approx(0.0, abs=1e-6)
            assert stats["accuracy"].tolist() == [1.0]
        else:  # -log σ(-101) = 101: gradient -1 on the winner, +1 on the loser
            assert loss.item() == pytest.approx(101.0, rel=1e-4)
            torch.testing.assert_close(scores.grad.float(), torch.tensor([-1.0, 1.0]))
            assert stats["accuracy"].tolist() == [0.0]

    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
    def test_bce_and_ce_finite_at_extreme_logits(self, dtype: torch.dtype) -> None:
        point = torch.tensor([100.0, -100.0], dtype=dtype, requires_grad=True)
        bce = bce_loss(point, torch.tensor([0.0, 1.0]))
        answer = torch.tensor([[100.0, -100.0, 0.0]], dtype=dtype, requires_grad=True)
        ce = answer_ce(answer, torch.tensor([1.0]), yes_id=1, no_id=0)
        (bce + ce).backward()
        assert math.isfinite(bce.item()) and math.isfinite(ce.item())
        assert torch.isfinite(point.grad.float()).all() and torch.isfinite(answer.grad.float()).all()


class TestNoPairs:
    def test_zero_loss_and_zero_gradient(self) -> None:
        scores = torch.tensor([0.3, -1.2, 2.0], requires_grad=True)
        empty = funnel_pairs(torch.zeros((3, 3), dtype=torch.int8), PAPER_MARGINS)
        loss, stats = preference_loss(scores, empty, n_tiers=3)
        assert loss.item() == 0.0
        assert stats["pairs"].tolist() == [0.0, 0.0, 0.0]
        assert stats["accuracy"].tolist() == [0.0, 0.0, 0.0]
        loss.backward()
        assert scores.grad is not None
        torch.testing.assert_close(scores.grad, torch.zeros(3))

    def test_zero_tiers(self) -> None:
        scores = torch.tensor([0.3, -1.2], requires_grad=True)
        loss, _ = preference_loss(scores, funnel_pairs(torch.zeros((2, 0), dtype=torch.int8), torch.zeros(0)), 0)
        assert loss.item() == 0.0
        loss.backward()
        torch.testing.assert_close(scores.grad, torch.zeros(2))


class TestHproChangesGradients:
    """Labels alone (all 0) give the pairwise head nothing to learn; funnel stages do."""

    # 8 leads, every label 0. Stages: test_drive, test_drive, call(60 s), call(300 s), new, defeat, new, call(60 s).
    LABELS = torch.zeros(8)
    MEMBERSHIP_A = torch.tensor(
        [[0, 1, 0], [0, 1, 0], [0, -1, -1], [0, -1, 1], [0, -1, 0], [-1, -1, 0], [0, -1, 0], [0, -1, -1]],
        dtype=torch.int8,
    )
    # Same labels, different stages: only one test drive, the rest defeats and news.
    MEMBERSHIP_B = torch.tensor(
        [[0, 1, 0], [-1, -1, 0], [-1, -1, 0], [0, -1, 0], [0, -1, 0], [-1, -1, 0], [0, -1, 0], [0, -1, 0]],
        dtype=torch.int8,
    )

    @staticmethod
    def _head_grad(pairs: Pairs) -> torch.Tensor:
        torch.manual_seed(0)
        features = torch.randn(8, 4)
        head = torch.nn.Linear(4, 1)
        loss, _ = preference_loss(head(features).squeeze(-1), pairs, n_tiers=3)
        loss.backward()
        assert head.weight.grad is not None
        return torch.cat([head.weight.grad.flatten(), head.bias.grad.flatten()])

    def test_label_pairs_give_zero_gradient(self) -> None:
        pairs = label_pairs(self.LABELS)
        assert len(pairs) == 0
        grad = self._head_grad(pairs)
        assert torch.count_nonzero(grad) == 0

    def test_funnel_pairs_give_nonzero_gradient(self) -> None:
        grad = self._head_grad(funnel_pairs(self.MEMBERSHIP_A, PAPER_MARGINS))
        assert grad[:4].abs().sum() > 1e-4  # the weights move
        assert grad[4].item() == pytest.approx(0.0, abs=1e-6)  # a shared bias cancels in s_w - s_l

    def test_same_labels_different_stages_give_different_gradients(self) -> None:
        grad_a = self._head_grad(funnel_pairs(self.MEMBERSHIP_A, PAPER_MARGINS))
        grad_b = self._head_grad(funnel_pairs(self.MEMBERSHIP_B, PAPER_MARGINS))
        assert not torch.allclose(grad_a, grad_b, atol=1e-4)


class TestLearnedMargins:
    def test_they_start_at_the_funnel_margins(self) -> None:
        torch.testing.assert_close(LearnedMargins([1.0, 0.5, 0.1])(), torch.tensor([1.0, 0.5, 0.1]))

    @given(st.lists(st.floats(-30, 30), min_size=3, max_size=3))
    def test_any_parameters_keep_them_non_negative_and_in_order(self, raw: list[float]) -> None:
        margins = LearnedMargins([1.0, 0.5, 0.1])
        with torch.no_grad():
            margins.raw_gaps.copy_(torch.tensor(raw))
        global_, key, soft = margins().tolist()
        assert global_ >= key >= soft >= 0.0

    def test_hpro_pushes_them_down(self) -> None:
        # -log σ(gap - m) falls as m falls: a margin learned by the loss alone can only shrink.
        margins = LearnedMargins([1.0, 0.5, 0.1])
        scores = torch.tensor([2.0, 0.0, 1.0, 0.5])
        pairs = Pairs(torch.tensor([0, 2]), torch.tensor([1, 3]), margins()[torch.tensor([0, 1])], torch.tensor([0, 1]))
        loss, _ = preference_loss(scores, pairs, 3)
        loss.backward()
        assert (margins.raw_gaps.grad[1:] > 0).all()  # the gaps above the smallest margin

    def test_negative_margins_are_refused(self) -> None:
        with pytest.raises(ValueError, match="margins must be >= 0"):
            LearnedMargins([1.0, -0.5])
