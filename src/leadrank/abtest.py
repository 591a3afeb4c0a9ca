"""A/B tests of the call list on the sales floor: assign specialists, size the test, analyse it.

The randomisation unit is the sales specialist, not the lead: a specialist in a treatment arm
works from leadrank's call list, one in ``control`` keeps the current process. Leads handled by
one specialist share that specialist's skill, so they are not independent, and every estimate
here treats the specialist as the unit:

* :func:`plan` stratifies by capability tier. Within a tier it sorts specialists by their recent
  lock-ins (30, 14, then 7 days), then follow-up volume, cuts the sorted list into blocks of one
  specialist per arm and shuffles the arms inside each block. Neighbours in the sort are alike,
  so every tier is split evenly and the arms come out close on those counts. Of ``REDRAWS``
  such seeded draws it keeps the one with the smallest worst standardized mean difference.
* :func:`estimate_power` sizes the test :func:`analyze` runs, :data:`WELCH_TEST` (noncentral t
  with Welch–Satterthwaite degrees of freedom). A specialist's rate over ``m`` leads has variance
  ``p (1 - p) / m`` times the design effect ``1 + (m - 1) * icc``, where ``icc`` is the share of
  the outcome variance that lies between specialists, estimated from the 30-day history.
* :func:`analyze` compares conversion rates per specialist with Welch's two-sided t-test
  (unequal variances), and gives bootstrap CIs (BCa, resampling specialists within each arm)
  for the relative uplift of the pooled conversion rate (conversions / leads of the arm over
  that of control, minus one) and for the difference of the pooled rates (arm minus control,
  in conversion-rate points). The difference is always defined; the relative uplift is not
  when a resample of control has no conversion, and its CI is then left missing with a note
  (see :class:`Analysis`). Both ignore the stratification and balancing, which make the arms
  more alike than independent sampling would: they err on the safe side (wider CI, larger p).

The specialists table has one row per specialist: ``specialist_id``, ``lockins_7d``,
``lockins_14d``, ``lockins_30d`` (orders locked in over those windows), ``followups_30d`` (leads
followed up over the last 30 days) and optionally ``tier`` (capability tier). The outcomes table
has one row per lead handled during the test: ``specialist_id``, ``date``, ``converted`` (0/1),
and ``arm`` unless an assignment is given to join it from. Row numbers in error messages are
0-based positions, as in ``DataFrame.iloc``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import optimize, stats

from leadrank._files import atomic_path
from leadrank.errors import ConfigurationError, DataContractError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["WELCH_TEST", "Analysis", "Plan", "Power", "analyze", "arm_names", "balance", "estimate_power", "plan", "plot_cumulative"]

SPECIALIST_COLUMN = "specialist_id"
TIER_COLUMN = "tier"
LOCKIN_COLUMNS = ("lockins_30d", "lockins_14d", "lockins_7d")
FOLLOWUP_COLUMN = "followups_30d"
#: Balanced in this order of priority (the sort keys inside a tier).
BALANCE_COLUMNS = (*LOCKIN_COLUMNS, FOLLOWUP_COLUMN)
ARM_COLUMN = "arm"
DATE_COLUMN = "date"
CONVERTED_COLUMN = "converted"
CONTROL = "control"
N_TIERS = 4
HISTORY_DAYS = 30
CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 2000
REDRAWS = 200  # blocked draws per plan; the best balanced is kept
_SHOW = 5  # rows or values shown per problem before "+N more"
#: The test :func:`analyze` runs and :func:`estimate_power` sizes.
WELCH_TEST = "Welch's two-sided t-test on specialist conversion rates"


def arm_names(arms: int) -> list[str]:
    """``['control', 'treatment']`` for two arms, else ``control``, ``treatment_1``, ``treatment_2``, ..."""
    if arms < 2:
        raise ConfigurationError(f"arms must be at least 2 (control and one treatment); got {arms}.")
    if arms == 2:
        return [CONTROL, "treatment"]
    return [CONTROL, *(f"treatment_{i}" for i in range(1, arms))]


# --- plan -----------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Plan:
    """An assignment of specialists to arms, its balance, and what it can detect.

    ``assignment`` is the specialists table (sorted by ``specialist_id``) with ``tier`` and
    ``arm`` columns; ``tiers_derived`` says the tiers are quartiles of 30-day conversion
    (``q1`` lowest) because the table had no ``tier`` column.
    """

    assignment: pd.DataFrame
    balance: pd.DataFrame
    power: Power
    tiers_derived: bool


def plan(
    specialists: pd.DataFrame,
    *,
    arms: int = 2,
    days: int = 28,
    leads_per_day: float | None = None,
    seed: int = 0,
) -> Plan:
    """Assign specialists to arms, stratified by tier and balanced on recent lock-ins and follow-ups.

    Args:
        specialists: One row per specialist (see the module docstring). Not modified.
        arms: Number of arms, control included.
        days: Planned duration of the test, for the power estimate.
        leads_per_day: Leads one specialist handles per day. Default: ``followups_30d / 30``
            averaged over specialists.
        seed: The same seed and table give the same assignment, whatever the row order.

    Example:
        >>> result = plan(read_table("specialists.csv"), days=28, seed=7)  # doctest: +SKIP
        >>> result.assignment[["specialist_id", "tier", "arm"]]  # doctest: +SKIP
    """
    names = arm_names(arms)
    table = _check_specialists(specialists, arms)
    tiers_derived = TIER_COLUMN not in table.columns
    if tiers_derived:
        table[TIER_COLUMN] = _conversion_quartiles(table)
    table[ARM_COLUMN] = _balanced_arms(table, names, np.random.default_rng(seed))
    power = estimate_power(table, days=days, leads_per_day=leads_per_day)
    return Plan(assignment=table, balance=balance(table), power=power, tiers_derived=tiers_derived)


def _check_specialists(specialists: pd.DataFrame, arms: int) -> pd.DataFrame:
    required = [SPECIALIST_COLUMN, *BALANCE_COLUMNS]
    missing = [column for column in required if column not in specialists.columns]
    if missing:
        raise DataContractError(
            f"The specialists table lacks column(s) {missing}. Expected one row per specialist with "
            f"{required} and optionally {TIER_COLUMN!r}; rename your columns to these names."
        )
    if len(specialists) < 2 * arms:
        raise DataContractError(f"{arms} arms need at least {2 * arms} specialists (2 per arm, for the t-test); got {len(specialists)}.")
    table = specialists.reset_index(drop=True)
    problems = _id_problems(table[SPECIALIST_COLUMN], "specialists table")
    counts = table[list(BALANCE_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    for column in BALANCE_COLUMNS:
        bad = counts[column].isna() | (counts[column] < 0) | (counts[column] % 1 != 0)
        problems += _rows_problem(bad, table[column], f"column {column!r} needs whole counts >= 0")
    for shorter, longer in zip(LOCKIN_COLUMNS[1:], LOCKIN_COLUMNS[:-1]):
        problems += _rows_problem(
            counts[shorter] > counts[longer],
            table[shorter],
            f"{shorter!r} exceeds {longer!r}, but a longer window holds the shorter one (are the columns swapped?)",
        )
    problems += _rows_problem(
        counts[FOLLOWUP_COLUMN] < 1,
        table[FOLLOWUP_COLUMN],
        f"{FOLLOWUP_COLUMN!r} is 0: no history to balance on; leave these specialists out of the test",
    )
    if TIER_COLUMN in table.columns:
        problems += _rows_problem(table[TIER_COLUMN].isna(), table[TIER_COLUMN], f"{TIER_COLUMN!r} is missing")
    _raise_if(problems, "specialists table")
    table[list(BALANCE_COLUMNS)] = counts.astype(int)
    table[SPECIALIST_COLUMN] = table[SPECIALIST_COLUMN].astype(str)
    return table.sort_values(SPECIALIST_COLUMN, ignore_index=True)


def _conversion_quartiles(table: pd.DataFrame) -> pd.Series:
    rate = table[LOCKIN_COLUMNS[0]] / table[FOLLOWUP_COLUMN]
    labels = [f"q{i}" for i in range(1, N_TIERS + 1)]
    return pd.qcut(rate.rank(method="first"), N_TIERS, labels=labels).astype(str)


def _balanced_arms(table: pd.DataFrame, arms: list[str], rng: np.random.Generator) -> np.ndarray:
    """The best balanced of ``REDRAWS`` stratified, blocked draws: smallest worst |SMD| vs control."""
    blocks = _blocks(table, len(arms))
    values = table[list(BALANCE_COLUMNS)].to_numpy(float)
    draws = [_draw(blocks, arms, len(table), rng) for _ in range(REDRAWS)]
    return min(draws, key=lambda assigned: _worst_smd(values, assigned, arms))


def _blocks(table: pd.DataFrame, size: int) -> list[np.ndarray]:
    """Row positions in blocks of ``size``: within each tier, sorted by the balance columns."""
    keys = [*BALANCE_COLUMNS, SPECIALIST_COLUMN]
    blocks = []
    for _, members in table.groupby(TIER_COLUMN, sort=True):
        ordered = members.sort_values(keys, ascending=[False] * len(BALANCE_COLUMNS) + [True]).index.to_numpy()
        blocks += [ordered[start : start + size] for start in range(0, len(ordered), size)]
    return blocks


def _draw(blocks: list[np.ndarray], arms: list[str], n: int, rng: np.random.Generator) -> np.ndarray:
    assigned = np.empty(n, dtype=object)
    counts = dict.fromkeys(arms, 0)
    for block in blocks:
        labels = _block_arms(arms, len(block), counts, rng)
        assigned[block] = labels
        for label in labels:
            counts[label] += 1
    return assigned


def _block_arms(arms: list[str], size: int, counts: dict[str, int], rng: np.random.Generator) -> list[str]:
    """A full block gets every arm once; a tier's last, partial block gets the arms with fewest so far."""
    tiebreak = rng.permutation(len(arms))
    fewest = sorted(range(len(arms)), key=lambda i: (counts[arms[i]], tiebreak[i]))[:size]
    return [arms[i] for i in rng.permutation(fewest)]


def _worst_smd(values: np.ndarray, assigned: np.ndarray, arms: list[str]) -> float:
    control = values[assigned == CONTROL]
    worst = 0.0
    for arm in arms[1:]:
        treated = values[assigned == arm]
        pooled_sd = np.sqrt((treated.var(axis=0, ddof=1) + control.var(axis=0, ddof=1)) / 2)
        difference = np.abs(treated.mean(axis=0) - control.mean(axis=0))
        worst = max(worst, float(np.max(difference / np.where(pooled_sd > 0, pooled_sd, 1.0))))
    return worst


def balance(assignment: pd.DataFrame) -> pd.DataFrame:
    """Mean of each balance column per arm, and each treatment arm's standardized mean difference.

    ``smd_<arm> = (mean_arm - mean_control) / sqrt((var_arm + var_control) / 2)``; an absolute
    SMD under 0.1 is the usual bar for good balance. One row per balance column.
    """
    groups = assignment.groupby(ARM_COLUMN)[list(BALANCE_COLUMNS)]
    means, variances = groups.mean(), groups.var()
    arms = _arm_order(means.index)
    table = means.loc[arms].T
    for arm in arms[1:]:
        pooled_sd = np.sqrt((variances.loc[arm] + variances.loc[CONTROL]) / 2)
        table[f"smd_{arm}"] = (means.loc[arm] - means.loc[CONTROL]) / pooled_sd
    table.columns.name = None
    table.index.name = "covariate"
    return table


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


# --- analyze --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Analysis:
    """What the test showed.

    ``summary``: one row per arm (control first): ``specialists``, ``leads``, ``conversions``,
    ``conversion_rate``; for treatment arms also

    * ``uplift``: the arm's pooled conversion rate over control's, minus one (0.25 = +25 %),
      with its bootstrap CI ``uplift_low``/``uplift_high``;
    * ``difference``: the arm's pooled rate minus control's, in conversion-rate points
      (0.01 = one point), with its bootstrap CI ``difference_low``/``difference_high``;
    * Welch's ``t_statistic``/``p_value`` on specialist conversion rates;
    * ``note``: ``""``, or why a CI is missing.

    The relative uplift divides by control's rate, so it is undefined on any bootstrap resample
    (or leave-one-out estimate, which BCa needs) in which control has no conversion; that
    happens when control's conversions come from only a few of its specialists. Then
    ``uplift_low``/``uplift_high`` are NaN (never a number computed from a partial or infinite
    set of resamples) and ``note`` says how many resamples it failed on; the difference and its
    CI, defined whenever each arm has leads, are the figures to read. Control's row has NaN in
    every comparison column and an empty ``note``.
    ``cumulative``: per arm and day, conversions / leads so far (``conversion_rate``) and its
    :data:`CONFIDENCE` interval ``conversion_low``/``conversion_high``, specialists as the unit
    (missing while fewer than 2 of the arm's specialists have leads).
    """

    summary: pd.DataFrame
    cumulative: pd.DataFrame


def analyze(outcomes: pd.DataFrame, assignment: pd.DataFrame | None = None, *, seed: int = 0) -> Analysis:
    """Compare conversion per arm; specialists are the unit of every test and resample.

    Args:
        outcomes: One row per lead handled (see the module docstring). Not modified.
        assignment: ``specialist_id`` and ``arm`` per specialist (e.g. ``plan(...).assignment``);
            when given, each lead's arm comes from its specialist, and every arm in it must
            have leads. Without it, ``outcomes`` needs an ``arm`` column.
        seed: Seed of the bootstrap.

    Returns:
        An :class:`Analysis`. Each treatment arm gets the relative ``uplift`` and the
        ``difference`` in conversion rate, each with a bootstrap CI. The uplift's CI is NaN, and
        ``note`` says why, when control's conversions are so concentrated in a few specialists
        that a resample of control has none (the uplift divides by zero there); the
        difference's CI stays defined, so read it then.

    Example:
        >>> result = analyze(read_table("outcomes.csv"), read_table("assignment.csv"))  # doctest: +SKIP
        >>> result.summary[["arm", "conversion_rate", "uplift", "p_value"]]  # doctest: +SKIP
    """
    leads, arms = _join_arms(_check_outcomes(outcomes, assignment), assignment)
    per_specialist = leads.groupby([ARM_COLUMN, SPECIALIST_COLUMN])[CONVERTED_COLUMN].agg(leads="size", conversions="sum").reset_index()
    _check_arms(per_specialist, arms)
    by_arm = {arm: rows for arm, rows in per_specialist.groupby(ARM_COLUMN)}
    rng = np.random.default_rng(seed)
    summary = pd.DataFrame([_arm_summary(arm, by_arm[arm], by_arm[CONTROL], rng) for arm in arms])
    return Analysis(summary=summary, cumulative=_cumulative(leads, arms))


def _check_outcomes(outcomes: pd.DataFrame, assignment: pd.DataFrame | None) -> pd.DataFrame:
    """The leads as specialist (text), day, converted (0/1) and, when given, arm (text)."""
    required = [SPECIALIST_COLUMN, DATE_COLUMN, CONVERTED_COLUMN] + ([ARM_COLUMN] if assignment is None else [])
    missing = [column for column in required if column not in outcomes.columns]
    if missing:
        hint = " (or pass the assignment from `plan` to join each lead's arm from)" if ARM_COLUMN in missing else ""
        raise DataContractError(
            f"The outcomes table lacks column(s) {missing}. Expected one row per lead handled with "
            f"{required}{hint}; rename your columns to these names."
        )
    table = outcomes.reset_index(drop=True)
    dates = pd.to_datetime(table[DATE_COLUMN], errors="coerce")
    converted = pd.to_numeric(table[CONVERTED_COLUMN], errors="coerce")
    problems = _rows_problem(table[SPECIALIST_COLUMN].isna(), table[SPECIALIST_COLUMN], f"{SPECIALIST_COLUMN!r} is missing")
    problems += _rows_problem(dates.isna(), table[DATE_COLUMN], f"{DATE_COLUMN!r} is not a date")
    problems += _rows_problem(~converted.isin([0, 1]), table[CONVERTED_COLUMN], f"{CONVERTED_COLUMN!r} must be 0 or 1")
    if ARM_COLUMN in table.columns:
        problems += _rows_problem(table[ARM_COLUMN].isna(), table[ARM_COLUMN], f"{ARM_COLUMN!r} is missing")
    _raise_if(problems, "outcomes table")
    leads = pd.DataFrame(
        {
            SPECIALIST_COLUMN: table[SPECIALIST_COLUMN].astype(str),
            DATE_COLUMN: dates.dt.normalize(),
            CONVERTED_COLUMN: converted.astype(int),
        }
    )
    if ARM_COLUMN in table.columns:
        leads[ARM_COLUMN] = table[ARM_COLUMN].astype(str)
    return leads


def _join_arms(leads: pd.DataFrame, assignment: pd.DataFrame | None) -> tuple[pd.DataFrame, list[str]]:
    """Each lead's arm (from its specialist when an assignment is given), and the arms to report."""
    if assignment is None:
        return leads, _arm_order(leads[ARM_COLUMN].unique())
    arm_of = _arm_lookup(assignment)
    assigned = leads[SPECIALIST_COLUMN].map(arm_of)
    unknown = assigned.isna()
    problems = _rows_problem(
        unknown,
        leads[SPECIALIST_COLUMN],
        f"{SPECIALIST_COLUMN!r} is not in the assignment; add these specialists to it or drop their leads",
    )
    if ARM_COLUMN in leads.columns:
        problems += _rows_problem(
            ~unknown & (leads[ARM_COLUMN] != assigned),
            leads[ARM_COLUMN],
            f"{ARM_COLUMN!r} differs from the assignment's arm for that specialist; check the assignment belongs to this test",
        )
    _raise_if(problems, "outcomes table")
    return leads.assign(**{ARM_COLUMN: assigned}), _arm_order(arm_of.unique())


def _arm_lookup(assignment: pd.DataFrame) -> pd.Series:
    missing = [column for column in (SPECIALIST_COLUMN, ARM_COLUMN) if column not in assignment.columns]
    if missing:
        raise DataContractError(f"The assignment lacks column(s) {missing}; pass the table that `leadrank abtest plan` wrote.")
    table = assignment.reset_index(drop=True)
    _raise_if(_id_problems(table[SPECIALIST_COLUMN], "assignment"), "assignment")
    return pd.Series(table[ARM_COLUMN].astype(str).to_numpy(), index=table[SPECIALIST_COLUMN].astype(str))


def _check_arms(per_specialist: pd.DataFrame, arms: list[str]) -> None:
    if CONTROL not in arms:
        raise DataContractError(f"No arm is called {CONTROL!r}; got arms {arms}. Uplift is measured against {CONTROL!r}.")
    specialists = per_specialist[ARM_COLUMN].value_counts()
    for arm in arms:
        if arm not in specialists:
            raise DataContractError(f"Arm {arm!r} has no leads in the outcomes table; check the outcomes cover the whole test.")
        if specialists[arm] < 2:
            raise DataContractError(
                f"Arm {arm!r} has leads from only {specialists[arm]} specialist; Welch's t-test on specialist "
                f"conversion rates needs at least 2 per arm."
            )
    if per_specialist.loc[per_specialist[ARM_COLUMN] == CONTROL, "conversions"].sum() == 0:
        raise DataContractError(f"Arm {CONTROL!r} has no conversions, so a relative uplift against it is undefined.")


def _arm_summary(arm: str, rows: pd.DataFrame, control: pd.DataFrame, rng: np.random.Generator) -> dict[str, object]:
    leads, conversions = int(rows["leads"].sum()), int(rows["conversions"].sum())
    summary: dict[str, object] = {
        "arm": arm,
        "specialists": len(rows),
        "leads": leads,
        "conversions": conversions,
        "conversion_rate": conversions / leads,
    }
    compared = ["uplift", "uplift_low", "uplift_high", "difference", "difference_low", "difference_high", "t_statistic", "p_value"]
    if arm == CONTROL:
        return summary | dict.fromkeys(compared, np.nan) | {"note": ""}
    # the relative CI first, so that its resamples (and values) do not depend on the difference's
    uplift_low, uplift_high, uplift_problem = _bootstrap_ci(control, rows, _relative_uplift, rng)
    difference_low, difference_high, difference_problem = _bootstrap_ci(control, rows, _rate_difference, rng)
    welch = stats.ttest_ind(_rates(rows), _rates(control), equal_var=False)
    notes = []
    if uplift_problem:
        notes.append(_missing_uplift_ci(control, uplift_problem))
    if difference_problem:
        notes.append(f"difference CI not computed: {difference_problem}.")
    return summary | {
        "uplift": _pooled_rate(rows) / _pooled_rate(control) - 1,
        "uplift_low": uplift_low,
        "uplift_high": uplift_high,
        "difference": _pooled_rate(rows) - _pooled_rate(control),
        "difference_low": difference_low,
        "difference_high": difference_high,
        "t_statistic": float(welch.statistic),
        "p_value": float(welch.pvalue),
        "note": " ".join(notes),
    }


def _rates(per_specialist: pd.DataFrame) -> np.ndarray:
    return (per_specialist["conversions"] / per_specialist["leads"]).to_numpy()


def _pooled_rate(per_specialist: pd.DataFrame) -> float:
    return per_specialist["conversions"].sum() / per_specialist["leads"].sum()


def _relative_uplift(control_rate: np.ndarray, treated_rate: np.ndarray) -> np.ndarray:
    return treated_rate / control_rate - 1  # inf or NaN where control_rate is 0


def _rate_difference(control_rate: np.ndarray, treated_rate: np.ndarray) -> np.ndarray:
    return treated_rate - control_rate


def _bootstrap_ci(
    control: pd.DataFrame,
    treated: pd.DataFrame,
    compare: Callable[[np.ndarray, np.ndarray], np.ndarray],
    rng: np.random.Generator,
) -> tuple[float, float, str]:
    """BCa CI of ``compare(control rate, treated rate)`` of the pooled rates; each arm's specialists are resampled independently.

    Returns ``(low, high, problem)``. The CI is ``(nan, nan)``, with ``problem`` saying why,
    unless every resample and the interval itself are finite: an interval computed over
    infinite or undefined resamples means nothing. ``problem`` is ``""`` otherwise.
    """
    c_conv, c_leads = control["conversions"].to_numpy(), control["leads"].to_numpy()
    t_conv, t_leads = treated["conversions"].to_numpy(), treated["leads"].to_numpy()

    def statistic(c: np.ndarray, t: np.ndarray, axis: int = -1) -> np.ndarray:
        return compare(c_conv[c].sum(axis) / c_leads[c].sum(axis), t_conv[t].sum(axis) / t_leads[t].sum(axis))

    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        # a degenerate or undefined bootstrap distribution is reported through the NaN CI and `problem`
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.bootstrap(
            (np.arange(len(control)), np.arange(len(treated))),
            statistic,
            n_resamples=BOOTSTRAP_SAMPLES,
            vectorized=True,
            confidence_level=CONFIDENCE,
            rng=rng,
        )
    distribution = result.bootstrap_distribution
    undefined = int((~np.isfinite(distribution)).sum())
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if undefined:
        problem = f"it is undefined on {undefined:,} of {BOOTSTRAP_SAMPLES:,} bootstrap resamples"
    elif np.ptp(distribution) == 0:
        problem = _DEGENERATE
    elif not (np.isfinite(low) and np.isfinite(high)):
        problem = "a leave-one-specialist-out estimate (which BCa needs) is undefined"
    else:
        return low, high, ""
    return np.nan, np.nan, problem


_DEGENERATE = "every bootstrap resample gives the same value"


def _missing_uplift_ci(control: pd.DataFrame, problem: str) -> str:
    if problem == _DEGENERATE:
        return f"uplift CI not computed: {problem}."
    converting = int((control["conversions"] > 0).sum())
    return (
        f"uplift CI not computed: {problem}. Control's conversions come from {converting} of its "
        f"{len(control)} specialists, so resampling them can leave control without a conversion and the "
        f"relative uplift divides by zero; read the difference CI (difference_low/difference_high) instead."
    )


def _cumulative(leads: pd.DataFrame, arms: list[str]) -> pd.DataFrame:
    return pd.concat([_cumulative_arm(arm, leads[leads[ARM_COLUMN] == arm]) for arm in arms], ignore_index=True)


def _cumulative_arm(arm: str, leads: pd.DataFrame) -> pd.DataFrame:
    """One arm's conversions / leads so far per day, with a :data:`CONFIDENCE` interval.

    Specialists are the unit: the rate so far is a ratio of per-specialist sums, and its
    standard error is the cluster (linearization) one, ``sqrt(k / (k - 1) * sum((c_i - r n_i)^2)) / n``
    over the ``k`` specialists with leads so far. It is missing while fewer than 2 have leads.
    """
    daily = leads.groupby([DATE_COLUMN, SPECIALIST_COLUMN])[CONVERTED_COLUMN].agg(leads="size", conversions="sum")
    so_far = daily.unstack(SPECIALIST_COLUMN, fill_value=0).sort_index().cumsum()
    n, c = so_far["leads"], so_far["conversions"]
    total_leads, total_conversions = n.sum(axis=1), c.sum(axis=1)
    rate = total_conversions / total_leads
    k = (n > 0).sum(axis=1).where(lambda count: count > 1)  # NaN below 2 specialists: no interval
    residuals = c - n.mul(rate, axis=0)
    se = np.sqrt(k / (k - 1) * (residuals**2).sum(axis=1)) / total_leads
    half_width = stats.norm.ppf(0.5 + CONFIDENCE / 2) * se
    return pd.DataFrame(
        {
            ARM_COLUMN: arm,
            DATE_COLUMN: rate.index,
            "leads": total_leads.to_numpy(),
            "conversions": total_conversions.to_numpy(),
            "conversion_rate": rate.to_numpy(),
            "conversion_low": (rate - half_width).clip(lower=0.0).to_numpy(),
            "conversion_high": (rate + half_width).clip(upper=1.0).to_numpy(),
        }
    )


#: Printed under the cumulative figure: why an early gap between the arms means little.
EARLY_DAYS_NOTE = (
    "Shaded: {confidence:.0%} interval of each arm's rate so far (specialists as the unit). The first days rest on "
    "few leads and swing widely; read the result at the planned end of the test, not when the lines first part."
)


def plot_cumulative(analysis: Analysis, path: str | os.PathLike[str]) -> Path:
    """Write a PNG of cumulative conversion per arm over the test's days, with interval bands (atomically); return its path."""
    figure = _cumulative_figure(analysis)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    return Path(path)


def _cumulative_figure(analysis: Analysis) -> Figure:
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    figure = Figure(figsize=(8, 5), layout="constrained")
    axes = figure.add_subplot()
    for arm, rows in analysis.cumulative.groupby(ARM_COLUMN, sort=False):
        label = str(arm).replace("$", r"\$")  # a $ would start matplotlib's math text
        (line,) = axes.plot(rows[DATE_COLUMN], rows["conversion_rate"], marker=".", label=label)
        axes.fill_between(
            rows[DATE_COLUMN], rows["conversion_low"], rows["conversion_high"], color=line.get_color(), alpha=0.2, linewidth=0
        )
    axes.set_title("Cumulative conversion per arm")
    axes.set_xlabel("date")
    axes.set_ylabel("conversions / leads so far")
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.grid(alpha=0.3)
    figure.legend(loc="outside right upper")  # beside the plot, never over a line
    figure.supxlabel(EARLY_DAYS_NOTE.format(confidence=CONFIDENCE), fontsize=8, color="0.3", wrap=True)
    figure.autofmt_xdate()
    return figure


# --- shared checks --------------------------------------------------------------------------


def _arm_order(arms: Sequence[object]) -> list[str]:
    """Control first, then the other arms by name."""
    names = sorted({str(arm) for arm in arms})
    return ([CONTROL] if CONTROL in names else []) + [name for name in names if name != CONTROL]


def _id_problems(ids: pd.Series, where: str) -> list[str]:
    problems = _rows_problem(ids.isna(), ids, f"{SPECIALIST_COLUMN!r} is missing")
    duplicated = ids.notna() & ids.astype(str).duplicated(keep="first")
    return problems + _rows_problem(duplicated, ids, f"{SPECIALIST_COLUMN!r} repeats; the {where} needs one row per specialist")


def _rows_problem(bad: pd.Series, values: pd.Series, message: str) -> list[str]:
    """``[]`` when no row is bad, else one line naming the rows and the values found."""
    rows = np.flatnonzero(bad.to_numpy(dtype=bool))
    if len(rows) == 0:
        return []
    shown = ", ".join(f"{row} ({values.iloc[row]!r})" for row in rows[:_SHOW])
    more = f" +{len(rows) - _SHOW} more" if len(rows) > _SHOW else ""
    return [f"{message}: {len(rows)} row(s): {shown}{more}"]


def _raise_if(problems: list[str], where: str) -> None:
    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise DataContractError(f"{len(problems)} problem(s) in the {where} (rows are 0-based positions):\n{listing}")
