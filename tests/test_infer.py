"""Drafting a FeatureSpec from a CRM export: leadrank.data.infer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from leadrank.config import FeatureSpec, FunnelSpec, Tier
from leadrank.data.infer import SpecDraft, infer_feature_spec
from leadrank.data.synth import SynthConfig, simulate
from leadrank.errors import ConfigurationError

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
SUPERVISION = "supervision column (outcome after as_of)"


def crm_export(n: int = N) -> pd.DataFrame:
    """A hand-built export with one column of every kind the inference distinguishes; labels at random."""
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
            "label": rng.integers(0, 2, n),
            "funnel_stage": ["new", "lock"] * (n // 2),
            "call_duration_s": rng.random(n) * 300,
            "_true_propensity": rng.random(n),
        }
    )


def labelled(n: int = 200) -> pd.DataFrame:
    """A labelled table (30 % positives) with one weak, honest feature."""
    rng = np.random.default_rng(7)
    label = (rng.random(n) < 0.3).astype(int)
    return pd.DataFrame({"label": label, "visits": rng.poisson(2 + label)})


def kinds(spec: FeatureSpec) -> dict[str, str]:
    return {f.name: f.kind for f in spec.features}


def warnings_about(draft: SpecDraft, column: str) -> list[str]:
    return [w for w in draft.warnings if f"{column!r}" in w]


class TestKinds:
    def test_numbers_flags_and_short_strings(self) -> None:
        draft = infer_feature_spec(crm_export(), FUNNEL)
        assert kinds(draft.spec) == {
            "visits": "numeric",
            "spend": "numeric",
            "opted_in": "bool",  # yes/no strings
            "is_fleet": "bool",  # 0/1 integers
            "has_garage": "bool",
            "region": "categorical",
        }

    def test_features_keep_the_table_order(self) -> None:
        draft = infer_feature_spec(crm_export(), FUNNEL)
        assert draft.spec.names == ["visits", "spend", "opted_in", "is_fleet", "has_garage", "region"]

    @pytest.mark.parametrize(
        "values",
        [["Yes", "NO"] * 5, ["true", "false"] * 5, [1.0, 0.0] * 5, [1, 0, None] * 3 + [1]],
        ids=["mixed-case-yes-no", "true-false", "float-0-1", "0-1-with-gaps"],
    )
    def test_flag_spellings_become_bool(self, values: list[object]) -> None:
        draft = infer_feature_spec(pd.DataFrame({"flag": values}), FUNNEL)
        assert kinds(draft.spec) == {"flag": "bool"}

    def test_a_number_column_with_more_than_two_values_stays_numeric(self) -> None:
        draft = infer_feature_spec(pd.DataFrame({"doors": [0, 1, 2] * 4}), FUNNEL)
        assert kinds(draft.spec) == {"doors": "numeric"}

    def test_result_loads_as_a_feature_spec_from_yaml(self, tmp_path) -> None:
        spec = infer_feature_spec(crm_export(), FUNNEL).spec
        spec.to_yaml(tmp_path / "features.yaml")
        assert FeatureSpec.from_yaml(tmp_path / "features.yaml") == spec


AGES = [20 + i % 50 for i in range(300)]


class TestNumbersWithWords:
    @pytest.mark.parametrize("word", ["unknown", "N/A", "", " null ", "None", "-"])
    @pytest.mark.parametrize("as_text", [False, True], ids=["numbers", "text"])
    def test_missing_words_are_read_as_missing_with_a_warning(self, word: str, as_text: bool) -> None:
        ages: list[object] = [str(a) if as_text else a for a in AGES[:-1]]
        draft = infer_feature_spec(pd.DataFrame({"customer_age": ages + [word]}), FUNNEL)
        assert kinds(draft.spec) == {"customer_age": "numeric"}
        [warning] = warnings_about(draft, "customer_age")
        assert "1 of 300 values are words for 'unknown'" in warning
        assert repr(word) in warning and "read as missing" in warning

    def test_numbers_that_also_read_as_years_are_not_timestamps(self) -> None:
        prices = [str(1000 + 37 * i) for i in range(99)] + ["unknown"]
        draft = infer_feature_spec(pd.DataFrame({"price": prices}), FUNNEL)
        assert kinds(draft.spec) == {"price": "numeric"}

    def test_other_words_make_it_categorical_with_a_warning(self) -> None:
        draft = infer_feature_spec(pd.DataFrame({"customer_age": AGES[:-2] + ["abc", "forty"]}), FUNNEL)
        assert kinds(draft.spec) == {"customer_age": "categorical"}
        [warning] = warnings_about(draft, "customer_age")
        assert "298 of 300 values are numbers but 2 are not" in warning
        assert "'abc'" in warning and "'forty'" in warning

    def test_a_category_with_a_few_number_codes_is_categorical_without_a_warning(self) -> None:
        draft = infer_feature_spec(pd.DataFrame({"region": ["north", "south", "east", "42"] * 10}), FUNNEL)
        assert kinds(draft.spec) == {"region": "categorical"}
        assert warnings_about(draft, "region") == []

    def test_numbers_with_many_values_and_a_stray_word_are_left_out_with_the_warning(self) -> None:
        spend: list[object] = [float(i) + 0.5 for i in range(99)] + ["abc"]
        draft = infer_feature_spec(pd.DataFrame({"spend": spend}), FUNNEL)
        assert "spend" not in draft.spec.names
        assert "too many distinct values" in draft.left_out["spend"]
        assert any("99 of 100 values are numbers but 1 are not (e.g. 'abc')" in w for w in warnings_about(draft, "spend"))


class TestSkipped:
    def test_every_left_out_column_has_a_reason(self) -> None:
        table = crm_export()
        draft = infer_feature_spec(table, FUNNEL)
        spec = draft.spec
        assert set(draft.left_out) | set(spec.names) | {spec.dialogue_column} == set(table.columns)
        assert not set(draft.left_out) & set(spec.names)
        assert all(reason.strip() for reason in draft.left_out.values())

    def test_identity_and_time_columns(self) -> None:
        left_out = infer_feature_spec(crm_export(), FUNNEL).left_out
        assert left_out["lead_id"] == "identity/time column"
        assert left_out["as_of"] == "identity/time column"

    def test_high_cardinality_string_looks_like_an_identifier(self) -> None:
        table = crm_export().assign(ref=[f"X-{i:05d}" for i in range(N)])
        draft = infer_feature_spec(table, FUNNEL)
        assert "identifier" in draft.left_out["ref"]
        assert warnings_about(draft, "ref")

    def test_id_suffix_is_an_identifier_even_with_few_values(self) -> None:
        left_out = infer_feature_spec(crm_export(), FUNNEL).left_out
        assert "identifier" in left_out["branch_id"]

    def test_integer_id_column_is_an_identifier(self) -> None:
        table = pd.DataFrame({"store_id": [101, 102, 103, 104] * 10, "visits": list(range(40))})
        draft = infer_feature_spec(table, FUNNEL)
        assert "store_id" not in draft.spec.names
        assert "identifier" in draft.left_out["store_id"]

    def test_timestamps_are_skipped_with_a_hint(self) -> None:
        draft = infer_feature_spec(crm_export(), FUNNEL)
        assert "created_at" not in draft.spec.names
        assert draft.left_out["created_at"].startswith("timestamp: derive a number such as days since it")

    def test_iso_text_timestamps_are_skipped_as_timestamps(self) -> None:
        table = pd.DataFrame({"signup_date": [f"2024-01-0{i % 4 + 1}" for i in range(N)], "visits": range(N)})
        draft = infer_feature_spec(table, FUNNEL)
        assert "signup_date" not in draft.spec.names
        assert draft.left_out["signup_date"].startswith("timestamp")

    def test_supervision_and_diagnostic_columns(self) -> None:
        left_out = infer_feature_spec(crm_export(), FUNNEL).left_out
        for column in ("label", "funnel_stage", "call_duration_s"):
            assert left_out[column] == SUPERVISION
        assert left_out["_true_propensity"] == "diagnostic column ('_' prefix)"

    def test_empty_column(self) -> None:
        draft = infer_feature_spec(crm_export().assign(unused=[None] * N), FUNNEL)
        assert "unused" not in draft.spec.names
        assert draft.left_out["unused"] == "no values"

    def test_constant_columns_are_left_out_with_a_warning(self) -> None:
        table = crm_export().assign(country="DE", newsletter=[True] * (N - 1) + [None])
        draft = infer_feature_spec(table, FUNNEL)
        for column, value in (("country", "'DE'"), ("newsletter", "True")):
            assert column not in draft.spec.names
            assert draft.left_out[column].startswith("constant")
            [warning] = warnings_about(draft, column)
            assert value in warning


class TestPersonalAndIds:
    @pytest.mark.parametrize(
        "column",
        ["email", "contact_email", "E-Mail", "email_address", "phone", "phone_number", "mobile"]
        + ["customerName", "first_name", "surname", "name"],
    )
    def test_personal_by_column_name(self, column: str) -> None:
        draft = infer_feature_spec(crm_export().assign(**{column: [f"v{i % 7}" for i in range(N)]}), FUNNEL)
        assert column not in draft.spec.names
        assert draft.left_out[column].startswith("personal data")
        [warning] = warnings_about(draft, column)
        assert "personal data" in warning and f"--keep {column}" in warning

    @pytest.mark.parametrize("column", ["brand_name", "phone_calls", "email_opens", "has_email"])
    def test_similar_names_are_not_personal(self, column: str) -> None:
        values = [i % 2 for i in range(N)] if column == "has_email" else [i % 5 for i in range(N)]
        if column == "brand_name":
            values = [f"brand{v}" for v in values]
        draft = infer_feature_spec(crm_export().assign(**{column: values}), FUNNEL)
        assert column in draft.spec.names

    @pytest.mark.parametrize(
        ("values", "what"),
        [
            ([f"p{i % 5}@mail.example.org" for i in range(N)], "e-mail addresses"),
            ([f"+49 30 {1_000_000 + i % 5}" for i in range(N)], "phone numbers"),
            ([f"(555) 010-{1000 + i % 5}" for i in range(N)], "phone numbers"),
        ],
        ids=["email", "intl-phone", "us-phone"],
    )
    def test_personal_by_values(self, values: list[str], what: str) -> None:
        draft = infer_feature_spec(crm_export().assign(contact=values), FUNNEL)
        assert draft.left_out["contact"] == f"personal data ({what})"
        assert warnings_about(draft, "contact")

    @pytest.mark.parametrize(
        ("values", "reason"),
        [
            (np.arange(N), "counts the rows 0..39"),
            (np.arange(1, N + 1, dtype=float), "counts the rows 1..40"),
            (np.random.default_rng(3).permutation(N) * 7 + 1000, "a different whole number in every row"),
        ],
        ids=["counter-from-0", "counter-from-1-float", "unique-integers"],
    )
    def test_whole_numbers_unique_per_row_are_ids(self, values: np.ndarray, reason: str) -> None:
        draft = infer_feature_spec(crm_export().assign(row=values), FUNNEL)
        assert "row" not in draft.spec.names
        assert reason in draft.left_out["row"]
        [warning] = warnings_about(draft, "row")
        assert "identifier" in warning

    def test_unique_fractional_numbers_are_features(self) -> None:
        assert kinds(infer_feature_spec(crm_export(), FUNNEL).spec)["spend"] == "numeric"

    def test_keep_uses_flagged_columns_anyway(self) -> None:
        table = crm_export().assign(customer_name=[f"n{i % 5}" for i in range(N)], row=range(N))
        draft = infer_feature_spec(table, FUNNEL, keep=["customer_name", "row", "email"])
        assert {c: kinds(draft.spec)[c] for c in ("customer_name", "row", "email")} == {
            "customer_name": "categorical",
            "row": "numeric",
            "email": "categorical",
        }
        assert not any(warnings_about(draft, c) for c in ("customer_name", "row", "email"))

    def test_keep_does_not_keep_a_constant(self) -> None:
        draft = infer_feature_spec(crm_export().assign(country="DE"), FUNNEL, keep=["country"])
        assert draft.left_out["country"].startswith("constant")

    def test_keep_naming_an_absent_column_is_a_configuration_error(self) -> None:
        with pytest.raises(ConfigurationError, match=r"keep: \['nope'\] are not columns"):
            infer_feature_spec(crm_export(), FUNNEL, keep=["nope"])

    @pytest.mark.parametrize("column", ["label", "funnel_stage", "call_duration_s", "lead_id", "_true_propensity"])
    def test_keep_never_keeps_outcome_identity_or_diagnostic_columns(self, column: str) -> None:
        with pytest.raises(ConfigurationError, match=f"never features \\({column!r}: "):
            infer_feature_spec(crm_export(), FUNNEL, keep=[column])


class TestLeaks:
    def test_a_number_that_gives_the_label_away_is_left_out(self) -> None:
        table = labelled()
        table["post_call_minutes"] = table["label"] * 5 + np.random.default_rng(1).random(len(table))
        draft = infer_feature_spec(table, FUNNEL)
        assert kinds(draft.spec) == {"visits": "numeric"}
        assert draft.left_out["post_call_minutes"] == "leak: alone it predicts the label with AUC 1.000"
        [warning] = warnings_about(draft, "post_call_minutes")
        assert "AUC 1.000" in warning and "known only after the outcome" in warning

    def test_a_leak_in_the_other_direction_is_left_out(self) -> None:
        table = labelled()
        table["days_to_close"] = 30 - table["label"] * 25 + np.random.default_rng(1).random(len(table))
        draft = infer_feature_spec(table, FUNNEL)
        assert draft.left_out["days_to_close"].startswith("leak")

    def test_a_flag_that_gives_the_label_away_is_left_out(self) -> None:
        table = labelled()
        table["contract_sent"] = table["label"].map({1: "yes", 0: "no"})
        draft = infer_feature_spec(table, FUNNEL)
        assert draft.left_out["contract_sent"].startswith("leak")

    def test_a_category_that_gives_the_label_away_is_left_out(self) -> None:
        table = labelled()
        others = np.random.default_rng(2).choice(["cold", "open", "lost"], len(table))
        table["sales_tag"] = np.where(table["label"] == 1, "won", others)
        draft = infer_feature_spec(table, FUNNEL)
        assert draft.left_out["sales_tag"].startswith("leak")

    def test_only_labelled_rows_count(self) -> None:
        table = labelled()
        table["post_call_minutes"] = table["label"] * 5.0
        table["label"] = table["label"].astype(float)
        table.loc[::2, "label"] = np.nan  # unlabelled rows, whose minutes say nothing
        table.loc[::2, "post_call_minutes"] = np.random.default_rng(1).random(len(table[::2])) * 5
        assert infer_feature_spec(table, FUNNEL).left_out["post_call_minutes"].startswith("leak")

    def test_categories_seen_once_or_twice_are_not_a_leak(self) -> None:
        # 90 zones of two leads each; the 5 positives each share a zone with a negative. Scored by
        # the zone's mean label including the lead itself, the zone would look like a leak.
        label = np.zeros(180, dtype=int)
        label[[0, 2, 4, 6, 8]] = 1
        zone = [f"z{i // 2}" for i in range(180)]
        table = pd.DataFrame({"label": label, "zone": zone})
        in_sample = table.groupby("zone")["label"].transform("mean")
        assert roc_auc_score(label, in_sample) > 0.95
        assert kinds(infer_feature_spec(table, FUNNEL).spec) == {"zone": "categorical"}

    def test_an_honest_feature_is_kept(self) -> None:
        draft = infer_feature_spec(labelled(), FUNNEL)
        assert kinds(draft.spec) == {"visits": "numeric"}
        assert draft.warnings == []

    def test_keep_keeps_a_leak(self) -> None:
        table = labelled().assign(post_call_minutes=lambda t: t["label"] * 5)
        draft = infer_feature_spec(table, FUNNEL, keep=["post_call_minutes"])
        assert kinds(draft.spec)["post_call_minutes"] == "numeric"
        assert warnings_about(draft, "post_call_minutes") == []

    @pytest.mark.parametrize("label", [None, 0], ids=["no-label-column", "one-class"])
    def test_without_two_classes_the_check_is_skipped_with_a_warning(self, label: int | None) -> None:
        table = labelled().assign(post_call_minutes=lambda t: t["label"] * 5)
        table = table.drop(columns="label") if label is None else table.assign(label=label)
        draft = infer_feature_spec(table, FUNNEL)
        assert "post_call_minutes" in draft.spec.names
        assert any("the leak check" in w and "'label'" in w for w in draft.warnings)


class TestDialogue:
    def test_long_free_text_becomes_the_dialogue(self) -> None:
        draft = infer_feature_spec(crm_export(), FUNNEL)
        assert draft.spec.dialogue_column == "notes"
        assert "notes" not in draft.spec.names and "notes" not in draft.left_out

    def test_the_longest_text_column_wins(self) -> None:
        table = crm_export().assign(summary=[LONG_NOTE[:90]] * N)
        assert infer_feature_spec(table, FUNNEL).spec.dialogue_column == "notes"

    def test_a_column_named_dialogue_is_preferred(self) -> None:
        table = crm_export().assign(dialogue=["[customer] hi"] * N)
        assert infer_feature_spec(table, FUNNEL).spec.dialogue_column == "dialogue"

    def test_short_strings_are_not_dialogue(self) -> None:
        assert infer_feature_spec(crm_export().drop(columns="notes"), FUNNEL).spec.dialogue_column is None

    def test_supervision_text_is_never_the_dialogue(self) -> None:
        table = crm_export().drop(columns="notes").assign(funnel_stage=[LONG_NOTE] * N)
        assert infer_feature_spec(table, FUNNEL).spec.dialogue_column is None


class TestNoLeakage:
    @pytest.mark.parametrize("funnel", [FUNNEL, CUSTOM_FUNNEL], ids=["paper", "custom"])
    def test_supervision_columns_of_the_given_funnel_are_never_inputs(self, funnel: FunnelSpec) -> None:
        rng = np.random.default_rng(1)
        table = crm_export().assign(
            converted=[0, 1] * (N // 2),
            status=["lost", "open", "won", "open"] * (N // 4),
            minutes_on_phone=rng.random(N) * 10,
        )
        draft = infer_feature_spec(table, funnel)
        supervision = set(funnel.supervision_columns)
        assert supervision <= set(table.columns)
        assert not supervision & set(draft.spec.input_columns)
        assert all(draft.left_out[c] == SUPERVISION for c in supervision)

    def test_custom_funnel_frees_the_paper_outcome_names(self) -> None:
        # With another funnel, 'call_duration_s' is an ordinary column: the funnel, not a fixed list, decides.
        table = crm_export().assign(converted=0, status="open", minutes_on_phone=1.0)
        assert kinds(infer_feature_spec(table, CUSTOM_FUNNEL).spec)["call_duration_s"] == "numeric"


@pytest.mark.parametrize(
    "config",
    [SynthConfig(n=2_000, positive_rate=0.1), SynthConfig(n=1_000, seed=11)],  # the second: 1.4 % positives, as tests/test_cli.py
    ids=["dense", "rare-positives"],
)
def test_the_simulator_table_drafts_the_shipped_features(config: SynthConfig) -> None:
    table = simulate(config)
    draft = infer_feature_spec(table, FUNNEL)
    assert kinds(draft.spec) == {f.name: f.kind for f in FeatureSpec.nev_default().features}
    assert draft.spec.dialogue_column == "dialogue"
    for column in ("label", "funnel_stage", "call_duration_s"):
        assert draft.left_out[column] == SUPERVISION
    assert "identifier" in draft.left_out["specialist_id"]
    never = {"lead_id", "as_of", "specialist_id", "label", "funnel_stage", "call_duration_s", "_true_propensity"}
    assert set(draft.left_out) == never
    assert not any("leak" in w for w in draft.warnings)
