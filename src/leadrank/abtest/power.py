"""Size an A/B test: the minimum detectable effect of Welch's t-test on specialist conversion rates.

:func:`estimate_power` sizes the test :func:`leadrank.abtest.analyze` runs, :data:`WELCH_TEST`
(noncentral t with Welch–Satterthwaite degrees of freedom). A specialist's rate over ``m`` leads
has variance ``p (1 - p) / m`` times the design effect ``1 + (m - 1) * icc``, where ``icc`` is the
share of the outcome variance that lies between specialists, estimated from the 30-day history.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

from leadrank.abtest.columns import ARM_COLUMN, CONTROL, FOLLOWUP_COLUMN, HISTORY_DAYS, LOCKIN_COLUMNS
from leadrank.errors import ConfigurationError, DataContractError


@dataclass(frozen=True)
class Power:
    """The smallest effect of one treatment arm on conversion that the test detects.

    ``mde_absolute`` is in conversion-rate points (0.02 = two percentage points);
    ``mde_relative`` is the same effect relative to ``baseline_rate``.
    """

    days: int
    specialists_control: int
    specialists_treatment: int
    leads_per_specialist: float
    baseline_rate: float
    icc: float
    design_effect: float
    alpha: float
    power: float
    mde_absolute: float

    @property
    def mde_relative(self) -> float:
        return self.mde_absolute / self.baseline_rate


def estimate_power(
    assignment: pd.DataFrame,
    *,
    days: int,
    leads_per_day: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
) -> Power:
    """Minimum detectable effect of the smallest treatment arm against control under :data:`WELCH_TEST`.

    The baseline rate is the 30-day conversion of all specialists together
    (``sum(lockins_30d) / sum(followups_30d)``). With more than two arms no multiple-testing
    correction is applied. Stratification and balancing make the real test somewhat more
    sensitive than this estimate, which ignores them.
    """
    if not 0 < alpha < power < 1:
        raise ConfigurationError(f"Need 0 < alpha < power < 1 for a power estimate; got alpha {alpha}, power {power}.")
    if days < 1:
        raise ConfigurationError(f"days must be at least 1; got {days}.")
    if leads_per_day is not None and leads_per_day <= 0:
        raise ConfigurationError(f"leads_per_day must be positive; got {leads_per_day}.")
    baseline = assignment[LOCKIN_COLUMNS[0]].sum() / assignment[FOLLOWUP_COLUMN].sum()
    if not 0 < baseline < 1:
        raise DataContractError(
            f"The 30-day baseline conversion rate is {baseline:.3f}; a power estimate needs one strictly "
            f"between 0 and 1 (check {LOCKIN_COLUMNS[0]!r} and {FOLLOWUP_COLUMN!r})."
        )
    per_day = leads_per_day if leads_per_day is not None else assignment[FOLLOWUP_COLUMN].mean() / HISTORY_DAYS
    leads = per_day * days
    icc = _icc(assignment, baseline)
    design_effect = 1 + max(leads - 1, 0) * icc
    sd = np.sqrt(baseline * (1 - baseline) * design_effect / leads)
    sizes = assignment[ARM_COLUMN].value_counts()
    n_control = int(sizes[CONTROL])
    n_treatment = int(sizes.drop(CONTROL).min())
    return Power(
        days=days,
        specialists_control=n_control,
        specialists_treatment=n_treatment,
        leads_per_specialist=float(leads),
        baseline_rate=float(baseline),
        icc=float(icc),
        design_effect=float(design_effect),
        alpha=alpha,
        power=power,
        mde_absolute=_welch_mde(n_control, n_treatment, sd, alpha, power),
    )


def _welch_mde(n_control: int, n_treatment: int, sd: float, alpha: float, power: float) -> float:
    """The difference in mean specialist rate that Welch's two-sided t-test detects with probability ``power``.

    Both arms' specialist rates have standard deviation ``sd`` (the plan's assumption). The
    test's statistic is then noncentral t with Welch–Satterthwaite's degrees of freedom and
    noncentrality ``difference / se``; with equal arms this is Student's t-test, with unequal
    ones Welch's test has fewer degrees of freedom and needs a slightly larger difference.
    """
    var_control, var_treatment = sd**2 / n_control, sd**2 / n_treatment
    se = np.sqrt(var_control + var_treatment)
    df = (var_control + var_treatment) ** 2 / (var_control**2 / (n_control - 1) + var_treatment**2 / (n_treatment - 1))
    critical = stats.t.ppf(1 - alpha / 2, df)

    def shortfall(difference: float) -> float:
        noncentrality = difference / se
        rejected = stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality)
        return rejected - power

    high = (critical + stats.norm.ppf(power)) * se  # about the answer; doubled until the power is reached
    while shortfall(high) < 0:
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high))


def _icc(table: pd.DataFrame, baseline: float) -> float:
    """Between-specialist share of a lead's outcome variance (method of moments; 0 when none shows)."""
    followups = table[FOLLOWUP_COLUMN].to_numpy(float)
    rates = table[LOCKIN_COLUMNS[0]].to_numpy(float) / followups
    within = baseline * (1 - baseline) / followups
    between = max(float(np.var(rates, ddof=1) - within.mean()), 0.0)
    return between / (baseline * (1 - baseline))
