"""Compare rankers on one time split, with the oracle ceiling as the last row."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadrank.baselines import GBDTBaseline, GBDTConfig
from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.profile import ORACLE_COLUMN
from leadrank.data.split import TimeSplit, check_no_leakage
from leadrank.metrics import k_label, precision_at, ranking_report, top_count

#: Precision at the top 0.1 % is reported only where that top set holds at least this many leads.
MIN_LEADS_FOR_PRECISION = 20


def score_row(name: str, labels: np.ndarray, scores: np.ndarray) -> dict[str, object]:
    """One results row: AUC, PR-AUC, P@0.1 % (when meaningful), P@1 %, P@5 %, R@5 %."""
    report = ranking_report(labels, scores)
    row: dict[str, object] = {"model": name, "auc": report["auc"], "pr_auc": report["pr_auc"]}
    for k in (0.001, 0.01, 0.05):
        enough = top_count(k, len(labels)) >= MIN_LEADS_FOR_PRECISION
        row[f"p@{k_label(k)}"] = precision_at(labels, scores, k) if enough else np.nan
    row["r@5%"] = report["r@5%"]
    return row


def compare_baselines(split: TimeSplit, features: FeatureSpec, funnel: FunnelSpec, *, seed: int = 0) -> pd.DataFrame:
    """Fit the LightGBM baselines on ``split.train``; score ``split.test``; add the oracle when known."""
    check_no_leakage(features.names, funnel.supervision_columns)
    labels = split.test[funnel.label_column].astype(int).to_numpy()
    rows = []
    variants = [False, True] if features.dialogue_column else [False]
    for use_dialogue in variants:
        model = GBDTBaseline(features, label_column=funnel.label_column, use_dialogue=use_dialogue, config=GBDTConfig(seed=seed))
        model.fit(split.train)
        rows.append(score_row(model.name, labels, model.predict(split.test)))
    if ORACLE_COLUMN in split.test.columns:
        rows.append(score_row("oracle (true propensity)", labels, split.test[ORACLE_COLUMN].to_numpy()))
    return pd.DataFrame(rows)
