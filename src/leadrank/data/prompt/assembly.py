"""The prompt assembled: the template's words, the lead record, the conversation and the answer cue.

:func:`build_prompts` (a whole table) is the entry point; :func:`build_prompt` does one lead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from leadrank.config import FeatureSpec
from leadrank.data.prompt.truncation import check_budget, fit_dialogues, split_turns, truncate_dialogue
from leadrank.data.prompt.values import WHITESPACE, MissingColumnError, format_value, get_column, is_missing, render_tabular
from leadrank.errors import DataContractError

__all__ = ["ANSWER_CUE", "DEFAULT_TEMPLATE", "PromptTemplate", "build_prompt", "build_prompts"]

#: The text every prompt ends with; the model reads the hidden state of its last token.
ANSWER_CUE = "Answer:"
_TABULAR_HEADER = "Lead record:"
_DIALOGUE_HEADER = "Conversation (oldest first):"
_NO_DIALOGUE = "Conversation: none recorded."
_DIALOGUE_OMITTED = "Conversation: omitted (token budget too small)."


class PromptTemplate(BaseModel):
    """The fixed words of a prompt: the instruction on top and the closing question.

    Parameters
    ----------
    instruction : str
        First paragraph: who the model is and what it must decide.
    question : str
        The Yes/No question after the conversation; followed by the line ``"Answer:"``.
    answer_yes, answer_no : str, default='Yes', 'No'
        The answer words the semantic head is trained on (one word each, distinct).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    instruction: str = Field(
        default=(
            "You are a sales analyst. Read the lead's CRM record and conversation, "
            "then answer whether the customer will lock in an order."
        ),
        min_length=1,
        description="First paragraph of every prompt.",
    )
    question: str = Field(
        default="Will this customer lock in an order? Answer Yes or No.",
        min_length=1,
        description="The Yes/No question; the prompt's last line after it is 'Answer:'.",
    )
    answer_yes: str = Field(default="Yes", min_length=1, description="Answer word for a positive lead.")
    answer_no: str = Field(default="No", min_length=1, description="Answer word for a negative lead.")

    @field_validator("instruction", "question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("answer_yes", "answer_no")
    @classmethod
    def _one_word(cls, value: str) -> str:
        if value != value.strip() or WHITESPACE.search(value):
            raise ValueError(f"answer words must be a single word without spaces; got {value!r}")
        return value

    @model_validator(mode="after")
    def _distinct(self) -> PromptTemplate:
        if self.answer_yes == self.answer_no:
            raise ValueError(f"answer_yes and answer_no must differ; both are {self.answer_yes!r}")
        return self

    def completion(self, label: bool | int) -> str:
        """The text that follows ``"Answer:"`` for a label: ``" Yes"`` or ``" No"``."""
        return " " + (self.answer_yes if label else self.answer_no)


DEFAULT_TEMPLATE = PromptTemplate()


def _tabular_block(tabular: str) -> str:
    return f"{_TABULAR_HEADER}\n{tabular}" if tabular else f"{_TABULAR_HEADER} none."


def _dialogue_text(row: Mapping[str, Any], spec: FeatureSpec) -> str:
    if spec.dialogue_column is None:
        return ""
    value = get_column(row, spec.dialogue_column, "dialogue column")
    if is_missing(value):
        return ""
    if not isinstance(value, str):
        raise DataContractError(
            f"dialogue column {spec.dialogue_column!r} must hold text; got {type(value).__name__} {value!r}. "
            f"Store transcripts as strings (empty for none)."
        )
    return value


def _assemble(tabular: str | None, dialogue_block: str, template: PromptTemplate) -> str:
    """The prompt; ``tabular=None`` leaves the CRM block out (the dialogue-only reading)."""
    parts = [template.instruction, dialogue_block, f"{template.question}\n{ANSWER_CUE}"]
    if tabular is not None:
        parts.insert(1, _tabular_block(tabular))
    return "\n\n".join(parts)


def _dialogue_block(original: str, shown: str) -> str:
    if shown:
        return f"{_DIALOGUE_HEADER}\n{shown}"
    return _DIALOGUE_OMITTED if split_turns(original) else _NO_DIALOGUE


def build_prompt(
    row: Mapping[str, Any],
    spec: FeatureSpec,
    tokenizer: Any = None,
    max_dialogue_tokens: int | None = None,
    template: PromptTemplate = DEFAULT_TEMPLATE,
) -> str:
    """Serialise one lead into the prompt the model reads (see :mod:`leadrank.data.prompt`).

    Parameters
    ----------
    row : Mapping[str, Any]
        One lead: its feature columns and, if ``spec.dialogue_column`` is set, its dialogue.
        Other columns are ignored.
    spec : FeatureSpec
        Which features to show, in which order and words, and where the dialogue is.
    tokenizer : PreTrainedTokenizerBase, default=None
        Needed only with ``max_dialogue_tokens``.
    max_dialogue_tokens : int, default=None
        Token budget for the dialogue (see :func:`truncate_dialogue`); None keeps it all.
    template : PromptTemplate, default=PromptTemplate()
        Instruction and question words.

    Returns
    -------
    str
        Deterministic text ending in ``"Answer:"``. Dialogue lines are stripped and blank
        lines dropped. With no dialogue column, or an empty dialogue, the conversation
        block reads ``"Conversation: none recorded."``; when a budget of 0 leaves nothing
        of a real dialogue, it reads ``"Conversation: omitted (token budget too small)."``.

    Raises
    ------
    MissingColumnError
        A column named by ``spec`` is missing from ``row``.
    DataContractError
        (a ``ValueError``) A value does not fit its feature kind, or the dialogue is not text.
    ConfigurationError
        (a ``ValueError``) ``max_dialogue_tokens`` is set without a tokenizer, or is not a
        whole number >= 0.
    """
    if max_dialogue_tokens is not None:
        check_budget(tokenizer, max_dialogue_tokens, "max_dialogue_tokens")
    tabular = render_tabular(row, spec)
    dialogue = _dialogue_text(row, spec)
    if max_dialogue_tokens is None:
        shown = "\n".join(split_turns(dialogue))
    else:
        shown = truncate_dialogue(dialogue, tokenizer, max_dialogue_tokens)
    return _assemble(tabular, _dialogue_block(dialogue, shown), template)


def build_prompts(
    table: pd.DataFrame,
    spec: FeatureSpec,
    tokenizer: Any = None,
    max_dialogue_tokens: int | None = None,
    template: PromptTemplate = DEFAULT_TEMPLATE,
    *,
    dialogue_only: bool = False,
) -> list[str]:
    """:func:`build_prompt` for every row of ``table``, in row order.

    With ``dialogue_only=True`` the prompts leave the CRM fields out (the model reads them as
    a side input instead) and a lead with no dialogue text left to show gets ``""``: there is
    nothing for the language model to read.

    Columns are checked once up front. With a budget, dialogues (their newest turns when
    long, as in :func:`truncate_dialogue`) are measured in batches (fast tokenizers work in
    parallel) and only those over budget are truncated turn by turn, so 100k-row tables
    take seconds, not minutes.

    Raises
    ------
    MissingColumnError
        ``table`` lacks a column named by ``spec``; the message lists the missing ones.
    """
    if max_dialogue_tokens is not None:
        check_budget(tokenizer, max_dialogue_tokens, "max_dialogue_tokens")
    missing = [c for c in spec.input_columns if c not in table.columns]
    if missing:
        raise MissingColumnError(
            f"the table has no column(s) {missing}, which the FeatureSpec names as inputs; add them "
            f"(empty values mean unknown) or remove them from the spec. "
            f"Columns present: {list(map(str, table.columns))}"
        )
    # Column by column: the same values and text as build_prompt, without a dict per row.
    n_rows = len(table)
    column = spec.dialogue_column
    if column is None:
        dialogues = [""] * n_rows  # what _dialogue_text gives without a dialogue column
    else:
        dialogues = [_dialogue_text({column: value}, spec) for value in table[column].tolist()]
    shown = fit_dialogues(dialogues, tokenizer, max_dialogue_tokens)
    if dialogue_only:
        return [_assemble(None, _dialogue_block(d, text), template) if text else "" for d, text in zip(dialogues, shown, strict=True)]
    lines = [[f"- {f.label}: {format_value(v, f)}" for v in table[f.name].tolist()] for f in spec.features]
    tabular = ["\n".join(parts) for parts in zip(*lines, strict=True)] if lines else [""] * n_rows
    return [
        _assemble(block, _dialogue_block(original, text), template) for block, original, text in zip(tabular, dialogues, shown, strict=True)
    ]
