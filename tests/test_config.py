"""Tests for leadrank.config: the shipped specs, YAML round trips, validation errors, tier rules."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from leadrank.config import Feature, FeatureSpec, FunnelSpec, SpecNotFoundError, Tier
from leadrank.errors import DataContractError, EnvironmentProblem

STAGES = ["defeat", "new", "call", "test_drive", "lock"]


def tier(name: str = "t", winner: str = "stage == 'lock'", loser: str = "stage == 'new'", margin: float = 1.0) -> dict:
    return {"name": name, "winner": winner, "loser": loser, "margin": margin}


def funnel(**overrides: object) -> dict:
    data: dict = {"stages": list(STAGES), "tiers": [tier()]}
    data.update(overrides)
    return data


class TestPaperFunnel:
    def test_tiers_and_margins(self) -> None:
        spec = FunnelSpec.paper_default()
        assert [(t.name, t.margin) for t in spec.tiers] == [("global", 1.0), ("key", 0.5), ("soft", 0.1)]

    def test_stages_and_columns(self) -> None:
        spec = FunnelSpec.paper_default()
        assert spec.stages == STAGES
        assert spec.stage_column == "funnel_stage"
        assert spec.label_column == "label"
        assert spec.supervision_columns == ["label", "funnel_stage", "call_duration_s"]

    def test_leads_land_on_the_right_side_of_each_tier(self) -> None:
        spec = FunnelSpec.paper_default()
        table = pd.DataFrame(
            {
                "funnel_stage": ["lock", "defeat", "new", "call", "call", "call", "test_drive"],
                "call_duration_s": [300.0, 0.0, 0.0, 150.0, 119.0, 120.0, 400.0],
            }
        )
        # (winner, loser) per tier, one entry per row above.
        expected = {
            "global": ([1, 0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0]),
            "key": ([0, 0, 0, 0, 0, 0, 1], [0, 1, 1, 1, 1, 1, 0]),
            "soft": ([0, 0, 0, 1, 0, 1, 0], [0, 0, 0, 0, 1, 0, 0]),
        }
        for t in spec.tiers:
            winners = spec.rule(t, "winner").evaluate(table).astype(int).tolist()
            losers = spec.rule(t, "loser").evaluate(table).astype(int).tolist()
            assert (winners, losers) == expected[t.name], t.name

    def test_call_of_150_seconds_is_soft_winner_and_key_loser(self) -> None:
        spec = FunnelSpec.paper_default()
        table = pd.DataFrame({"funnel_stage": ["call"], "call_duration_s": [150.0]})
        sides = {(t.name, side): bool(spec.rule(t, side).evaluate(table)[0]) for t in spec.tiers for side in ("winner", "loser")}
        assert sides == {
            ("global", "winner"): False,
            ("global", "loser"): False,
            ("key", "winner"): False,
            ("key", "loser"): True,
            ("soft", "winner"): True,
            ("soft", "loser"): False,
        }

    def test_stage_alias_follows_stage_column(self) -> None:
        spec = FunnelSpec.model_validate(
            funnel(stage_column="stg", tiers=[tier(winner="stage == 'call' and secs >= 10", loser="stage == 'new'")])
        )
        assert spec.supervision_columns == ["label", "stg", "secs"]
        rule = spec.rule(spec.tiers[0], "winner")
        assert rule.columns == frozenset({"stg", "secs"})
        table = pd.DataFrame({"stg": ["call", "call", "new"], "secs": [10, 9, 99]})
        assert rule.evaluate(table).tolist() == [True, False, False]


class TestNevFeatures:
    def test_shipped_spec(self) -> None:
        spec = FeatureSpec.nev_default()
        assert spec.dialogue_column == "dialogue"
        assert len(spec.names) == 16
        assert spec.names[:3] == ["source", "lead_age_days", "stage_at_as_of"]
        assert spec.input_columns == spec.names + ["dialogue"]
        kinds = {f.name: f.kind for f in spec.features}
        assert kinds["has_private_parking"] == "bool"
        assert kinds["app_visits_7d"] == "numeric"
        assert kinds["city_tier"] == "categorical"
        assert not set(spec.names) & set(FunnelSpec.paper_default().supervision_columns)

    def test_label_uses_description_else_name(self) -> None:
        assert Feature(name="app_visits_7d", kind="numeric").label == "app visits 7d"
        assert Feature(name="x", kind="numeric", description="stated budget").label == "stated budget"

    def test_specs_are_frozen(self) -> None:
        spec = FunnelSpec.paper_default()
        with pytest.raises(ValidationError, match="frozen"):
            spec.label_column = "y"  # type: ignore[misc]


class TestYamlRoundTrip:
    @pytest.mark.parametrize(
        ("cls", "spec"),
        [(FeatureSpec, FeatureSpec.nev_default()), (FunnelSpec, FunnelSpec.paper_default())],
        ids=["features", "funnel"],
    )
    def test_round_trip(self, tmp_path: Path, cls: type, spec: FeatureSpec | FunnelSpec) -> None:
        path = tmp_path / "nested" / "spec.yaml"
        spec.to_yaml(path)
        assert cls.from_yaml(path) == spec
        assert [p.name for p in path.parent.iterdir()] == ["spec.yaml"]  # no temp files left behind

    def test_round_trip_keeps_units_and_omits_absent_ones(self, tmp_path: Path) -> None:
        spec = FeatureSpec(
            features=[
                Feature(name="age", kind="numeric", description="lead age", unit="days"),
                Feature(name="city", kind="categorical"),
            ]
        )
        spec.to_yaml(tmp_path / "f.yaml")
        assert FeatureSpec.from_yaml(tmp_path / "f.yaml") == spec
        written = yaml.safe_load((tmp_path / "f.yaml").read_text(encoding="utf-8"))
        assert written["features"] == [
            {"name": "age", "kind": "numeric", "description": "lead age", "unit": "days"},
            {"name": "city", "kind": "categorical", "description": "", "unit": None},
        ]

    def test_round_trip_keeps_null_dialogue_column(self, tmp_path: Path) -> None:
        spec = FeatureSpec(features=[Feature(name="age", kind="numeric")], dialogue_column=None)
        spec.to_yaml(tmp_path / "f.yaml")
        loaded = FeatureSpec.from_yaml(tmp_path / "f.yaml")
        assert loaded.dialogue_column is None
        assert loaded == spec

    def test_to_yaml_overwrites(self, tmp_path: Path) -> None:
        path = tmp_path / "funnel.yaml"
        path.write_text("old: content\n", encoding="utf-8")
        FunnelSpec.paper_default().to_yaml(path)
        assert yaml.safe_load(path.read_text(encoding="utf-8"))["stages"] == STAGES


class TestFunnelErrors:
    def test_duplicate_stages(self) -> None:
        with pytest.raises(ValidationError, match=r"stages must be unique; got \['new', 'new'\]"):
            FunnelSpec.model_validate(funnel(stages=["new", "new"], tiers=[]))

    def test_too_few_stages(self) -> None:
        with pytest.raises(ValidationError, match=r"stages\n.*at least 2 items"):
            FunnelSpec.model_validate(funnel(stages=["lock"], tiers=[]))

    def test_duplicate_tier_names(self) -> None:
        with pytest.raises(ValidationError, match=r"tier names must be unique; got \['t', 't'\]"):
            FunnelSpec.model_validate(funnel(tiers=[tier(), tier()]))

    def test_negative_margin(self) -> None:
        with pytest.raises(ValidationError, match=r"margin\n.*greater than or equal to 0"):
            FunnelSpec.model_validate(funnel(tiers=[tier(margin=-0.5)]))

    def test_zero_margin_is_allowed(self) -> None:
        assert FunnelSpec.model_validate(funnel(tiers=[tier(margin=0.0)])).tiers[0].margin == 0.0

    def test_rule_naming_unknown_stage(self) -> None:
        bad = tier(name="key", loser="stage in ('new', 'testdrive')")
        with pytest.raises(ValidationError, match=r"tier 'key' loser rule .* names stage\(s\) \['testdrive'\] that are not in stages"):
            FunnelSpec.model_validate(funnel(tiers=[bad]))

    def test_rule_naming_unknown_stage_through_stage_column(self) -> None:
        with pytest.raises(ValidationError, match=r"names stage\(s\) \['won'\]"):
            FunnelSpec.model_validate(funnel(tiers=[tier(winner="funnel_stage == 'won'")]))

    def test_unsafe_rule_is_rejected_with_tier_and_side(self) -> None:
        with pytest.raises(ValidationError, match=r"tier 't' winner: Rule .*Call is not allowed"):
            FunnelSpec.model_validate(funnel(tiers=[tier(winner="__import__('os').system('x')")]))

    @pytest.mark.parametrize(
        ("data", "where"),
        [
            (funnel(colour="red"), r"colour\n  Extra inputs are not permitted"),
            (funnel(tiers=[{**tier(), "weight": 2}]), r"tiers\.0\.weight\n  Extra inputs are not permitted"),
        ],
    )
    def test_unknown_keys(self, data: dict, where: str) -> None:
        with pytest.raises(ValidationError, match=where):
            FunnelSpec.model_validate(data)

    def test_tier_alone_checks_margin(self) -> None:
        with pytest.raises(ValidationError, match="greater than or equal to 0"):
            Tier(name="t", winner="stage == 'lock'", loser="stage == 'new'", margin=-1)


class TestFeatureErrors:
    @pytest.mark.parametrize(
        ("names", "message"),
        [
            (["_x"], r"feature '_x': columns starting with '_' are diagnostics and never inputs"),
            (["lead_id"], r"feature 'lead_id': \['as_of', 'lead_id'\] identify a lead and are never inputs"),
            (["as_of"], r"feature 'as_of': "),
            (["a", "b", "a", "b", "c"], r"feature names must be unique; repeated: \['a', 'b'\]"),
        ],
    )
    def test_bad_feature_names(self, names: list[str], message: str) -> None:
        with pytest.raises(ValidationError, match=message):
            FeatureSpec(features=[Feature(name=n, kind="numeric") for n in names])

    def test_bad_kind(self) -> None:
        with pytest.raises(ValidationError, match=r"kind\n.*'numeric', 'categorical' or 'bool'"):
            Feature(name="x", kind="text")  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("data", "where"),
        [
            ({"features": [], "colour": 1}, r"colour\n  Extra inputs are not permitted"),
            ({"features": [{"name": "a", "kind": "numeric", "colour": 1}]}, r"features\.0\.colour\n  Extra inputs"),
        ],
    )
    def test_unknown_keys(self, data: dict, where: str) -> None:
        with pytest.raises(ValidationError, match=where):
            FeatureSpec.model_validate(data)


class TestFromYamlErrors:
    def test_invalid_spec_names_file(self, tmp_path: Path) -> None:
        path = tmp_path / "funnel.yaml"
        path.write_text("stages: [new, new]\n", encoding="utf-8")
        expected = rf"(?s)^{re.escape(str(path))}: not a valid FunnelSpec:\n.*stages must be unique"
        with pytest.raises(ValueError, match=expected):
            FunnelSpec.from_yaml(path)

    def test_empty_file_names_file_and_missing_field(self, tmp_path: Path) -> None:
        path = tmp_path / "features.yaml"
        path.write_text("", encoding="utf-8")
        expected = rf"(?s)^{re.escape(str(path))}: not a valid FeatureSpec:.*features\n  Field required"
        with pytest.raises(ValueError, match=expected):
            FeatureSpec.from_yaml(path)

    def test_not_a_mapping_names_file(self, tmp_path: Path) -> None:
        path = tmp_path / "features.yaml"
        path.write_text("- 1\n- 2\n", encoding="utf-8")
        with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: not a valid FeatureSpec"):
            FeatureSpec.from_yaml(path)

    def test_invalid_spec_is_a_data_contract_error(self, tmp_path: Path) -> None:
        path = tmp_path / "features.yaml"
        path.write_text("features: [{name: a, kind: text}]\n", encoding="utf-8")
        expected = r"(?s)features\.0\.kind.*fix: correct the field\(s\) named above"
        with pytest.raises(DataContractError, match=expected) as info:
            FeatureSpec.from_yaml(path)
        assert info.value.exit_code == 3

    def test_yaml_syntax_error_names_file_line_and_column(self, tmp_path: Path) -> None:
        path = tmp_path / "funnel.yaml"
        path.write_text("stages: [new, call\n", encoding="utf-8")
        with pytest.raises(DataContractError, match=rf"^{re.escape(str(path))}, line 2, column 1: not valid YAML"):
            FunnelSpec.from_yaml(path)

    def test_yaml_tag_is_refused_without_running_it(self, tmp_path: Path) -> None:
        path = tmp_path / "features.yaml"
        path.write_text("features:\n  - !!python/object/apply:os.system ['echo hacked']\n", encoding="utf-8")
        with pytest.raises(DataContractError, match=rf"^{re.escape(str(path))}, line 2, column 5: a YAML tag") as info:
            FeatureSpec.from_yaml(path)
        assert "python/object/apply:os.system" in str(info.value) and "fix: remove the tag" in str(info.value)

    def test_control_character_names_the_line(self, tmp_path: Path) -> None:
        path = tmp_path / "features.yaml"
        path.write_text("features: []\ndialogue_column: a\x00b\n", encoding="utf-8")
        with pytest.raises(DataContractError, match=rf"^{re.escape(str(path))}, line 2: not valid YAML \(character '\\x00'"):
            FeatureSpec.from_yaml(path)

    def test_file_that_is_not_utf8(self, tmp_path: Path) -> None:
        path = tmp_path / "features.yaml"
        path.write_bytes("features: []\n# Größe\n".encode("latin-1"))
        with pytest.raises(DataContractError, match=rf"^{re.escape(str(path))}, line 2: not UTF-8 text \(byte 0xf6\)"):
            FeatureSpec.from_yaml(path)

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(SpecNotFoundError, match=re.escape(str(tmp_path / "nope.yaml"))) as info:
            FunnelSpec.from_yaml(tmp_path / "nope.yaml")
        assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, EnvironmentProblem)

    def test_folder_instead_of_file(self, tmp_path: Path) -> None:
        with pytest.raises(EnvironmentProblem, match=rf"^{re.escape(str(tmp_path))}: cannot read the FunnelSpec file"):
            FunnelSpec.from_yaml(tmp_path)


class TestBounds:
    def test_shipped_counts_are_never_negative(self) -> None:
        spec = FeatureSpec.nev_default()
        assert {f.name: f.min for f in spec.features if f.kind == "numeric"} == {
            name: 0.0
            for name in [
                "lead_age_days", "customer_age", "family_size", "app_visits_7d", "app_visits_30d",
                "configurator_sessions", "store_visits", "followup_count", "days_since_last_contact",
            ]
        }  # fmt: skip
        assert all(f.max is None for f in spec.features)

    @pytest.mark.parametrize(
        ("bounds", "message"),
        [
            ({"min": 5, "max": 1}, r"feature 'x': min \(5\) is above max \(1\)"),
            ({"min": "0"}, r"min\n  Input should be a valid number"),
            ({"max": True}, r"max\n  Input should be a valid number"),
            ({"min": float("nan")}, r"min\n  Input should be a finite number"),
        ],
    )
    def test_bad_bounds(self, bounds: dict, message: str) -> None:
        with pytest.raises(ValidationError, match=message):
            Feature(name="x", kind="numeric", **bounds)

    def test_bounds_are_for_numeric_features(self) -> None:
        with pytest.raises(ValidationError, match="min/max bound numeric features only; this one is bool"):
            Feature(name="x", kind="bool", min=0)

    def test_round_trip_writes_bounds_only_when_set(self, tmp_path: Path) -> None:
        spec = FeatureSpec(features=[Feature(name="a", kind="numeric", min=0, max=1.5), Feature(name="b", kind="numeric")])
        spec.to_yaml(tmp_path / "f.yaml")
        assert FeatureSpec.from_yaml(tmp_path / "f.yaml") == spec
        written = yaml.safe_load((tmp_path / "f.yaml").read_text(encoding="utf-8"))["features"]
        assert written[0]["min"] == 0 and written[0]["max"] == 1.5
        assert "min" not in written[1] and "max" not in written[1]
