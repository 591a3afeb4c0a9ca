"""A model registry: numbered model directories, a pointer to the current one, and the retrain gate.

    REGISTRY/
      registry.json     which version is current, the versions current before it (what a
                        rollback returns to), each version's publication record, a history log
      versions/v0001/   a leadrank model directory (see :mod:`leadrank.artifact`)
      versions/v0002/   ...

The pointer is a small JSON file replaced in one ``os.replace``, not a symlink: a rename
over a file is atomic on POSIX and on Windows, while symlinks need extra privileges on
Windows and swapping one atomically takes a temporary link and a rename that not every
filesystem offers. The file also keeps what a rollback needs and an audit log.

Every change is crash-safe. A version is copied under a temporary name and renamed into
``versions/`` before ``registry.json`` names it, and ``registry.json`` is replaced whole.
A crash therefore leaves the old state or the new one; at worst an unnamed folder in
``versions/`` that is never listed and whose number is never reused. Readers may run at
any time; write from one process at a time (retrains run one after another).

:func:`retrain` is the gate in front of :func:`publish`: it trains a candidate on the newest
data, holding the most recent slice out, and publishes it only if it ranks that slice about
as well as the current model or better. It refuses a slice with too few positives or
negatives (:data:`COMPARISON_SHARE` of the training minimums), on which the two AUCs would
differ by chance.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from leadrank import artifact as artifacts
from leadrank._files import staging_dir, write_text_atomic
from leadrank.config import TIME_COLUMN, FeatureSpec, FunnelSpec
from leadrank.data.minimums import TooFewLeadsError, check_minimums
from leadrank.data.schema import label_values, validate
from leadrank.data.split import time_split
from leadrank.errors import EnvironmentProblem
from leadrank.inference import Scorer
from leadrank.metrics import auc, precision_at
from leadrank.settings import RunConfig, ScoreConfig
from leadrank.training import train

__all__ = [
    "COMPARISON_SHARE",
    "RegistryError",
    "RetrainOutcome",
    "Version",
    "comparison_minimums",
    "current",
    "publish",
    "retrain",
    "rollback",
    "versions",
]

STATE_FILE = "registry.json"
VERSIONS_DIR = "versions"
FORMAT_VERSION = 1
TOP_SHARE = 0.05  # P@5 %, shown beside the AUC
#: The comparison slice must hold this share of the training minimums (``min_train_positives``
#: / ``min_train_negatives`` of the run's TrainConfig), rounded up, of each class: 30 of each
#: with the defaults (100). Comparing two AUCs needs fewer leads than training a model, but
#: with a handful of positives the AUC moves by several points when one lead changes rank, so
#: the gate would publish or keep a model by chance. Lowering the training minimums for an
#: experiment (the `train:` section of --config) lowers these too.
COMPARISON_SHARE = 0.3
_VERSION_NAME = re.compile(r"^v(\d+)$")


class RegistryError(EnvironmentProblem, ValueError):
    """A registry that cannot do what was asked; the message says why and what to do."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")

    published_at: str
    metrics: dict[str, float] = Field(default_factory=dict)


class _State(BaseModel):
    """The contents of ``registry.json``."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    current: str | None = None
    previous: list[str] = Field(default_factory=list, description="Versions current before `current`, oldest first.")
    versions: dict[str, _Record] = Field(default_factory=dict)
    history: list[dict[str, str]] = Field(default_factory=list)


@dataclass(frozen=True)
class Version:
    """One published model."""

    id: str
    path: Path
    published_at: str
    metrics: dict[str, float]
    is_current: bool


# --------------------------------------------------------------------------- the registry


def publish(registry: str | Path, model_dir: str | Path, *, metrics: Mapping[str, float] | None = None) -> str:
    """Copy a model directory into the registry as a new version and make it current.

    Args:
        registry: The registry folder (created when missing).
        model_dir: A model directory from ``leadrank train`` (it is copied, not moved).
        metrics: Numbers to keep with the version, e.g. the retrain gate's AUC.

    Returns:
        The new version's id, e.g. ``'v0003'``.

    Raises:
        leadrank.artifact.ArtifactError: ``model_dir`` is not a model directory.
    """
    root = Path(registry)
    artifacts.read_manifest(model_dir)
    state = _read_state(root)
    folder = root / VERSIONS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    version = f"v{_next_number(state, folder):04d}"
    staging = staging_dir(f".{version}.", folder)
    try:
        shutil.copytree(model_dir, staging, dirs_exist_ok=True)
        staging.rename(folder / version)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    now = _now()
    if state.current is not None:
        state.previous.append(state.current)
    state.current = version
    state.versions[version] = _Record(published_at=now, metrics=dict(metrics or {}))
    state.history.append({"at": now, "action": "publish", "version": version})
    _write_state(root, state)
    return version


def current(registry: str | Path) -> Path:
    """The model directory of the current version.

    Raises:
        RegistryError: The registry has no version yet, or the current version's folder is gone.
    """
    root = Path(registry)
    state = _read_state(root)
    if state.current is None:
        raise RegistryError(
            f"The registry {root} is empty: no model has been published. " f"Publish the first with `leadrank retrain {root} DATA`."
        )
    return _existing_version(root, state.current)


def model_folder(path: str | Path) -> Path:
    """``path`` itself when it is a model folder; the current version's folder when it is a registry.

    ``leadrank score``, ``evaluate``, ``explain``, ``serve`` and :func:`leadrank.load` accept either,
    so a job pointed at the registry follows ``publish`` and ``rollback`` on its next run.
    """
    root = Path(path)
    return current(root) if (root / STATE_FILE).exists() else root


def versions(registry: str | Path) -> list[Version]:
    """Every published version, oldest first; an empty list for an empty or missing registry."""
    root = Path(registry)
    state = _read_state(root)
    return [
        Version(id=v, path=root / VERSIONS_DIR / v, published_at=r.published_at, metrics=r.metrics, is_current=v == state.current)
        for v, r in sorted(state.versions.items(), key=lambda item: _number(item[0]))
    ]


def rollback(registry: str | Path, to: str | None = None) -> str:
    """Make an earlier version current again; returns its id.

    Without ``to``, go back to the version that was current before this one; rolling back
    again goes further back (a rolled-back version is not returned to by default). With
    ``to``, make that version current; a later plain rollback returns from it.

    Raises:
        RegistryError: Empty registry, nothing earlier to return to, unknown version, or
            ``to`` is already current.
    """
    root = Path(registry)
    state = _read_state(root)
    if state.current is None:
        raise RegistryError(f"The registry {root} is empty: there is nothing to roll back.")
    was = state.current
    if to is None:
        if not state.previous:
            raise RegistryError(
                f"{was} is the first version made current in {root}; there is no earlier one to roll back to. "
                f"Use --to VERSION to pick one of {sorted(state.versions, key=_number)}."
            )
        target = state.previous.pop()
    else:
        if to not in state.versions:
            raise RegistryError(f"Unknown version {to!r} in {root}; it holds {sorted(state.versions, key=_number)}.")
        if to == was:
            raise RegistryError(f"{to} is already the current version of {root}; nothing to roll back.")
        state.previous.append(was)
        target = to
    _existing_version(root, target)
    state.current = target
    state.history.append({"at": _now(), "action": "rollback", "version": target, "from": was})
    _write_state(root, state)
    return target


def _read_state(root: Path) -> _State:
    path = root / STATE_FILE
    if not path.exists():
        return _State()
    try:
        state = _State.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        raise RegistryError(f"{path} is not a valid registry file ({exc.error_count()} problem(s)):\n{exc}") from None
    if state.format_version != FORMAT_VERSION:
        raise RegistryError(f"{path} has format version {state.format_version}; this leadrank reads version {FORMAT_VERSION}.")
    return state


def _write_state(root: Path, state: _State) -> None:
    write_text_atomic(root / STATE_FILE, state.model_dump_json(indent=2) + "\n")


def _existing_version(root: Path, version: str) -> Path:
    path = root / VERSIONS_DIR / version
    if not (path / artifacts.MANIFEST).is_file():
        raise RegistryError(
            f"{root / STATE_FILE} names version {version}, but {path} is missing or not a model directory. "
            f"Restore the folder, or roll back to another version with `leadrank rollback {root} --to VERSION`."
        )
    return path


def _next_number(state: _State, folder: Path) -> int:
    """One more than any version named in the state or present on disk (a crash's leftovers included)."""
    on_disk = [path.name for path in folder.iterdir() if _VERSION_NAME.match(path.name)]
    return max([_number(v) for v in [*state.versions, *on_disk]], default=0) + 1


def _number(version: str) -> int:
    match = _VERSION_NAME.match(version)
    return int(match.group(1)) if match else -1


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- the retrain gate


@dataclass(frozen=True)
class RetrainOutcome:
    """What a retrain did: both models' metrics on the comparison slice and the decision."""

    candidate: dict[str, float]  # auc, p@5% of the rank score on the comparison slice
    current: dict[str, float] | None  # None: the registry was empty
    current_version: str | None
    published: str | None  # the new version, or None when the current model was kept
    tolerance: float
    train_rows: int
    comparison_rows: int
    comparison_positives: int
    cutoff: pd.Timestamp

    @property
    def decision(self) -> str:
        """One sentence saying what happened and why."""
        cand = self.candidate["auc"]
        if self.current is None:
            return f"Published {self.published}: the registry was empty (candidate AUC {cand:.4f})."
        bar = f"current {self.current_version} AUC {self.current['auc']:.4f} - tolerance {self.tolerance:g}"
        if self.published:
            return f"Published {self.published}: candidate AUC {cand:.4f} >= {bar}."
        return f"Kept {self.current_version}: candidate AUC {cand:.4f} < {bar}. The candidate was discarded."


def retrain(
    registry: str | Path,
    table: pd.DataFrame,
    features: FeatureSpec,
    funnel: FunnelSpec,
    run: RunConfig,
    *,
    window_days: int | None = None,
    holdout: float = 0.15,
    tolerance: float = 0.005,
    segment_column: str | None = None,
) -> RetrainOutcome:
    """Train a candidate on the newest data and publish it unless it ranks worse than the current model.

    The newest ``window_days`` of ``table`` (all of it when None) is split in time: the
    latest ``holdout`` share is the comparison slice, the rest trains the candidate (which
    holds out its own latest part to stop early). Both models score the comparison slice;
    the candidate is published when its AUC >= the current AUC - ``tolerance``, or when the
    registry is empty.

    Args:
        registry: The registry folder.
        table: Labelled leads.
        features, funnel: The candidate's specs.
        run: A :class:`leadrank.training.RunConfig` (model and training settings).
        window_days: Keep leads whose ``as_of`` is within this many days of the newest.
        holdout: Share of the window, the most recent, kept out of training to compare on.
        tolerance: How much AUC the candidate may lose and still be published.
        segment_column: When given, every segment of the training part must meet the
            training minimums (``run.train.min_train_positives`` / ``min_train_negatives``).

    Raises:
        leadrank.data.schema.LeadDataError: The table breaks the data contract.
        leadrank.data.minimums.TooFewLeadsError: Too few positives or negatives to train, or
            too few in the comparison slice to compare on (see :func:`comparison_minimums`).
        ValueError: A bad window, tolerance or holdout, or a comparison slice with one class.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 (AUC the candidate may lose); got {tolerance}.")
    validate(table, features, funnel)
    parts = time_split(_newest(table, window_days), holdout)
    labels = label_values(parts.test[funnel.label_column])
    if labels.min() == labels.max():
        raise ValueError(
            f"The comparison slice (the newest {holdout:.0%} of the window, {len(labels)} leads from {parts.cutoff}) "
            f"holds only {'positives' if labels[0] else 'negatives'}; AUC needs both. "
            f"Widen the window (--window-days) or raise the holdout share (--holdout)."
        )
    check_minimums(
        parts.train,
        funnel.label_column,
        min_positives=run.train.min_train_positives,
        min_negatives=run.train.min_train_negatives,
        segment_column=segment_column,
    )
    _check_comparison_slice(parts.test, funnel.label_column, run, holdout, parts.cutoff)
    root = Path(registry)
    existing = current(root) if _read_state(root).current else None
    current_metrics = _slice_metrics(Scorer.load(existing, ScoreConfig(dtype=run.train.dtype)), parts.test, labels) if existing else None

    result = train(parts.train, features, funnel, run.model, run.train)
    candidate = artifacts.from_training(result)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".candidate-", dir=root) as scratch:
        model_dir = artifacts.save(candidate, Path(scratch) / "model")
        candidate_metrics = _slice_metrics(Scorer(candidate, ScoreConfig(dtype=run.train.dtype), prepare_in_place=True), parts.test, labels)
        accept = current_metrics is None or candidate_metrics["auc"] >= current_metrics["auc"] - tolerance
        published = publish(root, model_dir, metrics={f"comparison_{k}": v for k, v in candidate_metrics.items()}) if accept else None
    return RetrainOutcome(
        candidate=candidate_metrics,
        current=current_metrics,
        current_version=existing.name if existing else None,
        published=published,
        tolerance=tolerance,
        train_rows=len(parts.train),
        comparison_rows=len(labels),
        comparison_positives=int(labels.sum()),
        cutoff=parts.cutoff,
    )


def comparison_minimums(run: RunConfig) -> tuple[int, int]:
    """The fewest positives and negatives the comparison slice needs: :data:`COMPARISON_SHARE` of the training minimums, rounded up."""
    return (
        math.ceil(COMPARISON_SHARE * run.train.min_train_positives),
        math.ceil(COMPARISON_SHARE * run.train.min_train_negatives),
    )


def _check_comparison_slice(test: pd.DataFrame, label_column: str, run: RunConfig, holdout: float, cutoff: pd.Timestamp) -> None:
    """Raise :class:`TooFewLeadsError` unless the comparison slice has enough of each class to compare AUCs on."""
    min_positives, min_negatives = comparison_minimums(run)
    try:
        check_minimums(test, label_column, min_positives=min_positives, min_negatives=min_negatives)
    except TooFewLeadsError:
        positives = int((label_values(test[label_column]) == 1).sum())
        raise TooFewLeadsError(
            f"Too few leads to compare the models on: the comparison slice (the newest {holdout:.0%} of the window, "
            f"{len(test)} leads from {cutoff}) has {positives} positive(s) (minimum {min_positives}) and "
            f"{len(test) - positives} negative(s) (minimum {min_negatives}); with fewer, the AUCs differ by chance "
            f"and a model would be published or kept at random. Use a longer window (--window-days, or more days "
            f"of data) or a larger holdout share (--holdout, now {holdout:g}). The minimums are {COMPARISON_SHARE:.0%} "
            f"of min_train_positives / min_train_negatives (the `train:` section of --config); lower those for "
            f"experiments only."
        ) from None


def _newest(table: pd.DataFrame, window_days: int | None) -> pd.DataFrame:
    """The leads seen within ``window_days`` of the newest ``as_of`` (all of them when None)."""
    if window_days is None:
        return table
    if window_days < 1:
        raise ValueError(f"--window-days must be a whole number of days >= 1; got {window_days}.")
    times = pd.to_datetime(table[TIME_COLUMN], format="ISO8601")
    return table[(times >= times.max() - pd.Timedelta(days=window_days)).to_numpy()]


def _slice_metrics(scorer: Scorer, table: pd.DataFrame, labels: np.ndarray) -> dict[str, float]:
    scores = scorer.score(table)["rank_score"].to_numpy()
    return {"auc": auc(labels, scores), f"p@{TOP_SHARE:.0%}": precision_at(labels, scores, TOP_SHARE)}
