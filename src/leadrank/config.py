"""Typed, YAML-backed specifications: which columns are features, and what the funnel is.

``FeatureSpec`` says which table columns a model may read and how to describe them in a
prompt. ``FunnelSpec`` says which stages a lead can reach (low -> high) and which preference
tiers HPRO builds from them. Both load from and save to YAML.
"""

from __future__ import annotations

import os
from importlib import resources
from typing import Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from leadrank._files import write_text_atomic
from leadrank.rules import Rule, RuleError

#: Columns every lead table has; never features.
ID_COLUMN = "lead_id"
TIME_COLUMN = "as_of"
RESERVED_COLUMNS = frozenset({ID_COLUMN, TIME_COLUMN})


class YamlModel(BaseModel):
    """A frozen pydantic model that reads and writes YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Self:
        """Load from a YAML file; errors name the file and the field."""
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
        try:
            return cls.model_validate(data or {})
        except ValueError as exc:
            raise ValueError(f"{path}: not a valid {cls.__name__}:\n{exc}") from None

    def to_yaml(self, path: str | os.PathLike[str]) -> None:
        """Write as YAML, atomically."""
        text = yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
        write_text_atomic(path, text)

    @classmethod
    def _packaged(cls, name: str) -> Self:
        with resources.as_file(resources.files("leadrank") / "configs" / name) as path:
            return cls.from_yaml(path)


class Feature(BaseModel):
    """One input column."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Column name in the lead table.")
    kind: Literal["numeric", "categorical", "bool"] = Field(description="How the column is read and encoded.")
    description: str = Field(default="", description="Plain words used in the prompt instead of the column name.")
    unit: str | None = Field(default=None, description="Unit shown after numbers in the prompt, e.g. 'days'.")

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
            for side in ("winner", "loser"):
                try:
                    rule = self.rule(tier, side)
                except RuleError as exc:
                    raise ValueError(f"tier {tier.name!r} {side}: {exc}") from None
                unknown = sorted(str(v) for v in rule.constants.get(self.stage_column, set()) if v not in self.stages)
                if unknown:
                    raise ValueError(
                        f"tier {tier.name!r} {side} rule {rule.text!r} names stage(s) {unknown} "
                        f"that are not in stages {self.stages}"
                    )
        return self

    def rule(self, tier: Tier, side: Literal["winner", "loser"]) -> Rule:
        """The compiled rule of one side of a tier; ``stage`` refers to ``stage_column``."""
        return Rule(getattr(tier, side), aliases={"stage": self.stage_column})

    @property
    def supervision_columns(self) -> list[str]:
        """Columns that describe the outcome: never model inputs."""
        columns = [self.label_column, self.stage_column]
        for tier in self.tiers:
            for side in ("winner", "loser"):
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
