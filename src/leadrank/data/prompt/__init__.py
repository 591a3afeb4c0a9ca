"""One lead -> one prompt: CRM fields, the (truncated) dialogue, and a Yes/No question.

The prompt is plain text in a fixed layout::

    {instruction}

    Lead record:
    - lead source: web form
    - days since the lead was created: 12 days
    ...

    Conversation (oldest first):
    [... 3 earlier turns omitted]
    Specialist: Would Saturday suit you for a test drive?
    Customer: yes, morning please

    Will this customer lock in an order? Answer Yes or No.
    Answer:

It always ends in ``"Answer:"`` with no trailing space or newline, so the model's *last
token* is the end of that cue: its hidden state feeds the pointwise and pairwise heads, and
its next-token distribution is where the semantic head reads the answer (the continuation
is ``PromptTemplate.completion(label)``, i.e. ``" Yes"`` / ``" No"`` with a leading space).

Dialogues are speaker-tagged turns, one per line, oldest first. When a token budget is
given, :func:`truncate_dialogue` keeps the *newest* turns that fit and cuts the oldest first,
at line boundaries, behind a marker line such as ``"[... 3 earlier turns omitted]"``.

Example
-------
>>> from leadrank.config import Feature, FeatureSpec
>>> spec = FeatureSpec(features=[Feature(name="lead_age_days", kind="numeric", unit="days")])
>>> print(build_prompt({"lead_age_days": 12.0, "dialogue": "Customer: hi"}, spec))
You are a sales analyst. Read the lead's CRM record and conversation, then answer whether the customer will lock in an order.
<BLANKLINE>
Lead record:
- lead age days: 12 days
<BLANKLINE>
Conversation (oldest first):
Customer: hi
<BLANKLINE>
Will this customer lock in an order? Answer Yes or No.
Answer:
"""

from leadrank.data.prompt.assembly import ANSWER_CUE, DEFAULT_TEMPLATE, PromptTemplate, build_prompt, build_prompts
from leadrank.data.prompt.truncation import split_turns, truncate_dialogue
from leadrank.data.prompt.values import MissingColumnError, format_value, render_tabular

__all__ = [
    "ANSWER_CUE",
    "DEFAULT_TEMPLATE",
    "MissingColumnError",
    "PromptTemplate",
    "build_prompt",
    "build_prompts",
    "format_value",
    "render_tabular",
    "split_turns",
    "truncate_dialogue",
]
