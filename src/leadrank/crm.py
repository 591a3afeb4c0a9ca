"""CRM-ready scores: what a sales team's call list needs besides the probability.

:func:`add_crm_fields` turns a scored batch (``lead_id, probability, rank_score``) into

=================  ==========================================================================
column             meaning
=================  ==========================================================================
``percentile``     where the lead's ``rank_score`` stands among the model's validation leads
                   (the newest part of its training table; :func:`reference_percentile`):
                   0 below the lowest, 100 above the highest; fixed at training, so a lead
                   gets the same percentile alone, in any batch, shard or request
``grade``          A-D by percentile, cut-offs in :class:`CrmConfig`; the defaults give A to
                   the top 10 %, B to the next 20 %, C to the next 30 % and D to the rest
``trend``          the calibrated probability against the lead's previous one:
                   ``improving`` / ``steady`` (within ``trend_tolerance``) / ``declining``,
                   or ``new`` when there is no previous score
``model_version``  the artifact's id (:attr:`leadrank.artifact.Artifact.model_version`)
=================  ==========================================================================

Percentile and grade depend on the lead and the model only, never on what else is scored with
it: the artifact keeps :data:`REFERENCE_POINTS` quantiles of each ranking's validation scores
(``score_reference`` in ``leadrank.json``). Grade order follows rank order. When the leads
scored drift from those the model validated on, the grade shares drift too (the summary says so).

:func:`to_dynamics365` lays the fields out as Dynamics 365 Sales' ``msdyn_predictivescore``
table, the documented way to bring your own scoring model
(https://learn.microsoft.com/dynamics365/sales/populate-predictive-scores): ``msdyn_entityid``
(the lead id), ``msdyn_entitytype`` (``lead``), ``msdyn_score`` (integer 0-100, the calibrated
probability in percent), ``msdyn_grade`` (0-3 = Grade A-D) and ``msdyn_scoretrend``
(0 Improving, 1 Steady, 2 Declining, 3 Not enough info).

Example:
    >>> scores = pd.DataFrame({"lead_id": ["a", "b", "c"], "probability": [0.2, 0.6, 0.1], "rank_score": [0.1, 3.0, -1.0]})
    >>> reference = reference_quantiles(np.linspace(-2.0, 2.0, 101))  # a model's validation scores
    >>> add_crm_fields(scores, "3f2a9c1b7d0e", reference)[["lead_id", "percentile", "grade", "trend"]].values.tolist()
    [['a', 52.4, 'C', 'new'], ['b', 100.0, 'A', 'new'], ['c', 25.0, 'D', 'new']]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from leadrank.config import ID_COLUMN
from leadrank.data.io import write_table
from leadrank.errors import ConfigurationError, DataContractError
from leadrank.settings import CrmConfig

CRM_COLUMNS = [ID_COLUMN, "probability", "rank_score", "percentile", "grade", "trend", "model_version"]
GRADES = ("A", "B", "C", "D")
TRENDS = ("improving", "steady", "declining", "new")
# Dynamics 365 msdyn_predictivescore choice values (msdyn_grade, msdyn_scoretrend).
_D365_GRADE = {"A": 0, "B": 1, "C": 2, "D": 3}
_D365_TREND = {"improving": 0, "steady": 1, "declining": 2, "new": 3}


#: Quantiles kept of each ranking's validation scores: percentiles to a tenth of a point.
REFERENCE_POINTS = 1001


def reference_quantiles(scores: np.ndarray) -> list[float]:
    """:data:`REFERENCE_POINTS` evenly spaced quantiles of ``scores`` (a ranking's validation scores)."""
    return [float(q) for q in np.quantile(np.asarray(scores, dtype=float), np.linspace(0.0, 1.0, REFERENCE_POINTS))]


def reference_percentile(rank_score: pd.Series | np.ndarray, reference: Sequence[float]) -> np.ndarray:
    """Where each score stands in ``reference`` (increasing quantiles), 0 to 100.

    The share of the reference below the score, counting the reference values equal to it
    half, to a tenth of a point: a non-decreasing function of the score, so a higher rank never
    gets a lower percentile.
    """
    quantiles = np.asarray(reference, dtype=float)
    scores = np.asarray(rank_score, dtype=float)
    below = np.searchsorted(quantiles, scores, side="left")
    up_to = np.searchsorted(quantiles, scores, side="right")
    return np.round(100.0 * (below + up_to) / (2 * len(quantiles)), 1)


def grade(percentiles: np.ndarray, config: CrmConfig) -> np.ndarray:
    """A-D from percentiles and the config's cut-offs."""
    p = np.asarray(percentiles, dtype=float)
    conditions = [p >= config.grade_a_min_percentile, p >= config.grade_b_min_percentile, p >= config.grade_c_min_percentile]
    return np.select(conditions, list(GRADES[:3]), default=GRADES[3])


def trend(scores: pd.DataFrame, previous: pd.DataFrame | None, tolerance: float) -> np.ndarray:
    """improving / steady / declining against each lead's previous probability; new without one."""
    if previous is None:
        return np.full(len(scores), "new", dtype=object)
    before = scores[ID_COLUMN].astype(str).map(_previous_probability(previous)).to_numpy(dtype=float)
    change = scores["probability"].to_numpy(dtype=float) - before
    with np.errstate(invalid="ignore"):
        conditions = [np.isnan(before), change > tolerance, change < -tolerance]
    return np.select(conditions, ["new", "improving", "declining"], default="steady").astype(object)


def _previous_probability(previous: pd.DataFrame) -> pd.Series:
    """``probability`` by ``lead_id`` from an earlier scores table, checked.

    An earlier ``--d365`` output is read too: ``msdyn_entityid`` is the lead id and
    ``msdyn_score`` / 100 the probability (to the whole percent it was written with).
    """
    if {"msdyn_entityid", "msdyn_score"} <= set(previous.columns) and ID_COLUMN not in previous.columns:
        score = pd.to_numeric(previous["msdyn_score"], errors="coerce")
        previous = pd.DataFrame({ID_COLUMN: previous["msdyn_entityid"], "probability": score / 100}, index=previous.index)
    missing = [c for c in (ID_COLUMN, "probability") if c not in previous.columns]
    if missing:
        raise ValueError(
            f"previous scores: no column(s) {missing}; pass an earlier output of `leadrank score` "
            f"(columns present: {list(map(str, previous.columns))})."
        )
    ids = previous[ID_COLUMN].astype(str)
    duplicated = ids[ids.duplicated()].unique().tolist()
    if duplicated:
        raise DataContractError(f"previous scores: lead_id {duplicated[:5]} appear more than once; keep one row per lead (the latest).")
    probability = pd.to_numeric(previous["probability"], errors="coerce")
    bad = previous.index[probability.isna() | (probability < 0) | (probability > 1)].tolist()
    if bad:
        raise DataContractError(f"previous scores: rows {bad[:5]} have a probability that is not a number in [0, 1]; fix or drop them.")
    return pd.Series(probability.to_numpy(), index=ids.to_numpy())


def add_grades(scores: pd.DataFrame, model_version: str, reference: Sequence[float], config: CrmConfig | None = None) -> pd.DataFrame:
    """``lead_id, probability, rank_score`` with ``percentile``, ``grade`` and ``model_version``: the fields that
    depend on the lead and the model alone (what ``/score`` returns; a batch adds the trend)."""
    config = config or CrmConfig()
    out = scores[[ID_COLUMN, "probability", "rank_score"]].copy()
    out["percentile"] = reference_percentile(out["rank_score"], reference)
    out["grade"] = grade(out["percentile"].to_numpy(), config)
    out["model_version"] = model_version
    return out


def add_crm_fields(
    scores: pd.DataFrame,
    model_version: str,
    reference: Sequence[float],
    config: CrmConfig | None = None,
    previous: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """``scores`` (one scored batch, in any order) with the CRM columns added, in :data:`CRM_COLUMNS` order.

    Args:
        scores: ``lead_id, probability, rank_score``, as :meth:`leadrank.inference.Scorer.score` returns.
        model_version: The id of the model that scored them.
        reference: The model's quantiles of validation scores of the ranking in use
            (``Artifact.score_reference[rank_by]``, :attr:`leadrank.inference.Scorer.reference`).
        config: Grade cut-offs and trend tolerance; default :class:`CrmConfig()`.
        previous: An earlier scores table (``lead_id``, ``probability``) for the trend.
    """
    config = config or CrmConfig()
    out = add_grades(scores, model_version, reference, config)
    out["trend"] = trend(out, previous, config.trend_tolerance)
    return out[CRM_COLUMNS]


def hot_list(crm: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` best leads by ``rank_score``, best first; ties keep their input order."""
    if n < 1:
        raise ConfigurationError(f"the hot list needs at least one lead; got top={n}.")
    return crm.sort_values("rank_score", ascending=False, kind="stable").head(n).reset_index(drop=True)


def hot_list_location(destination: str | Path, n: int) -> str:
    """Where the hot list of ``destination`` goes: ``scores.csv`` -> ``scores.top50.csv``,
    ``db.duckdb::scores`` -> ``db.duckdb::scores_top50`` (a second table in the same database)."""
    text = str(destination)
    path, _, table = text.partition("::")
    if Path(path).suffix.lower() in (".duckdb", ".db"):
        return f"{path}::{table or 'leads'}_top{n}"
    target = Path(text)
    return str(target.with_name(f"{target.stem}.top{n}{target.suffix}"))


def to_dynamics365(crm: pd.DataFrame) -> pd.DataFrame:
    """The CRM fields as columns of Dynamics 365's ``msdyn_predictivescore`` table (see the module docstring)."""
    return pd.DataFrame(
        {
            "msdyn_entityid": crm[ID_COLUMN].to_numpy(),
            "msdyn_entitytype": "lead",
            "msdyn_score": np.rint(100 * crm["probability"].to_numpy(dtype=float)).astype(int),
            "msdyn_grade": crm["grade"].map(_D365_GRADE).to_numpy(dtype=int),
            "msdyn_scoretrend": crm["trend"].map(_D365_TREND).to_numpy(dtype=int),
        }
    )


@dataclass(frozen=True)
class CrmSummary:
    """What a CRM write produced: leads per grade and per trend, and where the hot list went."""

    grades: dict[str, int]
    trends: dict[str, int]
    hot_list: str | None


@dataclass(frozen=True)
class CrmOutput:
    """How to write a scored batch for a CRM.

    Attributes:
        config: Grade cut-offs and trend tolerance.
        previous: An earlier scores table for the trend (``None``: every lead is ``new``).
        top: Also write the ``top`` best leads, with every CRM column, beside the output
            (:func:`hot_list_location`).
        dynamics365: Write the output in Dynamics 365 ``msdyn_predictivescore`` columns
            (:func:`to_dynamics365`); the hot list keeps the readable columns.
    """

    config: CrmConfig = field(default_factory=CrmConfig)
    previous: pd.DataFrame | None = None
    top: int | None = None
    dynamics365: bool = False

    def __post_init__(self) -> None:
        if self.top is not None and self.top < 1:
            raise ConfigurationError(f"top must be a positive number of leads; got {self.top}.")
        if self.previous is not None:
            _previous_probability(self.previous)  # checked now, not after the model has read every lead

    def write(self, scores: pd.DataFrame, destination: str | Path, model_version: str, reference: Sequence[float]) -> CrmSummary:
        """Add the CRM fields and write the output (and the hot list of the whole batch), each atomically."""
        crm = add_crm_fields(scores, model_version, reference, self.config, self.previous)
        write_table(to_dynamics365(crm) if self.dynamics365 else crm, destination)
        location = None
        if self.top is not None:
            location = hot_list_location(destination, self.top)
            write_table(hot_list(crm, self.top), location)
        return CrmSummary(
            grades={g: int((crm["grade"] == g).sum()) for g in GRADES},
            trends={t: int((crm["trend"] == t).sum()) for t in TRENDS},
            hot_list=location,
        )
