"""The JSON the service takes and gives: the lead and request models, their validators, /model's body.

The lead model is built from the model's FeatureSpec when the app is created, so ``/docs``
shows the exact fields. Fields take JSON values as they are: ``"42"`` or ``true`` in a numeric
field is refused, not converted, and a ``lead_id`` must not be blank.
"""

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, create_model

from leadrank.config import ID_COLUMN, TIME_COLUMN, FeatureSpec, FunnelSpec


def _is_unicode(text: str) -> bool:
    """False for text with lone surrogates, which JSON escapes such as "\\ud800" give."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _encodable(text: str) -> str:
    if not _is_unicode(text):
        raise ValueError("holds a lone UTF-16 surrogate (e.g. an unpaired \\ud800 escape); send valid Unicode text")
    return text


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("is empty or only whitespace")
    return text


def _at_most(max_chars: int) -> Callable[[str], str]:
    """A validator refusing text over ``max_chars`` characters.

    Not ``Field(max_length=...)``: with it pydantic refuses lone surrogates first, in words that hide why.
    """

    def check(text: str) -> str:
        if len(text) > max_chars:
            raise ValueError(f"has {len(text):,} characters, over this server's limit of {max_chars:,}")
        return text

    return check


_Text = Annotated[StrictStr, AfterValidator(_encodable)]
_Id = Annotated[_Text, AfterValidator(_not_blank)]
_Int64 = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]
_Scalar = _Text | _Int64 | StrictFloat | StrictBool
_KINDS = {
    "numeric": (StrictFloat | None, 'a finite number, or null when unknown (not text such as "42", not true/false)'),
    "bool": (bool | None, "true/false (or 'yes'/'no', 1/0), or null when unknown"),
    "categorical": (_Scalar | None, "text (or a number or true/false), or null when unknown"),
}
#: What /explain's ``top`` takes.
_TOP = "a whole number from 1 to 100: how many positive and negative factors and turns to return"


def _lead_model(features: FeatureSpec, funnel: FunnelSpec, max_dialogue_chars: int) -> type[BaseModel]:
    """The JSON form of one lead, from the FeatureSpec (fields aliased: any column name works)."""
    fields: dict[str, Any] = {
        "id_": (_Id | _Int64, Field(alias=ID_COLUMN, description="a unique text (not blank) or integer id")),
        "as_of": (_Text, Field(alias=TIME_COLUMN, description="an ISO-8601 timestamp such as '2024-03-01T09:30:00'")),
    }
    for i, feature in enumerate(features.features):
        kind, expected = _KINDS[feature.kind]
        fields[f"feature_{i}"] = (kind, Field(alias=feature.name, description=expected))
    if features.dialogue_column:
        fields["dialogue"] = (
            Annotated[_Text, AfterValidator(_at_most(max_dialogue_chars))],
            Field(
                alias=features.dialogue_column,
                description=f"text of at most {max_dialogue_chars:,} characters, "
                "one 'Speaker: text' turn per line, oldest first ('' for none)",
            ),
        )
    stages = Literal[tuple(funnel.stages)]  # type: ignore[valid-type]
    fields["label"] = (
        StrictBool | Annotated[StrictInt, Field(ge=0, le=1)] | None,
        Field(None, alias=funnel.label_column, description="0 or 1 (optional, not used)"),
    )
    fields["stage"] = (stages | None, Field(None, alias=funnel.stage_column, description=f"one of {funnel.stages} (optional, not used)"))
    config = ConfigDict(extra="ignore", allow_inf_nan=False, populate_by_name=False)
    return create_model("Lead", __config__=config, **fields)


def _score_request(lead_model: type[BaseModel], max_batch: int) -> type[BaseModel]:
    """``POST /score``'s body: ``{"leads": [lead, ...]}``, 1 to ``max_batch`` leads."""
    lead_list = list[lead_model]  # type: ignore[valid-type]
    return create_model(
        "ScoreRequest",
        leads=(lead_list, Field(min_length=1, max_length=max_batch, description="The leads to score.")),
    )


def _explain_request(lead_model: type[BaseModel]) -> type[BaseModel]:
    """``POST /explain``'s body: ``{"lead": lead, "top": 5}``."""
    return create_model(
        "ExplainRequest",
        lead=(lead_model, Field(description="The lead to explain.")),
        top=(StrictInt, Field(5, ge=1, le=100, description=_TOP)),
    )


def _public_manifest(manifest: dict) -> dict:
    """``GET /model``'s body: the manifest's versions, specs and metrics."""
    keys = (
        "format_version",
        "leadrank_version",
        "model_version",
        "backbone",
        "rank_by",
        "features",
        "funnel",
        "model_config",
        "calibration",
        "metrics",
    )
    shown = {key: manifest.get(key) for key in keys}
    return json.loads(json.dumps(shown), parse_constant=lambda _: None)  # NaN metrics become null
