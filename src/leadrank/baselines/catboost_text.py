"""CatBoost on the tabular features with its own categorical encoding and the dialogue as a text feature."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadrank.baselines._columns import check_feature_spec, require_columns
from leadrank.config import TIME_COLUMN, FeatureSpec
from leadrank.data.schema import label_values
from leadrank.encoding import as_bool_float, category_text

#: What a missing category is called for CatBoost (which refuses NaN categories).
MISSING_CATEGORY = "<missing>"


class CatBoostTextBaseline:
    """``fit`` on a training table, ``predict`` conversion probabilities for any table.

    Numeric and yes/no columns go in as floats (missing stays NaN), categorical columns as
    CatBoost categorical features (ordered target statistics; missing is its own category,
    an unseen one is handled by CatBoost), and the dialogue column as a CatBoost text feature
    (its default tokenizer, word and bigram dictionaries, bag-of-words and naive-Bayes
    estimates). The most recent ``validation_fraction`` of the training table by ``as_of``
    is held out for early stopping on log-loss; the model keeps its best iteration.

    Args:
        features: The columns to read; the dialogue column is used when the spec has one.
        label_column: The 0/1 outcome column, read by :meth:`fit` only.
        iterations: Most boosting rounds.
        learning_rate: CatBoost's learning rate.
        depth: Depth of the symmetric trees.
        early_stopping_rounds: Rounds without a better validation log-loss before stopping.
        validation_fraction: Share of the training table, the latest by ``as_of``, held out.
        thread_count: CPU threads.
        seed: CatBoost's random seed.

    Attributes:
        model_: The fitted ``catboost.CatBoostClassifier`` (``model_.best_iteration_`` is where it stopped).
    """

    def __init__(
        self,
        features: FeatureSpec,
        *,
        label_column: str = "label",
        iterations: int = 1000,
        learning_rate: float = 0.05,
        depth: int = 6,
        early_stopping_rounds: int = 100,
        validation_fraction: float = 0.1,
        thread_count: int = 2,
        seed: int = 0,
    ) -> None:
        self.features = features
        self.label_column = label_column
        self.iterations = iterations
        self.learning_rate = learning_rate
        self.depth = depth
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.thread_count = thread_count
        self.seed = seed

    @property
    def name(self) -> str:
        return "CatBoost tabular + text" if self.features.dialogue_column else "CatBoost tabular"

    def fit(self, table: pd.DataFrame) -> CatBoostTextBaseline:
        from catboost import CatBoostClassifier, Pool

        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1); got {self.validation_fraction!r}")
        if not self.features.input_columns:
            raise ValueError("the FeatureSpec lists no features and no dialogue column; CatBoost needs at least one input")
        check_feature_spec(self.features, outcomes=[self.label_column], who=self.name)
        require_columns(table, [*self.features.input_columns, self.label_column, TIME_COLUMN], who=self.name)
        order = np.argsort(table[TIME_COLUMN].to_numpy(), kind="stable")
        held_out = int(round(len(table) * self.validation_fraction))
        if held_out < 1 or held_out == len(table):
            raise ValueError(
                f"{len(table)} training rows leave no room for a validation_fraction of {self.validation_fraction}; "
                "pass a larger table or another validation_fraction."
            )
        labels = label_values(table[self.label_column])
        train_rows, valid_rows = order[:-held_out], order[-held_out:]
        if len(np.unique(labels[train_rows])) < 2:
            raise ValueError(f"{self.name} needs positives and negatives in {self.label_column!r} outside the latest {held_out} rows.")
        inputs = self._inputs(table)
        pool = {"cat_features": self._categorical, "text_features": self._text}
        self.model_ = CatBoostClassifier(
            iterations=self.iterations,
            learning_rate=self.learning_rate,
            depth=self.depth,
            loss_function="Logloss",
            early_stopping_rounds=self.early_stopping_rounds,
            use_best_model=True,
            thread_count=self.thread_count,
            random_seed=self.seed,
            allow_writing_files=False,
            verbose=False,
        )
        self.model_.fit(
            Pool(inputs.iloc[train_rows], labels[train_rows], **pool),
            eval_set=Pool(inputs.iloc[valid_rows], labels[valid_rows], **pool),
        )
        return self

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        """Probability of conversion per row."""
        from catboost import Pool

        if not hasattr(self, "model_"):
            raise ValueError(f"{self.name} is not fitted yet; call fit(train_table) first")
        require_columns(table, self.features.input_columns, who=self.name)
        pool = Pool(self._inputs(table), cat_features=self._categorical, text_features=self._text)
        return self.model_.predict_proba(pool)[:, 1]

    @property
    def _categorical(self) -> list[str]:
        return [f.name for f in self.features.features if f.kind == "categorical"]

    @property
    def _text(self) -> list[str] | None:
        return [self.features.dialogue_column] if self.features.dialogue_column else None

    def _inputs(self, table: pd.DataFrame) -> pd.DataFrame:
        columns: dict[str, object] = {}
        for feature in self.features.features:
            values = table[feature.name]
            if feature.kind == "categorical":
                columns[feature.name] = category_text(values).fillna(MISSING_CATEGORY).to_numpy(dtype=object)
            elif feature.kind == "bool":
                columns[feature.name] = as_bool_float(values)
            else:
                columns[feature.name] = pd.to_numeric(values).astype(float).to_numpy()
        if self.features.dialogue_column:
            columns[self.features.dialogue_column] = table[self.features.dialogue_column].fillna("").astype(str).to_numpy(dtype=object)
        return pd.DataFrame(columns, index=table.index)
