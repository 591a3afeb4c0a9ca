"""Analyse an A/B test: uplift per arm, Welch's t-test, bootstrap CIs and cumulative conversion.

:func:`analyze` compares conversion rates per specialist with Welch's two-sided t-test (unequal
variances), and gives bootstrap CIs (BCa, resampling specialists within each arm) for the
relative uplift of the pooled conversion rate (conversions / leads of the arm over that of
control, minus one) and for the difference of the pooled rates (arm minus control, in
conversion-rate points). The difference is always defined; the relative uplift is not when a
resample of control has no conversion, and its CI is then left missing with a note (see
:class:`Analysis`). Both ignore the stratification and balancing, which make the arms more
alike than independent sampling would: they err on the safe side (wider CI, larger p).

The outcomes table has one row per lead handled during the test: ``specialist_id``, ``date``,
``converted`` (0/1), and ``arm`` unless an assignment is given to join it from.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from leadrank.abtest.columns import (
    ARM_COLUMN,
    CONFIDENCE,
    CONTROL,
    CONVERTED_COLUMN,
    DATE_COLUMN,
    SPECIALIST_COLUMN,
    _arm_order,
    _id_problems,
    _raise_if,
    _rows_problem,
)
from leadrank.errors import DataContractError

BOOTSTRAP_SAMPLES = 2000


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
