"""The funnel + recency rule: what a sales team does without any model (paper, Table 2, row 1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from leadrank.baselines._columns import (
    DEFAULT_STAGE_COLUMN,
    DEFAULT_STAGE_ORDER,
    check_feature_spec,
    check_named_input,
    check_stage_order,
    require_columns,
    stage_ranks,
)
from leadrank.config import FeatureSpec, FunnelSpec


class FunnelRecencyRule:
    """Call the leads furthest down the funnel first; within a stage, the most recently active.

    ``score = 2 * stage_rank + recency``, where ``stage_rank`` is 1 for ``stage_order[0]``,
    2 for the next stage, ... (0 for a missing stage) and ``recency`` lies in (0, 1), so the
    stage always dominates. ``recency = 1/2 - arctan(days)/pi`` for ``recent='smaller'``
    (fewer days since the last contact ranks higher) and ``1/2 + arctan(value)/pi`` for
    ``recent='larger'``; a missing value ranks last within its stage (``recency = 0``).
    Scores are ranks, not probabilities.

    Nothing is learned: :meth:`fit` only checks the columns. The two columns are named
    explicitly and are read even when ``features`` leaves them out; they must be known at
    ``as_of`` (an outcome column such as ``funnel_stage`` is refused).

    Args:
        features: The FeatureSpec (kept for the common baseline interface).
        stage_column: Column with the furthest stage reached so far, default ``'stage_at_as_of'``.
        stage_order: Every value of ``stage_column``, lowest first; default ``('new', 'call', 'test_drive')``.
        recency_column: Numeric column of the last activity, default ``'days_since_last_contact'``.
        recent: ``'smaller'`` when smaller values are more recent (days since), ``'larger'``
            when larger ones are (a count of recent activity, a timestamp as a number).
        funnel: The funnel whose label, stage and rule columns are outcomes, refused as inputs
            (default: the paper's).

    Example:
        >>> table = pd.DataFrame({"stage_at_as_of": ["new", "call", "call", "test_drive"],
        ...                       "days_since_last_contact": [0.0, 9.0, 1.0, 30.0]})
        >>> rule = FunnelRecencyRule(FeatureSpec(features=[], dialogue_column=None)).fit(table)
        >>> np.argsort(-rule.predict(table)).tolist()
        [3, 2, 1, 0]
    """

    def __init__(
        self,
        features: FeatureSpec,
        *,
        stage_column: str = DEFAULT_STAGE_COLUMN,
        stage_order: Sequence[str] = DEFAULT_STAGE_ORDER,
        recency_column: str = "days_since_last_contact",
        recent: Literal["smaller", "larger"] = "smaller",
        funnel: FunnelSpec | None = None,
    ) -> None:
        self.features = features
        self.stage_column = stage_column
        self.stage_order = stage_order
        self.recency_column = recency_column
        self.recent = recent
        self.funnel = funnel

    @property
    def name(self) -> str:
        return "Funnel + recency rule"

    def fit(self, table: pd.DataFrame) -> FunnelRecencyRule:
        """Check the arguments and that ``table`` has both columns; learns nothing.

        The FeatureSpec is not read, but one that lists an outcome column is refused all the same.
        """
        check_feature_spec(self.features, outcomes=(self.funnel or FunnelSpec.paper_default()).supervision_columns, who=self.name)
        self.stage_order_ = self._check(table)
        stage_ranks(table[self.stage_column], self.stage_order_)  # every stage is in the order
        return self

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        """One score per row, higher = call first."""
        order = self._check(table)
        ranks = stage_ranks(table[self.stage_column], order)
        try:
            values = pd.to_numeric(table[self.recency_column]).astype(float).to_numpy()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"recency_column {self.recency_column!r} must hold numbers ({exc}); pass a numeric activity column.") from None
        sign = -1.0 if self.recent == "smaller" else 1.0
        recency = np.where(np.isnan(values), 0.0, 0.5 + sign * np.arctan(np.nan_to_num(values)) / np.pi)
        return 2.0 * ranks + recency

    def _check(self, table: pd.DataFrame) -> tuple[str, ...]:
        if self.recent not in ("smaller", "larger"):
            raise ValueError(f"recent must be 'smaller' or 'larger'; got {self.recent!r}")
        order = check_stage_order(self.stage_order)
        outcomes = self.funnel or FunnelSpec.paper_default()
        check_named_input(self.stage_column, argument="stage_column", funnel=outcomes)
        check_named_input(self.recency_column, argument="recency_column", funnel=outcomes)
        require_columns(table, [self.stage_column, self.recency_column], who=self.name)
        return order
