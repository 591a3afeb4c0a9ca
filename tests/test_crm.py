"""CRM-ready scores: leadrank.crm (percentile, grade, trend, hot list, Dynamics 365 layout),
the artifact's model_version, and incremental scoring (leadrank.inference.ScoreCache).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from test_calibration import miscalibrated, package

from leadrank.artifact import ArtifactError, load, read_manifest, save
from leadrank.calibration import Calibration
from leadrank.crm import (
    CRM_COLUMNS,
    CrmConfig,
    CrmOutput,
    add_crm_fields,
    grade,
    hot_list,
    hot_list_location,
    reference_percentile,
    reference_quantiles,
    to_dynamics365,
    trend,
)
from leadrank.data.io import read_table, write_table
from leadrank.data.synth import SynthConfig, simulate
from leadrank.inference import SCORE_COLUMNS, ScoreCache, Scorer
from leadrank.settings import ScoreConfig

EXACT = ScoreConfig(dtype="fp32")
REFERENCE = reference_quantiles(np.linspace(0.0, 5.0, 101))

pytestmark = pytest.mark.usefixtures("isolated_cache")


def _scores(rank_score: list[float], probability: list[float] | None = None) -> pd.DataFrame:
    n = len(rank_score)
    return pd.DataFrame(
        {
            "lead_id": [f"L{i:03d}" for i in range(n)],
            "probability": probability if probability is not None else np.linspace(0.05, 0.95, n),
            "rank_score": rank_score,
        }
    )


# --------------------------------------------------------------------------- percentile and grade


class TestPercentile:
    def test_below_the_reference_is_0_above_is_100_and_order_is_kept(self) -> None:
        rng = np.random.default_rng(0)
        reference = reference_quantiles(rng.normal(size=500))
        scores = np.concatenate([rng.normal(size=50), [-10.0, 10.0]])
        p = reference_percentile(scores, reference)
        assert p[-2] == 0.0 and p[-1] == 100.0
        assert (np.diff(p[np.argsort(scores)]) >= 0).all()

    def test_the_validation_leads_themselves_spread_evenly(self) -> None:
        values = np.random.default_rng(2).permutation(1000).astype(float)
        p = reference_percentile(values, reference_quantiles(values))
        assert_allclose(p, 100 * values / 999, atol=0.2)

    def test_a_leads_percentile_does_not_depend_on_what_else_is_scored(self) -> None:
        reference = reference_quantiles(np.linspace(-3, 3, 200))
        scores = np.random.default_rng(3).normal(size=30)
        together = reference_percentile(scores, reference)
        alone = [reference_percentile([score], reference)[0] for score in scores]
        assert together.tolist() == alone
        assert reference_percentile(scores[:7], reference).tolist() == together[:7].tolist()

    def test_scores_tied_in_the_reference_get_the_middle(self) -> None:
        assert reference_percentile([1.0], [0.0, 1.0, 1.0, 1.0, 2.0]).tolist() == [50.0]
        assert reference_percentile([], [0.0, 1.0]).tolist() == []


class TestGrade:
    @pytest.mark.parametrize(("n", "counts"), [(100, [10, 20, 30, 40]), (10, [1, 2, 3, 4])])
    def test_default_cut_offs_give_10_20_30_40_percent(self, n: int, counts: list[int]) -> None:
        scores = np.random.default_rng(1).permutation(n).astype(float)
        grades = grade(reference_percentile(scores, reference_quantiles(scores)), CrmConfig())
        assert [int((grades == g).sum()) for g in "ABCD"] == counts
        assert set(grades[scores >= n - counts[0]]) == {"A"}  # the A's are the best leads

    @settings(max_examples=40, deadline=None)
    @given(st.lists(st.integers(-5, 5).map(float), min_size=1, max_size=60))
    def test_a_better_score_never_gets_a_worse_grade(self, scores: list[float]) -> None:
        values = np.array(scores)
        grades = grade(reference_percentile(values, reference_quantiles(values)), CrmConfig())
        order = np.argsort(values, kind="stable")
        worse_is_higher_letter = [ord(g) for g in grades[order]]
        assert all(a >= b for a, b in zip(worse_is_higher_letter, worse_is_higher_letter[1:]))
        for value in np.unique(values):  # ties share a grade
            assert len(set(grades[values == value])) == 1

    def test_cut_offs_load_from_yaml(self, tmp_path: Path) -> None:
        path = tmp_path / "crm.yaml"
        path.write_text(
            "grade_a_min_percentile: 95\ngrade_b_min_percentile: 80\ngrade_c_min_percentile: 50\ntrend_tolerance: 0.05\n", encoding="utf-8"
        )
        config = CrmConfig.from_yaml(path)
        assert config.trend_tolerance == 0.05
        scores = np.arange(100, dtype=float)
        grades = grade(reference_percentile(scores, reference_quantiles(scores)), config)
        assert [int((grades == g).sum()) for g in "ABCD"] == [5, 15, 30, 50]

    def test_cut_offs_that_increase_are_refused(self) -> None:
        with pytest.raises(ValueError, match="grade_a_min_percentile=50"):
            CrmConfig(grade_a_min_percentile=50, grade_b_min_percentile=70)

    def test_an_unknown_yaml_field_is_named(self, tmp_path: Path) -> None:
        path = tmp_path / "crm.yaml"
        path.write_text("grade_e_min_percentile: 10\n", encoding="utf-8")
        with pytest.raises(ValueError, match="grade_e_min_percentile"):
            CrmConfig.from_yaml(path)


# --------------------------------------------------------------------------- trend


class TestTrend:
    def test_without_previous_scores_every_lead_is_new(self) -> None:
        assert trend(_scores([1.0, 2.0]), None, 0.02).tolist() == ["new", "new"]

    def test_against_previous_scores_with_a_tolerance(self) -> None:
        now = _scores([0.0] * 5, probability=[0.30, 0.30, 0.30, 0.30, 0.30])
        previous = pd.DataFrame({"lead_id": ["L000", "L001", "L002", "L003"], "probability": [0.20, 0.29, 0.40, 0.315]})
        assert trend(now, previous, 0.02).tolist() == ["improving", "steady", "declining", "steady", "new"]
        assert trend(now, previous, 0.005).tolist() == ["improving", "improving", "declining", "declining", "new"]

    def test_numeric_ids_in_the_previous_table_still_match(self) -> None:
        now = pd.DataFrame({"lead_id": ["7", "8"], "probability": [0.5, 0.5], "rank_score": [0.0, 1.0]})
        previous = pd.DataFrame({"lead_id": [7, 8], "probability": [0.1, 0.9]})
        assert trend(now, previous, 0.02).tolist() == ["improving", "declining"]

    def test_an_earlier_dynamics365_output_is_read_as_previous_scores(self) -> None:
        now = _scores([0.0, 0.0, 0.0], probability=[0.35, 0.30, 0.10])
        previous = to_dynamics365(
            pd.DataFrame(
                {
                    "lead_id": ["L000", "L001", "L002"],
                    "probability": [0.20, 0.31, 0.40],
                    "rank_score": 0.0,
                    "percentile": 50.0,
                    "grade": "B",
                    "trend": "new",
                    "model_version": "abc",
                }
            )
        )
        assert trend(now, previous, 0.02).tolist() == ["improving", "steady", "declining"]

    def test_a_previous_table_without_probability_is_named(self) -> None:
        with pytest.raises(ValueError, match=r"no column\(s\) \['probability'\]"):
            trend(_scores([1.0]), pd.DataFrame({"lead_id": ["L000"], "score": [0.2]}), 0.02)

    def test_a_lead_twice_in_the_previous_table_is_named(self) -> None:
        previous = pd.DataFrame({"lead_id": ["L000", "L000"], "probability": [0.1, 0.2]})
        with pytest.raises(ValueError, match=r"\['L000'\] appear more than once"):
            trend(_scores([1.0]), previous, 0.02)

    def test_a_previous_probability_outside_0_1_is_named(self) -> None:
        previous = pd.DataFrame({"lead_id": ["L000", "L001"], "probability": [0.1, 7.0]})
        with pytest.raises(ValueError, match=r"rows \[1\]"):
            trend(_scores([1.0, 2.0]), previous, 0.02)


# --------------------------------------------------------------------------- the CRM table, hot list, Dynamics 365


class TestCrmTable:
    def test_columns_order_and_values(self) -> None:
        scores = _scores([3.0, 1.0, 2.0]).iloc[::-1].reset_index(drop=True)
        crm = add_crm_fields(scores, "abc123def456", reference_quantiles(np.array([1.0, 2.0, 3.0])))
        assert list(crm.columns) == CRM_COLUMNS
        assert crm["lead_id"].tolist() == scores["lead_id"].tolist()  # input order is kept
        assert crm["percentile"].tolist() == [50.0, 0.0, 100.0]
        assert crm["grade"].tolist() == ["C", "D", "A"]
        assert set(crm["model_version"]) == {"abc123def456"}

    def test_hot_list_is_the_best_n_best_first_ties_in_input_order(self) -> None:
        crm = add_crm_fields(_scores([1.0, 5.0, 3.0, 5.0, 0.0]), "v", REFERENCE)
        top = hot_list(crm, 3)
        assert top["lead_id"].tolist() == ["L001", "L003", "L002"]
        assert list(top.columns) == CRM_COLUMNS
        assert len(hot_list(crm, 50)) == 5
        with pytest.raises(ValueError, match="top=0"):
            hot_list(crm, 0)

    @pytest.mark.parametrize(
        ("destination", "expected"),
        [
            ("out/scores.csv", "out/scores.top50.csv"),
            ("scores.parquet", "scores.top50.parquet"),
            ("crm.duckdb::scores", "crm.duckdb::scores_top50"),
            ("crm.duckdb", "crm.duckdb::leads_top50"),
        ],
    )
    def test_hot_list_location(self, destination: str, expected: str) -> None:
        assert hot_list_location(destination, 50) == expected

    def test_dynamics365_columns_and_codes(self) -> None:
        crm = add_crm_fields(_scores([4.0, 3.0, 2.0, 1.0], probability=[0.994, 0.5, 0.126, 0.0]), "v", REFERENCE)
        crm["grade"] = ["A", "B", "C", "D"]
        crm["trend"] = ["improving", "steady", "declining", "new"]
        d365 = to_dynamics365(crm)
        assert list(d365.columns) == ["msdyn_entityid", "msdyn_entitytype", "msdyn_score", "msdyn_grade", "msdyn_scoretrend"]
        assert d365["msdyn_entityid"].tolist() == crm["lead_id"].tolist()
        assert set(d365["msdyn_entitytype"]) == {"lead"}
        assert d365["msdyn_score"].tolist() == [99, 50, 13, 0]
        assert d365["msdyn_grade"].tolist() == [0, 1, 2, 3]
        assert d365["msdyn_scoretrend"].tolist() == [0, 1, 2, 3]


class TestCrmOutput:
    def test_writes_the_table_and_the_hot_list(self, tmp_path: Path) -> None:
        scores = _scores(list(np.random.default_rng(2).normal(size=30)))
        summary = CrmOutput(top=5).write(scores, tmp_path / "S.parquet", "v1", REFERENCE)
        written = read_table(tmp_path / "S.parquet")
        assert list(written.columns) == CRM_COLUMNS and len(written) == 30
        top = read_table(tmp_path / "S.top5.parquet")
        assert top["lead_id"].tolist() == scores.sort_values("rank_score", ascending=False)["lead_id"].head(5).tolist()
        assert summary.hot_list == str(tmp_path / "S.top5.parquet")
        assert sum(summary.grades.values()) == 30 and summary.trends["new"] == 30

    def test_dynamics365_layout_and_a_duckdb_hot_list(self, tmp_path: Path) -> None:
        scores = _scores([0.5, 2.0, 1.0])
        CrmOutput(top=2, dynamics365=True).write(scores, f"{tmp_path / 'crm.duckdb'}::scores", "v1", REFERENCE)
        assert list(read_table(f"{tmp_path / 'crm.duckdb'}::scores").columns)[0] == "msdyn_entityid"
        top = read_table(f"{tmp_path / 'crm.duckdb'}::scores_top2")
        assert top["lead_id"].tolist() == ["L001", "L002"] and "grade" in top.columns

    def test_top_below_one_is_refused(self) -> None:
        with pytest.raises(ValueError, match="top must be a positive"):
            CrmOutput(top=0)


# --------------------------------------------------------------------------- with a model: model_version, cache, score_file


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("crm")
    package(folder, *miscalibrated(200, seed=8))
    return folder / "model"


@pytest.fixture(scope="module")
def leads() -> pd.DataFrame:
    table = simulate(SynthConfig.preset("dense", n=8, seed=31))
    return table.drop(columns=["label", "funnel_stage", "call_duration_s"]).reset_index(drop=True)


def _edit_manifest(folder: Path, edit) -> None:  # noqa: ANN001
    path = folder / "leadrank.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    edit(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")


class TestModelVersion:
    def test_stable_through_save_and_load(self, model_dir: Path, tmp_path: Path) -> None:
        loaded = load(model_dir)
        assert re.fullmatch(r"[0-9a-f]{12}", loaded.model_version)
        assert loaded.model_version == read_manifest(model_dir)["model_version"]
        again = save(loaded, tmp_path / "again")
        assert read_manifest(again)["model_version"] == loaded.model_version == load(again).model_version

    def test_a_new_calibration_or_new_weights_give_a_new_version(self, model_dir: Path) -> None:
        artifact = load(model_dir)
        recalibrated = dataclasses.replace(artifact, calibration=Calibration(method="platt", a=0.7, b=-1.0), model_version="")
        assert recalibrated.model_version != artifact.model_version
        with torch.no_grad():
            next(artifact.model.heads.parameters()).add_(1e-3)
        retrained = dataclasses.replace(artifact, model_version="")
        assert len({artifact.model_version, recalibrated.model_version, retrained.model_version}) == 3

    def test_a_manifest_without_it_is_refused(self, model_dir: Path, tmp_path: Path) -> None:
        folder = Path(shutil.copytree(model_dir, tmp_path / "old"))
        _edit_manifest(folder, lambda m: m.pop("model_version"))
        with pytest.raises(ArtifactError, match="has no 'model_version'"):
            load(folder)

    def test_a_directory_changed_after_saving_is_refused(self, model_dir: Path, tmp_path: Path) -> None:
        folder = Path(shutil.copytree(model_dir, tmp_path / "edited"))
        _edit_manifest(folder, lambda m: m["score_stats"].update(pair_mean=12.0))
        with pytest.raises(ArtifactError, match="changed after it was saved"):
            load(folder)


class TestCache:
    def test_second_run_reuses_everything_and_one_changed_dialogue_is_rescored(
        self, model_dir: Path, leads: pd.DataFrame, tmp_path: Path
    ) -> None:
        location = tmp_path / "cache.parquet"
        scorer = Scorer(load(model_dir), EXACT)
        first = ScoreCache.open(location)
        full = scorer.score(leads, cache=first)
        first.save()
        assert (first.rescored, first.reused) == (len(leads), 0)

        second = ScoreCache.open(location)
        again = scorer.score(leads, cache=second)
        second.save()
        assert (second.rescored, second.reused) == (0, len(leads))
        pd.testing.assert_frame_equal(again, full)

        changed = leads.copy()
        changed.loc[3, "dialogue"] = changed.loc[3, "dialogue"] + "\nCustomer: I will come to the store on Saturday."
        third = ScoreCache.open(location)
        incremental = scorer.score(changed, cache=third)
        third.save()
        assert (third.rescored, third.reused) == (1, len(leads) - 1)
        reference = Scorer(load(model_dir), EXACT).score(changed)  # a full run, no cache
        assert incremental["lead_id"].tolist() == reference["lead_id"].tolist()
        assert_allclose(incremental["probability"], reference["probability"], rtol=0, atol=1e-6)
        assert_allclose(incremental["rank_score"], reference["rank_score"], rtol=0, atol=1e-6)
        assert incremental.loc[3, "rank_score"] != full.loc[3, "rank_score"]

    def test_another_model_version_rescores_everything(self, model_dir: Path, leads: pd.DataFrame, tmp_path: Path) -> None:
        location = tmp_path / "cache.parquet"
        cache = ScoreCache.open(location)
        Scorer(load(model_dir), EXACT).score(leads.iloc[:4], cache=cache)
        cache.save()
        other = package(tmp_path / "other", *miscalibrated(200, seed=9), seed=1)
        assert other.model_version != load(model_dir).model_version
        second = ScoreCache.open(location)
        Scorer(load(tmp_path / "other" / "model"), EXACT).score(leads.iloc[:4], cache=second)
        assert (second.rescored, second.reused) == (4, 0)

    def test_a_duckdb_table_keeps_the_rows_of_leads_not_in_this_run(self, model_dir: Path, leads: pd.DataFrame, tmp_path: Path) -> None:
        database = tmp_path / "crm.duckdb"
        write_table(leads, f"{database}::leads")  # the database exists, the cache table does not yet
        location = f"{database}::score_cache"
        scorer = Scorer(load(model_dir), EXACT)
        cache = ScoreCache.open(location)
        scorer.score(leads.iloc[:3], cache=cache)
        cache.save()
        cache = ScoreCache.open(location)
        scorer.score(leads.iloc[2:5], cache=cache)
        cache.save()
        assert (cache.rescored, cache.reused) == (2, 1)
        stored = read_table(location)
        assert sorted(stored["lead_id"]) == sorted(leads["lead_id"].iloc[:5])
        assert list(stored.columns) == list(ScoreCache.COLUMNS)

    def test_a_table_that_is_not_a_cache_is_refused(self, leads: pd.DataFrame, tmp_path: Path) -> None:
        write_table(leads, tmp_path / "leads.parquet")
        with pytest.raises(ValueError, match="not a score cache"):
            ScoreCache.open(tmp_path / "leads.parquet")


class TestScoreFileWithCrm:
    def test_percentile_spans_all_chunks_and_the_model_reads_each_lead_once(
        self, model_dir: Path, leads: pd.DataFrame, tmp_path: Path
    ) -> None:
        source = write_table(leads, tmp_path / "leads.csv")
        scorer = Scorer(load(model_dir), EXACT)
        calls: list[int] = []
        run = scorer.reader.head_outputs

        def counting_run(inputs, rows=None):  # noqa: ANN001, ANN202
            calls.append(len(inputs.prompts) if rows is None else len(rows))
            return run(inputs, rows)

        scorer.reader.head_outputs = counting_run  # type: ignore[method-assign]
        summary = scorer.score_file(str(source), tmp_path / "S.csv", chunk_rows=3, crm=CrmOutput(top=4))
        assert sum(calls) == len(leads)  # one model pass over the leads, in chunks
        written = read_table(tmp_path / "S.csv")
        assert list(written.columns) == CRM_COLUMNS
        plain = Scorer(load(model_dir), EXACT).score(read_table(source))
        expected = add_crm_fields(plain, scorer.artifact.model_version, scorer.reference)
        assert written["lead_id"].tolist() == expected["lead_id"].tolist()
        assert_array_equal(written["grade"], expected["grade"])
        assert_allclose(written["percentile"], expected["percentile"], rtol=0, atol=1e-9)
        assert summary.crm is not None and summary.crm.hot_list == str(tmp_path / "S.top4.csv")
        assert len(read_table(tmp_path / "S.top4.csv")) == 4

    def test_the_plain_path_still_writes_only_the_score_columns(self, model_dir: Path, leads: pd.DataFrame, tmp_path: Path) -> None:
        source = write_table(leads.iloc[:4], tmp_path / "leads.csv")
        summary = Scorer(load(model_dir), EXACT).score_file(str(source), tmp_path / "S.csv", chunk_rows=2)
        assert summary.crm is None
        assert list(read_table(tmp_path / "S.csv").columns) == SCORE_COLUMNS


class TestFieldsFixedAtTraining:
    def test_a_lead_gets_the_same_fields_alone_in_a_batch_in_a_shard_and_through_the_service(self, model_dir: Path, tmp_path: Path) -> None:
        from fastapi.testclient import TestClient

        from leadrank.serve import ServeSettings, create_app

        leads = simulate(SynthConfig.preset("dense", n=40, seed=32)).drop(columns=["label", "funnel_stage", "call_duration_s"])

        one_at_a_time = ScoreConfig(dtype="fp32", batch_size=1)  # every path reads each lead in a batch of its own
        scorer = Scorer(load(model_dir), one_at_a_time)
        fields = ["lead_id", "percentile", "grade", "model_version"]
        batch = add_crm_fields(scorer.score(leads), scorer.artifact.model_version, scorer.reference)[fields]
        alone = pd.concat(
            [
                add_crm_fields(scorer.score(leads.iloc[[i]]), scorer.artifact.model_version, scorer.reference)[fields]
                for i in range(len(leads))
            ],
            ignore_index=True,
        )
        source = write_table(leads, tmp_path / "leads.parquet")
        scorer.score_file(str(source), tmp_path / "shards.parquet", chunk_rows=3, crm=CrmOutput())
        sharded = read_table(tmp_path / "shards.parquet")[fields]
        with TestClient(create_app(model_dir, ServeSettings(score=one_at_a_time))) as client:
            records = json.loads(leads.to_json(orient="records", date_format="iso"))
            served = pd.DataFrame(client.post("/score", json={"leads": records}).json()["scores"])[fields]

        assert batch["percentile"].nunique() > 1, "the leads must not all share one percentile"
        for other in (alone, sharded, served):
            pd.testing.assert_frame_equal(other.reset_index(drop=True), batch.reset_index(drop=True), check_dtype=False)

    def test_grade_order_follows_rank_order(self, model_dir: Path, leads: pd.DataFrame) -> None:
        scorer = Scorer(load(model_dir), EXACT)
        crm = add_crm_fields(scorer.score(leads), scorer.artifact.model_version, scorer.reference).sort_values("rank_score")
        assert (np.diff(crm["percentile"].to_numpy()) >= 0).all()
        assert crm["grade"].tolist() == sorted(crm["grade"], reverse=True)  # D ... A from the lowest rank up
