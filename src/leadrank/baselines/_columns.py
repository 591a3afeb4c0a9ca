"""Column checks and stage ranks shared by the paper's baselines.

Every baseline reads the FeatureSpec's columns, plus columns its caller names explicitly
(a stage column, a recency column, extra dense inputs). Named columns are checked here so
that none of them is an outcome column, and every error names the column and the fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from leadrank.config import RESERVED_COLUMNS, FeatureSpec, FunnelSpec
from leadrank.encoding import category_text

#: The simulated CRM's stage-so-far column and its stages, lowest first.
DEFAULT_STAGE_COLUMN = "stage_at_as_of"
DEFAULT_STAGE_ORDER: tuple[str, ...] = ("new", "call", "test_drive")


def require_columns(table: pd.DataFrame, columns: Iterable[str], *, who: str) -> None:
    """Raise naming every column of ``columns`` that ``table`` lacks."""
    missing = [c for c in dict.fromkeys(columns) if c not in table.columns]
    if missing:
        shown = list(table.columns)[:20]
        more = f" (and {len(table.columns) - 20} more)" if len(table.columns) > 20 else ""
        raise ValueError(
            f"{who}: the table has no column(s) {missing}; it has {shown}{more}. "
            "Pass a table with these columns, or a FeatureSpec / column argument that matches the table."
        )


def check_feature_spec(features: FeatureSpec, *, outcomes: Iterable[str], who: str) -> None:
    """Refuse a FeatureSpec that lists an outcome column (a label, stage or tier rule column) as an input.

    ``outcomes`` is the funnel's ``supervision_columns``, or the label column alone for a
    baseline that is given no FunnelSpec.
    """
    outcome = set(outcomes)
    leaking = [c for c in features.input_columns if c in outcome]
    if leaking:
        raise ValueError(
            f"{who}: the FeatureSpec lists {leaking}, outcome (supervision) column(s) known only after as_of; "
            "a baseline may read only what is known at as_of. Remove them from the FeatureSpec."
        )


def check_named_input(name: str, *, argument: str, funnel: FunnelSpec) -> None:
    """Refuse a column named as an input when it is an outcome (``funnel``'s label, stage or a
    tier rule's column), an identity or a diagnostic column."""
    if name in funnel.supervision_columns:
        raise ValueError(
            f"{argument}={name!r} is an outcome (supervision) column, known only after as_of; "
            "a baseline may read only what is known at as_of. Pass the stage or activity reached so far instead."
        )
    if name in RESERVED_COLUMNS:
        raise ValueError(f"{argument}={name!r} identifies a lead; it is never an input. Pass a feature column.")
    if name.startswith("_"):
        raise ValueError(f"{argument}={name!r} starts with '_', which marks a diagnostic column, never an input.")


def check_stage_order(stage_order: Sequence[str]) -> tuple[str, ...]:
    """The stage order as a tuple; at least one stage, no repeats."""
    if isinstance(stage_order, str):
        raise ValueError(f"stage_order must be a list of stages, lowest first; got the string {stage_order!r}")
    order = tuple(str(s) for s in stage_order)
    if not order:
        raise ValueError("stage_order is empty; list every stage the stage column can hold, lowest first")
    repeated = sorted({s for s in order if order.count(s) > 1})
    if repeated:
        raise ValueError(f"stage_order repeats {repeated}; list each stage once, lowest first")
    return order


def stage_ranks(column: pd.Series, stage_order: Sequence[str]) -> np.ndarray:
    """1 for ``stage_order[0]``, 2 for the next, ...; 0 for a missing stage.

    Raises:
        ValueError: A value that is not in ``stage_order`` (naming the values and the column).
    """
    text = category_text(column)
    ranks = text.map({stage: i + 1 for i, stage in enumerate(stage_order)})
    unknown = text.notna() & ranks.isna()
    if unknown.any():
        values = sorted(set(text[unknown]))
        raise ValueError(
            f"column {column.name!r} holds stage(s) {values[:10]} that are not in stage_order {list(stage_order)}; "
            "pass stage_order=[...] listing every stage from lowest to highest."
        )
    return ranks.fillna(0).to_numpy(dtype=float)


def spec_without(features: FeatureSpec, column: str) -> FeatureSpec:
    """``features`` without the feature ``column`` (unchanged when it is not there)."""
    return features.model_copy(update={"features": [f for f in features.features if f.name != column]})
