"""`leadrank score` with CRM fields, hot list and cache, and `leadrank evaluate`'s calibration line, through CliRunner."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from scipy.special import expit
from test_calibration import miscalibrated, package

from helpers import invoke, widen_consoles
from helpers import plain as text
from leadrank.artifact import load, read_manifest
from leadrank.crm import CRM_COLUMNS, CrmConfig, grade, reference_percentile
from leadrank.data.io import read_table, write_table
from leadrank.data.synth import SynthConfig, simulate
from leadrank.inference import Scorer
from leadrank.metrics import brier, ece
from leadrank.settings import ScoreConfig

pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    widen_consoles(monkeypatch)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli_crm")
    package(folder, *miscalibrated(300, seed=12))
    return folder / "model"


@pytest.fixture(scope="module")
def new_leads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    table = simulate(SynthConfig.preset("dense", n=10, seed=41)).drop(columns=["label", "funnel_stage", "call_duration_s"])
    return write_table(table, tmp_path_factory.mktemp("leads") / "new.csv")


class TestScoreCrm:
    def test_crm_adds_the_columns_and_prints_grades(self, model_dir: Path, new_leads: Path, tmp_path: Path) -> None:
        out = tmp_path / "S.parquet"
        result = invoke("score", model_dir, new_leads, "--out", out, "--crm")
        assert result.exit_code == 0, result.output
        scores = read_table(out)
        assert list(scores.columns) == CRM_COLUMNS
        assert scores["lead_id"].tolist() == read_table(new_leads)["lead_id"].tolist()
        assert set(scores["model_version"]) == {read_manifest(model_dir)["model_version"]}
        manifest = read_manifest(model_dir)
        reference = manifest["score_reference"][manifest["rank_by"]]  # fixed at training: the same for any batch
        assert scores["percentile"].tolist() == reference_percentile(scores["rank_score"], reference).tolist()
        assert scores["grade"].tolist() == grade(scores["percentile"].to_numpy(), CrmConfig()).tolist()
        output = text(result)
        assert "10 leads in: 10 scored" in output
        counts = ", ".join(f"{g} {int((scores['grade'] == g).sum())}" for g in "ABCD")
        assert f"model_version {manifest['model_version']}; grades: {counts}; trend: new 10" in output

    def test_top_writes_the_hot_list_beside_the_output(self, model_dir: Path, new_leads: Path, tmp_path: Path) -> None:
        out = tmp_path / "S.csv"
        result = invoke("score", model_dir, new_leads, "--out", out, "--top", "3")
        assert result.exit_code == 0, result.output
        everything, top = read_table(out), read_table(tmp_path / "S.top3.csv")
        assert list(top.columns) == CRM_COLUMNS
        best = everything.sort_values("rank_score", ascending=False, kind="stable").head(3)
        assert top["lead_id"].tolist() == best["lead_id"].tolist()
        assert f"hot list -> {tmp_path / 'S.top3.csv'}" in text(result)

    def test_top_into_a_duckdb_table(self, model_dir: Path, new_leads: Path, tmp_path: Path) -> None:
        database = tmp_path / "crm.duckdb"
        result = invoke("score", model_dir, new_leads, "--out", f"{database}::scores", "--top", "2")
        assert result.exit_code == 0, result.output
        assert len(read_table(f"{database}::scores")) == 10
        assert len(read_table(f"{database}::scores_top2")) == 2

    def test_invalid_rows_go_to_a_rejected_duckdb_table(self, model_dir: Path, new_leads: Path, tmp_path: Path) -> None:
        leads = read_table(new_leads)
        leads["customer_age"] = leads["customer_age"].astype(object)
        leads.loc[3, "customer_age"] = "forty"
        bad = write_table(leads, tmp_path / "bad.csv")
        database = tmp_path / "crm.duckdb"
        result = invoke("score", model_dir, bad, "--out", f"{database}::scores", "--crm")
        assert result.exit_code == 0, result.output
        assert len(read_table(f"{database}::scores")) == 9
        rejected = read_table(f"{database}::scores_rejected")
        assert rejected["lead_id"].tolist() == [leads.loc[3, "lead_id"]]
        assert "customer_age" in rejected["_reason"].iloc[0]

    def test_previous_scores_give_the_trend(self, model_dir: Path, new_leads: Path, tmp_path: Path) -> None:
        first = tmp_path / "yesterday.csv"
        assert invoke("score", model_dir, new_leads, "--out", first, "--crm").exit_code == 0
        yesterday = read_table(first)
        yesterday.loc[0, "probability"] = 0.0  # lower yesterday: improving today
        yesterday.loc[1, "probability"] = 1.0  # higher yesterday: declining today
        write_table(yesterday.drop(index=2), first)  # lead 2 was not scored yesterday: new
        result = invoke("score", model_dir, new_leads, "--out", tmp_path / "today.csv", "--previous", first)
        assert result.exit_code == 0, result.output
        trends = read_table(tmp_path / "today.csv")["trend"].tolist()
        assert trends[:3] == ["improving", "declining", "new"]
        assert set(trends[3:]) == {"steady"}

    def test_crm_config_changes_the_cut_offs(self, model_dir: Path, new_leads: Path, tmp_path: Path) -> None:
        config = tmp_path / "crm.yaml"
        config.write_text("grade_a_min_percentile: 50\ngrade_b_min_percentile: 20\ngrade_c_min_percentile: 10\n", encoding="utf-8")
        result = invoke("score", model_dir, new_leads, "--out", tmp_path / "S.csv", "--crm-config", config)
        assert result.exit_code == 0, result.output
        scores = read_table(tmp_path / "S.csv")
        assert scores["grade"].tolist() == grade(scores["percentile"].to_numpy(), CrmConfig.from_yaml(config)).tolist()
        default = invoke("score", model_dir, new_leads, "--out", tmp_path / "D.csv", "--crm")
        assert default.exit_code == 0, default.output
        assert (
            read_table(tmp_path / "D.csv")["percentile"].tolist() == scores["percentile"].tolist()
        )  # the cut-offs move, not the percentiles

    def test_a_bad_crm_config_is_named_and_nothing_is_written(self, model_dir: Path, new_leads: Path, tmp_path: Path) -> None:
        config = tmp_path / "crm.yaml"
        config.write_text("grade_a_min_percentile: 10\n", encoding="utf-8")
        result = invoke("score", model_dir, new_leads, "--out", tmp_path / "S.csv", "--crm-config", config)
        assert result.exit_code == 2
        assert "grade cut-offs must not increase" in text(result)
        assert not (tmp_path / "S.csv").exists()

    def test_d365_writes_the_msdyn_predictivescore_columns(self, model_dir: Path, new_leads: Path, tmp_path: Path) -> None:
        result = invoke("score", model_dir, new_leads, "--out", tmp_path / "S.csv", "--d365")
        assert result.exit_code == 0, result.output
        d365 = read_table(tmp_path / "S.csv")
        assert list(d365.columns) == ["msdyn_entityid", "msdyn_entitytype", "msdyn_score", "msdyn_grade", "msdyn_scoretrend"]
        assert d365["msdyn_score"].between(0, 100).all()
        assert set(d365["msdyn_scoretrend"]) == {3}  # no previous scores: "Not enough info"

    def test_top_zero_is_refused(self, model_dir: Path, new_leads: Path, tmp_path: Path) -> None:
        result = invoke("score", model_dir, new_leads, "--out", tmp_path / "S.csv", "--top", "0")
        assert result.exit_code == 2
        assert "top must be a positive number" in text(result)


class TestScoreCache:
    def test_a_second_run_rescores_nothing(self, model_dir: Path, new_leads: Path, tmp_path: Path) -> None:
        cache = tmp_path / "cache.parquet"
        first = invoke("score", model_dir, new_leads, "--out", tmp_path / "S1.csv", "--cache", cache)
        assert first.exit_code == 0, first.output
        assert f"Cache {cache}: 10 rescored, 0 reused." in text(first)
        second = invoke("score", model_dir, new_leads, "--out", tmp_path / "S2.csv", "--cache", cache, "--crm")
        assert second.exit_code == 0, second.output
        assert f"Cache {cache}: 0 rescored, 10 reused." in text(second)
        before, after = read_table(tmp_path / "S1.csv"), read_table(tmp_path / "S2.csv")
        pd.testing.assert_frame_equal(before, after[before.columns.tolist()])


class TestEvaluate:
    def test_prints_brier_and_ece_before_and_after_calibration(self, model_dir: Path, tmp_path: Path) -> None:
        holdout = simulate(SynthConfig.preset("dense", n=12, seed=50))
        labels = holdout["label"].to_numpy()
        assert 0 < labels.sum() < len(labels)
        result = invoke("evaluate", model_dir, write_table(holdout, tmp_path / "holdout.parquet"))
        assert result.exit_code == 0, result.output
        lines = [line for line in text(result).splitlines() if "ECE" in line]
        assert len(lines) == 1

        artifact = load(model_dir)
        point, _ = Scorer(artifact, ScoreConfig()).raw_scores(holdout)
        raw, calibrated = expit(point), artifact.calibration.apply(point)
        expected = (
            f"(platt), raw head -> calibrated: Brier {brier(labels, raw):.4f} -> {brier(labels, calibrated):.4f}, "
            f"ECE {ece(labels, raw):.4f} -> {ece(labels, calibrated):.4f}"
        )
        assert expected in lines[0]
