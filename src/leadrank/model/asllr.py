"""asLLR: a causal LM (with LoRA, or frozen) and three heads on its reading of a lead.

- semantic head: the backbone's own LM head scores the next token after "Answer:" ("Yes"/"No");
- pointwise head: MLP -> logit of lock-in (trained with BCE, gives the probability);
- pairwise head: MLP -> ranking score (trained with HPRO).

The heads read a pooled hidden state: the last token of the final layer (the paper) or the
mean over the tokens of a chosen layer (much better for a frozen small model, see the
README). The semantic head always reads the last token of the final layer, which is what
the LM head was trained on.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import cast

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from leadrank.data.prompt import PromptTemplate
from leadrank.settings import ModelConfig

# peft asks transformers a deprecated question on every wrap; the answer is right, the warning is noise.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def answer_token_ids(tokenizer: PreTrainedTokenizerBase, template: PromptTemplate) -> tuple[int, int]:
    """Token ids of the first token of the Yes and No answers, as they follow "Answer:"."""
    for yes, no in ((template.completion(1), template.completion(0)), (template.answer_yes, template.answer_no)):
        yes_ids = tokenizer(yes, add_special_tokens=False)["input_ids"]
        no_ids = tokenizer(no, add_special_tokens=False)["input_ids"]
        if yes_ids and no_ids and yes_ids[0] != no_ids[0]:
            return yes_ids[0], no_ids[0]
    raise ValueError(
        f"The tokenizer gives the answers {template.answer_yes!r} and {template.answer_no!r} the same first token; "
        f"choose answer words that start differently in the PromptTemplate."
    )


class _Head(nn.Sequential):
    """Linear(d, hidden) -> GELU -> Dropout -> Linear(hidden, 1), as in the paper's code."""

    def __init__(self, width: int, hidden: int, dropout: float) -> None:
        super().__init__(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1))


class ScoringHeads(nn.Module):
    """The pointwise and pairwise heads on [LLM reading ⊕ side input]; trained alone in frozen mode.

    A lead the language model did not read (no text: ``has_text`` False) gets the learned
    ``no_text`` vector as its reading.
    """

    def __init__(self, width: int, side_width: int = 0, hidden: int = 128, dropout: float = 0.5) -> None:
        super().__init__()
        self.side_width = side_width
        self.no_text = nn.Parameter(torch.zeros(width))
        self.point = _Head(width + side_width, hidden, dropout)
        self.pair = _Head(width + side_width, hidden, dropout)

    def forward(
        self, pooled: torch.Tensor, side: torch.Tensor | None = None, has_text: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = pooled.float()
        if has_text is not None:
            pooled = torch.where(has_text.to(pooled.device).unsqueeze(-1), pooled, self.no_text)
        if self.side_width:
            if side is None or side.shape[-1] != self.side_width:
                got = None if side is None else tuple(side.shape)
                raise ValueError(f"these heads read a side input of width {self.side_width}; got {got}")
            pooled = torch.cat([pooled, side.float().to(pooled.device)], dim=-1)
        return self.point(pooled).squeeze(-1), self.pair(pooled).squeeze(-1)


@dataclass
class ASLLROutput:
    point_logits: torch.Tensor  # (B,) logit of lock-in
    pair_scores: torch.Tensor  # (B,) ranking score
    answer_logits: torch.Tensor | None  # (R, vocab) next-token logits after "Answer:" of the rows read; None from pooled states
    pooled: torch.Tensor  # (B, width) the LLM's reading (zeros where a lead has no text)
    read_rows: torch.Tensor | None = None  # (R,) batch rows the LLM read, in answer_logits order; None = all rows


class ASLLR(nn.Module):
    """The three-head ranker around a causal LM."""

    def __init__(self, causal_lm: PreTrainedModel, config: ModelConfig, answer_ids: tuple[int, int], side_width: int = 0) -> None:
        super().__init__()
        self.config = config
        self.answer_ids = answer_ids
        width = causal_lm.config.hidden_size
        depth = causal_lm.config.num_hidden_layers
        self.pool_layer = resolve_pool_layer(config, depth)
        self.reads_inner_layer = self.pool_layer != depth
        if config.mode == "lora":
            self.lm: nn.Module = get_peft_model(causal_lm, _lora_config(causal_lm, config))
        else:
            causal_lm.requires_grad_(False)
            if self.reads_inner_layer:
                _truncate(causal_lm, self.pool_layer)
            self.lm = causal_lm
        if config.side_input != (side_width > 0):
            raise ValueError(
                f"side_input={config.side_input} in the ModelConfig but side_width={side_width}; pass the side encoder's width."
            )
        self.heads = ScoringHeads(width, side_width, config.head_hidden, config.head_dropout)
        self.margins: nn.Module | None = None  # learned tier margins, set by training when asked

    @property
    def causal_lm(self) -> PreTrainedModel:
        model = self.lm.get_base_model() if isinstance(self.lm, PeftModel) else self.lm
        # peft types get_base_model() as any nn.Module: it is the PreTrainedModel that __init__ wrapped.
        return cast(PreTrainedModel, model)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(pooled features for the heads, last-token final-layer state for the LM head).

        A frozen model that reads an inner layer runs only the layers below it and has no
        final-layer state (None).
        """
        # Positions count real tokens only, so a lead's reading does not depend on its padding.
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        states = self.causal_lm.base_model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        last = _last_token(states, attention_mask)
        final_last = None if self.reads_inner_layer else last
        if self.config.pooling == "last":
            return last, final_last
        weights = attention_mask.unsqueeze(-1).to(states.dtype)
        return (states * weights).sum(1) / weights.sum(1).clamp(min=1), final_last

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *,
        pooled: torch.Tensor | None = None,
        side: torch.Tensor | None = None,
        has_text: torch.Tensor | None = None,
    ) -> ASLLROutput:
        """Read token ids, or, given ``pooled`` states (frozen mode), run the heads only.

        ``has_text`` (B,) bool marks the leads there is text for; the others are not read
        (the language model does not run for them) and the heads see the ``no_text`` vector.
        """
        answer_logits, read_rows = None, None
        if pooled is None:
            if input_ids is None or attention_mask is None:
                raise ValueError("pass input_ids and attention_mask, or pooled states")
            pooled, answer_logits, read_rows = self._read(input_ids, attention_mask, has_text)
        point, pair = self.heads(pooled, side, has_text)
        return ASLLROutput(point, pair, answer_logits, pooled, read_rows)

    def _read(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, has_text: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(pooled states of every row, answer logits of the rows read, which rows were read)."""
        rows = None if has_text is None or bool(has_text.all()) else torch.nonzero(has_text).flatten()
        width = self.causal_lm.config.hidden_size
        if rows is not None and rows.numel() == 0:
            return torch.zeros((input_ids.shape[0], width), device=input_ids.device), None, rows
        ids, mask = (input_ids, attention_mask) if rows is None else (input_ids[rows], attention_mask[rows])
        read, last = self.encode(ids, mask)
        answer_logits = None if last is None else self.causal_lm.get_output_embeddings()(last)
        if rows is None:
            return read, answer_logits, None
        pooled = torch.zeros((input_ids.shape[0], width), device=read.device, dtype=read.dtype).index_copy(0, rows.to(read.device), read)
        return pooled, answer_logits, rows

    def trainable_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(head parameters, LoRA parameters) for differential learning rates."""
        heads = list(self.heads.parameters()) + (list(self.margins.parameters()) if self.margins is not None else [])
        lora = [p for p in self.lm.parameters() if p.requires_grad]
        return heads, lora


def _last_token(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The state at each row's last real token, for left or right padding."""
    last = attention_mask.shape[1] - 1 - attention_mask.flip(1).long().argmax(1)
    return states[torch.arange(states.shape[0], device=states.device), last]


def resolve_pool_layer(config: ModelConfig, depth: int) -> int:
    """``pool_layer`` as a layer number in ``0..depth``; refuse layers the backbone does not have."""
    if config.pool_layer == "middle":
        return depth // 2
    if not -(depth + 1) <= config.pool_layer <= depth:
        raise ValueError(
            f"pool_layer={config.pool_layer} but this backbone has {depth} layers: use 0..{depth} "
            f"(0 = embeddings), a negative index (-1 = final) or 'middle' (the model: section of a --config YAML)."
        )
    return config.pool_layer % (depth + 1)


def _truncate(causal_lm: PreTrainedModel, layer: int) -> None:
    """Keep only the layers below ``layer`` and drop the final norm: the output is that layer's state."""
    decoder = causal_lm.base_model
    # torch types a submodule read by attribute as Tensor | Module; a decoder's layers are a ModuleList.
    decoder.layers = cast(nn.ModuleList, decoder.layers)[:layer]
    decoder.norm = nn.Identity()
    causal_lm.config.num_hidden_layers = layer


def _lora_config(causal_lm: PreTrainedModel, config: ModelConfig) -> LoraConfig:
    present = {name.rsplit(".", 1)[-1] for name, _ in causal_lm.named_modules()}
    missing = sorted(set(config.lora_targets) - present)
    if missing:
        raise ValueError(
            f"lora_targets {missing} are not modules of this backbone ({type(causal_lm).__name__}); "
            f"attention projections here are named e.g. {sorted(n for n in present if n.endswith('proj'))}."
        )
    layers = None
    if config.lora_top_layers is not None:
        depth = causal_lm.config.num_hidden_layers
        layers = list(range(max(0, depth - config.lora_top_layers), depth))
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_targets),
        layers_to_transform=layers,
        bias="none",
    )
