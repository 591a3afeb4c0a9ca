"""Tests for leadrank.funnel: tier membership, in-batch preference pairs, the funnel batch sampler."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from leadrank.config import FunnelSpec
from leadrank.funnel import FunnelBatchSampler, Pairs, funnel_pairs, label_pairs, tier_membership

STAGES = ["defeat", "new", "call", "test_drive", "lock"]
PAPER_MARGINS = torch.tensor([1.0, 0.5, 0.1])


def _spec(tiers: list[dict]) -> FunnelSpec:
    return FunnelSpec.model_validate({"stages": list(STAGES), "tiers": tiers})


def _pair_set(pairs: Pairs) -> set[tuple[int, int, int]]:
    return set(zip(pairs.tiers.tolist(), pairs.winners.tolist(), pairs.losers.tolist(), strict=True))


# --------------------------------------------------------------------------------------------
# tier_membership
# --------------------------------------------------------------------------------------------


class TestTierMembership:
    def test_one_row_per_stage_exact_matrix(self) -> None:
        table = pd.DataFrame(
            {
                "funnel_stage": ["defeat", "new", "call", "call", "test_drive", "lock"],
                "call_duration_s": [0.0, float("nan"), 60.0, 300.0, 500.0, 200.0],
            }
        )
        membership = tier_membership(table, FunnelSpec.paper_default())
        #                      global key soft
        expected = np.array(
            [
                [-1, -1, 0],  # defeat: loses global (to lock) and key (to test drive)
                [0, -1, 0],  # new: loses key only
                [0, -1, -1],  # call, 60 s: loses key and soft (short call)
                [0, -1, 1],  # call, 300 s: loses key, wins soft (long call)
                [0, 1, 0],  # test drive: wins key
                [1, 0, 0],  # lock: wins global; not in key (neither test drive nor below)
            ],
            dtype=np.int8,
        )
        assert membership.dtype == np.int8
        assert membership.shape == (6, 3)
        np.testing.assert_array_equal(membership, expected)

    def test_call_at_exactly_120_seconds_is_a_soft_winner(self) -> None:
        table = pd.DataFrame({"funnel_stage": ["call", "call"], "call_duration_s": [119.0, 120.0]})
        membership = tier_membership(table, FunnelSpec.paper_default())
        assert membership[:, 2].tolist() == [-1, 1]

    def test_no_tiers_gives_zero_columns(self) -> None:
        table = pd.DataFrame({"funnel_stage": ["lock", "defeat"]})
        membership = tier_membership(table, _spec([]))
        assert membership.shape == (2, 0)

    def test_overlapping_rules_raise_naming_the_tier(self) -> None:
        spec = _spec(
            [
                {"name": "fine", "winner": "stage == 'lock'", "loser": "stage == 'defeat'", "margin": 1.0},
                {"name": "clash", "winner": "stage == 'call'", "loser": "stage in ('call', 'new')", "margin": 0.5},
            ]
        )
        table = pd.DataFrame({"funnel_stage": ["lock", "new", "call", "defeat"]})
        with pytest.raises(ValueError, match=r"tier 'clash'.*rows \[2\].*both"):
            tier_membership(table, spec)


# --------------------------------------------------------------------------------------------
# funnel_pairs / label_pairs
# --------------------------------------------------------------------------------------------


class TestFunnelPairs:
    # 7 rows, 3 tiers: tier 0 has 2 winners x 3 losers, tier 1 has 1 x 2, tier 2 is empty of losers.
    MEMBERSHIP = torch.tensor(
        [
            [1, 0, 1],
            [-1, 1, 0],
            [-1, -1, 0],
            [1, 0, 1],
            [-1, 0, 0],
            [0, -1, 0],
            [0, 0, 0],
        ],
        dtype=torch.int8,
    )

    def test_exact_pairs_per_tier(self) -> None:
        pairs = funnel_pairs(self.MEMBERSHIP, PAPER_MARGINS)
        expected = {(0, w, lo) for w in (0, 3) for lo in (1, 2, 4)} | {(1, 1, 2), (1, 1, 5)}
        assert len(pairs) == 6 + 2
        assert _pair_set(pairs) == expected
        assert torch.bincount(pairs.tiers, minlength=3).tolist() == [6, 2, 0]

    def test_margins_are_the_tiers_margin(self) -> None:
        pairs = funnel_pairs(self.MEMBERSHIP, PAPER_MARGINS)
        assert pairs.margins.dtype == torch.float32
        torch.testing.assert_close(pairs.margins, PAPER_MARGINS[pairs.tiers])
        assert sorted(pairs.margins.tolist()) == pytest.approx([0.5] * 2 + [1.0] * 6)

    def test_direction_and_no_self_pairs(self) -> None:
        pairs = funnel_pairs(self.MEMBERSHIP, PAPER_MARGINS)
        assert (self.MEMBERSHIP[pairs.winners, pairs.tiers] == 1).all()
        assert (self.MEMBERSHIP[pairs.losers, pairs.tiers] == -1).all()
        assert (pairs.winners != pairs.losers).all()
        for tensor in (pairs.winners, pairs.losers, pairs.tiers):
            assert tensor.dtype == torch.long

    def test_tiers_without_winners_or_losers_give_no_pairs(self) -> None:
        membership = torch.tensor([[1, 0, -1], [1, 0, -1], [0, 0, -1]], dtype=torch.int8)
        pairs = funnel_pairs(membership, PAPER_MARGINS)
        assert len(pairs) == 0
        assert pairs.winners.numel() == pairs.losers.numel() == pairs.margins.numel() == pairs.tiers.numel() == 0

    def test_zero_tiers_gives_empty_pairs(self) -> None:
        pairs = funnel_pairs(torch.zeros((5, 0), dtype=torch.int8), torch.zeros(0))
        assert isinstance(pairs, Pairs)
        assert len(pairs) == 0
        assert pairs.margins.numel() == 0

    def test_empty_batch(self) -> None:
        pairs = funnel_pairs(torch.zeros((0, 3), dtype=torch.int8), PAPER_MARGINS)
        assert len(pairs) == 0

    @settings(max_examples=60, deadline=None)
    @given(data=st.data(), rows=st.integers(0, 12), n_tiers=st.integers(0, 4))
    def test_pair_count_is_sum_of_winners_times_losers(self, data: st.DataObject, rows: int, n_tiers: int) -> None:
        values = data.draw(st.lists(st.sampled_from([-1, 0, 1]), min_size=rows * n_tiers, max_size=rows * n_tiers))
        margins = data.draw(st.lists(st.floats(0.0, 2.0), min_size=n_tiers, max_size=n_tiers))
        membership = torch.tensor(values, dtype=torch.int8).reshape(rows, n_tiers)
        margin_tensor = torch.tensor(margins, dtype=torch.float32)
        pairs = funnel_pairs(membership, margin_tensor)
        expected = sum(int((membership[:, t] == 1).sum()) * int((membership[:, t] == -1).sum()) for t in range(n_tiers))
        assert len(pairs) == expected
        # Each (tier, winner, loser) appears once, in the right direction, with the tier's margin.
        assert len(_pair_set(pairs)) == expected
        if expected:
            assert (membership[pairs.winners, pairs.tiers] == 1).all()
            assert (membership[pairs.losers, pairs.tiers] == -1).all()
            torch.testing.assert_close(pairs.margins, margin_tensor[pairs.tiers])


class TestLabelPairs:
    def test_positives_times_negatives_margin_zero(self) -> None:
        pairs = label_pairs(torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0]))
        assert len(pairs) == 2 * 3
        assert _pair_set(pairs) == {(0, w, lo) for w in (1, 3) for lo in (0, 2, 4)}
        assert (pairs.margins == 0.0).all()
        assert (pairs.tiers == 0).all()

    def test_no_positives_gives_no_pairs(self) -> None:
        assert len(label_pairs(torch.zeros(6))) == 0
        assert len(label_pairs(torch.ones(6))) == 0


# --------------------------------------------------------------------------------------------
# FunnelBatchSampler
# --------------------------------------------------------------------------------------------


def _crm(n: int = 203, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small simulated CRM: few locks (the positives), many defeats/news, some calls."""
    rng = np.random.default_rng(seed)
    stage = rng.choice(STAGES, size=n, p=[0.3, 0.3, 0.25, 0.1, 0.05])
    stage[:3] = "lock"  # make sure there are at least 3 positives
    table = pd.DataFrame({"funnel_stage": stage, "call_duration_s": rng.uniform(0, 400, size=n)})
    membership = tier_membership(table, FunnelSpec.paper_default())
    labels = (stage == "lock").astype(np.int64)
    return labels, membership


class TestFunnelBatchSampler:
    BATCH = 16

    def test_every_batch_holds_positives_and_both_sides_of_every_tier(self) -> None:
        labels, membership = _crm()
        sampler = FunnelBatchSampler(labels, membership, self.BATCH, min_positives=2, seed=3)
        batches = list(sampler)
        assert batches
        for batch in batches:
            distinct = set(batch)
            assert sum(labels[i] for i in distinct) >= 2
            for t in range(membership.shape[1]):
                assert (membership[batch, t] == 1).any(), f"tier {t}: no winner in {batch}"
                assert (membership[batch, t] == -1).any(), f"tier {t}: no loser in {batch}"

    def test_min_positives_without_tiers(self) -> None:
        # No tiers, so no tier slot can bring positives in by accident: only the reserved slots do.
        labels = np.zeros(120, dtype=np.int64)
        labels[[5, 17, 40, 77, 101]] = 1
        sampler = FunnelBatchSampler(labels, np.zeros((120, 0), dtype=np.int8), 8, min_positives=3, seed=2)
        batches = list(sampler)
        assert len(batches) == len(sampler) == -(-120 // (8 - 3))
        for batch in batches:
            assert len({i for i in batch if labels[i] == 1}) >= 3, batch

    def test_tier_with_only_winners_still_gets_a_winner(self) -> None:
        labels, membership = _crm()
        membership = membership.copy()
        membership[:, 2] = np.where(membership[:, 2] == -1, 0, membership[:, 2])  # soft tier: winners only
        sampler = FunnelBatchSampler(labels, membership, self.BATCH)
        for batch in sampler:
            assert (membership[batch, 2] == 1).any()
            assert (membership[batch, 0] == 1).any() and (membership[batch, 0] == -1).any()

    def test_len_matches_batches_yielded_and_sizes(self) -> None:
        labels, membership = _crm()
        for batch_size in (9, 16, 50, 500):
            sampler = FunnelBatchSampler(labels, membership, batch_size)
            batches = list(sampler)
            assert len(sampler) == len(batches)
            assert all(0 < len(b) <= batch_size for b in batches)

    def test_epoch_covers_every_row(self) -> None:
        labels, membership = _crm()
        sampler = FunnelBatchSampler(labels, membership, self.BATCH, seed=1)
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            seen = {i for batch in sampler for i in batch}
            assert seen == set(range(len(labels)))

    def test_indices_are_python_ints_in_range(self) -> None:
        labels, membership = _crm()
        for batch in FunnelBatchSampler(labels, membership, self.BATCH):
            assert all(type(i) is int and 0 <= i < len(labels) for i in batch)

    def test_deterministic_for_seed_and_epoch(self) -> None:
        labels, membership = _crm()
        a = FunnelBatchSampler(labels, membership, self.BATCH, seed=7)
        b = FunnelBatchSampler(labels, membership, self.BATCH, seed=7)
        assert list(a) == list(b)
        assert list(a) == list(a)  # iterating twice in an epoch repeats the epoch
        first = list(a)
        a.set_epoch(1)
        assert list(a) != first
        b.set_epoch(1)
        assert list(a) == list(b)
        assert list(FunnelBatchSampler(labels, membership, self.BATCH, seed=8)) != first

    @pytest.mark.parametrize("n", [203, 200])
    def test_sharding_two_replicas(self, n: int) -> None:
        labels, membership = _crm(n=n)
        full = list(FunnelBatchSampler(labels, membership, self.BATCH, seed=5))
        ranks = [FunnelBatchSampler(labels, membership, self.BATCH, seed=5, num_replicas=2, rank=r) for r in range(2)]
        shards = [list(s) for s in ranks]
        assert len(shards[0]) == len(shards[1]) == len(ranks[0]) == len(ranks[1])
        assert len(ranks[0]) == -(-len(full) // 2)
        assert shards[0] == full[0::2]
        assert shards[1][: len(full[1::2])] == full[1::2]
        # Together the ranks see every global batch, hence every row.
        assert {tuple(b) for s in shards for b in s} == {tuple(b) for b in full}
        assert {i for s in shards for b in s for i in b} == set(range(n))

    def test_sharding_follows_set_epoch(self) -> None:
        labels, membership = _crm()
        full = FunnelBatchSampler(labels, membership, self.BATCH, seed=5)
        rank0 = FunnelBatchSampler(labels, membership, self.BATCH, seed=5, num_replicas=2, rank=0)
        full.set_epoch(3)
        rank0.set_epoch(3)
        assert list(rank0) == list(full)[0::2]

    def test_batch_size_too_small_raises(self) -> None:
        labels, membership = _crm()
        # 2 positives + 2 x 3 tiers = 8 reserved slots.
        with pytest.raises(ValueError, match=r"batch_size=8 leaves no room.*above 8"):
            FunnelBatchSampler(labels, membership, 8, min_positives=2)
        FunnelBatchSampler(labels, membership, 9, min_positives=2)  # one free slot is enough

    @pytest.mark.parametrize(("num_replicas", "rank"), [(2, 2), (2, -1), (1, 1)])
    def test_rank_out_of_range_raises(self, num_replicas: int, rank: int) -> None:
        labels, membership = _crm()
        with pytest.raises(ValueError, match=r"rank must be in \[0, "):
            FunnelBatchSampler(labels, membership, self.BATCH, num_replicas=num_replicas, rank=rank)


class TestSamplerWithATotalOrder:
    def test_a_pool_shared_by_several_tiers_is_reserved_once(self) -> None:
        funnel = FunnelSpec.total_order()
        stages = ["defeat", "new", "call", "test_drive", "lock"] * 8
        table = pd.DataFrame({"funnel_stage": stages, "label": [int(s == "lock") for s in stages]})
        membership = tier_membership(table, funnel)
        assert membership.shape[1] == 10
        sampler = FunnelBatchSampler(table["label"].to_numpy(), membership, batch_size=16, seed=0)  # 10 tiers, 5 pools
        batches = list(sampler)
        assert [len(b) for b in batches[:-1]] == [16] * (len(batches) - 1)
        for batch in batches:
            assert set(table["funnel_stage"].iloc[batch]) == set(funnel.stages)  # every stage in every batch
