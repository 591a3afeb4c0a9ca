"""Why a lead scored as it did: occlusion of its CRM fields and of its dialogue turns.

For one lead, every FeatureSpec field is masked in turn (set to missing, which the prompt
renders as ``unknown``, exactly as a gap in the table) and every dialogue turn (a non-blank
line of the dialogue column) is dropped in turn. The lead and all its occluded variants are
scored as one batch by the artifact's :class:`~leadrank.inference.Scorer`.

Cost: ``1 + n_features + n_turns`` prompts per lead (the lead itself, one per masked field,
one per dropped turn); :attr:`Explanation.n_prompts` reports it.

An **effect** is ``score(lead) - score(lead with the field masked / the turn dropped)``: a
positive effect means the field's value (or the turn) pushed the lead up. Effects are given
on the ranking score the artifact ranks by and on the probability. Turns already cut by the
dialogue token budget only change the "earlier turns omitted" count, so their effects are
near zero.

Example
-------
>>> scorer = Scorer.load("runs/model")  # doctest: +SKIP
>>> result = explain(scorer, find_lead(read_table("leads.parquet"), "L0-0000042"), top=5)  # doctest: +SKIP
>>> [(f.field, f.rank_effect) for f in result.factors]  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Mapping
from typing import Any

import pandas as pd
from pydantic import BaseModel, Field

from leadrank.config import ID_COLUMN, TIME_COLUMN
from leadrank.data.prompt import format_value, split_turns
from leadrank.data.schema import validate
from leadrank.inference import Scorer

__all__ = ["Explanation", "Factor", "TurnEffect", "explain", "explain_top", "find_lead"]


class Factor(BaseModel):
    """One tabular field and how much its value moved the lead's scores."""

    field: str = Field(description="FeatureSpec field name.")
    value: str = Field(description="The value as the prompt shows it (e.g. '12 days', 'unknown').")
    rank_effect: float = Field(description="Ranking score minus the ranking score with the field masked.")
    probability_effect: float = Field(description="Probability minus the probability with the field masked.")


class TurnEffect(BaseModel):
    """One dialogue turn and how much it moved the lead's scores."""

    index: int = Field(description="0-based position among the dialogue's turns, oldest first.")
    text: str = Field(description="The turn as the prompt shows it (stripped line).")
    rank_effect: float = Field(description="Ranking score minus the ranking score without this turn.")
    probability_effect: float = Field(description="Probability minus the probability without this turn.")


class Explanation(BaseModel):
    """A lead's scores and the fields and turns that moved them most."""

    lead_id: str
    probability: float
    rank_score: float
    factors: list[Factor] = Field(description="Fields, largest positive effect first, most negative last.")
    turns: list[TurnEffect] = Field(description="Turns, largest absolute effect first.")
    n_prompts: int = Field(description="Prompts scored: 1 + n_features + n_turns.")
    seconds: float = Field(description="Wall time of the explanation.")


def explain(scorer: Scorer, lead: Mapping[str, Any] | pd.Series, *, top: int | None = None) -> Explanation:
    """Explain one lead by occlusion; costs ``1 + n_features + n_turns`` prompts.

    Parameters
    ----------
    scorer : Scorer
        Scores the lead and its variants (one batch).
    lead : Mapping or pandas.Series
        One lead with ``lead_id``, ``as_of`` and the artifact's input columns.
    top : int, default=None
        Keep the ``top`` fields with the largest positive and the ``top`` with the most
        negative rank effect (fields with no effect are left out), and the ``top`` turns
        with the largest absolute rank effect. None keeps every field and turn.

    Raises
    ------
    LeadDataError
        The lead breaks the data contract (row 0 is the lead).
    ValueError
        ``top`` is below 1.
    """
    if top is not None and top < 1:
        raise ValueError(f"top must be at least 1 (or None for everything); got {top}")
    started = time.perf_counter()
    spec = scorer.artifact.features
    validate(pd.DataFrame([dict(lead)]), spec, scorer.artifact.funnel, require_labels=False)
    base = {column: lead[column] for column in (TIME_COLUMN, *spec.input_columns)}
    dialogue = spec.dialogue_column
    turns = _turns(base[dialogue]) if dialogue else []
    variants = [base] + [{**base, f.name: None} for f in spec.features]
    if dialogue:
        variants += [{**base, dialogue: "\n".join(turns[:i] + turns[i + 1 :])} for i in range(len(turns))]
    frame = pd.DataFrame(variants)
    frame.insert(0, ID_COLUMN, [str(i) for i in range(len(frame))])  # variants need distinct ids
    scores = scorer.score(frame)
    rank = scores["rank_score"].to_numpy(dtype=float)
    probability = scores["probability"].to_numpy(dtype=float)
    factors = [
        Factor(
            field=f.name,
            value=format_value(base[f.name], f),
            rank_effect=rank[0] - rank[1 + i],
            probability_effect=probability[0] - probability[1 + i],
        )
        for i, f in enumerate(spec.features)
    ]
    offset = 1 + len(spec.features)
    turn_effects = [
        TurnEffect(
            index=i,
            text=text,
            rank_effect=rank[0] - rank[offset + i],
            probability_effect=probability[0] - probability[offset + i],
        )
        for i, text in enumerate(turns)
    ]
    return Explanation(
        lead_id=str(lead[ID_COLUMN]),
        probability=probability[0],
        rank_score=rank[0],
        factors=_top_factors(factors, top),
        turns=sorted(turn_effects, key=lambda t: -abs(t.rank_effect))[:top],
        n_prompts=len(frame),
        seconds=time.perf_counter() - started,
    )


def explain_top(scorer: Scorer, table: pd.DataFrame, n: int, *, top: int | None = None) -> list[Explanation]:
    """Score ``table`` and explain its ``n`` highest-ranked leads, best first.

    Costs ``len(table)`` prompts plus ``1 + n_features + n_turns`` per explained lead.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1; got {n}")
    scores = scorer.score(table)
    best = scores["rank_score"].to_numpy(dtype=float).argsort(kind="stable")[::-1][:n]
    return [explain(scorer, table.iloc[i], top=top) for i in best]


def find_lead(table: pd.DataFrame, lead_id: str) -> pd.Series:
    """The row of ``table`` whose ``lead_id`` reads ``lead_id`` (ids compared as text).

    Raises
    ------
    ValueError
        No such lead; the message names the id and suggests close ones.
    """
    if ID_COLUMN not in table.columns:
        raise ValueError(f"the table has no {ID_COLUMN!r} column; columns present: {list(map(str, table.columns))}")
    wanted = str(lead_id)
    ids = table[ID_COLUMN].astype(str)
    matches = (ids == wanted).to_numpy()
    if not matches.any():
        close = difflib.get_close_matches(wanted, ids.tolist(), n=50, cutoff=0.6)
        close.sort(key=lambda c: (-difflib.SequenceMatcher(None, wanted, c).ratio(), abs(len(c) - len(wanted)), c))
        hint = f"; close ids: {', '.join(map(repr, close[:3]))}" if close else ""
        raise ValueError(f"lead_id {lead_id!r} is not in the table ({len(table):,} leads){hint}")
    return table[matches].iloc[0]


def _turns(dialogue: Any) -> list[str]:
    """Turns as the prompt splits them (a missing dialogue has none)."""
    return split_turns(dialogue) if isinstance(dialogue, str) else []


def _top_factors(factors: list[Factor], top: int | None) -> list[Factor]:
    ordered = sorted(factors, key=lambda f: -f.rank_effect)
    if top is None:
        return ordered
    positive = [f for f in ordered if f.rank_effect > 0][:top]
    negative = [f for f in ordered if f.rank_effect < 0][-top:]
    return positive + negative
