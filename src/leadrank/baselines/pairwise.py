"""Funnel preference pairs for models trained outside torch: sampling, loss, gradient, hessian.

The pair term is the HPRO loss of :func:`leadrank.losses.preference_loss` on a whole table:
mean over the tiers that have pairs of the mean over the tier's pairs of
``-log σ(s_w - s_l - m)``. Enumerating every winner x loser pair grows with the square of
the table, so each tier is sampled (:class:`TierPairSampler`) with a cost linear in leads.
:func:`objective_value` and :func:`objective_grad_hess` add the mean binary cross-entropy of the same scores, so one linear score
or one boosted score is both a probability (through the sigmoid) and a ranking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, log_expit

from leadrank.baselines._columns import require_columns
from leadrank.config import FunnelSpec
from leadrank.data.schema import label_values
from leadrank.funnel import LOSER, WINNER, tier_membership


@dataclass(frozen=True)
class TierPairs:
    """Preference pairs over table rows: ``winners[i]`` ≻ ``losers[i]`` by ``margins[i]``, in tier ``tiers[i]``."""

    winners: np.ndarray  # (P,) int row positions
    losers: np.ndarray  # (P,) int row positions
    margins: np.ndarray  # (P,) float
    tiers: np.ndarray  # (P,) int tier index

    def __len__(self) -> int:
        return len(self.winners)


def funnel_tiers(table: pd.DataFrame, funnel: FunnelSpec, *, who: str) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, tiers)`` membership (+1 winner, -1 loser, 0 neither) and the tiers' margins.

    A FunnelSpec without tiers means plain pairwise on the label: one tier, every positive ≻
    every negative with margin 0 (as the LLM's training does).
    """
    require_columns(table, funnel.supervision_columns if funnel.tiers else [funnel.label_column], who=who)
    if not funnel.tiers:
        positive = label_values(table[funnel.label_column]) == 1
        return np.where(positive, WINNER, LOSER).astype(np.int8)[:, None], np.zeros(1)
    return tier_membership(table, funnel), np.array([t.margin for t in funnel.tiers], dtype=float)


class TierPairSampler:
    """Draws preference pairs of every tier, at most ``pairs_per_lead`` x the tier's larger side.

    A tier whose ``winners x losers`` fits in that budget gives all its pairs every time; a
    larger tier gives ``pairs_per_lead * max(winners, losers)`` pairs, winner and loser each
    drawn uniformly with replacement, so every lead of the tier is in about ``pairs_per_lead``
    pairs or more and the tier's mean loss is estimated without bias. ``membership`` and
    ``margins`` are :func:`funnel_tiers`'s; ``seed`` fixes the sequence of draws.
    """

    def __init__(self, membership: np.ndarray, margins: np.ndarray, *, pairs_per_lead: int, seed: int) -> None:
        if not isinstance(pairs_per_lead, int | np.integer) or pairs_per_lead < 1:
            raise ValueError(f"pairs_per_lead must be a whole number >= 1; got {pairs_per_lead!r}")
        self.margins = np.asarray(margins, dtype=float)
        self.pairs_per_lead = int(pairs_per_lead)
        self.rng = np.random.default_rng(seed)
        self.sides = [
            (np.flatnonzero(membership[:, t] == WINNER), np.flatnonzero(membership[:, t] == LOSER)) for t in range(membership.shape[1])
        ]

    def sample(self) -> TierPairs:
        """A fresh draw; tiers small enough to give all their pairs give the same pairs every time."""
        winners, losers, tiers = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for t, (w, lo) in enumerate(self.sides):
            budget = self.pairs_per_lead * max(len(w), len(lo))
            if len(w) * len(lo) <= budget:
                grid_w, grid_l = np.meshgrid(w, lo, indexing="ij")
                w, lo = grid_w.ravel(), grid_l.ravel()
            else:
                w, lo = self.rng.choice(w, budget), self.rng.choice(lo, budget)
            winners.append(w)
            losers.append(lo)
            tiers.append(np.full(len(w), t, dtype=np.int64))
        tier = np.concatenate(tiers)
        return TierPairs(np.concatenate(winners), np.concatenate(losers), self.margins[tier], tier)


def _pair_weights(pairs: TierPairs) -> np.ndarray:
    """Each pair's weight in the mean over tiers present of the mean over the tier's pairs."""
    counts = np.bincount(pairs.tiers)
    present = np.count_nonzero(counts)
    return 1.0 / (present * counts[pairs.tiers]) if len(pairs) else np.zeros(0)


def pair_loss(scores: np.ndarray, pairs: TierPairs) -> float:
    """HPRO: mean over tiers present of the mean ``-log σ(s_w - s_l - m)`` (0 without pairs)."""
    excess = scores[pairs.winners] - scores[pairs.losers] - pairs.margins
    return float(-(_pair_weights(pairs) * log_expit(excess)).sum())


def pair_grad_hess(scores: np.ndarray, pairs: TierPairs) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of :func:`pair_loss` per row and the diagonal of its hessian (σ(1-σ) >= 0 per pair)."""
    n = len(scores)
    weights = _pair_weights(pairs)
    p = expit(scores[pairs.winners] - scores[pairs.losers] - pairs.margins)
    push = weights * (1.0 - p)  # -d loss / d gap
    curvature = weights * p * (1.0 - p)
    grad = np.bincount(pairs.losers, push, n) - np.bincount(pairs.winners, push, n)
    hess = np.bincount(pairs.winners, curvature, n) + np.bincount(pairs.losers, curvature, n)
    return grad, hess


def objective_value(scores: np.ndarray, labels: np.ndarray, pairs: TierPairs, hpro_weight: float) -> float:
    """``mean BCE(σ(s), y) + hpro_weight * pair_loss(s)``."""
    bce = float(-(labels * log_expit(scores) + (1 - labels) * log_expit(-scores)).mean())
    return bce + hpro_weight * pair_loss(scores, pairs) if hpro_weight else bce


def objective_grad_hess(scores: np.ndarray, labels: np.ndarray, pairs: TierPairs, hpro_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of :func:`objective_value` per row and the diagonal of its hessian (never negative)."""
    p = expit(scores)
    grad, hess = (p - labels) / len(scores), p * (1.0 - p) / len(scores)
    if not hpro_weight:
        return grad, hess
    pair_grad, pair_hess = pair_grad_hess(scores, pairs)
    return grad + hpro_weight * pair_grad, hess + hpro_weight * pair_hess
