"""Logistic regression on the tabular features: the simplest learned baseline, plain or with funnel pairs."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from leadrank.baselines._columns import check_feature_spec, require_columns
from leadrank.baselines.gbdt import check_extra
from leadrank.baselines.pairwise import TierPairSampler, funnel_tiers, objective_grad_hess, objective_value
from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.schema import label_values
from leadrank.encoding import SideEncoder, TabularEncoder


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
        check_feature_spec(self.features, outcomes=[self.label_column], who=self.name)
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
            self.pipeline_.fit(self._inputs(table), label_values(table[self.label_column]))
        return self

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        """Probability of conversion per row."""
        if not hasattr(self, "pipeline_"):
            raise ValueError(f"{self.name} is not fitted yet; call fit(train_table) first")
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


class PairwiseLogisticBaseline:
    """Logistic regression whose one linear score also ranks the funnel's preference pairs.

    Minimises ``mean BCE(σ(w·x + b), y) + hpro_weight * HPRO(w·x + b) + |w|² / (2 C n)``
    with full-batch L-BFGS: the same L2 as ``LogisticRegression(C=C)`` (the intercept is not
    penalised), so ``hpro_weight=0`` is plain logistic regression. HPRO is the margin-aware
    Bradley–Terry loss over the FunnelSpec's tier pairs (:mod:`leadrank.baselines.pairwise`):
    one sample drawn with ``seed``, ``pairs_per_lead`` pairs per lead of each tier's larger
    side, kept fixed so that L-BFGS minimises one function. The input
    is :class:`~leadrank.encoding.SideEncoder`'s encoding of the FeatureSpec's tabular
    columns, plus the ``extra`` dense columns (standardised on the training table) when given.

    Args:
        features: The columns to read.
        funnel: The tiers and the outcome columns (label, stage, ...), read by :meth:`fit` only.
        hpro_weight: Weight of the pair term (λ); 0 turns it off.
        pairs_per_lead: Pair budget per tier, in pairs per lead of the tier's larger side.
        C: Inverse L2 strength, as in ``LogisticRegression``.
        max_iter: Iterations allowed to L-BFGS.
        seed: Seed of the pair sample.

    Attributes:
        encoder_: The fitted :class:`~leadrank.encoding.SideEncoder`.
        coef_: ``(width,)`` weights, SideEncoder columns first, then the extra columns.
        intercept_: The bias ``b``.
    """

    def __init__(
        self,
        features: FeatureSpec,
        funnel: FunnelSpec,
        *,
        hpro_weight: float = 1.0,
        pairs_per_lead: int = 16,
        C: float = 1.0,
        max_iter: int = 2000,
        seed: int = 0,
    ) -> None:
        self.features = features
        self.funnel = funnel
        self.hpro_weight = hpro_weight
        self.pairs_per_lead = pairs_per_lead
        self.C = C
        self.max_iter = max_iter
        self.seed = seed

    @property
    def name(self) -> str:
        return "Logistic regression + HPRO"

    def fit(self, table: pd.DataFrame, *, extra: np.ndarray | None = None) -> PairwiseLogisticBaseline:
        if not self.C > 0:
            raise ValueError(f"C must be positive; got {self.C!r}")
        if not self.hpro_weight >= 0:
            raise ValueError(f"hpro_weight must be >= 0 (0 turns the pair term off); got {self.hpro_weight!r}")
        if not self.features.features and extra is None:
            raise ValueError(
                "the FeatureSpec lists no features and no extra= columns were given; a logistic regression needs at least one column"
            )
        check_feature_spec(self.features, outcomes=self.funnel.supervision_columns, who=self.name)
        require_columns(table, self.features.names, who=self.name)
        membership, margins = funnel_tiers(table, self.funnel, who=self.name)
        labels = label_values(table[self.funnel.label_column]).astype(float)
        pairs = TierPairSampler(membership, margins, pairs_per_lead=self.pairs_per_lead, seed=self.seed).sample()
        self.encoder_ = SideEncoder(self.features).fit(table)
        if extra is None:
            self.extra_mean_ = self.extra_scale_ = None
        else:
            extra = check_extra(extra, len(table), None)
            scale = extra.std(axis=0)
            self.extra_mean_, self.extra_scale_ = extra.mean(axis=0), np.where(scale > 0, scale, 1.0)
        x = self._inputs(table, extra)
        n, width = x.shape
        penalty = 1.0 / (self.C * n)

        def loss_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w, b = theta[:-1], theta[-1]
            scores = x @ w + b
            loss = objective_value(scores, labels, pairs, self.hpro_weight) + 0.5 * penalty * (w @ w)
            grad, _ = objective_grad_hess(scores, labels, pairs, self.hpro_weight)
            return loss, np.append(x.T @ grad + penalty * w, grad.sum())

        result = minimize(
            loss_and_gradient,
            np.zeros(width + 1),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": self.max_iter, "gtol": 1e-8, "ftol": 1e-12},
        )
        if not result.success:
            warnings.warn(
                f"{self.name}: L-BFGS stopped before converging ({result.message}); raise max_iter={self.max_iter}.", stacklevel=2
            )
        self.coef_, self.intercept_ = result.x[:-1], float(result.x[-1])
        return self

    def decision_function(self, table: pd.DataFrame, *, extra: np.ndarray | None = None) -> np.ndarray:
        """The linear score ``w·x + b`` per row (a log-odds); pass ``extra`` exactly when :meth:`fit` had it."""
        if not hasattr(self, "coef_"):
            raise ValueError(f"{self.name} is not fitted yet; call fit(train_table) first")
        extra_mean = self.extra_mean_
        if (extra is None) != (extra_mean is None):
            raise ValueError("pass extra= to predict exactly when it was passed to fit (same columns).")
        require_columns(table, self.features.names, who=self.name)
        if extra is not None and extra_mean is not None:
            extra = check_extra(extra, len(table), len(extra_mean))
        return self._inputs(table, extra) @ self.coef_ + self.intercept_

    def predict(self, table: pd.DataFrame, *, extra: np.ndarray | None = None) -> np.ndarray:
        """Probability of conversion per row: σ of :meth:`decision_function`."""
        return expit(self.decision_function(table, extra=extra))

    def _inputs(self, table: pd.DataFrame, extra: np.ndarray | None) -> np.ndarray:
        side = self.encoder_.transform(table).astype(float)
        if extra is None:
            return side
        return np.hstack([side, (extra - self.extra_mean_) / self.extra_scale_])
