"""Batch scoring: length-sorted batches, inference mode, bf16 where the hardware has it.

Per lead: ``probability`` (sigmoid of the pointwise head) and ``rank_score`` (the pairwise
head, the pointwise logit, or a blend of both standardised on the validation slice).
For scoring, LoRA weights are merged into the backbone and the LM head is never run.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate.utils import is_bf16_available
from peft import PeftModel

from leadrank.artifact import Artifact, RankBy
from leadrank.config import ID_COLUMN
from leadrank.data.io import ChunkedWriter, iter_table
from leadrank.data.prompt import build_prompts
from leadrank.data.schema import split_valid, validate
from leadrank.model.inputs import collate, length_sorted_batches, tokenize



SCORE_COLUMNS = [ID_COLUMN, "probability", "rank_score"]


@dataclass(frozen=True)
class ScoreConfig:
    """How to run the scorer; the defaults suit a 2-core CPU and a 135M backbone."""

    batch_size: int = 16
    max_batch_tokens: int | None = 8192
    bf16: bool | None = None  # None: wherever the hardware supports it
    threads: int | None = None
    rank_by: RankBy | None = None  # None: the artifact's choice

    def __post_init__(self) -> None:
        if self.rank_by not in (None, "pair", "point", "blend"):
            raise ValueError(f"rank_by must be 'pair', 'point' or 'blend'; got {self.rank_by!r}.")


@dataclass(frozen=True)
class FileSummary:
    rows_in: int
    rows_scored: int
    rows_rejected: int
    rejected_path: Path | None


class Scorer:
    """Score lead tables with a trained artifact.

    The scorer takes the artifact's model over: it merges LoRA into the backbone weights and
    casts them for speed, so load the artifact again to train or save it.
    """

    def __init__(self, artifact: Artifact, config: ScoreConfig = ScoreConfig()) -> None:
        if config.threads:
            torch.set_num_threads(config.threads)
        self.artifact = artifact
        self.config = config
        self.rank_by: RankBy = config.rank_by or artifact.rank_by
        self.dtype = torch.bfloat16 if (is_bf16_available() if config.bf16 is None else config.bf16) else torch.float32
        self.model = _for_scoring(artifact, self.dtype)

    def score(self, table: pd.DataFrame) -> pd.DataFrame:
        """Validate (no labels needed) and score; one row per lead, in input order."""
        validate(table, self.artifact.features, self.artifact.funnel, require_labels=False)
        point, pair = self.raw_scores(table)
        return pd.DataFrame(
            {ID_COLUMN: table[ID_COLUMN].to_numpy(), "probability": _sigmoid(point), "rank_score": self._rank_score(point, pair)}
        )

    @torch.inference_mode()
    def raw_scores(self, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(pointwise logits, pairwise scores) per row of an already validated table."""
        a = self.artifact
        prompts = build_prompts(table, a.features, a.tokenizer, a.model_config.max_dialogue_tokens, a.template)
        token_ids = tokenize(a.tokenizer, prompts)
        point, pair = np.zeros(len(prompts)), np.zeros(len(prompts))
        autocast = torch.autocast("cpu", dtype=self.dtype) if self.dtype != torch.float32 else contextlib.nullcontext()
        lengths = [len(t) for t in token_ids]
        for batch in length_sorted_batches(lengths, self.config.batch_size, self.config.max_batch_tokens):
            input_ids, attention_mask = collate([token_ids[i] for i in batch], a.tokenizer.pad_token_id)
            with autocast:
                pooled, _ = self.model.encode(input_ids, attention_mask)
                p, q = self.model.heads(pooled)
            point[batch], pair[batch] = p.float().numpy(), q.float().numpy()
        return point, pair

    def score_file(self, source: str, destination: str | Path, *, chunk_rows: int = 5_000) -> FileSummary:
        """Stream a large table: every input row is either scored or written to the rejected file."""
        destination = Path(destination)
        rejected_path = destination.with_name(f"{destination.stem}.rejected{destination.suffix}")
        rows_in = rows_scored = rows_rejected = 0
        with ChunkedWriter(destination) as scored_out, contextlib.ExitStack() as stack:
            rejected_out = None
            for chunk in iter_table(source, chunk_rows):
                valid, rejected = split_valid(chunk, self.artifact.features, self.artifact.funnel, require_labels=False)
                rows_in += len(chunk)
                if len(valid):
                    scored_out.write(self.score(valid))
                    rows_scored += len(valid)
                if len(rejected):
                    rejected_out = rejected_out or stack.enter_context(ChunkedWriter(rejected_path))
                    rejected_out.write(rejected.astype(str))  # as text: the rejected values may not fit their column type
                    rows_rejected += len(rejected)
            if not rows_scored:  # the file still gets its header
                scored_out.write(pd.DataFrame({c: pd.Series([], dtype=str if c == ID_COLUMN else float) for c in SCORE_COLUMNS}))
        return FileSummary(rows_in, rows_scored, rows_rejected, rejected_path if rows_rejected else None)

    def _rank_score(self, point: np.ndarray, pair: np.ndarray) -> np.ndarray:
        if self.rank_by == "point":
            return point
        if self.rank_by == "pair":
            return pair
        stats = self.artifact.score_stats
        return 0.5 * (point - stats["point_mean"]) / stats["point_std"] + 0.5 * (pair - stats["pair_mean"]) / stats["pair_std"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _for_scoring(artifact: Artifact, dtype: torch.dtype):
    """Prepare the artifact's model in place: LoRA merged into the weights, backbone in ``dtype``."""
    model = artifact.model
    if isinstance(model.lm, PeftModel):
        model.lm = model.lm.merge_and_unload()
    model.lm.to(dtype)
    model.heads.float()
    return model.eval()
