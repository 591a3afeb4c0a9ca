"""Tests for the NEV CRM simulator: leadrank.data.synth (and the phrases it renders)."""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data import schema
from leadrank.data.synth import SynthConfig, simulate

N = 20_000
EXTRA_COLUMNS = {
    "lead_id",
    "as_of",
    "specialist_id",
    "dialogue",
    "label",
    "funnel_stage",
    "call_duration_s",
    "_true_propensity",
}
LINE_PREFIXES = ("Specialist: ", "Customer: ", "[Note day ")
NOTE = re.compile(r"^\[Note day (\d+)\] ")


@pytest.fixture(scope="module")
def default() -> pd.DataFrame:
    return simulate(SynthConfig.preset("default", n=N, seed=0))


@pytest.fixture(scope="module")
def dense() -> pd.DataFrame:
    return simulate(SynthConfig.preset("dense", n=N, seed=1))


@pytest.fixture(scope="module")
def dense_words(dense: pd.DataFrame) -> list[set[str]]:
    return word_sets(dense["dialogue"])


def word_sets(dialogues: pd.Series) -> list[set[str]]:
    return [set(re.findall(r"[a-z']+", text.lower())) for text in dialogues]


def keyword_aucs(words: list[set[str]], labels: np.ndarray, min_share: float = 0.01) -> dict[str, float]:
    """ROC AUC of 'word occurs in the dialogue' against the label, for every word in >= min_share of dialogues.

    For a 0/1 score the ROC AUC is (1 + TPR - FPR) / 2 (ties count one half), as roc_auc_score computes it.
    """
    positives: dict[str, int] = defaultdict(int)
    documents: dict[str, int] = defaultdict(int)
    for row_words, label in zip(words, labels):
        for word in row_words:
            documents[word] += 1
            positives[word] += int(label)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    return {
        word: (1 + positives[word] / n_pos - (count - positives[word]) / n_neg) / 2
        for word, count in documents.items()
        if count >= min_share * len(labels)
    }


class TestDeterminism:
    def test_same_seed_same_table(self) -> None:
        config = SynthConfig(n=5_000, seed=7)
        pd.testing.assert_frame_equal(simulate(config), simulate(config))

    def test_different_seed_different_table(self) -> None:
        a, b = simulate(SynthConfig(n=5_000, seed=7)), simulate(SynthConfig(n=5_000, seed=8))
        with pytest.raises(AssertionError):
            pd.testing.assert_frame_equal(a, b)
        # Not only the ids (which carry the seed) differ: the leads themselves do.
        assert not np.allclose(a["_true_propensity"], b["_true_propensity"])
        assert (a["dialogue"] != b["dialogue"]).mean() > 0.5


class TestColumns:
    def test_columns(self, default: pd.DataFrame) -> None:
        assert set(default.columns) == set(FeatureSpec.nev_default().names) | EXTRA_COLUMNS
        assert len(default.columns) == len(set(default.columns))
        assert len(default) == N

    def test_passes_schema_validation(self, default: pd.DataFrame) -> None:
        schema.validate(default, FeatureSpec.nev_default(), FunnelSpec.paper_default())

    def test_lead_id_unique(self, default: pd.DataFrame) -> None:
        assert default["lead_id"].is_unique
        assert default["lead_id"].notna().all()

    def test_as_of_inside_the_simulated_window(self, default: pd.DataFrame) -> None:
        config = SynthConfig()
        start = pd.Timestamp(config.start)
        assert default["as_of"].min() >= start
        assert default["as_of"].max() <= start + pd.Timedelta(days=config.days)

    def test_funnel_stages_are_the_paper_stages(self, default: pd.DataFrame) -> None:
        assert set(default["funnel_stage"]) == set(FunnelSpec.paper_default().stages)


class TestOutcome:
    def test_label_is_lock(self, default: pd.DataFrame) -> None:
        is_lock = (default["funnel_stage"] == "lock").to_numpy().astype(int)
        np.testing.assert_array_equal(default["label"].to_numpy(), is_lock)

    def test_call_duration(self, default: pd.DataFrame) -> None:
        stage, duration = default["funnel_stage"], default["call_duration_s"]
        assert (duration >= 0).all()
        assert (duration[stage == "new"] == 0).all()
        assert (duration[stage == "lock"] > 0).all()
        assert (duration[stage == "new"]).size > 0 and (duration[stage == "lock"]).size > 0

    def test_default_positive_rate(self, default: pd.DataFrame) -> None:
        rate = 0.014
        assert abs(default["_true_propensity"].mean() - rate) < 0.001  # the bias is solved exactly
        se = np.sqrt(rate * (1 - rate) / N)
        assert abs(default["label"].mean() - rate) < 4 * se

    def test_dense_positive_rate(self, dense: pd.DataFrame) -> None:
        rate = 0.10
        assert abs(dense["_true_propensity"].mean() - rate) < 0.001
        se = np.sqrt(rate * (1 - rate) / N)
        assert abs(dense["label"].mean() - rate) < 4 * se

    @pytest.mark.parametrize("preset", ["default", "dense"])
    def test_true_propensity_is_an_informative_probability(self, preset: str, request: pytest.FixtureRequest) -> None:
        table = request.getfixturevalue(preset)
        p = table["_true_propensity"]
        assert ((p > 0) & (p < 1)).all()
        assert roc_auc_score(table["label"], p) > 0.8


class TestDialogue:
    def test_empty_dialogues_exist_and_are_new_leads(self, default: pd.DataFrame) -> None:
        empty = default["dialogue"] == ""
        assert empty.sum() > 0.05 * N
        assert set(default.loc[empty, "stage_at_as_of"]) == {"new"}

    def test_lines_are_speaker_tagged_or_notes(self, default: pd.DataFrame) -> None:
        bad = [line for text in default["dialogue"] if text for line in text.split("\n") if not line.startswith(LINE_PREFIXES)]
        assert bad == []

    def test_every_dialogue_opens_with_the_specialist(self, default: pd.DataFrame) -> None:
        spoken = default.loc[default["dialogue"] != "", "dialogue"]
        assert spoken.str.startswith("Specialist: ").all()

    def test_notes_come_last_in_increasing_day_order(self, default: pd.DataFrame) -> None:
        with_notes = 0
        for text in default["dialogue"]:
            lines = text.split("\n") if text else []
            is_note = [bool(NOTE.match(line)) for line in lines]
            if not any(is_note):
                continue
            with_notes += 1
            first = is_note.index(True)
            assert all(is_note[first:]), text
            days = [int(NOTE.match(line).group(1)) for line in lines[first:]]  # type: ignore[union-attr]
            assert days == sorted(days) and len(set(days)) == len(days), text
        assert with_notes > 0.3 * N

    def test_some_dialogues_have_several_notes(self, default: pd.DataFrame) -> None:
        counts = default["dialogue"].str.count(r"\[Note day ")
        assert (counts >= 2).sum() > 0.05 * N


class TestNoSingleKeywordSolvesIt:
    def test_keyword_auc_matches_sklearn(self, dense: pd.DataFrame, dense_words: list[set[str]]) -> None:
        labels = dense["label"].to_numpy()
        aucs = keyword_aucs(dense_words, labels)
        for word in ["yes", "no", "the", "subsidy"]:
            present = np.array([word in words for words in dense_words], dtype=float)
            assert aucs[word] == pytest.approx(roc_auc_score(labels, present), abs=1e-12)

    def test_no_frequent_word_separates_the_labels(self, dense: pd.DataFrame, dense_words: list[set[str]]) -> None:
        aucs = keyword_aucs(dense_words, dense["label"].to_numpy())
        assert len(aucs) > 100
        strong = {word: round(auc, 3) for word, auc in aucs.items() if max(auc, 1 - auc) >= 0.62}
        assert strong == {}
        assert roc_auc_score(dense["label"], dense["_true_propensity"]) > 0.8

    @pytest.mark.parametrize("word", ["yes", "no"])
    def test_answer_words_occur_for_both_labels(self, dense: pd.DataFrame, dense_words: list[set[str]], word: str) -> None:
        has_word = np.array([word in words for words in dense_words])
        labels = dense["label"].to_numpy()
        assert has_word[labels == 1].mean() > 0.25
        assert has_word[labels == 0].mean() > 0.25


class TestConfig:
    @pytest.mark.parametrize(
        ("overrides", "message"),
        [
            ({"n": 0}, r"n must be at least 1; got 0\."),
            ({"positive_rate": 0.7}, r"positive_rate must be in \(0, 0\.5\); got 0\.7\."),
            ({"positive_rate": 0.0}, r"positive_rate must be in \(0, 0\.5\); got 0\.0\."),
            ({"days": 0}, r"days, horizon_days and n_specialists must be at least 1\."),
            ({"n_specialists": 0}, r"days, horizon_days and n_specialists must be at least 1\."),
        ],
    )
    def test_invalid_config(self, overrides: dict, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            SynthConfig(**overrides)

    def test_unknown_preset(self) -> None:
        with pytest.raises(ValueError, match=r"Unknown preset 'sparse'; choose one of \['default', 'dense'\]\."):
            SynthConfig.preset("sparse")  # type: ignore[arg-type]

    def test_presets(self) -> None:
        assert SynthConfig.preset("default").positive_rate == 0.014
        dense = SynthConfig.preset("dense", n=5, seed=3)
        assert (dense.positive_rate, dense.n, dense.seed) == (0.10, 5, 3)

    def test_preset_overrides_are_validated(self) -> None:
        with pytest.raises(ValueError, match=r"n must be at least 1"):
            SynthConfig.preset("dense", n=0)

    def test_tiny_table(self) -> None:
        table = simulate(SynthConfig(n=1, seed=0))
        assert len(table) == 1
        assert 0 < table["_true_propensity"].iloc[0] < 1
