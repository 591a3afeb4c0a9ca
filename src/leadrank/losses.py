"""The loss parts of asLLR + HPRO, as small pure functions on tensors.

All losses are computed in float32 whatever the autocast dtype, with ``logsigmoid`` so that
score gaps of +-100 stay finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from leadrank.funnel import Pairs


@dataclass(frozen=True)
class LossWeights:
    """Total = bce * BCE + hpro * HPRO + ce * CE (the paper: 2.0 / 1.0 / 0.5)."""

    bce: float = 2.0
    hpro: float = 1.0
    ce: float = 0.5


def bce_loss(point_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of the pointwise head."""
    return F.binary_cross_entropy_with_logits(point_logits.float(), labels.float())


def preference_loss(scores: torch.Tensor, pairs: Pairs, n_tiers: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Margin-aware Bradley–Terry: mean over tiers present of mean_-log σ(s_w - s_l - m).

    Returns the loss (0 with a gradient path when there are no pairs) and, per tier index,
    the pair count and pair accuracy (share of pairs with s_w > s_l).
    """
    scores = scores.float()
    gap = scores[pairs.winners] - scores[pairs.losers]
    per_pair = -F.logsigmoid(gap - pairs.margins.to(scores.device))
    tier = pairs.tiers.to(scores.device)
    counts = torch.bincount(tier, minlength=n_tiers).float()
    per_tier = torch.zeros(n_tiers, device=scores.device).index_add(0, tier, per_pair) / counts.clamp(min=1)
    correct = torch.zeros(n_tiers, device=scores.device).index_add(0, tier, (gap > 0).float())
    present = counts > 0
    loss = per_tier[present].mean() if present.any() else scores.sum() * 0.0
    stats = {"pairs": counts.detach(), "accuracy": (correct / counts.clamp(min=1)).detach()}
    return loss, stats


def answer_ce(answer_logits: torch.Tensor, labels: torch.Tensor, yes_id: int, no_id: int) -> torch.Tensor:
    """Next-token cross-entropy over the whole vocabulary on the answer token ("Yes"/"No")."""
    targets = torch.where(labels > 0.5, yes_id, no_id).long()
    return F.cross_entropy(answer_logits.float(), targets)


class LearnedMargins(nn.Module):
    """Tier margins trained with the heads: non-negative, and kept in the order they start in.

    Sorted ascending, the margins are cumulative sums of softplus gaps, so the tier that starts
    with the largest margin always keeps the largest. They start at the FunnelSpec's values.
    """

    order: torch.Tensor  # a buffer: the tiers' indices sorted by their initial margin

    def __init__(self, initial: list[float]) -> None:
        super().__init__()
        values = torch.tensor(initial, dtype=torch.float32)
        if (values < 0).any():
            raise ValueError(f"margins must be >= 0 to be learned; got {initial}")
        self.register_buffer("order", torch.argsort(values, stable=True))
        gaps = torch.diff(values[self.order], prepend=torch.zeros(1)).clamp(min=1e-3)
        self.raw_gaps = nn.Parameter(gaps + torch.log(-torch.expm1(-gaps)))  # softplus^-1

    def forward(self) -> torch.Tensor:
        ascending = torch.cumsum(F.softplus(self.raw_gaps), 0)
        return torch.empty_like(ascending).scatter(0, self.order, ascending)
