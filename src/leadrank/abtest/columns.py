"""Column names and constants of the A/B test, and the input checks its plan and analysis share.

Row numbers in error messages are 0-based positions, as in ``DataFrame.iloc``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from leadrank.errors import ConfigurationError, DataContractError

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
