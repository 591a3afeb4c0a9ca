"""Turn FeatureSpec columns into model inputs: floats for numbers and flags, fixed categories.

The vocabulary of each categorical column is learned on the training table only; a value
first seen later becomes missing, which tree models and one-hot encoders both handle.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadrank.config import FeatureSpec
from leadrank.data.schema import bool_value
from leadrank.errors import DataContractError


def as_bool_float(column: pd.Series) -> np.ndarray:
    """1.0 / 0.0 for the contract's spellings of a flag (:func:`~leadrank.data.schema.bool_value`), NaN when missing."""

    def convert(value: object) -> float:
        try:
            flag = bool_value(value)
        except DataContractError:
            raise DataContractError(f"column {column.name!r}: {value!r} is not a yes/no value; run `leadrank validate` first.") from None
        return np.nan if flag is None else float(flag)

    return np.array([convert(v) for v in column], dtype=float)


def category_text(column: pd.Series) -> pd.Series:
    """Categories as text, with whole floats written as integers (a code 1 read as 1.0 stays '1')."""

    def text(value: object) -> object:
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    return column.map(text, na_action="ignore").astype(object)


class TabularEncoder:
    """Encode the FeatureSpec's columns as a DataFrame of floats and pandas categoricals."""

    def __init__(self, features: FeatureSpec) -> None:
        self.features = features

    def fit(self, table: pd.DataFrame) -> TabularEncoder:
        self.categories_ = {
            f.name: sorted(category_text(table[f.name]).dropna().unique()) for f in self.features.features if f.kind == "categorical"
        }
        return self

    def transform(self, table: pd.DataFrame) -> pd.DataFrame:
        columns = {}
        for feature in self.features.features:
            values = table[feature.name]
            if feature.kind == "numeric":
                columns[feature.name] = pd.to_numeric(values).astype(float).to_numpy()
            elif feature.kind == "bool":
                columns[feature.name] = as_bool_float(values)
            else:
                text = category_text(values)
                known = text.where(text.isin(self.categories_[feature.name]))
                columns[feature.name] = pd.Categorical(known, categories=self.categories_[feature.name])
        return pd.DataFrame(columns, index=table.index)


class SideEncoder:
    """The lead's tabular fields as one dense float32 vector: the heads' side input.

    The same encoding the logistic-regression baseline reads: each numeric or yes/no column is
    imputed with its training median and standardised (plus a 0/1 missing-indicator column
    for each one that had gaps in training); each categorical column is one-hot over the
    categories seen in training (unseen or missing: all zeros). It is fitted on the training
    part only and stored as plain JSON (:meth:`to_dict`), so an artifact holds no pickle.

    Example:
        >>> spec = FeatureSpec(features=[{"name": "visits", "kind": "numeric"}, {"name": "city", "kind": "categorical"}])
        >>> table = pd.DataFrame({"visits": [1.0, 3.0, None], "city": ["a", "b", "a"]})
        >>> encoder = SideEncoder(spec).fit(table)
        >>> encoder.column_names
        ['visits', 'visits=missing', 'city=a', 'city=b']
        >>> encoder.transform(table).shape
        (3, 4)
    """

    def __init__(self, features: FeatureSpec) -> None:
        self.features = features

    def fit(self, table: pd.DataFrame) -> SideEncoder:
        self.categories_ = TabularEncoder(self.features).fit(table).categories_
        self.numeric_ = {}
        for feature in self.features.features:
            if feature.kind == "categorical":
                continue
            values = _numbers(table[feature.name], feature.kind)
            present = values[~np.isnan(values)]
            median = float(np.median(present)) if present.size else 0.0
            filled = np.where(np.isnan(values), median, values)
            scale = float(filled.std())
            self.numeric_[feature.name] = {
                "median": median,
                "mean": float(filled.mean()),
                "scale": scale if scale > 0 else 1.0,
                "indicator": bool(np.isnan(values).any()),
            }
        return self

    @property
    def column_names(self) -> list[str]:
        names: list[str] = []
        for feature in self.features.features:
            if feature.kind == "categorical":
                names += [f"{feature.name}={value}" for value in self.categories_[feature.name]]
            else:
                names.append(feature.name)
                if self.numeric_[feature.name]["indicator"]:
                    names.append(f"{feature.name}=missing")
        return names

    @property
    def width(self) -> int:
        return len(self.column_names)

    def transform(self, table: pd.DataFrame) -> np.ndarray:
        """``(rows, width)`` float32, columns in :attr:`column_names` order."""
        blocks: list[np.ndarray] = []
        for feature in self.features.features:
            if feature.kind == "categorical":
                categories = self.categories_[feature.name]
                text = category_text(table[feature.name]).to_numpy()
                blocks.append(
                    np.stack([text == value for value in categories], axis=1).astype(np.float32)
                    if categories
                    else np.zeros((len(table), 0), np.float32)
                )
                continue
            stats = self.numeric_[feature.name]
            values = _numbers(table[feature.name], feature.kind)
            missing = np.isnan(values)
            filled = np.where(missing, stats["median"], values)
            blocks.append(((filled - stats["mean"]) / stats["scale"])[:, None].astype(np.float32))
            if stats["indicator"]:
                blocks.append(missing[:, None].astype(np.float32))
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(table), 0), np.float32)

    def to_dict(self) -> dict:
        """Everything :meth:`transform` needs, as JSON-ready values."""
        return {"categories": self.categories_, "numeric": self.numeric_}

    @classmethod
    def from_dict(cls, features: FeatureSpec, state: dict) -> SideEncoder:
        encoder = cls(features)
        encoder.categories_ = {k: list(v) for k, v in state["categories"].items()}
        encoder.numeric_ = {k: dict(v) for k, v in state["numeric"].items()}
        expected = {f.name for f in features.features}
        found = set(encoder.categories_) | set(encoder.numeric_)
        if found != expected:
            raise ValueError(
                f"the stored side-input encoding covers columns {sorted(found)} but the FeatureSpec lists {sorted(expected)}; "
                f"the artifact's encoding and spec must come from the same training run."
            )
        return encoder


def _numbers(column: pd.Series, kind: str) -> np.ndarray:
    if kind == "bool":
        return as_bool_float(column)
    return pd.to_numeric(column).astype(float).to_numpy()
