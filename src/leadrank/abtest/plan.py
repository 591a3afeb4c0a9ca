"""Assign specialists to the arms of an A/B test: stratified, blocked draws and their balance.

:func:`plan` stratifies by capability tier. Within a tier it sorts specialists by their recent
lock-ins (30, 14, then 7 days), then follow-up volume, cuts the sorted list into blocks of one
specialist per arm and shuffles the arms inside each block. Neighbours in the sort are alike,
so every tier is split evenly and the arms come out close on those counts. Of ``REDRAWS``
such seeded draws it keeps the one with the smallest worst standardized mean difference.

The specialists table has one row per specialist: ``specialist_id``, ``lockins_7d``,
``lockins_14d``, ``lockins_30d`` (orders locked in over those windows), ``followups_30d`` (leads
followed up over the last 30 days) and optionally ``tier`` (capability tier).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadrank.abtest.columns import (
    ARM_COLUMN,
    BALANCE_COLUMNS,
    CONTROL,
    FOLLOWUP_COLUMN,
    LOCKIN_COLUMNS,
    N_TIERS,
    SPECIALIST_COLUMN,
    TIER_COLUMN,
    _arm_order,
    _id_problems,
    _raise_if,
    _rows_problem,
    arm_names,
)
from leadrank.abtest.power import Power, estimate_power
from leadrank.errors import DataContractError

REDRAWS = 200  # blocked draws per plan; the best balanced is kept


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
