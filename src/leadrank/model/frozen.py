"""Frozen mode: read every prompt once with the backbone, cache the pooled states on disk.

The cache lives in ``$LEADRANK_CACHE/features/<backbone checksum>-<pooling>-<layer>-<dtype>/``
as safetensors shards; each row is keyed by the SHA-256 of its prompt text, so any subset or
re-split of a table that was read before costs nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import PreTrainedTokenizerBase

from leadrank._files import atomic_path
from leadrank.model.asllr import ASLLR
from leadrank.model.backbone import cache_dir
from leadrank.model.inputs import collate, length_sorted_batches, tokenize

Progress = Callable[[int], None]


def prompt_key(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:32]


class FeatureCache:
    """Pooled hidden states keyed by prompt hash, for one backbone and pooling setting."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_model(cls, model: ASLLR, checksum: str, dtype: torch.dtype) -> FeatureCache:
        config = model.config
        name = f"{checksum[:16]}-{config.pooling}-{model.pool_layer}-{str(dtype).removeprefix('torch.')}"
        return cls(cache_dir() / "features" / name)

    def get(self, keys: Sequence[str]) -> dict[str, torch.Tensor]:
        """The cached rows among ``keys``."""
        wanted, found = set(keys), {}
        for shard in sorted(self.folder.glob("*.safetensors")):
            with safe_open(shard, framework="pt") as handle:
                shard_keys = json.loads(handle.metadata()["keys"])
                hits = [i for i, key in enumerate(shard_keys) if key in wanted and key not in found]
                if hits:
                    block = handle.get_tensor("features")
                    found.update({shard_keys[i]: block[i] for i in hits})
        return found

    def put(self, keys: Sequence[str], features: torch.Tensor) -> None:
        shard = self.folder / f"{hashlib.sha256(''.join(keys).encode()).hexdigest()[:16]}.safetensors"
        with atomic_path(shard) as tmp:
            save_file({"features": features.contiguous()}, str(tmp), metadata={"keys": json.dumps(list(keys))})


CACHE_CHUNK = 512
"""Leads read between two cache writes: a killed reading loses at most this many."""


def extract_features(
    model: ASLLR,
    prompts: Sequence[str],
    tokenizer: PreTrainedTokenizerBase,
    cache: FeatureCache | None,
    *,
    batch_size: int = 16,
    max_batch_tokens: int | None = None,
    dtype: torch.dtype = torch.float32,
    progress: Progress | None = None,
) -> torch.Tensor:
    """``(len(prompts), width)`` float32 pooled states; cached rows are read, the rest computed.

        An empty prompt (a lead with nothing to read) is not read: its row is zeros, and the heads
        give it their learned ``no_text`` vector. Only the rows not in the cache are tokenized and
        go through the model, in length-sorted batches of at most ``batch_size`` rows and, when
        given, ``max_batch_tokens`` padded tokens; every ``CACHE_CHUNK`` distinct prompts are written
    to the cache as soon as they are read, so a killed run continues where it stopped.
    ``progress`` counts the leads with text.
    """
    out = torch.zeros((len(prompts), model.causal_lm.config.hidden_size))
    rows = [i for i, prompt in enumerate(prompts) if prompt]
    keys = [prompt_key(prompts[i]) for i in rows]
    cached = cache.get(keys) if cache is not None and keys else {}
    todo = list(dict.fromkeys(key for key in keys if key not in cached))
    prompt_of = {key: prompts[row] for row, key in zip(rows, keys)}
    fresh: dict[str, torch.Tensor] = {}
    for start in range(0, len(todo), CACHE_CHUNK):
        chunk = todo[start : start + CACHE_CHUNK]
        token_ids = tokenize(tokenizer, [prompt_of[key] for key in chunk])
        computed = _compute(model, token_ids, tokenizer.pad_token_id, batch_size, max_batch_tokens, dtype, progress)
        if cache is not None:
            cache.put(chunk, computed)
        fresh.update(zip(chunk, computed))
    if progress is not None and len(todo) < len(keys):
        progress(len(keys) - len(todo))  # cache hits and repeated prompts
    if rows:
        out[rows] = torch.stack([cached[key] if key in cached else fresh[key] for key in keys]).float()
    return out


@torch.inference_mode()
def _compute(
    model: ASLLR,
    token_ids: Sequence[Sequence[int]],
    pad_id: int,
    batch_size: int,
    max_batch_tokens: int | None,
    dtype: torch.dtype,
    progress: Progress | None,
) -> torch.Tensor:
    if not token_ids:
        return torch.zeros((0, model.causal_lm.config.hidden_size))
    model.eval()
    device = next(model.parameters()).device
    out = torch.zeros((len(token_ids), model.causal_lm.config.hidden_size))
    autocast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
    for batch in length_sorted_batches([len(t) for t in token_ids], batch_size, max_batch_tokens):
        input_ids, attention_mask = collate([token_ids[i] for i in batch], pad_id)
        with autocast:
            pooled, _ = model.encode(input_ids.to(device), attention_mask.to(device))
        out[torch.as_tensor(batch)] = pooled.float().cpu()
        if progress is not None:
            progress(len(batch))
    return out
