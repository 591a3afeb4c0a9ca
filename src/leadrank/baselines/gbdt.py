"""LightGBM on the tabular features, optionally with TF-IDF n-grams of the dialogue, plain or with funnel pairs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import expit, logit
from sklearn.feature_extraction.text import TfidfVectorizer

from leadrank.baselines._columns import check_feature_spec, require_columns
from leadrank.baselines.pairwise import TierPairs, TierPairSampler, funnel_tiers, objective_grad_hess, objective_value
from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.schema import label_values
from leadrank.encoding import TabularEncoder


@dataclass(frozen=True)
class GBDTConfig:
    """LightGBM settings; the defaults suit tens of thousands of leads with ~1 % positives."""

    n_estimators: int = 400
    learning_rate: float = 0.03
    num_leaves: int = 15
    min_child_samples: int = 50
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    seed: int = 0
    tfidf_max_features: int = 20_000
    tfidf_min_df: int = 5


class GBDTBaseline:
    """``fit`` on a training table, ``predict`` conversion probabilities for any table.

    With ``use_dialogue=True`` the dialogue column is added as TF-IDF unigrams and bigrams,
    the strongest cheap text baseline: it reads words, not who said them or in what order.
    ``extra`` (rows x k, row-aligned) adds k dense inputs, e.g. an LLM embedding of the lead.
    """

    model_: lgb.LGBMClassifier | lgb.Booster  # set by fit; a Booster in GBDTHPROBaseline

    def __init__(
        self, features: FeatureSpec, *, label_column: str = "label", use_dialogue: bool = False, config: GBDTConfig = GBDTConfig()
    ) -> None:
        self.features = features
        self.label_column = label_column
        self.use_dialogue = use_dialogue
        self.config = config

    @property
    def name(self) -> str:
        return "LightGBM tabular + TF-IDF" if self.use_dialogue else "LightGBM tabular"

    def fit(self, table: pd.DataFrame, *, extra: np.ndarray | None = None) -> GBDTBaseline:
        check_feature_spec(self.features, outcomes=[self.label_column], who=self.name)
        require_columns(table, [*self._input_columns, self.label_column], who=self.name)
        inputs, categorical = self._fit_inputs(table, extra)
        params = {k: v for k, v in asdict(self.config).items() if not k.startswith("tfidf_")}
        seed = params.pop("seed")
        self.model_ = model = lgb.LGBMClassifier(**params, subsample_freq=1, random_state=seed, n_jobs=1, verbose=-1)
        model.fit(inputs, label_values(table[self.label_column]), categorical_feature=categorical)
        return self

    def predict(self, table: pd.DataFrame, *, extra: np.ndarray | None = None) -> np.ndarray:
        """Probability of conversion per row; pass ``extra`` exactly when :meth:`fit` had it."""
        inputs = self._predict_inputs(table, extra)
        model = self.model_
        assert isinstance(model, lgb.LGBMClassifier)
        return np.asarray(model.predict_proba(inputs))[:, 1]

    @property
    def _input_columns(self) -> list[str]:
        """The table columns the model reads: the features, and the dialogue with ``use_dialogue``."""
        text = [self.features.dialogue_column] if self.use_dialogue and self.features.dialogue_column else []
        return [*self.features.names, *text]

    def _fit_inputs(
        self, table: pd.DataFrame, extra: np.ndarray | None
    ) -> tuple[pd.DataFrame | sp.csr_matrix, list[int] | Literal["auto"]]:
        """Fit the encoders (and TF-IDF) on ``table``; its model inputs and their categorical columns."""
        if self.use_dialogue and not self.features.dialogue_column:
            raise ValueError("use_dialogue=True needs a FeatureSpec with a dialogue_column; this spec has none.")
        self.encoder_ = TabularEncoder(self.features).fit(table)
        if self.use_dialogue:
            self.vectorizer_ = TfidfVectorizer(
                ngram_range=(1, 2),
                min_df=self.config.tfidf_min_df,
                max_features=self.config.tfidf_max_features,
                sublinear_tf=True,
            ).fit(table[self.features.dialogue_column])
        self.extra_width_ = None if extra is None else check_extra(extra, len(table), None).shape[1]
        return self._inputs(table, extra)

    def _predict_inputs(self, table: pd.DataFrame, extra: np.ndarray | None) -> pd.DataFrame | sp.csr_matrix:
        if not hasattr(self, "model_"):
            raise ValueError(f"{self.name} is not fitted yet; call fit(train_table) first")
        require_columns(table, self._input_columns, who=self.name)
        if (extra is None) != (self.extra_width_ is None):
            raise ValueError("pass extra= to predict exactly when it was passed to fit (same columns).")
        inputs, _ = self._inputs(table, None if extra is None else check_extra(extra, len(table), self.extra_width_))
        return inputs

    def _inputs(self, table: pd.DataFrame, extra: np.ndarray | None) -> tuple[pd.DataFrame | sp.csr_matrix, list[int] | Literal["auto"]]:
        encoded = self.encoder_.transform(table)
        if not self.use_dialogue:
            if extra is not None:
                encoded = encoded.assign(**{f"extra_{j}": extra[:, j] for j in range(extra.shape[1])})
            return encoded, "auto"
        categorical = [i for i, f in enumerate(self.features.features) if f.kind == "categorical"]
        dense = np.column_stack(
            [
                encoded[c].cat.codes.to_numpy().astype(float) if i in categorical else encoded[c].to_numpy(float)
                for i, c in enumerate(encoded.columns)
            ]
        )
        dense[:, categorical] = np.where(dense[:, categorical] < 0, np.nan, dense[:, categorical])
        text = self.vectorizer_.transform(table[self.features.dialogue_column])
        blocks = [sp.csr_matrix(dense), text] + ([] if extra is None else [sp.csr_matrix(extra)])
        return sp.hstack(blocks, format="csr"), categorical


class HPROObjective:
    """LightGBM custom objective: ``rows * (mean BCE + hpro_weight * HPRO)``, new pairs every call.

    The sum-over-rows scale is that of LightGBM's own binary objective (gradient ``p - y`` per
    row), so its regularisation (``min_child_weight``, ...) means the same. LightGBM calls
    it once per boosting round; the pairs of the latest call are kept in :attr:`pairs_`.
    """

    def __init__(self, labels: np.ndarray, sampler: TierPairSampler, hpro_weight: float) -> None:
        self.labels = np.asarray(labels, dtype=float)
        self.sampler = sampler
        self.hpro_weight = hpro_weight

    def __call__(self, scores: np.ndarray, _: lgb.Dataset | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Gradient and hessian per row at the raw ``scores``, on a fresh draw of pairs."""
        self.pairs_ = self.sampler.sample()
        grad, hess = objective_grad_hess(scores, self.labels, self.pairs_, self.hpro_weight)
        return grad * len(scores), hess * len(scores)

    def loss(self, scores: np.ndarray, pairs: TierPairs) -> float:
        """The objective's value at ``scores`` on the given pairs, in the same scale as :meth:`__call__`."""
        return len(scores) * objective_value(scores, self.labels, pairs, self.hpro_weight)


class GBDTHPROBaseline(GBDTBaseline):
    """LightGBM boosted on ``BCE + hpro_weight * HPRO``: one raw score that is a log-odds and a ranking.

    The inputs are :class:`GBDTBaseline`'s (tabular, optional TF-IDF, optional ``extra``). The
    objective is the mean binary cross-entropy plus ``hpro_weight`` times the margin-aware
    Bradley–Terry loss over the FunnelSpec's tier pairs (:mod:`leadrank.baselines.pairwise`),
    both on the same raw score, in LightGBM's sum-over-rows scale (so ``hpro_weight=0`` is
    LightGBM's own binary objective, started from the training log-odds as it is). Each
    boosting round draws new pairs, ``pairs_per_lead`` per lead of each tier's larger side, so
    a round costs time linear in leads. Gradients and hessians of both terms add per lead;
    the pair hessian is the exact diagonal ``σ(1-σ)`` per pair, never negative.

    Args:
        features: The columns to read.
        funnel: The tiers and the outcome columns (label, stage, ...), read by :meth:`fit` only.
        use_dialogue: Add TF-IDF n-grams of the dialogue, as in :class:`GBDTBaseline`.
        config: LightGBM settings; ``config.seed`` also seeds the pair draws.
        hpro_weight: Weight of the pair term (λ); 0 turns it off.
        pairs_per_lead: Pair budget per tier and round, in pairs per lead of the tier's larger side.

    Attributes:
        model_: The fitted ``lightgbm.Booster``.
        init_score_: The training log-odds every raw score starts from.
    """

    def __init__(
        self,
        features: FeatureSpec,
        funnel: FunnelSpec,
        *,
        use_dialogue: bool = False,
        config: GBDTConfig = GBDTConfig(),
        hpro_weight: float = 1.0,
        pairs_per_lead: int = 4,
    ) -> None:
        super().__init__(features, label_column=funnel.label_column, use_dialogue=use_dialogue, config=config)
        self.funnel = funnel
        self.hpro_weight = hpro_weight
        self.pairs_per_lead = pairs_per_lead

    @property
    def name(self) -> str:
        return f"{super().name} + HPRO"

    def fit(self, table: pd.DataFrame, *, extra: np.ndarray | None = None) -> GBDTHPROBaseline:
        if not self.hpro_weight >= 0:
            raise ValueError(f"hpro_weight must be >= 0 (0 turns the pair term off); got {self.hpro_weight!r}")
        check_feature_spec(self.features, outcomes=self.funnel.supervision_columns, who=self.name)
        require_columns(table, self._input_columns, who=self.name)
        membership, margins = funnel_tiers(table, self.funnel, who=self.name)
        labels = label_values(table[self.label_column]).astype(float)
        positives = int(labels.sum())
        if not 0 < positives < len(labels):
            raise ValueError(
                f"{self.name} needs positives and negatives in {self.label_column!r}; got {positives} of {len(labels)} rows positive."
            )
        inputs, categorical = self._fit_inputs(table, extra)
        self.init_score_ = float(logit(labels.mean()))
        sampler = TierPairSampler(membership, margins, pairs_per_lead=self.pairs_per_lead, seed=self.config.seed)
        params = {
            "objective": HPROObjective(labels, sampler, self.hpro_weight),
            "learning_rate": self.config.learning_rate,
            "num_leaves": self.config.num_leaves,
            "min_data_in_leaf": self.config.min_child_samples,
            "bagging_fraction": self.config.subsample,
            "bagging_freq": 1,
            "feature_fraction": self.config.colsample_bytree,
            "seed": self.config.seed,
            "num_threads": 1,
            "verbose": -1,
        }
        data = lgb.Dataset(inputs, labels, init_score=np.full(len(labels), self.init_score_), categorical_feature=categorical)
        self.model_ = lgb.train(params, data, num_boost_round=self.config.n_estimators)
        return self

    def decision_function(self, table: pd.DataFrame, *, extra: np.ndarray | None = None) -> np.ndarray:
        """The raw boosted score per row (a log-odds); pass ``extra`` exactly when :meth:`fit` had it."""
        inputs = self._predict_inputs(table, extra)
        model = self.model_
        assert isinstance(model, lgb.Booster)
        return np.asarray(model.predict(inputs, raw_score=True)) + self.init_score_

    def predict(self, table: pd.DataFrame, *, extra: np.ndarray | None = None) -> np.ndarray:
        """Probability of conversion per row: σ of :meth:`decision_function` (the pair term may skew calibration)."""
        return expit(self.decision_function(table, extra=extra))


def check_extra(extra: np.ndarray, rows: int, width: int | None) -> np.ndarray:
    """``extra`` as a float ``(rows, k)`` array; ``width``, when given, is the k the model was fitted with."""
    extra = np.asarray(extra, dtype=float)
    if extra.ndim != 2 or extra.shape[0] != rows:
        raise ValueError(f"extra must be a (rows, k) array with one row per table row ({rows}); got shape {extra.shape}.")
    if width is not None and extra.shape[1] != width:
        raise ValueError(f"extra has {extra.shape[1]} columns but the model was fitted with {width}.")
    return extra
