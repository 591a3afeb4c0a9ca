"""Logistic regression on the tabular features: the simplest learned baseline."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from leadrank.baselines._columns import require_columns
from leadrank.config import FeatureSpec
from leadrank.encoding import TabularEncoder


class LogisticBaseline:
    """``fit`` on a training table, ``predict`` conversion probabilities for any table.

    A scikit-learn Pipeline: numeric and yes/no columns are imputed with the training median
    (plus a missing-indicator column for each one that had gaps in training) and
    standardised; categorical columns are one-hot encoded over the categories seen in
    training, an unseen or missing category being all zeros. Then an L2
    ``LogisticRegression`` without class weights, so the output stays a probability.
    Only the FeatureSpec's tabular columns are read (not the dialogue).

    Args:
        features: The columns to read; :class:`~leadrank.encoding.TabularEncoder` types them.
        label_column: The 0/1 outcome column, read by :meth:`fit` only.
        C: Inverse L2 strength of ``LogisticRegression``.
        max_iter: Iterations allowed to lbfgs.

    Attributes:
        encoder_: The fitted :class:`~leadrank.encoding.TabularEncoder`.
        pipeline_: The fitted ``sklearn.pipeline.Pipeline``.
    """

    def __init__(self, features: FeatureSpec, *, label_column: str = "label", C: float = 1.0, max_iter: int = 2000) -> None:
        self.features = features
        self.label_column = label_column
        self.C = C
        self.max_iter = max_iter

    @property
    def name(self) -> str:
        return "Logistic regression"

    def fit(self, table: pd.DataFrame) -> LogisticBaseline:
        if not self.C > 0:
            raise ValueError(f"C must be positive; got {self.C!r}")
        if not self.features.features:
            raise ValueError("the FeatureSpec lists no features; a logistic regression needs at least one column")
        require_columns(table, [*self.features.names, self.label_column], who=self.name)
        self.encoder_ = TabularEncoder(self.features).fit(table)
        numeric = [f.name for f in self.features.features if f.kind != "categorical"]
        categorical = [f.name for f in self.features.features if f.kind == "categorical"]
        parts = []
        if numeric:
            steps = [
                ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
                ("scale", StandardScaler()),
            ]
            parts.append(("numeric", Pipeline(steps), numeric))
        if categorical:
            categories = [list(self.encoder_.categories_[c]) for c in categorical]
            parts.append(("categorical", OneHotEncoder(categories=categories, handle_unknown="ignore"), categorical))
        self.pipeline_ = Pipeline(
            [
                ("columns", ColumnTransformer(parts)),
                ("model", LogisticRegression(C=self.C, class_weight=None, max_iter=self.max_iter)),
            ]
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Found unknown categories", category=UserWarning)
            self.pipeline_.fit(self._inputs(table), table[self.label_column].astype(int).to_numpy())
        return self

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        """Probability of conversion per row."""
        require_columns(table, self.features.names, who=self.name)
        with warnings.catch_warnings():
            # An unseen category is expected at scoring time; it is encoded as all zeros.
            warnings.filterwarnings("ignore", message="Found unknown categories", category=UserWarning)
            return self.pipeline_.predict_proba(self._inputs(table))[:, 1]

    def _inputs(self, table: pd.DataFrame) -> pd.DataFrame:
        encoded = self.encoder_.transform(table)
        for feature in self.features.features:
            if feature.kind == "categorical":
                encoded[feature.name] = encoded[feature.name].astype(object)
        return encoded
