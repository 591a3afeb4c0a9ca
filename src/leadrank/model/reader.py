"""The one way leads are read: prompts from the table, pooled states in length-sorted batches, the heads.

:class:`LeadReader` is shared by the :class:`~leadrank.inference.Scorer` (what ``leadrank
score`` and the service run), training's validation and the benchmark's readings, so a number
in a benchmark table is the number a user's scorer gives for the same leads and settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedTokenizerBase

from leadrank.config import FeatureSpec
from leadrank.data.prompt import build_prompts
from leadrank.encoding import SideEncoder
from leadrank.model.asllr import ASLLR
from leadrank.model.frozen import FeatureCache, Progress, extract_features, prompt_key


@dataclass(frozen=True)
class LeadInputs:
    """What the model reads of each lead: its prompt ("" = no text to read) and its side input."""

    prompts: list[str]
    side: np.ndarray | None  # (rows, side width) float32

    @property
    def has_text(self) -> torch.Tensor:
        """(rows,) bool: the lead has text for the language model to read."""
        return torch.tensor([bool(p) for p in self.prompts], dtype=torch.bool)

    def keys(self) -> list[str]:
        """One hash per lead of everything the model reads: a changed field or turn changes it."""
        if self.side is None:
            return [prompt_key(p) for p in self.prompts]
        return [prompt_key(p + "\x00" + row.tobytes().hex()) for p, row in zip(self.prompts, self.side, strict=True)]


@dataclass
class LeadReader:
    """Reads leads with ``model``: ``batch_size`` rows and at most ``max_batch_tokens`` padded tokens
    per batch, in ``dtype``; with ``cache``, each pooled state is kept on disk (frozen backbones)."""

    model: ASLLR
    tokenizer: PreTrainedTokenizerBase
    features: FeatureSpec
    side_encoder: SideEncoder | None = None
    cache: FeatureCache | None = None
    batch_size: int = 16
    max_batch_tokens: int | None = None
    dtype: torch.dtype = torch.float32

    def inputs(self, table: pd.DataFrame) -> LeadInputs:
        """The prompts and side inputs of an already validated table."""
        config = self.model.config
        prompts = build_prompts(
            table, self.features, self.tokenizer, config.max_dialogue_tokens, config.prompt, dialogue_only=config.reading == "dialogue"
        )
        return LeadInputs(prompts, None if self.side_encoder is None else self.side_encoder.transform(table))

    def pooled(self, prompts: Sequence[str], progress: Progress | None = None) -> torch.Tensor:
        """``(len(prompts), width)`` float32 pooled states (zeros for an empty prompt)."""
        was_training = self.model.training
        pooled = extract_features(
            self.model,
            prompts,
            self.tokenizer,
            self.cache,
            batch_size=self.batch_size,
            max_batch_tokens=self.max_batch_tokens,
            dtype=self.dtype,
            progress=progress,
        )
        self.model.train(was_training)  # the reading runs in eval mode; a model in training goes on training
        return pooled

    def head_outputs(self, inputs: LeadInputs, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(pointwise logits, pairwise scores) of ``rows`` (default all); leads without text are not read."""
        if rows is not None:
            inputs = LeadInputs([inputs.prompts[i] for i in rows], None if inputs.side is None else inputs.side[rows])
        return self.heads_on(self.pooled(inputs.prompts), inputs)

    @torch.inference_mode()
    def heads_on(self, pooled: torch.Tensor, inputs: LeadInputs) -> tuple[np.ndarray, np.ndarray]:
        """(pointwise logits, pairwise scores) from pooled states already read (frozen training reads them once).

        The heads run in fp32 outside any autocast, as in scoring: a validation number during
        training is the number the scorer gives.
        """
        heads = self.model.heads
        was_training = heads.training
        heads.eval()
        device = next(heads.parameters()).device
        side = None if inputs.side is None else torch.as_tensor(inputs.side).to(device)
        with torch.autocast(device.type, enabled=False):
            point, pair = heads(pooled.to(device), side, inputs.has_text)
        heads.train(was_training)
        return point.float().cpu().numpy().astype(float), pair.float().cpu().numpy().astype(float)
