"""The paper's funnel + CTR baselines (Table 2, rows 2 and 3): DeepFM per stage, or with the stage as a feature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from leadrank.baselines._columns import (
    DEFAULT_STAGE_COLUMN,
    DEFAULT_STAGE_ORDER,
    check_feature_spec,
    check_named_input,
    check_stage_order,
    require_columns,
    spec_without,
    stage_ranks,
)
from leadrank.baselines.ctr import CTRBaseline
from leadrank.config import Feature, FeatureSpec, FunnelSpec
from leadrank.data.schema import label_values


class FunnelTwoStage:
    """Order by the stage reached so far, then by a DeepFM trained inside that stage.

    :meth:`fit` groups the training rows by ``stage_column`` and trains one DeepFM
    (:class:`~leadrank.baselines.ctr.CTRBaseline`, options from ``ctr_options``) on each
    group, reading the FeatureSpec's columns except the stage (constant inside a group). A
    group with fewer than ``min_positives`` positives, or fewer than ``min_positives``
    negatives, gets no model: its within-stage score is the group's positive rate.

    ``score = 2 * stage_rank + within``, where ``stage_rank`` is 1 for ``stage_order[0]``,
    2 for the next stage, ... (0 for a missing stage) and ``within`` in [0, 1] is the group
    model's probability, so the stage always dominates. A stage not seen in training gets
    the overall training positive rate as ``within``. Scores are ranks, not probabilities.

    Args:
        features: The columns to read; the stage column is read even when the spec leaves
            it out (it must be known at ``as_of``).
        stage_column: Column with the furthest stage reached so far.
        stage_order: Every value of ``stage_column``, lowest first.
        min_positives: Fewest positives (and negatives) a group needs for its own model.
        funnel: The funnel whose label column is the 0/1 outcome (read by :meth:`fit` only) and
            whose stage and rule columns are refused as inputs (default: the paper's).
        seed: Seed of every group's DeepFM.
        ctr_options: Further keyword arguments of :class:`CTRBaseline` (``epochs``, ``lr``, ...).

    Attributes:
        groups_: Stage rank -> fitted CTRBaseline, or the group's positive rate (a float).
        base_rate_: Training positive rate, the within-stage score of an unseen stage.
    """

    def __init__(
        self,
        features: FeatureSpec,
        *,
        stage_column: str = DEFAULT_STAGE_COLUMN,
        stage_order: Sequence[str] = DEFAULT_STAGE_ORDER,
        min_positives: int = 10,
        funnel: FunnelSpec | None = None,
        seed: int = 0,
        ctr_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.features = features
        self.stage_column = stage_column
        self.stage_order = stage_order
        self.min_positives = min_positives
        self.funnel = funnel
        self.seed = seed
        self.ctr_options = ctr_options

    @property
    def label_column(self) -> str:
        """The 0/1 outcome column: the funnel's (default: the paper's)."""
        return (self.funnel or FunnelSpec.paper_default()).label_column

    @property
    def name(self) -> str:
        return "Funnel + DeepFM, two-stage"

    def fit(self, table: pd.DataFrame) -> FunnelTwoStage:
        order = self._check(table)
        if not isinstance(self.min_positives, int | np.integer) or self.min_positives < 1:
            raise ValueError(f"min_positives must be a whole number >= 1; got {self.min_positives!r}")
        options = dict(self.ctr_options or {})
        for reserved in ("model", "funnel", "seed"):
            if reserved in options:
                raise ValueError(f"ctr_options may not set {reserved!r}; it is fixed by FunnelTwoStage (pass it to FunnelTwoStage itself)")
        check_feature_spec(self.features, outcomes=(self.funnel or FunnelSpec.paper_default()).supervision_columns, who=self.name)
        require_columns(table, [*self.features.names, self.label_column], who=self.name)
        inner = spec_without(self.features, self.stage_column)
        ranks = stage_ranks(table[self.stage_column], order)
        labels = label_values(table[self.label_column])
        self.base_rate_ = float(labels.mean()) if len(labels) else 0.0
        self.groups_: dict[int, CTRBaseline | float] = {}
        for rank in np.unique(ranks):
            rows = ranks == rank
            positives = int(labels[rows].sum())
            negatives = int(rows.sum()) - positives
            if positives < self.min_positives or negatives < self.min_positives:
                self.groups_[int(rank)] = positives / int(rows.sum())
                continue
            model = CTRBaseline(inner, "deepfm", funnel=self.funnel, seed=self.seed, **options)
            self.groups_[int(rank)] = model.fit(table[rows])
        self.stage_order_ = order
        return self

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        """One score per row, higher = call first."""
        if not hasattr(self, "groups_"):
            raise ValueError(f"{self.name} is not fitted yet; call fit(train_table) first")
        self._check(table)
        require_columns(table, self.features.names, who=self.name)
        ranks = stage_ranks(table[self.stage_column], self.stage_order_)
        within = np.full(len(table), self.base_rate_, dtype=float)
        for rank in np.unique(ranks):
            rows = ranks == rank
            group = self.groups_.get(int(rank))
            if isinstance(group, CTRBaseline):
                within[rows] = group.predict(table[rows])
            elif group is not None:
                within[rows] = group
        return 2.0 * ranks + np.clip(within, 0.0, 1.0)

    def _check(self, table: pd.DataFrame) -> tuple[str, ...]:
        order = check_stage_order(self.stage_order)
        check_named_input(self.stage_column, argument="stage_column", funnel=self.funnel or FunnelSpec.paper_default())
        require_columns(table, [self.stage_column], who=self.name)
        return order


class FunnelDirect(CTRBaseline):
    """DeepFM with the stage reached so far as a feature (the paper's "funnel + CTR, direct").

    When ``features`` already lists ``stage_column`` this is exactly
    ``CTRBaseline(features, 'deepfm', ...)``; otherwise the stage column is added as a
    categorical feature (it must be known at ``as_of``; outcome columns are refused).
    Every keyword of :class:`~leadrank.baselines.ctr.CTRBaseline` except ``model`` is accepted.
    """

    def __init__(self, features: FeatureSpec, *, stage_column: str = DEFAULT_STAGE_COLUMN, **ctr_options: Any) -> None:
        if "model" in ctr_options:
            raise TypeError("FunnelDirect is DeepFM; it takes no 'model' argument (use CTRBaseline for other models)")
        super().__init__(features, "deepfm", **ctr_options)
        self.stage_column = stage_column

    @property
    def name(self) -> str:
        return self.label or "Funnel + DeepFM, direct"

    def _input_spec(self) -> FeatureSpec:
        check_named_input(self.stage_column, argument="stage_column", funnel=self.funnel or FunnelSpec.paper_default())
        if self.stage_column in self.features.names:
            return self.features
        stage = Feature(name=self.stage_column, kind="categorical", description="furthest funnel stage so far")
        return self.features.model_copy(update={"features": [*self.features.features, stage]})
