"""Turn FeatureSpec columns into model inputs: floats for numbers and flags, fixed categories.

The vocabulary of each categorical column is learned on the training table only; a value
first seen later becomes missing, which tree models and one-hot encoders both handle.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadrank.config import FeatureSpec

_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}


def as_bool_float(column: pd.Series) -> np.ndarray:
    """1.0 / 0.0 for the accepted spellings of a flag (True, 1, 'yes', 'true', ...), NaN when missing."""
    def convert(value: object) -> float:
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            return np.nan
        text = str(value).strip().lower()
        if text in _TRUE or text == "1.0":
            return 1.0
        if text in _FALSE or text == "0.0":
            return 0.0
        raise ValueError(f"column {column.name!r}: {value!r} is not a yes/no value; run `leadrank validate` first.")

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
            f.name: sorted(category_text(table[f.name]).dropna().unique())
            for f in self.features.features
            if f.kind == "categorical"
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
