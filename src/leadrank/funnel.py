"""Funnel tiers -> preference pairs, and batches that always hold something to compare.

Each lead's place in each tier is computed once from the FunnelSpec's rules: +1 winner,
-1 loser, 0 neither. Inside a batch, every winner of a tier is paired with every loser of the
same tier, and each pair carries the tier's margin as data (not as a flag).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Sampler

from leadrank.config import FunnelSpec

WINNER, LOSER = 1, -1


def tier_membership(table: pd.DataFrame, funnel: FunnelSpec) -> np.ndarray:
    """``(rows, tiers)`` int8 matrix: +1 where a row is a tier's winner, -1 a loser, 0 neither."""
    membership = np.zeros((len(table), len(funnel.tiers)), dtype=np.int8)
    for t, tier in enumerate(funnel.tiers):
        winner = funnel.rule(tier, "winner").evaluate(table)
        loser = funnel.rule(tier, "loser").evaluate(table)
        both = np.flatnonzero(winner & loser)
        if both.size:
            raise ValueError(
                f"tier {tier.name!r}: rows {both[:5].tolist()} match both the winner rule {tier.winner!r} and the "
                f"loser rule {tier.loser!r}; make the rules exclusive in the FunnelSpec."
            )
        membership[winner, t] = WINNER
        membership[loser, t] = LOSER
    return membership


@dataclass(frozen=True)
class Pairs:
    """Preference pairs inside one batch: ``winners[i]`` ≻ ``losers[i]`` by at least ``margins[i]``."""

    winners: torch.Tensor  # (P,) batch positions
    losers: torch.Tensor  # (P,) batch positions
    margins: torch.Tensor  # (P,) float
    tiers: torch.Tensor  # (P,) tier index

    def __len__(self) -> int:
        return int(self.winners.numel())


def funnel_pairs(membership: torch.Tensor, margins: torch.Tensor) -> Pairs:
    """Every winner x loser pair per tier of a ``(batch, tiers)`` membership matrix."""
    empty = torch.zeros(0, dtype=torch.long)
    winners, losers, tiers = [empty], [empty], [empty]
    for t in range(membership.shape[1]):
        w = torch.nonzero(membership[:, t] == WINNER).flatten()
        lo = torch.nonzero(membership[:, t] == LOSER).flatten()
        grid_w, grid_l = torch.meshgrid(w, lo, indexing="ij")
        winners.append(grid_w.flatten())
        losers.append(grid_l.flatten())
        tiers.append(torch.full((grid_w.numel(),), t, dtype=torch.long))
    tier_index = torch.cat(tiers)
    return Pairs(torch.cat(winners), torch.cat(losers), margins.to(torch.float32)[tier_index], tier_index)


def label_pairs(labels: torch.Tensor) -> Pairs:
    """The fallback without funnel tiers: every positive ≻ every negative, margin 0, tier 0."""
    positives = torch.nonzero(labels > 0.5).flatten()
    negatives = torch.nonzero(labels <= 0.5).flatten()
    grid_w, grid_l = torch.meshgrid(positives, negatives, indexing="ij")
    count = grid_w.numel()
    return Pairs(grid_w.flatten(), grid_l.flatten(), torch.zeros(count), torch.zeros(count, dtype=torch.long))


class FunnelBatchSampler(Sampler[list[int]]):
    """Batches that each hold positives and a winner and a loser of every tier (when any exist).

    One epoch visits every row once in a shuffled stream; each batch reserves
    ``min_positives`` slots for positives and one slot for each distinct pool of tier winners
    or losers (a pool shared by several tiers, such as the stage 'call' in a total order, is
    reserved once), drawn from those pools in turn, and fills the rest from the stream. The global list of batches is the same in every
    process; process ``rank`` of ``num_replicas`` takes batches ``rank, rank + num_replicas, ...``
    (wrapping around so that every process gets the same number).
    """

    def __init__(
        self,
        labels: np.ndarray,
        membership: np.ndarray,
        batch_size: int,
        *,
        min_positives: int = 2,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        tier_pools = _distinct_pools(np.asarray(membership))
        reserved = min_positives + len(tier_pools)
        if batch_size <= reserved:
            raise ValueError(
                f"batch_size={batch_size} leaves no room: {min_positives} positives and one slot for each of the "
                f"{len(tier_pools)} distinct winner/loser pools of {membership.shape[1]} tiers are reserved. "
                f"Use a batch_size above {reserved}."
            )
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}); got {rank}.")
        self.labels = np.asarray(labels)
        self.membership = np.asarray(membership)
        self.batch_size = batch_size
        self.min_positives = min_positives
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self._pools = [np.flatnonzero(self.labels == 1), *tier_pools]
        self._reserved = [min_positives] + [1] * len(tier_pools)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for a new epoch (call before iterating, as with DistributedSampler)."""
        self.epoch = epoch

    @property
    def _global_batches(self) -> int:
        filled = self.batch_size - sum(k for k, pool in zip(self._reserved, self._pools) if len(pool))
        return math.ceil(len(self.labels) / filled)

    def __len__(self) -> int:
        return math.ceil(self._global_batches / self.num_replicas)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        stream = rng.permutation(len(self.labels))
        pool_orders = [rng.permutation(pool) for pool in self._pools]
        cursors = [0] * len(self._pools)
        batches = []
        position = 0
        for _ in range(self._global_batches):
            batch: list[int] = []
            for p, (count, pool) in enumerate(zip(self._reserved, pool_orders)):
                for _ in range(count if len(pool) else 0):
                    batch.append(int(pool[cursors[p] % len(pool)]))
                    cursors[p] += 1
            fill = self.batch_size - len(batch)
            batch += stream[position : position + fill].tolist()
            position += fill
            batches.append(batch)
        for i in range(len(self)):
            yield batches[(self.rank + i * self.num_replicas) % len(batches)]


def _distinct_pools(membership: np.ndarray) -> list[np.ndarray]:
    """The rows of each tier's winners and of its losers, in tier order, each distinct set once."""
    pools, seen = [], set()
    for t in range(membership.shape[1]):
        for side in (WINNER, LOSER):
            rows = np.flatnonzero(membership[:, t] == side)
            key = rows.tobytes()
            if key not in seen:
                seen.add(key)
                pools.append(rows)
    return pools
