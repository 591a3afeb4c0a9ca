"""Drafting a FeatureSpec from a CRM export: leadrank.data.infer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadrank.config import FeatureSpec, FunnelSpec, Tier
from leadrank.data.infer import infer_feature_spec

FUNNEL = FunnelSpec.paper_default()
N = 40
LONG_NOTE = (
    "Customer called about the long-range version, asked about charging at home, "
    "financing over five years and when a test drive could be booked"
)
#: A funnel whose outcome columns have other names than the paper's.
CUSTOM_FUNNEL = FunnelSpec(
    stages=["lost", "open", "won"],
    stage_column="status",
    label_column="converted",
    tiers=[Tier(name="talk", winner="stage == 'won'", loser="stage == 'open' and minutes_on_phone < 3", margin=0.5)],
)


def crm_export(n: int = N) -> pd.DataFrame:
    """A hand-built export with one column of every kind the inference distinguishes."""
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "lead_id": [f"L{i}" for i in range(n)],
            "as_of": pd.date_range("2024-01-01", periods=n, freq="D"),
            "visits": rng.integers(0, 9, n),
            "spend": rng.random(n) * 100,
            "opted_in": ["yes", "no"] * (n // 2),
            "is_fleet": [0, 1] * (n // 2),
            "has_garage": [True, False] * (n // 2),
            "region": ["north", "south", "east", "west"] * (n // 4),
            "email": [f"user{i}@example.com" for i in range(n)],
            "branch_id": ["B1", "B2"] * (n // 2),
            "created_at": pd.date_range("2023-01-01", periods=n, freq="h"),
            "notes": [f"{LONG_NOTE} ({i})" for i in range(n)],
            "label": [0, 1] * (n // 2),
            "funnel_stage": ["new", "lock"] * (n // 2),
            "call_duration_s": rng.random(n) * 300,
            "_true_propensity": rng.random(n),
        }
    )


def kinds(spec: FeatureSpec) -> dict[str, str]:
    return {f.name: f.kind for f in spec.features}


class TestKinds:
    def test_numbers_flags_and_short_strings(self) -> None:
        spec, _ = infer_feature_spec(crm_export(), FUNNEL)
        assert kinds(spec) == {
            "visits": "numeric",
            "spend": "numeric",
            "opted_in": "bool",  # yes/no strings
            "is_fleet": "bool",  # 0/1 integers
            "has_garage": "bool",
            "region": "categorical",
        }

    def test_features_keep_the_table_order(self) -> None:
        spec, _ = infer_feature_spec(crm_export(), FUNNEL)
        assert spec.names == ["visits", "spend", "opted_in", "is_fleet", "has_garage", "region"]

    @pytest.mark.parametrize(
        "values",
        [["Yes", "NO"] * 5, ["true", "false"] * 5, [1.0, 0.0] * 5, [1, 0, None] * 3 + [1]],
        ids=["mixed-case-yes-no", "true-false", "float-0-1", "0-1-with-gaps"],
    )
    def test_flag_spellings_become_bool(self, values: list[object]) -> None:
        spec, _ = infer_feature_spec(pd.DataFrame({"flag": values}), FUNNEL)
        assert kinds(spec) == {"flag": "bool"}

    def test_a_number_column_with_more_than_two_values_stays_numeric(self) -> None:
        spec, _ = infer_feature_spec(pd.DataFrame({"doors": [0, 1, 2] * 4}), FUNNEL)
        assert kinds(spec) == {"doors": "numeric"}

    def test_result_loads_as_a_feature_spec_from_yaml(self, tmp_path) -> None:
        spec, _ = infer_feature_spec(crm_export(), FUNNEL)
        spec.to_yaml(tmp_path / "features.yaml")
        assert FeatureSpec.from_yaml(tmp_path / "features.yaml") == spec


class TestSkipped:
    def test_every_left_out_column_has_a_reason(self) -> None:
        table = crm_export()
        spec, skipped = infer_feature_spec(table, FUNNEL)
        assert set(skipped) | set(spec.names) | {spec.dialogue_column} == set(table.columns)
        assert not set(skipped) & set(spec.names)
        assert all(reason.strip() for reason in skipped.values())

    def test_identity_and_time_columns(self) -> None:
        _, skipped = infer_feature_spec(crm_export(), FUNNEL)
        assert skipped["lead_id"] == "identity/time column"
        assert skipped["as_of"] == "identity/time column"

    def test_high_cardinality_string_looks_like_an_identifier(self) -> None:
        _, skipped = infer_feature_spec(crm_export(), FUNNEL)
        assert "identifier" in skipped["email"]

    def test_id_suffix_is_an_identifier_even_with_few_values(self) -> None:
        _, skipped = infer_feature_spec(crm_export(), FUNNEL)
        assert "identifier" in skipped["branch_id"]

    def test_integer_id_column_is_an_identifier(self) -> None:
        table = pd.DataFrame({"store_id": [101, 102, 103, 104] * 10, "visits": list(range(40))})
        spec, skipped = infer_feature_spec(table, FUNNEL)
        assert "store_id" not in spec.names
        assert "identifier" in skipped["store_id"]

    def test_timestamps_are_skipped_with_a_hint(self) -> None:
        spec, skipped = infer_feature_spec(crm_export(), FUNNEL)
        assert "created_at" not in spec.names
        assert skipped["created_at"].startswith("timestamp: derive a number such as days since it")

    def test_iso_text_timestamps_are_skipped_as_timestamps(self) -> None:
        table = pd.DataFrame({"signup_date": [f"2024-01-0{i % 4 + 1}" for i in range(N)], "visits": range(N)})
        spec, skipped = infer_feature_spec(table, FUNNEL)
        assert "signup_date" not in spec.names
        assert skipped["signup_date"].startswith("timestamp")

    def test_supervision_and_diagnostic_columns(self) -> None:
        _, skipped = infer_feature_spec(crm_export(), FUNNEL)
        for column in ("label", "funnel_stage", "call_duration_s"):
            assert skipped[column] == "supervision column (outcome after as_of)"
        assert skipped["_true_propensity"] == "diagnostic column ('_' prefix)"

    def test_empty_column(self) -> None:
        table = crm_export().assign(unused=[None] * N)
        spec, skipped = infer_feature_spec(table, FUNNEL)
        assert "unused" not in spec.names
        assert skipped["unused"] == "no values"


class TestDialogue:
    def test_long_free_text_becomes_the_dialogue(self) -> None:
        spec, skipped = infer_feature_spec(crm_export(), FUNNEL)
        assert spec.dialogue_column == "notes"
        assert "notes" not in spec.names and "notes" not in skipped

    def test_the_longest_text_column_wins(self) -> None:
        table = crm_export().assign(summary=[LONG_NOTE[:90]] * N)
        spec, _ = infer_feature_spec(table, FUNNEL)
        assert spec.dialogue_column == "notes"

    def test_a_column_named_dialogue_is_preferred(self) -> None:
        table = crm_export().assign(dialogue=["[customer] hi"] * N)
        spec, _ = infer_feature_spec(table, FUNNEL)
        assert spec.dialogue_column == "dialogue"

    def test_short_strings_are_not_dialogue(self) -> None:
        spec, _ = infer_feature_spec(crm_export().drop(columns="notes"), FUNNEL)
        assert spec.dialogue_column is None

    def test_supervision_text_is_never_the_dialogue(self) -> None:
        table = crm_export().drop(columns="notes").assign(funnel_stage=[LONG_NOTE] * N)
        spec, _ = infer_feature_spec(table, FUNNEL)
        assert spec.dialogue_column is None


class TestNoLeakage:
    @pytest.mark.parametrize("funnel", [FUNNEL, CUSTOM_FUNNEL], ids=["paper", "custom"])
    def test_supervision_columns_of_the_given_funnel_are_never_inputs(self, funnel: FunnelSpec) -> None:
        rng = np.random.default_rng(1)
        table = crm_export().assign(
            converted=[0, 1] * (N // 2),
            status=["lost", "open", "won", "open"] * (N // 4),
            minutes_on_phone=rng.random(N) * 10,
        )
        spec, skipped = infer_feature_spec(table, funnel)
        supervision = set(funnel.supervision_columns)
        assert supervision <= set(table.columns)
        assert not supervision & set(spec.input_columns)
        assert all(skipped[c] == "supervision column (outcome after as_of)" for c in supervision)

    def test_custom_funnel_frees_the_paper_outcome_names(self) -> None:
        # With another funnel, 'call_duration_s' is an ordinary column: the funnel, not a fixed list, decides.
        spec, _ = infer_feature_spec(crm_export().assign(converted=0, status="open", minutes_on_phone=1.0), CUSTOM_FUNNEL)
        assert kinds(spec)["call_duration_s"] == "numeric"
