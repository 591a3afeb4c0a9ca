"""A trained model as a self-describing directory; no pickle anywhere.

    leadrank.json        format version, model_version, configs (the prompt's words among them), specs,
                         the side-input encoding, backbone reference and checksum, score
                         statistics, the ranking head chosen on validation, calibration, metrics,
                         and ``files``: the SHA-256 of every other file in the directory
    heads.safetensors    pointwise and pairwise heads
    adapter/             LoRA weights (PEFT layout, safetensors), in lora mode only
    tokenizer/           the tokenizer the prompts were cut with

The directory is written under a temporary name and renamed into place, so a reader never
sees half of it.

``model_version`` is a short hash of everything that decides a score: the head and LoRA
weights, the backbone checksum, the configs and specs, the score statistics and the
calibration. The same model saved twice has the same version; a retrained or recalibrated
one has another.

Loading trusts nothing it has not checked, and refuses with an :class:`ArtifactError` that
names the file: another format version, a missing manifest entry, a file that is missing,
changed, unlisted or linked from outside the directory, a safetensors file that does not
parse (nothing is ever unpickled), score statistics that cannot standardise a score, a
model_version that the weights and settings do not give, or another backbone.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch
from peft import PeftModel, get_peft_model_state_dict, set_peft_model_state_dict
from pydantic import BaseModel
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import PreTrainedTokenizerBase

import leadrank
from leadrank._files import staging_dir
from leadrank.calibration import Calibration, calibration_metrics, fit_calibration
from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.crm import reference_quantiles
from leadrank.encoding import SideEncoder
from leadrank.errors import EnvironmentProblem
from leadrank.metrics import auc
from leadrank.model.asllr import ASLLR, answer_token_ids
from leadrank.model.backbone import Backbone, load_backbone, load_tokenizer
from leadrank.settings import ModelConfig, RankBy

if TYPE_CHECKING:  # only for the annotation: loading a model needs no training code (Accelerate)
    from leadrank.training import TrainResult

FORMAT_VERSION = 4  # 3: the manifest records the checksum of every file (``files``); 4: the score reference (CRM grades)
MANIFEST = "leadrank.json"
REQUIRED_KEYS = (
    "model_version",
    "files",
    "backbone",
    "model_config",
    "train_config",
    "features",
    "funnel",
    "side_encoder",
    "rank_by",
    "score_stats",
    "score_reference",
    "calibration",
    "metrics",
)
SCORE_STATS = ("point_mean", "point_std", "pair_mean", "pair_std")
_CHANGED = "the model folder was changed after training: restore it from where it came from or retrain"
_Model = TypeVar("_Model", bound=BaseModel)


class ArtifactError(EnvironmentProblem, ValueError):
    """A model directory that cannot be used as it is; the message says why and what to do."""


#: The training log in a model folder: one JSON object per optimizer step. Keys: ``step``, ``lr``,
#: ``loss`` (the weighted sum), ``bce``, ``hpro`` and ``ce`` (each loss part, before its weight;
#: ``hpro`` without HPRO and ``ce`` without a language-model read are absent), ``pairs_<tier>`` (the
#: preference pairs of each funnel tier in the step, summed over processes) and ``acc_<tier>``
#: (the share of them the pairwise head orders right); on validation steps also ``val_auc`` (the
#: head that picks the best weights), ``val_auc_point`` and ``val_auc_pair``. Losses and accuracies
#: are means over processes.
TRAINING_LOG = "metrics.jsonl"


@dataclass
class Artifact:
    """Everything needed to score: the model, its tokenizer, and how it was made.

    ``model_version`` is computed from the weights and scoring settings when left empty.
    """

    model: ASLLR
    tokenizer: PreTrainedTokenizerBase
    features: FeatureSpec
    funnel: FunnelSpec
    model_config: ModelConfig
    side_encoder: SideEncoder | None
    backbone_reference: str
    backbone_checksum: str
    rank_by: RankBy
    score_stats: dict[str, float]
    score_reference: dict[str, list[float]]  # ranking -> quantiles of its validation scores (see crm.reference_percentile)
    train_config: dict
    metrics: dict
    calibration: Calibration = field(default_factory=Calibration)
    training_log: list[dict] = field(default_factory=list)  # TrainResult.log; the folder's metrics.jsonl
    model_version: str = ""

    def __post_init__(self) -> None:
        if not self.model_version:
            self.model_version = _model_version(self)

    def manifest(self, files: dict[str, str]) -> dict:
        """The ``leadrank.json`` contents; ``files`` maps each other file's path in the directory to its SHA-256."""
        return {
            "format_version": FORMAT_VERSION,
            "leadrank_version": leadrank.__version__,
            "model_version": self.model_version,
            "backbone": {"reference": self.backbone_reference, "checksum": self.backbone_checksum},
            "model_config": self.model_config.model_dump(mode="json"),
            "train_config": self.train_config,
            "features": self.features.model_dump(mode="json"),
            "funnel": self.funnel.model_dump(mode="json"),
            "side_encoder": None if self.side_encoder is None else self.side_encoder.to_dict(),
            "rank_by": self.rank_by,
            "score_stats": self.score_stats,
            "score_reference": self.score_reference,
            "calibration": self.calibration.model_dump(mode="json"),
            "metrics": self.metrics,
            "files": files,
        }


def _model_version(artifact: Artifact) -> str:
    """12 hex digits of a SHA-256 over the head and LoRA tensors and the settings that shape a score."""
    settings = {
        "backbone_checksum": artifact.backbone_checksum,
        "model_config": artifact.model_config.model_dump(mode="json"),
        "features": artifact.features.model_dump(mode="json"),
        "side_encoder": None if artifact.side_encoder is None else artifact.side_encoder.to_dict(),
        "rank_by": artifact.rank_by,
        "score_stats": artifact.score_stats,
        "score_reference": artifact.score_reference,
        "calibration": artifact.calibration.model_dump(mode="json"),
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8"))
    tensors = {f"heads.{k}": v for k, v in artifact.model.heads.state_dict().items()}
    if isinstance(artifact.model.lm, PeftModel):
        tensors |= {f"adapter.{k}": v for k, v in get_peft_model_state_dict(artifact.model.lm).items()}
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tensor.numel()}|".encode("utf-8"))
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:12]


def save(artifact: Artifact, directory: str | Path) -> Path:
    """Write ``artifact`` to ``directory`` atomically (replacing an existing model directory)."""
    target = Path(directory)
    _check_score_stats(artifact.score_stats, f"Cannot save the model to {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(f".{target.name}.", target.parent)
    try:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in artifact.model.heads.state_dict().items()}, str(staging / "heads.safetensors")
        )
        if isinstance(artifact.model.lm, PeftModel):
            artifact.model.lm.save_pretrained(str(staging / "adapter"), safe_serialization=True)
        artifact.tokenizer.save_pretrained(staging / "tokenizer")
        if artifact.training_log:
            (staging / TRAINING_LOG).write_text("".join(json.dumps(row) + "\n" for row in artifact.training_log), encoding="utf-8")
        checksums = {name: _sha256(path) for name, path in _held_files(staging).items()}
        (staging / MANIFEST).write_text(json.dumps(artifact.manifest(checksums), indent=2), encoding="utf-8")
        if target.exists():
            if not (target / MANIFEST).exists():
                raise ArtifactError(f"{target} exists and is not a leadrank model directory; choose another --out.")
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def load(directory: str | Path, *, backbone: str | None = None) -> Artifact:
    """Load a model directory; ``backbone`` points to the backbone when it moved (same checksum).

    Every file is checked against the checksums in the manifest before anything is read from it
    (see the module docstring for what is refused).
    """
    folder = Path(directory)
    manifest = _read_manifest(folder)
    path = folder / MANIFEST
    _check_keys(manifest, path)
    _verify_files(folder, manifest["files"])
    model_config = _entry(ModelConfig, manifest, "model_config", path)
    features = _entry(FeatureSpec, manifest, "features", path)
    funnel = _entry(FunnelSpec, manifest, "funnel", path)
    calibration = _entry(Calibration, manifest, "calibration", path)
    _check_score_stats(manifest["score_stats"], str(path))
    reference = backbone or manifest["backbone"]["reference"]
    loaded = _load_backbone(reference, manifest["backbone"], folder)
    side_encoder = None if manifest["side_encoder"] is None else SideEncoder.from_dict(features, manifest["side_encoder"])
    tokenizer = load_tokenizer(str(folder / "tokenizer"))
    side_width = 0 if side_encoder is None else side_encoder.width
    model = ASLLR(loaded.model, model_config, answer_token_ids(tokenizer, model_config.prompt), side_width)
    model.heads.load_state_dict(_read_tensors(folder / "heads.safetensors"))
    if model_config.mode == "lora":
        adapter = folder / "adapter" / "adapter_model.safetensors"
        if not adapter.exists():
            raise ArtifactError(f"{folder} is a LoRA model but has no {adapter.relative_to(folder)}; the directory is incomplete.")
        result = set_peft_model_state_dict(model.lm, _read_tensors(adapter))
        unexpected = getattr(result, "unexpected_keys", None)
        if unexpected:
            raise ArtifactError(f"{adapter} holds weights this backbone has no place for: {unexpected[:3]}")
    model.eval()
    artifact = Artifact(
        model=model,
        tokenizer=tokenizer,
        features=features,
        funnel=funnel,
        model_config=model_config,
        side_encoder=side_encoder,
        backbone_reference=manifest["backbone"]["reference"],
        backbone_checksum=manifest["backbone"]["checksum"],
        rank_by=manifest["rank_by"],
        score_stats=manifest["score_stats"],
        score_reference=_checked_reference(manifest["score_reference"], path),
        train_config=manifest["train_config"],
        metrics=manifest["metrics"],
        calibration=calibration,
        training_log=_read_training_log(folder / TRAINING_LOG),
    )
    if manifest["model_version"] != artifact.model_version:
        raise ArtifactError(
            f"{folder}: its weights and settings give model_version {artifact.model_version}, but {MANIFEST} records "
            f"{manifest['model_version']!r}; the directory was changed after it was saved. Restore it from its source or retrain."
        )
    return artifact


def _check_keys(manifest: dict, path: Path) -> None:
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if isinstance(manifest.get("backbone"), dict):
        missing += [f"backbone.{key}" for key in ("reference", "checksum") if key not in manifest["backbone"]]
    if missing:
        raise ArtifactError(f"{path} has no {', '.join(repr(key) for key in missing)} entry; {_CHANGED}.")


def _entry(model: type[_Model], manifest: dict, key: str, path: Path) -> _Model:
    try:
        return model.model_validate(manifest[key])
    except ValueError as exc:
        raise ArtifactError(
            f"{path}: the {key!r} entry is not valid: {exc}\n"
            "If the model folder was edited, restore it from where it came from; otherwise retrain."
        ) from None


def _held_files(folder: Path) -> dict[str, Path]:
    """Every file in ``folder`` but the manifest, by its POSIX path inside it; a link out of the folder is refused."""
    root = folder.resolve()
    held: dict[str, Path] = {}
    for top, dirs, files in os.walk(folder):  # does not descend into linked folders
        for path in (Path(top) / name for name in dirs + files):
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                raise ArtifactError(
                    f"{path} is a link to {path.resolve()}, outside the model folder; {_CHANGED} "
                    f"(a model folder holds its files itself)."
                )
        held |= {path.relative_to(folder).as_posix(): path for path in (Path(top) / name for name in files) if path.is_file()}
    held.pop(MANIFEST, None)
    return held


def _verify_files(folder: Path, recorded: object) -> None:
    """Every file the manifest lists is there with its checksum, and no other file is."""
    if not isinstance(recorded, dict):
        raise ArtifactError(f"{folder / MANIFEST}: the 'files' entry is not a mapping of file to checksum; {_CHANGED}.")
    held = _held_files(folder)
    unlisted = sorted(held.keys() - recorded.keys())
    if unlisted:
        raise ArtifactError(
            f"{folder / unlisted[0]} has no checksum in {MANIFEST}"
            f"{f' (nor have {len(unlisted) - 1} more files)' if len(unlisted) > 1 else ''}: it was added, or its entry "
            f"removed, after the model was saved; {_CHANGED} (or remove the file)."
        )
    for name, checksum in sorted(recorded.items()):
        if name not in held:
            raise ArtifactError(f"{folder / name} is missing: the model folder is incomplete; {_CHANGED}.")
        if _sha256(held[name]) != checksum:
            raise ArtifactError(f"{folder / name} does not match its checksum in {MANIFEST}; {_CHANGED}.")


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; anything else (a pickle, a cut file) is refused unread."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"{path} is not a readable safetensors file ({exc}); {_CHANGED}.") from None


def _check_score_stats(stats: object, where: str) -> None:
    """Refuse score statistics that cannot standardise a score: each must be finite, each std above 0.

    ``where`` starts the message (the file or the step that refused them).
    """
    for key in SCORE_STATS:
        value = stats.get(key) if isinstance(stats, dict) else None
        usable = isinstance(value, (int, float)) and math.isfinite(value) and (value > 0 or not key.endswith("_std"))
        if not usable:
            raise ArtifactError(
                f"{where}: score_stats {key} is {value!r}: the validation slice gave constant or non-finite "
                f"{key.split('_')[0]} scores, so they cannot be standardised to rank leads. Retrain on leads whose "
                f"dialogues and features vary (or, if the model folder was edited, restore it)."
            )


def read_manifest(directory: str | Path) -> dict:
    """The ``leadrank.json`` of a model directory, checked (no weights are read)."""
    return _read_manifest(Path(directory))


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.exists():
        raise ArtifactError(f"{folder} is not a leadrank model directory (no {MANIFEST}). Train one with `leadrank train`.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # not JSON, or not UTF-8
        raise ArtifactError(f"{path} is not valid JSON ({exc}); {_CHANGED}.") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path} holds a JSON {type(manifest).__name__}, not an object; {_CHANGED}.")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        older = isinstance(version, int) and version < FORMAT_VERSION
        advice = (
            "Models of older formats do not record a checksum for every file or the score reference that fixes CRM "
            "percentiles and grades: retrain it with this leadrank (`leadrank train`)."
            if older
            else f"Use the leadrank version that wrote it (leadrank_version {manifest.get('leadrank_version')!r}) or retrain."
        )
        raise ArtifactError(
            f"{path} has format version {version}; this leadrank ({leadrank.__version__}) reads version {FORMAT_VERSION}. {advice}"
        )
    return manifest


def _load_backbone(reference: str, recorded: dict, folder: Path) -> Backbone:
    try:
        loaded = load_backbone(reference)
    except FileNotFoundError as exc:
        raise ArtifactError(
            f"The model in {folder} was trained on backbone {recorded['reference']!r}, which is not available here: {exc} "
            f"Pass its location with --backbone (it must have checksum {recorded['checksum'][:12]}...)."
        ) from None
    if loaded.checksum != recorded["checksum"]:
        raise ArtifactError(
            f"Backbone mismatch: {folder} was trained on {recorded['reference']!r} with checksum {recorded['checksum'][:12]}..., "
            f"but {reference!r} here has checksum {loaded.checksum[:12]}.... Scores would be meaningless; point --backbone "
            f"to the original weights or retrain."
        )
    return loaded


def blend_scores(point: np.ndarray, pair: np.ndarray, stats: dict[str, float]) -> np.ndarray:
    """Mean of both heads' scores, each standardised with the validation slice's ``stats``."""
    return 0.5 * (point - stats["point_mean"]) / stats["point_std"] + 0.5 * (pair - stats["pair_mean"]) / stats["pair_std"]


def from_training(result: TrainResult) -> Artifact:
    """Package a :class:`~leadrank.training.TrainResult` with its validation statistics.

    Ranking (:func:`choose_rank_by`): with HPRO, the head or blend with the best validation
    AUC; without HPRO, the pointwise head (the pairwise head is untrained). The
    probability is calibrated on the validation slice (the most recent leads; see
    :func:`fit_calibration`); ``metrics`` gets Brier and ECE on that slice before
    (``val_*_raw``) and after (``val_*_calibrated``). The "after" numbers are measured on the
    leads the calibration was fitted on, so they are optimistic; ``leadrank evaluate`` measures
    both on held-out leads. A head whose validation scores are all equal (a barely trained model,
    e.g. the tiny test backbone after a few steps) is not scaled in the blend: its std is recorded
    as 1.0. :func:`save` refuses statistics that cannot standardise a score (a zero or non-finite std).
    """
    labels, point, pair = result.val_labels, result.val_point, result.val_pair
    stats = {
        "point_mean": float(point.mean()),
        "point_std": float(point.std() or 1.0),
        "pair_mean": float(pair.mean()),
        "pair_std": float(pair.std() or 1.0),
    }
    metrics: dict[str, float] = {"train_steps": result.steps, "train_seconds": round(result.seconds, 1), "best_step": result.best_step}
    calibration = fit_calibration(labels, point)
    blend = blend_scores(point, pair, stats)
    if 0 < labels.sum() < len(labels):
        metrics |= {"val_auc_point": auc(labels, point), "val_auc_pair": auc(labels, pair), "val_auc_blend": auc(labels, blend)}
        metrics |= calibration_metrics(labels, point, calibration)
    return Artifact(
        model=result.model,
        tokenizer=result.backbone.tokenizer,
        features=result.features,
        funnel=result.funnel,
        model_config=result.model_config,
        side_encoder=result.side_encoder,
        backbone_reference=result.backbone.reference,
        backbone_checksum=result.backbone.checksum,
        rank_by=choose_rank_by(metrics) if result.train_config.hpro_weight > 0 else "point",
        score_stats=stats,
        score_reference={name: reference_quantiles(scores) for name, scores in (("point", point), ("pair", pair), ("blend", blend))},
        train_config=result.train_config.model_dump(mode="json"),
        metrics=metrics,
        calibration=calibration,
        training_log=result.log,
    )


def _checked_reference(reference: object, path: Path) -> dict[str, list[float]]:
    """The manifest's score reference: for each ranking, finite quantiles in increasing order."""
    rankings = ("point", "pair", "blend")
    if not (isinstance(reference, dict) and set(reference) == set(rankings) and all(_is_reference(reference[r]) for r in rankings)):
        raise ArtifactError(f"{path}: score_reference must hold increasing finite quantiles for {list(rankings)}; {_CHANGED}.")
    return reference


def _is_reference(values: object) -> bool:
    if not isinstance(values, list) or len(values) < 2 or not all(isinstance(v, (int, float)) for v in values):
        return False
    quantiles = np.array(values, dtype=float)
    return bool(np.isfinite(quantiles).all() and (np.diff(quantiles) >= 0).all())


def _read_training_log(path: Path) -> list[dict]:
    """The rows of a model folder's metrics.jsonl (checked against the manifest already); none for older folders."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def choose_rank_by(metrics: dict[str, float]) -> RankBy:
    """The ranking with the best validation AUC; the blend when the slice cannot tell (one class only).

    Ties go to the blend, then the pairwise head: on real lead data no single choice was best
    everywhere (one table ranked point 0.858 > blend 0.854 > pair 0.836), so it is measured per model.
    """
    candidates: list[RankBy] = ["blend", "pair", "point"]
    aucs = {name: metrics.get(f"val_auc_{name}", float("nan")) for name in candidates}
    if any(np.isnan(value) for value in aucs.values()):
        return "blend"
    return max(candidates, key=lambda name: aucs[name])
