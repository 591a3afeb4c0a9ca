"""A trained model as a self-describing directory; no pickle anywhere.

    leadrank.json        format version, configs, specs, prompt template, backbone reference
                         and checksum, score statistics, metrics
    heads.safetensors    pointwise and pairwise heads
    adapter/             LoRA weights (PEFT layout, safetensors), in lora mode only
    tokenizer/           the tokenizer the prompts were cut with

The directory is written under a temporary name and renamed into place, so a reader never
sees half of it. Loading checks the format version and the backbone checksum and says what
to do when they do not match.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from peft import PeftModel, set_peft_model_state_dict
from safetensors.torch import load_file, save_file
from transformers import PreTrainedTokenizerBase

import leadrank
from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.prompt import PromptTemplate
from leadrank.model.asllr import ASLLR, ModelConfig, answer_token_ids
from leadrank.model.backbone import Backbone, load_backbone, load_tokenizer

FORMAT_VERSION = 1
MANIFEST = "leadrank.json"
RankBy = Literal["pair", "point", "blend"]


class ArtifactError(ValueError):
    """A model directory that cannot be used as it is; the message says why and what to do."""


@dataclass
class Artifact:
    """Everything needed to score: the model, its tokenizer, and how it was made."""

    model: ASLLR
    tokenizer: PreTrainedTokenizerBase
    features: FeatureSpec
    funnel: FunnelSpec
    model_config: ModelConfig
    template: PromptTemplate
    backbone_reference: str
    backbone_checksum: str
    rank_by: RankBy
    score_stats: dict[str, float]
    train_config: dict
    metrics: dict

    def manifest(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "leadrank_version": leadrank.__version__,
            "backbone": {"reference": self.backbone_reference, "checksum": self.backbone_checksum},
            "model_config": self.model_config.model_dump(mode="json"),
            "train_config": self.train_config,
            "features": self.features.model_dump(mode="json"),
            "funnel": self.funnel.model_dump(mode="json"),
            "template": self.template.model_dump(mode="json"),
            "rank_by": self.rank_by,
            "score_stats": self.score_stats,
            "metrics": self.metrics,
        }


def save(artifact: Artifact, directory: str | Path) -> Path:
    """Write ``artifact`` to ``directory`` atomically (replacing an existing model directory)."""
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in artifact.model.heads.state_dict().items()}, str(staging / "heads.safetensors"))
        if isinstance(artifact.model.lm, PeftModel):
            artifact.model.lm.save_pretrained(staging / "adapter", safe_serialization=True)
        artifact.tokenizer.save_pretrained(staging / "tokenizer")
        (staging / MANIFEST).write_text(json.dumps(artifact.manifest(), indent=2), encoding="utf-8")
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
    """Load a model directory; ``backbone`` points to the backbone when it moved (same checksum)."""
    folder = Path(directory)
    manifest = _read_manifest(folder)
    model_config = ModelConfig.model_validate(manifest["model_config"])
    reference = backbone or manifest["backbone"]["reference"]
    loaded = _load_backbone(reference, manifest["backbone"], folder)
    template = PromptTemplate.model_validate(manifest["template"])
    tokenizer = load_tokenizer(str(folder / "tokenizer"))
    model = ASLLR(loaded.model, model_config, answer_token_ids(tokenizer, template))
    model.heads.load_state_dict(load_file(str(folder / "heads.safetensors")))
    if model_config.mode == "lora":
        adapter = folder / "adapter" / "adapter_model.safetensors"
        if not adapter.exists():
            raise ArtifactError(f"{folder} is a LoRA model but has no {adapter.relative_to(folder)}; the directory is incomplete.")
        result = set_peft_model_state_dict(model.lm, load_file(str(adapter)))
        if getattr(result, "unexpected_keys", None):
            raise ArtifactError(f"{adapter} holds weights this backbone has no place for: {result.unexpected_keys[:3]}")
    model.eval()
    return Artifact(
        model=model,
        tokenizer=tokenizer,
        features=FeatureSpec.model_validate(manifest["features"]),
        funnel=FunnelSpec.model_validate(manifest["funnel"]),
        model_config=model_config,
        template=template,
        backbone_reference=manifest["backbone"]["reference"],
        backbone_checksum=manifest["backbone"]["checksum"],
        rank_by=manifest["rank_by"],
        score_stats=manifest["score_stats"],
        train_config=manifest["train_config"],
        metrics=manifest["metrics"],
    )


def read_manifest(directory: str | Path) -> dict:
    """The ``leadrank.json`` of a model directory, checked (no weights are read)."""
    return _read_manifest(Path(directory))


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.exists():
        raise ArtifactError(f"{folder} is not a leadrank model directory (no {MANIFEST}). Train one with `leadrank train`.")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{path} has format version {version}; this leadrank ({leadrank.__version__}) reads version {FORMAT_VERSION}. "
            f"Use the leadrank version that wrote it (leadrank_version {manifest.get('leadrank_version')!r}) or retrain."
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


def from_training(result, features: FeatureSpec, funnel: FunnelSpec, model_config: ModelConfig, train_config, template: PromptTemplate) -> Artifact:
    """Package a :class:`~leadrank.training.TrainResult` with its validation statistics.

    Ranking uses the pairwise head when HPRO trained it, else the pointwise head.
    """
    from leadrank.metrics import auc

    labels, point, pair = result.val_labels, result.val_point, result.val_pair
    stats = {
        "point_mean": float(point.mean()), "point_std": float(point.std() or 1.0),
        "pair_mean": float(pair.mean()), "pair_std": float(pair.std() or 1.0),
    }
    metrics: dict[str, float] = {"train_steps": result.steps, "train_seconds": round(result.seconds, 1), "best_step": result.best_step}
    if 0 < labels.sum() < len(labels):
        blend = 0.5 * (point - stats["point_mean"]) / stats["point_std"] + 0.5 * (pair - stats["pair_mean"]) / stats["pair_std"]
        metrics |= {"val_auc_point": auc(labels, point), "val_auc_pair": auc(labels, pair), "val_auc_blend": auc(labels, blend)}
    return Artifact(
        model=result.model,
        tokenizer=result.backbone.tokenizer,
        features=features,
        funnel=funnel,
        model_config=model_config,
        template=template,
        backbone_reference=result.backbone.reference,
        backbone_checksum=result.backbone.checksum,
        rank_by="pair" if train_config.hpro_weight > 0 else "point",
        score_stats=stats,
        train_config=train_config.model_dump(mode="json"),
        metrics=metrics,
    )
