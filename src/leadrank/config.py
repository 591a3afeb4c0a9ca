"""Typed, YAML-backed specifications: which columns are features, and what the funnel is.

``FeatureSpec`` says which table columns a model may read and how to describe them in a
prompt. ``FunnelSpec`` says which stages a lead can reach (low -> high) and which preference
tiers HPRO builds from them. Both load from and save to YAML.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import ErrorDetails

from leadrank._files import write_text_atomic
from leadrank.errors import ConfigurationError, DataContractError, EnvironmentProblem, LeadrankError
from leadrank.rules import Rule, RuleError

#: Columns every lead table has; never features.
ID_COLUMN = "lead_id"
TIME_COLUMN = "as_of"
RESERVED_COLUMNS = frozenset({ID_COLUMN, TIME_COLUMN})


class SpecNotFoundError(EnvironmentProblem, FileNotFoundError):
    """A spec file that does not exist."""


#: The recipes shipped in ``configs/presets/`` (see ``RunConfig.resolve``); the first is the default.
PRESETS = ("cpu-quick", "cpu-lora", "paper")
DEFAULT_PRESET = PRESETS[0]


class Settings(BaseModel):
    """Frozen settings whose fields carry their defaults, limits and descriptions (the CLI's help).

    A value that breaks a limit raises :class:`~leadrank.errors.ConfigurationError` naming the
    setting and the limit in words (exit code 2 on the command line), not pydantic's error.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:  # a ValueError: the command line would call it an environment problem (exit 1)
            raise ConfigurationError(". ".join(_in_words(type(self), error) for error in exc.errors())) from exc


def _in_words(settings: type[BaseModel], error: ErrorDetails) -> str:
    """One pydantic error as 'setting must be ...; got value'."""
    name = ".".join(str(part) for part in error["loc"]) or "settings"
    ctx = error.get("ctx", {})
    if error["type"] == "greater_than_equal":
        rule = f"must be at least {_number(ctx['ge'])}"
    elif error["type"] == "greater_than":
        rule = f"must be above {_number(ctx['gt'])}"
    elif error["type"] == "extra_forbidden":
        return f"{name} is not a setting; the settings are {', '.join(settings.model_fields)}"
    else:
        rule = f"is not valid ({error['msg']})"
    return f"{name} {rule}; got {error['input']!r}"


def _number(limit: float) -> str:
    """A limit as it was written: pydantic turns ``ge=0`` on a float field into 0.0."""
    return str(int(limit)) if isinstance(limit, float) and limit.is_integer() else str(limit)


class YamlModel(BaseModel):
    """A frozen pydantic model that reads and writes YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: What a broken file of this kind is: a spec is part of the data contract (exit 3); a run or
    #: CRM config is a setting (:class:`~leadrank.errors.ConfigurationError`, exit 2).
    file_error: ClassVar[type[DataContractError] | type[ConfigurationError]] = DataContractError

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Self:
        """Load from a YAML file.

        Raises
        ------
        SpecNotFoundError
            The file does not exist (also a ``FileNotFoundError``).
        EnvironmentProblem
            The file cannot be read (a folder, no permission).
        DataContractError
            The file is not UTF-8, not YAML, holds a YAML tag, or is not a valid spec; the
            message names the file, the line and column where YAML gives one, and the fix
            (:attr:`file_error`: a ConfigurationError for settings files).
        """
        data = _read_yaml(path, cls.__name__, cls.file_error)
        try:
            return cls.model_validate(data or {})
        except ValidationError as exc:
            raise cls.file_error(f"{path}: not a valid {cls.__name__}:\n{exc}\nfix: correct the field(s) named above in {path}") from None

    def to_yaml(self, path: str | os.PathLike[str]) -> None:
        """Write as YAML, atomically."""
        text = yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
        write_text_atomic(path, text)

    @classmethod
    def _packaged(cls, name: str) -> Self:
        with resources.as_file(resources.files("leadrank") / "configs" / name) as path:
            return cls.from_yaml(path)


def _read_yaml(path: str | os.PathLike[str], kind: str, error: type[LeadrankError]) -> Any:
    """The YAML document in ``path``, read safely (plain values only)."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise SpecNotFoundError(f"{path}: no such file; check the path of the {kind} YAML file") from None
    except OSError as exc:
        raise EnvironmentProblem(f"{path}: cannot read the {kind} file ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise error(f"{path}, line {line}: not UTF-8 text (byte {raw[exc.start]:#04x}); fix: save the file as UTF-8") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(_yaml_message(path, kind, text, exc)) from None


def _yaml_message(path: str | os.PathLike[str], kind: str, text: str, exc: yaml.YAMLError) -> str:
    """A YAML error in words naming the file, the line and column, and the fix."""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}"
        what = "; ".join(str(part) for part in (exc.context, exc.problem) if part)  # type: ignore[attr-defined]
    elif isinstance(exc, yaml.reader.ReaderError):
        where = f"{path}, line {text.count(chr(10), 0, exc.position) + 1}"
        what = f"character {chr(exc.character)!r} is not allowed in YAML"
    else:
        where, what = str(path), str(exc)
    if isinstance(exc, yaml.constructor.ConstructorError):
        return (
            f"{where}: a YAML tag a {kind} cannot hold ({what}); "
            "fix: remove the tag (such as '!!python/object') and write plain text, numbers, lists and mappings"
        )
    return (
        f"{where}: not valid YAML ({what}); "
        "fix: correct the YAML there (brackets and quotes closed, consistent indentation, ': ' after each key)"
    )


FeatureKind = Literal["numeric", "categorical", "bool"]


class Feature(BaseModel):
    """One input column."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Column name in the lead table.")
    kind: FeatureKind = Field(description="How the column is read and encoded.")
    description: str = Field(default="", description="Plain words used in the prompt instead of the column name.")
    unit: str | None = Field(default=None, description="Unit shown after numbers in the prompt, e.g. 'days'.")
    min: float | None = Field(
        default=None,
        strict=True,
        allow_inf_nan=False,
        description="Numeric features only: the smallest valid value (inclusive); a row below it is rejected.",
    )
    max: float | None = Field(
        default=None,
        strict=True,
        allow_inf_nan=False,
        description="Numeric features only: the largest valid value (inclusive); a row above it is rejected.",
    )

    @model_validator(mode="after")
    def _check_bounds(self) -> Self:
        if self.kind != "numeric" and (self.min is not None or self.max is not None):
            raise ValueError(f"feature {self.name!r}: min/max bound numeric features only; this one is {self.kind}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"feature {self.name!r}: min ({self.min:g}) is above max ({self.max:g})")
        return self

    @model_serializer(mode="wrap")
    def _omit_absent_bounds(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave out unset min/max, so specs without bounds are written (and stored in models) as before."""
        data = handler(self)
        return {key: value for key, value in data.items() if key not in ("min", "max") or value is not None}

    @property
    def label(self) -> str:
        """What the prompt calls this field."""
        return self.description or self.name.replace("_", " ")


class FeatureSpec(YamlModel):
    """The columns a model may read, in prompt order, and where the dialogue is."""

    features: list[Feature] = Field(description="Tabular input columns, in the order the prompt lists them.")
    dialogue_column: str | None = Field(
        default="dialogue", description="Column with transcripts/notes, oldest first; null for tables without text."
    )

    @field_validator("features")
    @classmethod
    def _check_features(cls, features: list[Feature]) -> list[Feature]:
        names = [f.name for f in features]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"feature names must be unique; repeated: {duplicated}")
        for name in names:
            if name.startswith("_"):
                raise ValueError(f"feature {name!r}: columns starting with '_' are diagnostics and never inputs")
            if name in RESERVED_COLUMNS:
                raise ValueError(f"feature {name!r}: {sorted(RESERVED_COLUMNS)} identify a lead and are never inputs")
        return features

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def input_columns(self) -> list[str]:
        """Every column a model reads: features plus the dialogue column."""
        return self.names + ([self.dialogue_column] if self.dialogue_column else [])

    @classmethod
    def nev_default(cls) -> FeatureSpec:
        """The spec for the simulated new-energy-vehicle CRM (``configs/features_nev.yaml``)."""
        return cls._packaged("features_nev.yaml")


TierSide = Literal["winner", "loser"]
TIER_SIDES: tuple[TierSide, TierSide] = ("winner", "loser")
"""The two sides of a :class:`Tier`, each a rule: the preferred leads, then those they are preferred to."""


class Tier(BaseModel):
    """One preference tier: every winner is preferred to every loser by at least ``margin``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    winner: str = Field(description="Rule selecting the preferred leads, e.g. \"stage == 'lock'\".")
    loser: str = Field(description="Rule selecting the leads they are preferred to.")
    margin: float = Field(ge=0.0, description="How sure the business is of this preference (Bradley–Terry margin).")


class FunnelSpec(YamlModel):
    """Funnel stages (low -> high), the columns that hold the outcome, and the HPRO tiers."""

    stages: list[str] = Field(min_length=2, description="Stage names from lowest to highest.")
    tiers: list[Tier] = Field(default_factory=list, description="Preference tiers; empty means plain pairwise on the label.")
    stage_column: str = Field(default="funnel_stage", description="Column with the furthest stage reached in the horizon.")
    label_column: str = Field(default="label", description="Column with the 0/1 outcome.")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if len(set(self.stages)) != len(self.stages):
            raise ValueError(f"stages must be unique; got {self.stages}")
        tier_names = [t.name for t in self.tiers]
        if len(set(tier_names)) != len(tier_names):
            raise ValueError(f"tier names must be unique; got {tier_names}")
        for tier in self.tiers:
            for side in TIER_SIDES:
                try:
                    rule = self.rule(tier, side)
                except RuleError as exc:
                    raise ValueError(f"tier {tier.name!r} {side}: {exc}") from None
                unknown = sorted(str(v) for v in rule.constants.get(self.stage_column, set()) if v not in self.stages)
                if unknown:
                    raise ValueError(
                        f"tier {tier.name!r} {side} rule {rule.text!r} names stage(s) {unknown} " f"that are not in stages {self.stages}"
                    )
        return self

    def rule(self, tier: Tier, side: TierSide) -> Rule:
        """The compiled rule of one side of a tier; ``stage`` refers to ``stage_column``."""
        return Rule(getattr(tier, side), aliases={"stage": self.stage_column})

    @property
    def supervision_columns(self) -> list[str]:
        """Columns that describe the outcome: never model inputs."""
        columns = [self.label_column, self.stage_column]
        for tier in self.tiers:
            for side in TIER_SIDES:
                columns += sorted(self.rule(tier, side).columns - set(columns))
        return columns

    @classmethod
    def paper_default(cls) -> FunnelSpec:
        """The paper's funnel (``configs/funnel.yaml``): lock ≻ defeat, test drive ≻ none, long ≻ short call."""
        return cls._packaged("funnel.yaml")

    @classmethod
    def total_order(cls) -> FunnelSpec:
        """Every higher stage ≻ every lower one (``configs/funnel_order.yaml``): 10 tiers, margin 0.25 per stage apart."""
        return cls._packaged("funnel_order.yaml")
