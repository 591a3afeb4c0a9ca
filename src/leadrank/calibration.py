"""Probability calibration of the pointwise head: fitted on the validation slice, stored as JSON numbers.

The method follows the amount of data (:func:`fit_calibration`); every method is
non-decreasing in the logit, so calibration never reorders leads.
"""

from __future__ import annotations

import math
from typing import Literal, Self

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, model_validator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from leadrank.metrics import brier, ece

# Calibration method by the size of the validation slice (see fit_calibration).
PLATT_MIN_PER_CLASS = 5
ISOTONIC_MIN_LEADS = 1000
ISOTONIC_MIN_PER_CLASS = 100


class Calibration(BaseModel):
    """Maps the pointwise head's logit to a calibrated probability; stored as plain JSON numbers.

    * ``identity``: ``sigmoid(logit)``, the head as trained (also what old model directories get).
    * ``platt``: ``sigmoid(a * logit + b)`` with ``a > 0``.
    * ``isotonic``: linear interpolation through the thresholds ``(x, y)`` (logits, probabilities),
      constant beyond the first and last threshold; ``x`` and ``y`` never decrease.

    Every method is non-decreasing in the logit, so calibration never reorders leads (isotonic
    may tie neighbours).

    Example:
        >>> Calibration(method="platt", a=0.5, b=-2.0).apply([0.0, 4.0]).round(3).tolist()
        [0.119, 0.5]
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["identity", "platt", "isotonic"] = "identity"
    a: float = 1.0
    b: float = 0.0
    x: list[float] = []
    y: list[float] = []

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not all(math.isfinite(value) for value in (self.a, self.b, *self.x, *self.y)):
            raise ValueError("calibration: a, b, x and y must be finite numbers; the validation slice gave degenerate scores. Retrain.")
        if self.method == "platt" and not self.a > 0:
            raise ValueError(
                f"calibration: Platt slope a must be > 0 so the ranking is kept; got a={self.a}. Refit or use method 'identity'."
            )
        if self.method == "isotonic":
            x, y = np.asarray(self.x, dtype=float), np.asarray(self.y, dtype=float)
            if len(x) == 0 or len(x) != len(y):
                raise ValueError(f"calibration: isotonic needs x and y of equal, non-zero length; got {len(x)} and {len(y)}.")
            if (np.diff(x) < 0).any() or (np.diff(y) < 0).any() or y.min() < 0 or y.max() > 1:
                raise ValueError("calibration: isotonic thresholds must be sorted (x and y non-decreasing) with y in [0, 1]. Refit it.")
        return self

    def apply(self, logits: ArrayLike) -> np.ndarray:
        """Calibrated probabilities for pointwise logits."""
        z = np.asarray(logits, dtype=float)
        if self.method == "isotonic":
            return np.interp(z, self.x, self.y)
        if self.method == "platt":
            z = self.a * z + self.b
        return 1.0 / (1.0 + np.exp(-z))


def fit_calibration(labels: ArrayLike, logits: ArrayLike) -> Calibration:
    """Fit a calibration on the validation slice; the method follows the amount of data.

    * isotonic (scikit-learn ``IsotonicRegression``): at least ``ISOTONIC_MIN_LEADS`` (1,000)
      leads with at least ``ISOTONIC_MIN_PER_CLASS`` (100) of each class. Below that an
      isotonic fit overfits (scikit-learn's calibration guide gives the same 1,000 rule).
    * Platt (scikit-learn ``LogisticRegression`` on the logit, L2 with ``C=1``, which pulls the
      slope towards 0 on small slices): at least ``PLATT_MIN_PER_CLASS`` (5) of each class.
    * identity otherwise, and when the Platt slope comes out <= 0 (a model that ranks the
      validation slice backwards must not be turned around by its calibration).
    """
    y = np.asarray(labels, dtype=int)
    z = np.asarray(logits, dtype=float)
    smaller_class = min(int(y.sum()), int(len(y) - y.sum()))
    if len(y) >= ISOTONIC_MIN_LEADS and smaller_class >= ISOTONIC_MIN_PER_CLASS:
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(z, y)
        return Calibration(method="isotonic", x=iso.X_thresholds_.tolist(), y=iso.y_thresholds_.tolist())
    if smaller_class >= PLATT_MIN_PER_CLASS:
        platt = LogisticRegression(C=1.0).fit(z.reshape(-1, 1), y)
        a, b = float(platt.coef_[0, 0]), float(platt.intercept_[0])
        if a > 0:
            return Calibration(method="platt", a=a, b=b)
    return Calibration()


def calibration_metrics(labels: np.ndarray, point: np.ndarray, calibration: Calibration) -> dict[str, float]:
    """Brier and ECE of the raw head (``sigmoid``) and of ``calibration`` on the same leads."""
    raw, calibrated, n_bins = Calibration().apply(point), calibration.apply(point), min(10, len(labels))
    return {
        "val_brier_raw": brier(labels, raw),
        "val_brier_calibrated": brier(labels, calibrated),
        "val_ece_raw": ece(labels, raw, n_bins),
        "val_ece_calibrated": ece(labels, calibrated, n_bins),
    }
