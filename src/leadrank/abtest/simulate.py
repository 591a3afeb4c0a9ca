"""A simulated A/B test of the call list, with a known true uplift.

Specialists come in four capability tiers (``T1`` weakest to ``T4`` strongest). Each has a true
conversion rate, ``_true_rate``: ``baseline_rate`` scaled by a tier effect and a little individual
noise. Their last 30 days give the history that :func:`leadrank.abtest.plan` balances on
(follow-ups drawn around ``leads_per_day``, lock-ins drawn from the true rate, nested 7/14/30-day
windows). During the test each specialist handles a Poisson number of leads a day, and a lead
converts with the specialist's true rate, times ``1 + uplift`` in every arm but ``control``.
So the expected relative uplift of a treatment arm's pooled conversion rate is ``uplift``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadrank.abtest.columns import (
    ARM_COLUMN,
    CONTROL,
    CONVERTED_COLUMN,
    DATE_COLUMN,
    FOLLOWUP_COLUMN,
    HISTORY_DAYS,
    N_TIERS,
    SPECIALIST_COLUMN,
    TIER_COLUMN,
)

TRUE_RATE_COLUMN = "_true_rate"
_TIER_EFFECTS = np.array([-0.45, -0.15, 0.15, 0.45])  # log-rate effect of tiers T1..T4
_INDIVIDUAL_SD = 0.15  # log-rate spread of specialists within a tier


@dataclass(frozen=True)
class ABSimConfig:
    """The simulated sales floor and test; ``uplift`` is relative (0.3 = +30 % conversion)."""

    n_specialists: int = 80
    days: int = 28
    leads_per_day: float = 5.0
    baseline_rate: float = 0.10
    uplift: float = 0.3
    seed: int = 0
    start: str = "2026-03-02"

    def __post_init__(self) -> None:
        if self.n_specialists < 2 * N_TIERS:
            raise ValueError(f"n_specialists must be at least {2 * N_TIERS} (two per tier); got {self.n_specialists}.")
        if self.days < 1 or self.leads_per_day <= 0:
            raise ValueError(f"days must be at least 1 and leads_per_day positive; got {self.days} and {self.leads_per_day}.")
        if not 0 < self.baseline_rate < 0.5 or not 0 < self.baseline_rate * (1 + self.uplift) < 0.5:
            raise ValueError(
                f"baseline_rate ({self.baseline_rate}) and baseline_rate * (1 + uplift) "
                f"({self.baseline_rate * (1 + self.uplift):.3f}) must lie in (0, 0.5)."
            )


def simulate_specialists(config: ABSimConfig = ABSimConfig()) -> pd.DataFrame:
    """One row per specialist: id, tier, 30-day history and the diagnostic ``_true_rate``."""
    rng = np.random.default_rng(config.seed)
    n = config.n_specialists
    tier = rng.permutation(np.arange(n) % N_TIERS)
    true_rate = config.baseline_rate * np.exp(_TIER_EFFECTS[tier] + rng.normal(0.0, _INDIVIDUAL_SD, n))
    followups = np.maximum(rng.poisson(config.leads_per_day * HISTORY_DAYS, n), 1)
    lockins_30d = rng.binomial(followups, true_rate)
    lockins_14d = rng.binomial(lockins_30d, 14 / HISTORY_DAYS)
    lockins_7d = rng.binomial(lockins_14d, 7 / 14)
    return pd.DataFrame(
        {
            SPECIALIST_COLUMN: [f"S{i:03d}" for i in range(n)],
            TIER_COLUMN: [f"T{t + 1}" for t in tier],
            "lockins_7d": lockins_7d,
            "lockins_14d": lockins_14d,
            "lockins_30d": lockins_30d,
            FOLLOWUP_COLUMN: followups,
            TRUE_RATE_COLUMN: true_rate,
        }
    )


def simulate_outcomes(assignment: pd.DataFrame, config: ABSimConfig = ABSimConfig()) -> pd.DataFrame:
    """One row per lead handled during the test: ``lead_id``, ``specialist_id``, ``date``, ``converted``.

    ``assignment`` is :func:`simulate_specialists`' table with an ``arm`` column (e.g.
    ``plan(specialists).assignment``). The arm itself is not written: join it from the assignment.
    """
    rng = np.random.default_rng([config.seed, 1])
    rate = assignment[TRUE_RATE_COLUMN].to_numpy() * np.where(assignment[ARM_COLUMN] == CONTROL, 1.0, 1 + config.uplift)
    counts = rng.poisson(config.leads_per_day, size=(len(assignment), config.days))
    specialist = np.repeat(np.arange(len(assignment)), counts.sum(axis=1))
    day = np.concatenate([np.repeat(np.arange(config.days), row) for row in counts])
    converted = (rng.uniform(size=len(specialist)) < rate[specialist]).astype(int)
    return pd.DataFrame(
        {
            "lead_id": [f"AB{i:07d}" for i in range(len(specialist))],
            SPECIALIST_COLUMN: assignment[SPECIALIST_COLUMN].to_numpy()[specialist],
            DATE_COLUMN: pd.Timestamp(config.start) + pd.to_timedelta(day, unit="D"),
            CONVERTED_COLUMN: converted,
        }
    )
