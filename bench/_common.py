"""Shared by the bench scripts: the machine's matmul peak and an untrained asLLR artifact.

Scoring speed does not depend on the weights, so the speed benches score with an untrained
artifact of the recipe they measure: no training run needed, same work per lead.
"""

from __future__ import annotations

import time
from collections import Counter

import pandas as pd
import torch

from leadrank.artifact import Artifact
from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.encoding import SideEncoder
from leadrank.model.asllr import ASLLR, answer_token_ids
from leadrank.model.backbone import load_backbone
from leadrank.settings import ModelConfig


def matmul_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def linear_layers_gflops(model: torch.nn.Module, rows: int, dtype: torch.dtype, repeats: int = 3) -> float:
    """GFLOP/s of the model's own linear layers alone, on ``rows`` tokens at once, in ``dtype``.

    The ceiling for a scorer of this model at that batch size: a 576-wide model's matmuls are
    far smaller than the 2048-cube one that :func:`matmul_gflops` measures.
    """
    shapes = Counter(tuple(m.weight.shape) for m in model.modules() if isinstance(m, torch.nn.Linear))
    flops = seconds = 0.0
    for (out_features, in_features), count in shapes.items():
        x, w = torch.randn(rows, in_features, dtype=dtype), torch.randn(out_features, in_features, dtype=dtype)
        x @ w.T
        started = time.perf_counter()
        for _ in range(repeats):
            x @ w.T
        seconds += (time.perf_counter() - started) / repeats * count
        flops += 2 * rows * in_features * out_features * count
    return flops / seconds / 1e9


def untrained_artifact(config: ModelConfig, table: pd.DataFrame | None = None) -> Artifact:
    """An asLLR artifact with fresh heads on the NEV FeatureSpec (frozen or LoRA, as ``config`` says).

    With ``config.side_input``, the side-input encoding is fitted on ``table``.
    """
    backbone = load_backbone(config.backbone)
    features = FeatureSpec.nev_default()
    side_encoder = SideEncoder(features).fit(table) if config.side_input else None
    model = ASLLR(backbone.model, config, answer_token_ids(backbone.tokenizer, config.prompt), side_encoder.width if side_encoder else 0)
    return Artifact(
        model=model,
        tokenizer=backbone.tokenizer,
        features=features,
        funnel=FunnelSpec.paper_default(),
        model_config=config,
        side_encoder=side_encoder,
        backbone_reference=config.backbone,
        backbone_checksum=backbone.checksum,
        rank_by="point",
        score_stats={},
        train_config={},
        metrics={},
    )
