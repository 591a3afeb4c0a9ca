"""The Python API: train, score, save and load a lead ranker from a notebook.

>>> import leadrank
>>> model = leadrank.train(leads)                     # doctest: +SKIP  (cpu-quick: frozen SmolLM2, minutes)
>>> model.score(new_leads).head()                     # doctest: +SKIP  lead_id, probability, rank_score
>>> model.save("model"); leadrank.load("model")       # doctest: +SKIP

:class:`LeadRanker` wraps the same calls as a scikit-learn estimator. The command line's
``train`` and ``score`` verbs run the same library functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin

from leadrank import artifact as artifacts
from leadrank.artifact import Artifact
from leadrank.config import DEFAULT_PRESET, ID_COLUMN, FeatureSpec, FunnelSpec
from leadrank.data.profile import ORACLE_COLUMN
from leadrank.data.schema import label_values, validate
from leadrank.inference import Scorer
from leadrank.metrics import brier, ece, precision_at, recall_at, score_row
from leadrank.registry import model_folder
from leadrank.settings import RunConfig, ScoreConfig
from leadrank.training import train as train_model

__all__ = ["Evaluation", "LeadRanker", "Model", "load", "train"]


@dataclass(frozen=True)
class Evaluation:
    """A model's measures on labelled leads (:meth:`Model.evaluate`).

    ``table`` holds one row per ranking (the model, ranked as it scores, and the oracle when the
    table has the simulator's true propensity): AUC, PR-AUC, precision at the top 0.1 % / 1 % /
    5 % / 20 % and recall at 5 % / 20 %. ``scores`` holds each lead's lead_id, label,
    probability and rank_score. ``calibration`` is the Brier score and ECE of the raw pointwise
    head and of the calibrated probability, with the calibration's method.
    """

    table: pd.DataFrame
    scores: pd.DataFrame
    calibration: dict[str, float | str]

    @property
    def recall_at_20(self) -> float:
        """The share of the buyers found by calling the model's top 20 % of these leads."""
        return float(self.table["r@20%"].iloc[0])


class Model:
    """A trained leadrank model.

    ``score`` and ``evaluate`` read leads with a :class:`~leadrank.inference.Scorer`, which
    prepares a copy of the weights for speed where needed (LoRA merged, the backbone cast), so
    the model itself stays as trained and ``save`` writes it unchanged at any time.
    """

    def __init__(self, artifact: Artifact, score_config: ScoreConfig = ScoreConfig()) -> None:
        self.artifact = artifact
        self.score_config = score_config
        self._scorer: Scorer | None = None

    @property
    def model_version(self) -> str:
        """The hash of the weights, calibration and settings: what a scores table records."""
        return self.artifact.model_version

    @property
    def metrics(self) -> dict[str, float]:
        """Validation metrics recorded at training (AUC of each head, calibration)."""
        return dict(self.artifact.metrics)

    def score(self, table: pd.DataFrame) -> pd.DataFrame:
        """``lead_id``, ``probability`` (calibrated) and ``rank_score`` per lead, in input order.

        The table is checked against the model's FeatureSpec first (labels are not needed);
        a table that breaks the contract raises :class:`~leadrank.data.schema.LeadDataError`
        listing every problem.
        """
        return self._ready_scorer().score(table)

    def evaluate(self, table: pd.DataFrame) -> Evaluation:
        """Score labelled leads and measure the ranking (top-of-list precision and recall) and the calibration."""
        scorer = self._ready_scorer()
        validate(table, self.artifact.features, self.artifact.funnel)
        point, pair = scorer.raw_scores(table)
        scores = scorer.to_scores(table[ID_COLUMN], point, pair)
        labels = label_values(table[self.artifact.funnel.label_column])
        ranked = {f"asLLR (rank by {scorer.rank_by})": scores["rank_score"].to_numpy()}
        if ORACLE_COLUMN in table.columns:
            ranked["oracle (true propensity)"] = table[ORACLE_COLUMN].to_numpy()
        rows = [
            score_row(name, labels, values) | {"p@20%": precision_at(labels, values, 0.2), "r@20%": recall_at(labels, values, 0.2)}
            for name, values in ranked.items()
        ]
        raw, probability = expit(point), scores["probability"].to_numpy()
        calibration: dict[str, float | str] = {
            "method": self.artifact.calibration.method,
            "brier_raw": brier(labels, raw),
            "brier_calibrated": brier(labels, probability),
            "ece_raw": ece(labels, raw),
            "ece_calibrated": ece(labels, probability),
        }
        return Evaluation(pd.DataFrame(rows), scores.assign(label=labels)[[ID_COLUMN, "label", "probability", "rank_score"]], calibration)

    def _ready_scorer(self) -> Scorer:
        if self._scorer is None:
            self._scorer = Scorer(self.artifact, self.score_config)
        return self._scorer

    def save(self, directory: str | Path) -> Path:
        """Write the model folder (atomically); ``leadrank score DIR`` and :func:`load` read it."""
        return artifacts.save(self.artifact, directory)


def train(
    table: pd.DataFrame,
    *,
    features: FeatureSpec | None = None,
    funnel: FunnelSpec | None = None,
    preset: str = DEFAULT_PRESET,
    config: str | Path | None = None,
    model: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
) -> Model:
    """Train on a labelled lead table and return the model.

    Args:
        table: Leads with their outcome columns (label, funnel stage, the tiers' rule columns).
        features: The input columns; default the shipped NEV spec.
        funnel: Stages and preference tiers; default the paper's funnel.
        preset: The recipe: ``'cpu-quick'``, ``'cpu-lora'`` or ``'paper'``.
        config: A YAML file with ``model:`` and ``train:`` sections over the preset.
        model: ModelConfig fields over both (e.g. ``{"backbone": "/models/Qwen2.5-1.5B"}``).
        training: TrainConfig fields over both (e.g. ``{"max_steps": 300, "seed": 1}``).
    """
    run = RunConfig.resolve(preset, Path(config) if config else None, model=dict(model or {}), train=dict(training or {}))
    features = features or FeatureSpec.nev_default()
    funnel = funnel or FunnelSpec.paper_default()
    result = train_model(table, features, funnel, run.model, run.train)
    return Model(artifacts.from_training(result))


def load(directory: str | Path) -> Model:
    """A model folder written by :meth:`Model.save` or ``leadrank train`` (or a registry's current
    version, :func:`leadrank.registry.model_folder`), verified file by file."""
    return Model(artifacts.load(model_folder(directory)))


class LeadRanker(ClassifierMixin, BaseEstimator):
    """scikit-learn estimator around :func:`train`: ``LeadRanker().fit(df).predict_proba(df)``.

    ``fit`` takes the labelled table itself (the outcome columns inside it, as the funnel
    names them), so ``y`` stays None. ``predict_proba`` gives the calibrated probability,
    ``decision_function`` the rank score (the order to call leads in).
    """

    def __init__(
        self,
        features: FeatureSpec | None = None,
        funnel: FunnelSpec | None = None,
        preset: str = DEFAULT_PRESET,
        model: Mapping[str, Any] | None = None,
        training: Mapping[str, Any] | None = None,
    ) -> None:
        self.features = features
        self.funnel = funnel
        self.preset = preset
        self.model = model
        self.training = training

    def fit(self, X: pd.DataFrame, y: None = None) -> LeadRanker:  # noqa: N803 (scikit-learn's names)
        if y is not None:
            raise TypeError("LeadRanker.fit reads the outcome columns from the table itself; pass y=None")
        self.model_ = train(X, features=self.features, funnel=self.funnel, preset=self.preset, model=self.model, training=self.training)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        probability = self.model_.score(X)["probability"].to_numpy()
        return np.column_stack([1 - probability, probability])

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        return self.model_.score(X)["rank_score"].to_numpy()

    def predict(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)
