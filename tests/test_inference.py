"""Batch scoring: leadrank.inference (ScoreConfig, Scorer.score / raw_scores / score_file).

One tiny LoRA model is trained per module and saved; every test loads its own copy, because
a Scorer takes the artifact's model over (it merges LoRA into the weights in place).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from helpers import train_tiny_model
from leadrank.artifact import Artifact, blend_scores, load, read_manifest
from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.io import read_table, write_table
from leadrank.data.schema import LeadDataError
from leadrank.data.synth import SynthConfig, simulate
from leadrank.inference import SCORE_COLUMNS, FileSummary, Scorer
from leadrank.settings import ScoreConfig

FEATURES = FeatureSpec.nev_default()
FUNNEL = FunnelSpec.paper_default()
EXACT = ScoreConfig(dtype="fp32")


pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return simulate(SynthConfig.preset("dense", n=300, seed=5))


@pytest.fixture(scope="module")
def model_dir(table: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_model(table, tmp_path_factory.mktemp("scoring"))


@pytest.fixture
def artifact(model_dir: Path) -> Artifact:
    return load(model_dir)


@pytest.fixture(scope="module")
def leads(table: pd.DataFrame) -> pd.DataFrame:
    """A few leads to score, shuffled so that input order is not the stored order."""
    return table.iloc[:20].sample(frac=1.0, random_state=3)


# --------------------------------------------------------------------------- Scorer.score


class TestScore:
    def test_one_row_per_lead_in_input_order(self, artifact: Artifact, leads: pd.DataFrame) -> None:
        scores = Scorer(artifact, EXACT).score(leads)
        assert list(scores.columns) == SCORE_COLUMNS == ["lead_id", "probability", "rank_score"]
        assert scores["lead_id"].tolist() == leads["lead_id"].tolist()
        assert np.isfinite(scores[["probability", "rank_score"]].to_numpy()).all()

    def test_probability_is_the_calibrated_pointwise_logit(self, artifact: Artifact, leads: pd.DataFrame) -> None:
        scorer = Scorer(artifact, EXACT)
        point, _ = scorer.raw_scores(leads)
        probability = scorer.score(leads)["probability"].to_numpy()
        assert_allclose(probability, artifact.calibration.apply(point), rtol=0, atol=1e-7)
        assert ((probability > 0) & (probability < 1)).all()
        assert np.ptp(probability) > 0

    @pytest.mark.parametrize("rank_by", ["point", "pair"])
    def test_rank_by_a_head_gives_that_heads_raw_score(self, artifact: Artifact, leads: pd.DataFrame, rank_by: str) -> None:
        scorer = Scorer(artifact, ScoreConfig(dtype="fp32", rank_by=rank_by))  # type: ignore[arg-type]
        point, pair = scorer.raw_scores(leads)
        expected = point if rank_by == "point" else pair
        assert_allclose(scorer.score(leads)["rank_score"].to_numpy(), expected, rtol=0, atol=1e-7)

    def test_the_point_and_pair_heads_rank_differently(self, artifact: Artifact, leads: pd.DataFrame) -> None:
        point, pair = Scorer(artifact, EXACT).raw_scores(leads)
        assert not np.allclose(point, pair, atol=1e-4)

    def test_default_rank_by_is_the_artifacts_choice(self, artifact: Artifact, leads: pd.DataFrame) -> None:
        metrics = artifact.metrics  # trained with HPRO: the ranking with the best validation AUC
        best = max(("blend", "pair", "point"), key=lambda name: metrics[f"val_auc_{name}"])
        assert artifact.rank_by == best
        scorer = Scorer(artifact, EXACT)
        assert scorer.rank_by == best
        point, pair = scorer.raw_scores(leads)
        expected = {"point": point, "pair": pair, "blend": blend_scores(point, pair, artifact.score_stats)}[best]
        assert_allclose(scorer.score(leads)["rank_score"].to_numpy(), expected, rtol=0, atol=1e-6)

    def test_blend_standardises_with_the_artifacts_score_stats(self, artifact: Artifact, model_dir: Path, leads: pd.DataFrame) -> None:
        assert artifact.score_stats == read_manifest(model_dir)["score_stats"]
        # stats far from the batch's own: a blend that standardised on the batch would not match
        artifact.score_stats = {"point_mean": 1.5, "point_std": 2.0, "pair_mean": -0.5, "pair_std": 0.25}
        scorer = Scorer(artifact, ScoreConfig(dtype="fp32", rank_by="blend"))
        point, pair = scorer.raw_scores(leads)
        by_hand = 0.5 * (point - 1.5) / 2.0 + 0.5 * (pair + 0.5) / 0.25
        scores = scorer.score(leads)
        assert_allclose(scores["rank_score"].to_numpy(), by_hand, rtol=1e-6, atol=1e-6)
        assert_allclose(scores["probability"].to_numpy(), artifact.calibration.apply(point), rtol=0, atol=1e-7)

    def test_blend_with_the_saved_stats(self, artifact: Artifact, leads: pd.DataFrame) -> None:
        stats = dict(artifact.score_stats)
        scorer = Scorer(artifact, ScoreConfig(dtype="fp32", rank_by="blend"))
        point, pair = scorer.raw_scores(leads)
        by_hand = 0.5 * (point - stats["point_mean"]) / stats["point_std"] + 0.5 * (pair - stats["pair_mean"]) / stats["pair_std"]
        assert_allclose(scorer.score(leads)["rank_score"].to_numpy(), by_hand, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- batching


class TestBatching:
    def test_scores_do_not_depend_on_batch_size(self, model_dir: Path, leads: pd.DataFrame) -> None:
        one = Scorer(load(model_dir), ScoreConfig(dtype="fp32", batch_size=1)).score(leads)
        eight = Scorer(load(model_dir), ScoreConfig(dtype="fp32", batch_size=8)).score(leads)
        assert one["lead_id"].tolist() == eight["lead_id"].tolist()
        assert_allclose(one["probability"], eight["probability"], rtol=0, atol=1e-4)
        assert_allclose(one["rank_score"], eight["rank_score"], rtol=0, atol=1e-4)

    def test_scores_do_not_depend_on_the_other_leads_in_the_table(
        self, artifact: Artifact, table: pd.DataFrame, leads: pd.DataFrame
    ) -> None:
        scorer = Scorer(artifact, ScoreConfig(dtype="fp32", batch_size=8))
        alone = scorer.score(leads).set_index("lead_id")
        # the same leads, mixed with others (different padding widths and batch neighbours)
        mixed_in = pd.concat([table.iloc[20:32], leads.iloc[::-1]]).sample(frac=1.0, random_state=9)
        together = scorer.score(mixed_in).set_index("lead_id").loc[alone.index]
        assert_allclose(together["rank_score"], alone["rank_score"], rtol=0, atol=1e-4)
        assert_allclose(together["probability"], alone["probability"], rtol=0, atol=1e-4)

    def test_a_token_cap_splits_batches_without_changing_scores(self, model_dir: Path, leads: pd.DataFrame) -> None:
        capped = Scorer(load(model_dir), ScoreConfig(dtype="fp32", batch_size=16, max_batch_tokens=2000)).score(leads)
        uncapped = Scorer(load(model_dir), ScoreConfig(dtype="fp32", batch_size=16, max_batch_tokens=None)).score(leads)
        assert_allclose(capped["rank_score"], uncapped["rank_score"], rtol=0, atol=1e-4)


# --------------------------------------------------------------------------- the contract at scoring time


class TestContract:
    def test_a_missing_feature_column_is_named(self, artifact: Artifact, leads: pd.DataFrame) -> None:
        with pytest.raises(LeadDataError, match="app_visits_7d") as info:
            Scorer(artifact, EXACT).score(leads.drop(columns=["app_visits_7d"]))
        assert "app_visits_7d" in {p.column for p in info.value.problems}

    def test_labels_are_not_needed(self, model_dir: Path, leads: pd.DataFrame) -> None:
        supervision = [FUNNEL.label_column, *FUNNEL.supervision_columns, "_true_propensity"]
        unlabelled = leads.drop(columns=[c for c in dict.fromkeys(supervision) if c in leads.columns])
        assert FUNNEL.label_column not in unlabelled.columns
        without = Scorer(load(model_dir), EXACT).score(unlabelled)
        with_labels = Scorer(load(model_dir), EXACT).score(leads)
        assert without["lead_id"].tolist() == leads["lead_id"].tolist()
        assert_allclose(without["rank_score"], with_labels["rank_score"], rtol=0, atol=1e-6)

    def test_an_unknown_rank_by_is_refused(self, artifact: Artifact, leads: pd.DataFrame) -> None:
        with pytest.raises(ValueError, match="nope"):
            Scorer(artifact, ScoreConfig(dtype="fp32", rank_by="nope")).score(leads.iloc[:2])  # type: ignore[arg-type]

    def test_a_word_in_a_numeric_column_is_refused(self, artifact: Artifact, leads: pd.DataFrame) -> None:
        bad = leads.copy()
        bad["store_visits"] = bad["store_visits"].astype(object)
        bad.iloc[2, bad.columns.get_loc("store_visits")] = "several"
        with pytest.raises(LeadDataError, match="store_visits"):
            Scorer(artifact, EXACT).score(bad)


# --------------------------------------------------------------------------- score_file


BAD_ROWS = (2, 17, 33)


def _with_bad_rows(table: pd.DataFrame) -> pd.DataFrame:
    bad = table.copy()
    bad["app_visits_7d"] = bad["app_visits_7d"].astype(object)
    for row in BAD_ROWS:
        bad.iloc[row, bad.columns.get_loc("app_visits_7d")] = "lots"
    return bad


class TestScoreFile:
    def test_every_row_is_scored_or_rejected(self, model_dir: Path, table: pd.DataFrame, tmp_path: Path) -> None:
        clean = table.iloc[:40].reset_index(drop=True)
        source = write_table(_with_bad_rows(clean).drop(columns=["label", "funnel_stage", "call_duration_s"]), tmp_path / "leads.csv")
        destination = tmp_path / "S.csv"
        summary = Scorer(load(model_dir), EXACT).score_file(str(source), destination, chunk_rows=15)

        assert isinstance(summary, FileSummary)
        assert summary.rows_in == 40 == summary.rows_scored + summary.rows_rejected
        assert (summary.rows_scored, summary.rows_rejected) == (37, 3)
        bad_ids = clean["lead_id"].iloc[list(BAD_ROWS)].tolist()
        valid_ids = clean["lead_id"].drop(index=list(BAD_ROWS)).tolist()

        scored = read_table(destination)
        assert list(scored.columns) == SCORE_COLUMNS
        assert scored["lead_id"].tolist() == valid_ids

        rejected_path = tmp_path / "S.rejected.csv"
        assert summary.rejected_path == rejected_path and rejected_path.is_file()
        rejected = read_table(rejected_path)
        assert "_reason" in rejected.columns
        assert rejected["lead_id"].tolist() == bad_ids
        assert rejected["_reason"].str.contains("app_visits_7d").all()

        # streaming in chunks scores each lead as scoring the clean rows in one go does
        direct = Scorer(load(model_dir), EXACT).score(clean.drop(index=list(BAD_ROWS)))
        assert_allclose(scored["rank_score"], direct["rank_score"], rtol=0, atol=1e-4)
        assert_allclose(scored["probability"], direct["probability"], rtol=0, atol=1e-4)

    def test_a_clean_file_has_no_rejected_file(self, model_dir: Path, table: pd.DataFrame, tmp_path: Path) -> None:
        source = write_table(table.iloc[:8], tmp_path / "leads.csv")
        summary = Scorer(load(model_dir), EXACT).score_file(str(source), tmp_path / "S.csv", chunk_rows=5)
        assert (summary.rows_in, summary.rows_scored, summary.rows_rejected, summary.rejected_path) == (8, 8, 0, None)
        assert not (tmp_path / "S.rejected.csv").exists()
        assert read_table(tmp_path / "S.csv")["lead_id"].tolist() == table["lead_id"].iloc[:8].tolist()

    def test_a_lead_id_repeated_in_a_later_chunk_is_rejected_not_scored_twice(
        self, model_dir: Path, table: pd.DataFrame, tmp_path: Path
    ) -> None:
        leads = table.iloc[:6].reset_index(drop=True)
        repeated = pd.concat([leads, leads.iloc[[1, 4]]], ignore_index=True)  # rows 6 and 7 repeat leads 1 and 4
        source = write_table(repeated, tmp_path / "leads.csv")
        summary = Scorer(load(model_dir), EXACT).score_file(str(source), tmp_path / "S.csv", chunk_rows=4)
        assert (summary.rows_in, summary.rows_scored, summary.rows_rejected) == (8, 6, 2)
        assert read_table(tmp_path / "S.csv")["lead_id"].tolist() == leads["lead_id"].tolist()
        rejected = read_table(tmp_path / "S.rejected.csv")
        assert rejected["lead_id"].tolist() == leads["lead_id"].iloc[[1, 4]].tolist()
        assert rejected["_reason"].str.startswith("duplicate lead_id").all()

    def test_a_parquet_output_whose_first_chunk_is_all_rejected(self, model_dir: Path, table: pd.DataFrame, tmp_path: Path) -> None:
        clean = table.iloc[:9].reset_index(drop=True)
        bad = clean.copy()
        bad["app_visits_7d"] = bad["app_visits_7d"].astype(object)
        for row in (0, 1, 2):
            bad.iloc[row, bad.columns.get_loc("app_visits_7d")] = "lots"
        source = write_table(bad, tmp_path / "leads.csv")
        summary = Scorer(load(model_dir)).score_file(str(source), tmp_path / "S.parquet", chunk_rows=3)
        assert (summary.rows_in, summary.rows_scored, summary.rows_rejected) == (9, 6, 3)
        assert read_table(tmp_path / "S.parquet")["lead_id"].tolist() == clean["lead_id"].iloc[3:].tolist()


# --------------------------------------------------------------------------- tables without text


class TestNoDialogue:
    def test_a_table_without_a_dialogue_column_trains_and_scores(self, table: pd.DataFrame, tmp_path: Path) -> None:
        spec = FeatureSpec(features=FEATURES.features, dialogue_column=None)
        plain = table.drop(columns=["dialogue"])
        folder = train_tiny_model(plain, tmp_path, spec)
        loaded = load(folder)
        assert loaded.features.dialogue_column is None

        sample = plain.iloc[:12].drop(columns=["label", "funnel_stage", "call_duration_s"])
        scores = Scorer(loaded, EXACT).score(sample)
        assert scores["lead_id"].tolist() == sample["lead_id"].tolist()
        assert ((scores["probability"] > 0) & (scores["probability"] < 1)).all()
        assert np.isfinite(scores["rank_score"]).all()

        # a dialogue column the spec does not name is ignored
        with_text = Scorer(load(folder), EXACT).score(table.iloc[:12])
        assert_allclose(with_text["rank_score"], scores["rank_score"], rtol=0, atol=1e-6)
