"""Ranking and calibration metrics for binary lead outcomes.

A sales team calls leads from the top of the list down, so besides AUC we report precision
and recall in the top fraction ``k`` of leads, a lift (gain) table, and, for calibrated
probabilities, the Brier score and expected calibration error. :func:`bootstrap_intervals`
and :func:`bootstrap_difference` give stratified bootstrap intervals over the test leads.

Conventions shared by every function:

* ``y_true`` holds 0/1 outcomes (1 = bought); ``scores`` are floats, higher = more likely
  to buy. Both are 1-D and of equal length; scores must be finite.
* ``k`` is a *fraction* of leads, ``0 < k <= 1`` (0.01 = top 1 %). The top set holds
  ``max(1, ceil(k * n))`` leads, so it is never empty.
* Ties are broken deterministically: leads are sorted by score, descending, with a stable
  sort, so among equal scores the earlier row (original order) ranks higher.

Example:
    >>> y = [1, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    >>> s = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]
    >>> precision_at(y, s, 0.2), recall_at(y, s, 0.3)
    (0.5, 1.0)
    >>> ranking_report(y, s, ks=(0.1,))["p@10%"]
    1.0
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

__all__ = [
    "auc",
    "bootstrap_difference",
    "bootstrap_intervals",
    "brier",
    "ece",
    "k_label",
    "lift_table",
    "pr_auc",
    "precision_at",
    "ranking_report",
    "recall_at",
]

DEFAULT_KS: tuple[float, ...] = (0.001, 0.01, 0.05)


# --- validation -----------------------------------------------------------------------------


def _validate(y_true: ArrayLike, scores: ArrayLike, *, name: str = "scores", probabilities: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Check inputs once at the boundary; return ``(y, s)`` as int and float 1-D arrays.

    ``name`` is the argument name used in messages. With ``probabilities=True`` the values
    must also lie in [0, 1].
    """
    y = np.asarray(y_true)
    if y.dtype.kind not in "biuf":
        raise ValueError(f"y_true must hold 0/1 numbers; got dtype {y.dtype}. Encode outcomes as 0 (no) / 1 (bought).")
    try:
        s = np.asarray(scores, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers; could not convert {type(scores).__name__} to float.") from None
    for label, arr in (("y_true", y), (name, s)):
        if arr.ndim != 1:
            raise ValueError(f"{label} must be 1-D; got shape {arr.shape}. Flatten it, e.g. with np.ravel({label}).")
    if len(y) != len(s):
        raise ValueError(f"y_true and {name} must have the same length; got {len(y)} and {len(s)}.")
    if len(y) == 0:
        raise ValueError(f"Need at least one lead; got empty y_true and {name}.")
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        examples = np.unique(y[bad])[:5].tolist()
        raise ValueError(f"y_true must hold only 0 and 1; got other values {examples}. Encode outcomes as 0/1.")
    if not np.isfinite(s).all():
        count = int((~np.isfinite(s)).sum())
        raise ValueError(f"{name} must be finite; got {count} NaN/inf value(s). Impute or drop those leads first.")
    if probabilities and ((s < 0).any() or (s > 1).any()):
        raise ValueError(
            f"{name} must lie in [0, 1]; got range [{s.min():g}, {s.max():g}]. " "Pass calibrated probabilities, not raw scores."
        )
    return y.astype(np.int64), s


def _check_k(k: float) -> float:
    """Return ``k`` as a float in (0, 1], or raise naming it and the allowed range."""
    if isinstance(k, bool) or not isinstance(k, (int, float, np.integer, np.floating)) or not 0 < k <= 1:
        raise ValueError(f"k must be a fraction of leads in (0, 1], e.g. 0.01 for the top 1 %; got k={k!r}.")
    return float(k)


def _check_bins(n_bins: int, n: int) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; got n_bins={n_bins!r}.")
    if n_bins > n:
        raise ValueError(f"n_bins={n_bins} is more than the {n} leads; use n_bins <= {n} so no bin is empty.")


def _class_summary(y: np.ndarray) -> str:
    return f"y_true has only {int(y[0])}s (n={len(y)})"


def _require_positive(y: np.ndarray, what: str) -> None:
    if not y.any():
        raise ValueError(f"{what} needs at least one positive; {_class_summary(y)}. Evaluate on a larger or later slice.")


# --- ranking --------------------------------------------------------------------------------


def _rank_order(s: np.ndarray) -> np.ndarray:
    """Row indices from highest to lowest score; ties keep original row order (stable sort)."""
    return np.argsort(-s, kind="stable")


def top_count(k: float, n: int) -> int:
    """Size of the top-``k`` set: ``max(1, ceil(k * n))``.

    ``k * n`` is rounded to 9 decimals before ``ceil`` so float noise does not add a lead
    (``0.07 * 100`` is ``7.000000000000001`` and must give 7, not 8).
    """
    return max(1, math.ceil(round(k * n, 9)))


def _top_labels(y_true: ArrayLike, scores: ArrayLike, k: float) -> tuple[np.ndarray, np.ndarray]:
    """Validated labels of all leads and of the top-``k`` leads, in rank order."""
    k = _check_k(k)
    y, s = _validate(y_true, scores)
    return y, y[_rank_order(s)[: top_count(k, len(y))]]


def auc(y_true: ArrayLike, scores: ArrayLike) -> float:
    """ROC AUC (scikit-learn ``roc_auc_score``); needs both classes in ``y_true``."""
    y, s = _validate(y_true, scores)
    if y.min() == y.max():
        raise ValueError(f"AUC needs both classes; {_class_summary(y)}. Evaluate on a larger or later slice.")
    return float(roc_auc_score(y, s))


def pr_auc(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Area under the precision-recall curve as average precision (scikit-learn)."""
    y, s = _validate(y_true, scores)
    _require_positive(y, "PR AUC")
    return float(average_precision_score(y, s))


def precision_at(y_true: ArrayLike, scores: ArrayLike, k: float) -> float:
    """Share of buyers among the top ``max(1, ceil(k * n))`` leads by score."""
    _, top = _top_labels(y_true, scores, k)
    return float(top.mean())


def recall_at(y_true: ArrayLike, scores: ArrayLike, k: float) -> float:
    """Share of all buyers found in the top ``max(1, ceil(k * n))`` leads by score."""
    y, top = _top_labels(y_true, scores, k)
    _require_positive(y, "recall_at")
    return float(top.sum() / y.sum())


def lift_table(y_true: ArrayLike, scores: ArrayLike, n_bins: int = 10) -> pd.DataFrame:
    """Gain/lift table over ``n_bins`` near-equal groups from highest score to lowest.

    Groups come from ``np.array_split`` of the rank order (ties by original row order), so
    sizes differ by at most one and the larger groups come first.

    Returns:
        One row per group with columns ``bin`` (1 = top), ``leads``, ``positives``,
        ``rate`` (positives / leads), ``lift`` (rate / overall rate),
        ``cumulative_positives`` and ``cumulative_recall`` (gain; the last row is 1.0).
    """
    y, s = _validate(y_true, scores)
    _check_bins(n_bins, len(y))
    _require_positive(y, "lift_table")
    groups = np.array_split(y[_rank_order(s)], n_bins)
    leads = np.array([len(g) for g in groups])
    positives = np.array([int(g.sum()) for g in groups])
    rate = positives / leads
    cumulative = np.cumsum(positives)
    return pd.DataFrame(
        {
            "bin": np.arange(1, n_bins + 1),
            "leads": leads,
            "positives": positives,
            "rate": rate,
            "lift": rate / y.mean(),
            "cumulative_positives": cumulative,
            "cumulative_recall": cumulative / y.sum(),
        }
    )


# --- calibration ----------------------------------------------------------------------------


def brier(y_true: ArrayLike, probabilities: ArrayLike) -> float:
    """Mean squared error between probabilities and outcomes (scikit-learn ``brier_score_loss``)."""
    y, p = _validate(y_true, probabilities, name="probabilities", probabilities=True)
    return float(brier_score_loss(y, p))


def ece(y_true: ArrayLike, probabilities: ArrayLike, n_bins: int = 10) -> float:
    """Expected calibration error over equal-mass bins.

    Leads are sorted by probability (stable) and split with ``np.array_split`` into
    ``n_bins`` groups of near-equal size; ECE is the sum over groups of
    ``(group size / n) * |mean probability - mean outcome|``.
    """
    y, p = _validate(y_true, probabilities, name="probabilities", probabilities=True)
    _check_bins(n_bins, len(y))
    order = np.argsort(p, kind="stable")
    total = sum(len(idx) * abs(p[idx].mean() - y[idx].mean()) for idx in np.array_split(order, n_bins))
    return float(total / len(y))


# --- bootstrap intervals --------------------------------------------------------------------
#
# A resample is a column of counts: ``counts[i, b]`` is how often test lead ``i`` is drawn in
# resample ``b``. Metrics are computed from the counts (each drawn copy of a lead is one lead),
# which is exact and avoids sorting every resampled score list; each model's sort order is
# computed once.

BOOTSTRAP_METRICS = ("auc", "p@1%", "p@5%")
_BOOTSTRAP_CHUNK = 100  # resamples per counts matrix: 18,000 leads x 100 is ~14 MB
_PRECISION_NAME = re.compile(r"p@(\d+(?:\.\d+)?)%")

_Sampler = Callable[[np.ndarray], np.ndarray]  # counts (leads x resamples) -> one value per resample


def _auc_sampler(y: np.ndarray, s: np.ndarray) -> _Sampler:
    """AUC of each resample; tied scores count one half, as in :func:`auc`."""
    negatives = np.flatnonzero(y == 0)
    negatives = negatives[np.argsort(s[negatives], kind="stable")]
    positives = np.flatnonzero(y == 1)
    below = np.searchsorted(s[negatives], s[positives], side="left")  # negatives scored below each positive
    not_above = np.searchsorted(s[negatives], s[positives], side="right")

    def sample(counts: np.ndarray) -> np.ndarray:
        drawn = np.zeros((len(negatives) + 1, counts.shape[1]), dtype=np.int64)
        np.cumsum(counts[negatives], axis=0, out=drawn[1:])  # drawn[j]: copies of the j lowest negatives
        positive_counts = counts[positives]
        wins = (positive_counts * (drawn[below] + drawn[not_above])).sum(axis=0) / 2
        return wins / (positive_counts.sum(axis=0) * drawn[-1])

    return sample


def _precision_sampler(y: np.ndarray, s: np.ndarray, k: float) -> _Sampler:
    """precision@k of each resample, with the tie order of :func:`precision_at` (earlier row first)."""
    order = _rank_order(s)
    top = top_count(k, len(y))  # stratified resamples keep all n leads

    def sample(counts: np.ndarray) -> np.ndarray:
        # Only the best-ranked leads can enter a top set: look at the first 2 * top ranks, and at
        # more only when some resample drew too few copies of those to fill its top set.
        ranked = order[: 2 * top]
        drawn = np.cumsum(counts[ranked], axis=0)
        while drawn[-1].min() < top:
            ranked = order[: 2 * len(ranked)]
            drawn = np.cumsum(counts[ranked], axis=0)
        hits = np.cumsum(counts[ranked] * y[ranked, None], axis=0)
        columns = np.arange(counts.shape[1])
        last = (drawn < top).sum(axis=0)  # rank position of the lead whose copies complete the top set
        surplus = drawn[last, columns] - top  # its copies that fall outside the top set
        return (hits[last, columns] - surplus * y[ranked][last]) / top

    return sample


def _sampler(metric: str, y: np.ndarray, s: np.ndarray) -> _Sampler:
    """The sampler for a metric name: ``"auc"`` or ``"p@<percent>%"`` (e.g. ``"p@1%"``)."""
    if metric == "auc":
        return _auc_sampler(y, s)
    match = _PRECISION_NAME.fullmatch(metric)
    if match is None:
        raise ValueError(f"Unknown bootstrap metric {metric!r}; use 'auc' or 'p@<percent>%', e.g. 'p@1%'.")
    return _precision_sampler(y, s, _check_k(float(match.group(1)) / 100))


def _stratified_counts(y: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` resamples as counts: positives drawn from positives, negatives from negatives, each class keeping its size."""
    counts = np.zeros((len(y), size), dtype=np.int64)
    for label in (0, 1):
        members = np.flatnonzero(y == label)
        drawn = rng.integers(0, len(members), size=(len(members), size))  # member drawn, per draw and resample
        cells = (drawn * size + np.arange(size)).ravel()  # flat index of (member, resample)
        counts[members] = np.bincount(cells, minlength=len(members) * size).reshape(len(members), size)
    return counts


def _check_bootstrap(y: np.ndarray, n_boot: int, level: float) -> None:
    if y.min() == y.max():
        raise ValueError(f"Bootstrap intervals need both classes; {_class_summary(y)}. Evaluate on a larger or later slice.")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, e.g. 1000; got n_boot={n_boot!r}.")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), e.g. 0.95 for a 95 % interval; got level={level!r}.")


def _bootstrap(
    y_true: ArrayLike, scores_by_model: Mapping[str, ArrayLike], metrics: Sequence[str], n_boot: int, level: float, seed: int
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, np.ndarray]]]:
    """Point estimates and ``n_boot`` resampled values per model and metric, all on the same resamples."""
    if not scores_by_model:
        raise ValueError("scores_by_model is empty; pass at least one model's scores, e.g. {'hpro': scores}.")
    validated = {model: _validate(y_true, s, name=f"scores of {model!r}") for model, s in scores_by_model.items()}
    y = next(iter(validated.values()))[0]
    _check_bootstrap(y, n_boot, level)
    samplers = {model: {metric: _sampler(metric, y, s) for metric in metrics} for model, (_, s) in validated.items()}
    everyone = np.ones((len(y), 1), dtype=np.int64)
    points = {model: {metric: float(f(everyone)[0]) for metric, f in fs.items()} for model, fs in samplers.items()}
    samples = {model: {metric: np.empty(n_boot) for metric in metrics} for model in samplers}
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, _BOOTSTRAP_CHUNK):
        counts = _stratified_counts(y, min(_BOOTSTRAP_CHUNK, n_boot - start), rng)
        for model, fs in samplers.items():
            for metric, f in fs.items():
                samples[model][metric][start : start + counts.shape[1]] = f(counts)
    return points, samples


def _interval(point: float, samples: np.ndarray, level: float) -> tuple[float, float, float]:
    low, high = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return point, float(low), float(high)


def bootstrap_intervals(
    y_true: ArrayLike,
    scores_by_model: Mapping[str, ArrayLike],
    metrics: Sequence[str] = BOOTSTRAP_METRICS,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Percentile bootstrap intervals over the test leads: ``{model: {metric: (point, low, high)}}``.

    ``metrics`` are ``"auc"`` and ``"p@<percent>%"`` (``"p@1%"`` = :func:`precision_at` with
    k=0.01). The point estimate is the metric on all leads; ``low``/``high`` are the
    ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles over ``n_boot`` resamples.

    Resampling is stratified: positives are drawn with replacement from the positives and
    negatives from the negatives, so every resample keeps the class sizes (and AUC is always
    defined). Every model and metric is evaluated on the same resamples, which depend only
    on ``y_true`` and ``seed`` -- adding a model does not change another model's interval.

    Example:
        >>> y = [0, 1] * 50
        >>> bootstrap_intervals(y, {"perfect": y}, ["auc"], n_boot=100)
        {'perfect': {'auc': (1.0, 1.0, 1.0)}}
    """
    points, samples = _bootstrap(y_true, scores_by_model, metrics, n_boot, level, seed)
    return {
        model: {name: _interval(points[model][name], values, level) for name, values in by_metric.items()}
        for model, by_metric in samples.items()
    }


def bootstrap_difference(
    y_true: ArrayLike,
    a: ArrayLike,
    b: ArrayLike,
    metric: str = "auc",
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Paired bootstrap interval of ``metric(a) - metric(b)``: ``(difference, low, high)``.

    Both models are scored on the same stratified resamples (see :func:`bootstrap_intervals`),
    so the interval reflects their difference on shared leads, e.g. "HPRO minus BCE-only";
    an interval excluding 0 means the difference holds up under resampling of the test leads.
    """
    points, samples = _bootstrap(y_true, {"a": a, "b": b}, [metric], n_boot, level, seed)
    difference = points["a"][metric] - points["b"][metric]
    return _interval(difference, samples["a"][metric] - samples["b"][metric], level)


# --- report ---------------------------------------------------------------------------------


def k_label(k: float) -> str:
    """Format a fraction as a percentage without trailing zeros: 0.001 -> '0.1%', 0.05 -> '5%'."""
    text = f"{round(_check_k(k) * 100, 10):.10f}".rstrip("0").rstrip(".")
    return f"{text}%"


def ranking_report(
    y_true: ArrayLike,
    scores: ArrayLike,
    probabilities: ArrayLike | None = None,
    ks: Sequence[float] = DEFAULT_KS,
) -> dict[str, float]:
    """All ranking metrics (and calibration metrics when ``probabilities`` is given) in one flat dict.

    Keys:
        ``n``: number of leads; ``positives``: number of buyers;
        ``auc``, ``pr_auc``: see :func:`auc`, :func:`pr_auc`;
        ``p@<k>``, ``r@<k>``: :func:`precision_at` / :func:`recall_at` for each k in ``ks``,
        labelled with :func:`k_label` (e.g. ``p@1%``);
        ``brier``, ``ece``: only when ``probabilities`` is given.
    """
    labels = [k_label(k) for k in ks]
    if len(set(labels)) != len(labels):
        raise ValueError(f"ks must give distinct percentages; got ks={tuple(ks)!r} -> {labels}.")
    y, s = _validate(y_true, scores)
    report: dict[str, float] = {"n": len(y), "positives": int(y.sum()), "auc": auc(y, s), "pr_auc": pr_auc(y, s)}
    report.update({f"p@{label}": precision_at(y, s, k) for k, label in zip(ks, labels)})
    report.update({f"r@{label}": recall_at(y, s, k) for k, label in zip(ks, labels)})
    if probabilities is not None:
        report["brier"] = brier(y, probabilities)
        report["ece"] = ece(y, probabilities)
    return report


#: Precision at the top 0.1 % is reported only where that top set holds at least this many leads.
MIN_LEADS_FOR_PRECISION = 20


def score_row(name: str, labels: np.ndarray, scores: np.ndarray) -> dict[str, object]:
    """One results row: AUC, PR-AUC, P@0.1 % (only when its top set holds enough leads), P@1 %, P@5 %, R@5 %."""
    report = ranking_report(labels, scores)
    row: dict[str, object] = {"model": name, "auc": report["auc"], "pr_auc": report["pr_auc"]}
    enough = top_count(0.001, len(labels)) >= MIN_LEADS_FOR_PRECISION
    row["p@0.1%"] = precision_at(labels, scores, 0.001) if enough else np.nan
    for k in (0.01, 0.05):
        row[f"p@{k_label(k)}"] = precision_at(labels, scores, k)
    row["r@5%"] = report["r@5%"]
    return row
