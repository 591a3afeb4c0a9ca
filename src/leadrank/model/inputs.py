"""Prompts -> token ids -> left-padded batches."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

_TOKENIZE_CHUNK = 1024


def tokenize(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids per prompt; an empty prompt (nothing to read) has none. Special-token text inside
    a prompt (e.g. "<|im_end|>" typed in a dialogue) is split into ordinary tokens, so lead text
    can never inject control tokens."""
    ids: list[list[int]] = [[] for _ in prompts]
    texts = [i for i, prompt in enumerate(prompts) if prompt]
    for start in range(0, len(texts), _TOKENIZE_CHUNK):
        chunk = texts[start : start + _TOKENIZE_CHUNK]
        for i, row in zip(chunk, tokenizer([prompts[i] for i in chunk], split_special_tokens=True)["input_ids"], strict=True):
            ids[i] = row
    return ids


def collate(token_ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad to the longest row: ``(input_ids, attention_mask)``."""
    width = max(len(ids) for ids in token_ids)
    input_ids = torch.full((len(token_ids), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for row, ids in enumerate(token_ids):
        if ids:
            input_ids[row, width - len(ids) :] = torch.as_tensor(ids, dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
    return input_ids, attention_mask


def length_sorted_batches(lengths: Sequence[int], max_batch: int, max_tokens: int | None = None) -> list[np.ndarray]:
    """Row indices grouped by similar length (longest first), so little compute goes to padding.

    A batch holds at most ``max_batch`` rows and, when given, at most ``max_tokens`` padded tokens.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches: list[np.ndarray] = []
    current: list[int] = []
    width = 0
    for index in order:
        new_width = max(width, int(lengths[index]))
        too_many_tokens = max_tokens is not None and current and new_width * (len(current) + 1) > max_tokens
        if len(current) == max_batch or too_many_tokens:
            batches.append(np.array(current))
            current, new_width = [], int(lengths[index])
        current.append(int(index))
        width = new_width
    if current:
        batches.append(np.array(current))
    return batches
