"""How the service runs: :class:`ServeSettings`, each field with its default, its limits and its help."""

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from leadrank.errors import ConfigurationError
from leadrank.inference import ScoreConfig

__all__ = ["TOKEN_ENV", "ServeSettings"]

#: Environment variable holding the bearer token; unset or empty means no token is needed.
TOKEN_ENV = "LEADRANK_API_TOKEN"


def _token_from_env() -> str | None:
    return os.environ.get(TOKEN_ENV) or None


class ServeSettings(BaseModel):
    """How the service runs; ``leadrank serve`` sets these from its options.

    A value the service cannot use raises :class:`~leadrank.errors.ConfigurationError` naming the
    setting and its limit (the command line's exit code 2), not pydantic's ``ValidationError``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_batch: int = Field(256, ge=1, description="Most leads in one request, and in one micro-batch of merged requests.")
    max_request_bytes: int = Field(8 * 2**20, ge=1, description="Larger request bodies get 413.")
    max_dialogue_chars: int = Field(
        100_000,
        ge=1,
        description="Most characters in one lead's dialogue; a longer one gets 422 naming the lead. The model reads only "
        "the newest turns that fit its token budget, so clients can send those.",
    )
    batch_wait_ms: float = Field(5.0, ge=0, description="How long the worker waits for more requests to merge into a batch.")
    api_token: str | None = Field(
        default_factory=_token_from_env,
        repr=False,
        description=f"Bearer token required on every endpoint but /health; None: no token. Default: ${TOKEN_ENV}.",
    )
    score: ScoreConfig = Field(ScoreConfig(), description="How the Scorer runs (threads, bf16, rank_by).")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:  # a ValueError: the command line would call it an environment problem (exit 1)
            raise ConfigurationError(". ".join(_in_words(error) for error in exc.errors())) from exc


def _in_words(error: ErrorDetails) -> str:
    """One pydantic error as 'setting must be ...; got value'."""
    name = ".".join(str(part) for part in error["loc"]) or "settings"
    ctx = error.get("ctx", {})
    if error["type"] == "greater_than_equal":
        rule = f"must be at least {_number(ctx['ge'])}"
    elif error["type"] == "greater_than":
        rule = f"must be above {_number(ctx['gt'])}"
    elif error["type"] == "extra_forbidden":
        return f"{name} is not a setting; the settings are {', '.join(ServeSettings.model_fields)}"
    else:
        rule = f"is not valid ({error['msg']})"
    return f"{name} {rule}; got {error['input']!r}"


def _number(limit: float) -> str:
    """A limit as it was written: pydantic turns ``ge=0`` on a float field into 0.0."""
    return str(int(limit)) if isinstance(limit, float) and limit.is_integer() else str(limit)
