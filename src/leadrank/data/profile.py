"""What a lead table holds: outcome rates, funnel stages, dialogue lengths, and the oracle ceiling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.schema import label_values
from leadrank.data.split import TEST_FRACTION, time_split
from leadrank.metrics import ranking_report

ORACLE_COLUMN = "_true_propensity"


@dataclass(frozen=True)
class TableProfile:
    rows: int
    positives: int
    stage_counts: dict[str, int]
    dialogue_tokens: dict[str, float] | None
    cutoff: pd.Timestamp
    test_rows: int
    test_positives: int
    oracle: dict[str, float] | None

    @property
    def label_rate(self) -> float:
        return self.positives / self.rows


def profile_table(
    table: pd.DataFrame,
    features: FeatureSpec,
    funnel: FunnelSpec,
    *,
    tokenizer=None,
    test_fraction: float = TEST_FRACTION,
) -> TableProfile:
    """Summarise a validated, labelled table; the oracle needs a ``_true_propensity`` column."""
    labels = label_values(table[funnel.label_column])
    stages = table[funnel.stage_column].value_counts()
    split = time_split(table, test_fraction)
    oracle = None
    if ORACLE_COLUMN in table.columns:
        test = split.test
        oracle = ranking_report(label_values(test[funnel.label_column]), test[ORACLE_COLUMN], test[ORACLE_COLUMN])
    return TableProfile(
        rows=len(table),
        positives=int(labels.sum()),
        stage_counts={stage: int(stages.get(stage, 0)) for stage in funnel.stages},
        dialogue_tokens=_dialogue_tokens(table, features, tokenizer),
        cutoff=split.cutoff,
        test_rows=len(split.test),
        test_positives=int(label_values(split.test[funnel.label_column]).sum()),
        oracle=oracle,
    )


def _dialogue_tokens(table: pd.DataFrame, features: FeatureSpec, tokenizer) -> dict[str, float] | None:
    if tokenizer is None or not features.dialogue_column:
        return None
    texts = table[features.dialogue_column].tolist()
    counts = np.array([len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]])
    return {
        "mean": float(counts.mean()),
        "p50": float(np.percentile(counts, 50)),
        "p95": float(np.percentile(counts, 95)),
        "max": float(counts.max()),
        "empty_share": float((counts == 0).mean()),
    }
