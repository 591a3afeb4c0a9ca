"""The benchmark suites: leadrank.experiments (BenchConfig, run_bench) and `leadrank bench`.

A tiny frozen backbone and a few training steps: the tests check the output contract and
the bookkeeping (shared runs, seeds, notes, oracle), not the quality of the numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from leadrank.cli import app
from leadrank.config import FeatureSpec
from leadrank.data.minimums import TooFewLeadsError
from leadrank.data.synth import SynthConfig, simulate
from leadrank.experiments import PAPER_SUITES, SUITES, TEXT_SKIPPED, BenchConfig, run_bench
from leadrank.report import load_predictions, load_results

CONFIG = """\
model:
  mode: frozen
  pooling: mean
  pool_layer: 1
  max_dialogue_tokens: 32
train:
  batch_size: 12
  max_steps: 6
  eval_every: 3
  min_train_positives: 1
  min_train_negatives: 1
"""

pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "tiny.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def _bench(out: Path, config_file: Path, suites: tuple[str, ...], seeds: tuple[int, ...] = (0, 1), **options) -> list[Path]:
    config = BenchConfig(suites=suites, out=out, seeds=seeds, n=300, backbone="tiny", config_file=config_file, **options)
    return run_bench(config)


@pytest.fixture(scope="module")
def cheap_suites(tmp_path_factory: pytest.TempPathFactory, config_file: Path) -> dict[str, Path]:
    """table2, margins and rankby over two simulated seeds, in one bench run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEADRANK_CACHE", str(tmp_path_factory.getbasetemp() / "leadrank-cache"))
        folders = _bench(tmp_path_factory.mktemp("out"), config_file, ("table2", "margins", "rankby"))
    return {folder.name: folder for folder in folders}


class TestOutputContract:
    @pytest.mark.parametrize("suite", ["table2", "margins", "rankby"])
    def test_every_seed_and_model_has_a_row_and_the_oracle_is_last(self, cheap_suites: dict[str, Path], suite: str) -> None:
        results = load_results(cheap_suites[suite])
        assert results.suite == suite and results.seeds == [0, 1]
        models = list(dict.fromkeys(run.model for run in results.runs))
        assert models[-1] == "oracle (true propensity)"
        assert len(results.runs) == 2 * len(models)
        assert {(r.model, r.seed) for r in results.runs} == {(m, s) for m in models for s in (0, 1)}
        assert [row["model"] for row in results.summary] == models
        assert all(row["n_seeds"] == 2 for row in results.summary)

    def test_predictions_hold_every_test_lead_per_model_and_seed(self, cheap_suites: dict[str, Path]) -> None:
        results = load_results(cheap_suites["table2"])
        predictions = load_predictions(cheap_suites["table2"])
        assert predictions is not None
        test_rows = dict(zip(results.seeds, results.data["test_rows"], strict=True))  # one per seed: fresh data each
        counts = predictions.groupby(["model", "seed"]).size()
        assert all(count == test_rows[seed] for (_, seed), count in counts.items())
        assert len(counts) == len(results.runs)
        assert set(predictions["label"].unique()) <= {0, 1}
        assert predictions["stage"].notna().all()

    def test_the_auc_in_the_results_is_the_auc_of_the_predictions(self, cheap_suites: dict[str, Path]) -> None:
        from leadrank.metrics import auc

        predictions = load_predictions(cheap_suites["table2"])
        for run in load_results(cheap_suites["table2"]).runs:
            part = predictions[(predictions["model"] == run.model) & (predictions["seed"] == run.seed)]
            assert auc(part["label"], part["score"]) == pytest.approx(run.model_dump()["auc"])

    def test_markdown_and_figures_are_written(self, cheap_suites: dict[str, Path]) -> None:
        folder = cheap_suites["rankby"]
        markdown = (folder / "results.md").read_text(encoding="utf-8")
        assert "rank by pair" in markdown and "rank by blend" in markdown
        assert (folder / "figures" / "gain.png").read_bytes().startswith(b"\x89PNG")

    def test_table2_reports_its_metrics_and_drops_a_top_set_too_small(self, cheap_suites: dict[str, Path]) -> None:
        results = load_results(cheap_suites["table2"])
        assert results.metrics == ["auc", "p@1%", "r@5%"]  # P@0.1 % of 90 test leads is one lead
        assert any(note.startswith("P@0.1% omitted") for note in results.notes)
        assert any(note.startswith("P@1% is over") for note in results.notes)


class TestSharedRuns:
    def test_one_hpro_run_serves_every_suite(self, cheap_suites: dict[str, Path]) -> None:
        table2 = load_predictions(cheap_suites["table2"])
        rankby = load_predictions(cheap_suites["rankby"])
        margins = load_predictions(cheap_suites["margins"])
        for seed in (0, 1):

            def scores(frame, model):  # noqa: ANN001, ANN202
                return frame[(frame["model"] == model) & (frame["seed"] == seed)]["score"].to_numpy()

            with_hpro = scores(table2, "asLLR with HPRO")  # ranked as the model chose on its validation slice
            by = {k: scores(rankby, f"asLLR + HPRO, rank by {k}") for k in ("pair", "point", "blend")}
            paper = margins[margins["model"].str.startswith("asLLR + HPRO, margins as configured") & (margins["seed"] == seed)]
            assert any(np.array_equal(with_hpro, ranked) for ranked in by.values())
            np.testing.assert_array_equal(by["pair"], paper["score"].to_numpy())

    def test_rank_by_point_orders_as_the_calibrated_probability(self, cheap_suites: dict[str, Path]) -> None:
        rankby = load_predictions(cheap_suites["rankby"])
        for _, point in rankby[rankby["model"] == "asLLR + HPRO, rank by point"].groupby("seed"):
            ordered = point.sort_values("score")["probability"].to_numpy()
            assert (np.diff(ordered) >= -1e-12).all()  # calibration never reverses the ranking
            assert ((ordered >= 0) & (ordered <= 1)).all()

    def test_a_reused_run_costs_time_once(self, cheap_suites: dict[str, Path]) -> None:
        rows = [r.model_dump() for r in load_results(cheap_suites["rankby"]).runs if r.model.startswith("asLLR")]
        assert all(r["minutes"] == 0 for r in rows)  # table2 trained the run and was charged for it

    def test_margins_change_the_model(self, cheap_suites: dict[str, Path]) -> None:
        margins = load_predictions(cheap_suites["margins"])
        paper = margins[margins["model"].str.startswith("asLLR + HPRO, margins as configured")]["score"].to_numpy()
        none = margins[margins["model"] == "asLLR + HPRO, no margin (0)"]["score"].to_numpy()
        assert not np.allclose(paper, none)

    def test_learned_margins_are_reported_per_seed(self, cheap_suites: dict[str, Path]) -> None:
        notes = load_results(cheap_suites["margins"]).notes
        assert sum(note.startswith("Seed ") and "learned margins ended at" in note for note in notes) == 2

    def test_frozen_mode_says_why_there_is_no_ce_row(self, tmp_path: Path, config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        # table1 without its six CTR models (slow): the asLLR ablation rows alone.
        monkeypatch.setattr("leadrank.experiments.CTR_MODELS", {})
        (folder,) = _bench(tmp_path, config_file, ("table1",), seeds=(0,))
        results = load_results(folder)
        models = [row["model"] for row in results.summary]
        assert models == ["asLLR base (BCE)", "asLLR + CE + HPRO", "oracle (true propensity)"]
        assert any("'+CE' row not run" in note for note in results.notes)


class TestUserData:
    def test_a_table_without_dialogue_or_oracle_keeps_its_split_across_seeds(self, tmp_path: Path, config_file: Path) -> None:
        table = simulate(SynthConfig.preset("dense", n=300, seed=3)).drop(columns=["dialogue", "_true_propensity"])
        features = FeatureSpec.nev_default().model_copy(update={"dialogue_column": None})
        (folder,) = _bench(tmp_path, config_file, ("table2",), data=table, data_name="my.parquet", features=features)
        results = load_results(folder)
        models = [row["model"] for row in results.summary]
        assert not any(m.startswith("oracle") for m in models)
        assert "LightGBM tabular + TF-IDF" not in models
        assert results.data["source"] == "my.parquet"
        predictions = load_predictions(folder)
        ids = predictions.groupby("seed")["lead_id"].apply(lambda s: tuple(sorted(set(s))))
        assert ids.loc[0] == ids.loc[1]

    def test_a_table_whose_dialogues_are_all_empty_skips_the_text_baselines_with_a_note(self, tmp_path: Path, config_file: Path) -> None:
        table = simulate(SynthConfig.preset("dense", n=300, seed=3)).assign(dialogue="")
        (folder,) = _bench(tmp_path, config_file, ("table2",), seeds=(0,), data=table, data_name="empty.parquet")
        results = load_results(folder)
        models = [row["model"] for row in results.summary]
        assert "LightGBM tabular + TF-IDF" not in models and "LightGBM tabular" in models
        assert TEXT_SKIPPED in results.notes


class TestChecksBeforeWork:
    """What would fail after minutes of baselines fails before any of them."""

    def test_a_pool_layer_the_backbone_lacks(self, tmp_path: Path) -> None:
        config = tmp_path / "deep.yaml"
        config.write_text(CONFIG.replace("pool_layer: 1", "pool_layer: 15"), encoding="utf-8")
        steps: list[str] = []
        with pytest.raises(ValueError, match="pool_layer=15 but this backbone has 2 layers"):
            run_bench(BenchConfig(suites=("table2",), out=tmp_path, seeds=(0,), n=300, backbone="tiny", config_file=config), steps.append)
        assert steps == []

    def test_too_few_training_positives(self, tmp_path: Path) -> None:
        config = tmp_path / "strict.yaml"
        config.write_text(CONFIG.replace("min_train_positives: 1", "min_train_positives: 10000"), encoding="utf-8")
        steps: list[str] = []
        with pytest.raises(TooFewLeadsError):
            run_bench(BenchConfig(suites=("table2",), out=tmp_path, seeds=(0,), n=300, backbone="tiny", config_file=config), steps.append)
        assert steps == []


class TestConfig:
    def test_an_unknown_suite_names_the_choices(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match=r"unknown suite\(s\) \['tabel1'\].*table1"):
            BenchConfig(suites=("tabel1",), out=tmp_path)

    def test_repeated_seeds_are_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="seeds must be distinct"):
            BenchConfig(suites=("table2",), out=tmp_path, seeds=(0, 0))

    def test_all_means_the_paper_suites(self) -> None:
        assert set(PAPER_SUITES) == set(SUITES) - {"demo", "regime"}

    def test_suites_that_simulate_different_data_are_not_mixed(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="run them separately"):
            BenchConfig(suites=("regime", "table2"), out=tmp_path)
        BenchConfig(suites=("regime", "table2"), out=tmp_path, n=500, synth_preset="default", one_set=True)  # explicit: fine


class TestCommandLine:
    def test_bench_writes_each_suite_and_prints_its_table(self, tmp_path: Path, config_file: Path) -> None:
        result = CliRunner().invoke(
            app,
            [
                "bench",
                "--suite",
                "rankby",
                "--seeds",
                "0",
                "--n",
                "300",
                "--backbone",
                "tiny",
                "--config",
                str(config_file),
                "--out",
                str(tmp_path),
            ],
        )
        assert result.exit_code == 0, result.output
        assert "rank by blend" in result.output
        results = json.loads((tmp_path / "rankby" / "results.json").read_text(encoding="utf-8"))
        assert results["command"].startswith("leadrank ")

    def test_bad_seeds_are_explained(self, tmp_path: Path) -> None:
        result = CliRunner().invoke(app, ["bench", "--suite", "rankby", "--seeds", "0,x", "--out", str(tmp_path)])
        assert result.exit_code == 2
        assert "--seeds must be comma-separated integers" in result.output

    def test_an_unknown_suite_is_a_usage_error(self, tmp_path: Path) -> None:
        result = CliRunner().invoke(app, ["bench", "--suite", "nope", "--out", str(tmp_path)])
        assert result.exit_code == 2
        assert "unknown suite" in result.output


@pytest.mark.slow
class TestCTRSuites:
    def test_table1_and_transfer_with_the_ctr_models(self, tmp_path: Path, config_file: Path) -> None:
        folders = {f.name: f for f in _bench(tmp_path, config_file, ("table1", "transfer"), seeds=(0,))}
        table1 = [row["model"] for row in load_results(folders["table1"]).summary]
        assert table1[:6] == ["Wide&Deep", "DeepFM", "xDeepFM", "DCN", "DCN-M", "AutoInt"]
        transfer = [row["model"] for row in load_results(folders["transfer"]).summary]
        assert "LightGBM tabular + TF-IDF + frozen asLLR embedding" in transfer
        assert "DeepFM + frozen asLLR embedding" in transfer
        assert len(transfer) == 2 + 2 * 6 + 1  # LightGBM x2, six CTR models x2, oracle


SIDE_CONFIG = CONFIG.replace("  max_dialogue_tokens: 32\n", "  max_dialogue_tokens: 32\n  reading: dialogue\n  side_input: true\n")


@pytest.fixture(scope="module")
def regime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config_file = tmp_path_factory.mktemp("regime") / "side.yaml"
    config_file.write_text(SIDE_CONFIG, encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEADRANK_CACHE", str(tmp_path_factory.getbasetemp() / "leadrank-cache"))
        config = BenchConfig(
            suites=("regime",),
            out=tmp_path_factory.mktemp("out"),
            seeds=(0, 1),
            n=1500,
            train_sizes=(500,),
            backbone="tiny",
            config_file=config_file,
        )
        (folder,) = run_bench(config)
    return folder


@pytest.mark.slow
class TestRegimeSuite:
    """The default bench: one sparse set, seeds vary the models, a learning curve, intervals and paired differences."""

    def test_one_set_for_every_seed(self, regime: Path) -> None:
        results = load_results(regime)
        assert isinstance(results.data["test_rows"], int)  # one set: one size, not one per seed
        assert "one set" in results.data["source"] and "default preset" in results.data["source"]

    def test_the_learning_curve_has_every_model_at_every_size_and_seed(self, regime: Path) -> None:
        results = json.loads((regime / "results.json").read_text(encoding="utf-8"))
        curve = {(r["model"], r["train_size"], r["seed"]) for r in results["learning_curve"]}
        models = {m for m, _, _ in curve}
        sizes = {size for _, size, _ in curve}
        assert len(sizes) == 2 and min(sizes) == 500
        for model in (
            "asLLR, BCE only",
            "asLLR + HPRO (paper tiers)",
            "asLLR + HPRO (total order)",
            "LightGBM tabular + TF-IDF + HPRO (paper tiers)",
            "Logistic regression tabular + TF-IDF",
        ):
            assert {(model, size, seed) for size in sizes for seed in (0, 1)} <= curve
        assert "CatBoost tabular + text" in models and ("CatBoost tabular + text", 500, 0) not in curve  # full size only
        assert (regime / "figures" / "learning_curve_auc.png").read_bytes().startswith(b"\x89PNG")

    def test_headline_rows_are_the_full_training_part_with_intervals(self, regime: Path) -> None:
        results = json.loads((regime / "results.json").read_text(encoding="utf-8"))
        headline = {row["model"] for row in results["summary"]}
        assert "no dialogue: Logistic regression" in headline and "oracle (true propensity)" in headline
        assert any(m.startswith("no dialogue: asLLR") for m in headline)
        assert set(results["intervals"]) == headline
        for by_metric in results["intervals"].values():
            for point, low, high in by_metric.values():
                assert low <= point <= high
        predictions = load_predictions(regime)
        assert set(predictions["model"]) == headline  # the curve's smaller sizes are not in predictions.parquet

    def test_paired_differences_at_every_size(self, regime: Path) -> None:
        results = json.loads((regime / "results.json").read_text(encoding="utf-8"))
        pairs = {(d["model"], d["versus"], d["train_size"], d["metric"]) for d in results["differences"]}
        sizes = {d["train_size"] for d in results["differences"]}
        assert ("asLLR + HPRO (paper tiers)", "asLLR, BCE only", 500, "auc") in pairs and len(sizes) == 2
        for d in results["differences"]:
            assert d["difference"][1] <= d["difference"][0] <= d["difference"][2]
        assert "Paired bootstrap differences" in (regime / "results.md").read_text(encoding="utf-8")


class TestOneReader:
    def test_the_bench_scores_the_test_leads_as_a_users_scorer_does(self, config_file: Path, tmp_path: Path) -> None:
        """A bench row's numbers are what `leadrank score` gives for the same model and leads."""
        from leadrank import artifact as artifacts
        from leadrank.config import FunnelSpec
        from leadrank.data.split import time_split
        from leadrank.experiments import Trial
        from leadrank.inference import Scorer
        from leadrank.settings import RunConfig, ScoreConfig

        table = simulate(SynthConfig.preset("dense", n=300, seed=0))
        recipe = RunConfig.resolve(None, config_file, model={"backbone": "tiny"}, train={"dtype": "fp32"})
        trial = Trial(time_split(table), FeatureSpec.nev_default(), FunnelSpec.paper_default(), 0, recipe)
        bench_run = trial.asllr({})
        model_dir = artifacts.save(artifacts.from_training(bench_run.result), tmp_path / "model")

        scores = Scorer.load(model_dir, ScoreConfig(dtype="fp32")).score(trial.split.test)

        assert scores["lead_id"].tolist() == trial.split.test["lead_id"].tolist()
        np.testing.assert_array_equal(scores["probability"].to_numpy(), bench_run.probability)
        np.testing.assert_array_equal(scores["rank_score"].to_numpy(), bench_run.outcome("asLLR + HPRO").scores)
