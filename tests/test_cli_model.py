"""The model verbs of the command line (split, train, score, evaluate), through typer's CliRunner.

One tiny LoRA model is trained through the CLI per module; the tests that need a model use it
(or a copy of it, when they write into it).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import Result

import leadrank.training as training
from helpers import invoke, reset_accelerate, widen_consoles
from helpers import plain as text
from leadrank.artifact import read_manifest
from leadrank.data.io import read_table, write_table
from leadrank.data.synth import SynthConfig, simulate

TINY_ARGS = ("--backbone", "tiny", "--preset", "cpu-lora", "--max-steps", "4")


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADRANK_CACHE", str(tmp_path_factory.getbasetemp() / "leadrank-cache"))
    widen_consoles(monkeypatch)
    reset_accelerate()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Simulated tables: a labelled training table, a small table to score and a small one to evaluate."""
    folder = tmp_path_factory.mktemp("data")
    write_table(simulate(SynthConfig.preset("dense", n=300, seed=21)), folder / "train.parquet")
    write_table(simulate(SynthConfig.preset("dense", n=16, seed=22)), folder / "new.csv")
    holdout = simulate(SynthConfig.preset("dense", n=40, seed=23))
    assert 0 < holdout["label"].sum() < len(holdout), "the evaluation table must hold both classes"
    write_table(holdout, folder / "holdout.parquet")
    (folder / "cfg.yaml").write_text(
        "model:\n  max_dialogue_tokens: 32\n  lora_r: 4\ntrain:\n  batch_size: 12\n  eval_every: 2\n  checkpoint_every: 2\n"
        "  min_train_positives: 1\n  min_train_negatives: 1\n",
        encoding="utf-8",
    )
    return folder


def _train(data_dir: Path, out: Path, *extra: str) -> Result:
    return invoke("train", data_dir / "train.parquet", "--out", out, *TINY_ARGS, "--config", data_dir / "cfg.yaml", *extra)


@pytest.fixture(scope="module")
def trained(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Result, Path]]:
    """`leadrank train` run once for the module: (its result, the model directory)."""
    out = tmp_path_factory.mktemp("run") / "M"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEADRANK_CACHE", str(out.parent / "cache"))
        widen_consoles(patch)
        reset_accelerate()
        yield _train(data_dir, out), out


# --------------------------------------------------------------------------- split


class TestSplit:
    def test_split_writes_two_parts_in_time_order(self, data_dir: Path, tmp_path: Path) -> None:
        source = data_dir / "train.parquet"
        result = invoke("split", source, "--train", tmp_path / "tr.parquet", "--test", tmp_path / "te.csv", "--test-fraction", "0.25")
        assert result.exit_code == 0, result.output
        whole, early, late = read_table(source), read_table(tmp_path / "tr.parquet"), read_table(tmp_path / "te.csv")
        assert len(early) + len(late) == len(whole)
        assert len(early) > 0 and len(late) > 0
        assert pd.to_datetime(early["as_of"]).max() < pd.to_datetime(late["as_of"]).min()
        assert set(early["lead_id"]).isdisjoint(late["lead_id"])
        assert set(early["lead_id"]) | set(late["lead_id"]) == set(whole["lead_id"])


# --------------------------------------------------------------------------- train


class TestTrain:
    def test_train_writes_a_model_and_its_checkpoints(self, trained: tuple[Result, Path]) -> None:
        result, out = trained
        assert result.exit_code == 0, result.output
        output = text(result)
        assert "Trained" in output
        rank_by = json.loads((out / "leadrank.json").read_text(encoding="utf-8"))["rank_by"]  # chosen on validation
        assert {
            "blend": "Ranks by a blend of both heads",
            "pair": "Ranks by the pairwise (HPRO) head",
            "point": "Ranks by the probability head",
        }[rank_by] in output
        assert "(4 steps" in output
        assert (out / "leadrank.json").is_file()
        checkpoints = out.with_name("M.checkpoints")
        assert checkpoints.is_dir()
        assert json.loads((checkpoints / "state.json").read_text(encoding="utf-8"))["step"] == 4

    def test_the_config_file_and_flags_reach_the_model(self, trained: tuple[Result, Path]) -> None:
        _, out = trained
        manifest = read_manifest(out)
        model, train = manifest["model_config"], manifest["train_config"]
        assert (model["backbone"], model["mode"], model["max_dialogue_tokens"], model["lora_r"]) == ("tiny", "lora", 32, 4)
        assert model["lora_top_layers"] == 8  # from the cpu-lora preset, not overridden
        assert (train["batch_size"], train["eval_every"], train["checkpoint_every"], train["max_steps"]) == (12, 2, 2, 4)
        assert train["lr_heads"] == 1e-3  # cpu-lora
        assert manifest["metrics"]["train_steps"] == 4
        aucs = {k: manifest["metrics"][f"val_auc_{k}"] for k in ("blend", "pair", "point")}
        assert manifest["rank_by"] == max(("blend", "pair", "point"), key=aucs.__getitem__)  # the best on validation

    def test_no_hpro_ranks_by_the_point_head(self, data_dir: Path, tmp_path: Path) -> None:
        result = _train(data_dir, tmp_path / "M", "--no-hpro")
        assert result.exit_code == 0, result.output
        assert "Ranks by the probability head" in text(result)
        manifest = read_manifest(tmp_path / "M")
        assert manifest["rank_by"] == "point"
        assert manifest["train_config"]["hpro_weight"] == 0.0

    def test_an_unknown_preset_names_the_presets(self, data_dir: Path, tmp_path: Path) -> None:
        result = _train(data_dir, tmp_path / "M", "--preset", "nope")
        assert result.exit_code == 2
        output = text(result)
        assert "Unknown preset 'nope'" in output
        assert "cpu-quick" in output and "paper" in output
        assert not (tmp_path / "M").exists()
        assert not (tmp_path / "M.checkpoints").exists()

    def test_resume_after_a_finished_run_does_not_train_again(
        self, trained: tuple[Result, Path], data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        _, original = trained
        out = tmp_path / "M"
        shutil.copytree(original, out)
        shutil.copytree(original.with_name("M.checkpoints"), tmp_path / "M.checkpoints")

        def no_step(*args: object, **kwargs: object) -> None:
            raise AssertionError("a finished run must not take another training step")

        monkeypatch.setattr(training, "_step_loss", no_step)
        result = _train(data_dir, out, "--resume")
        assert result.exit_code == 0, result.output
        assert "(4 steps" in text(result)
        assert read_manifest(out)["metrics"]["train_steps"] == 4
        assert json.loads((tmp_path / "M.checkpoints" / "state.json").read_text(encoding="utf-8"))["step"] == 4
        assert read_manifest(out)["metrics"]["best_step"] == read_manifest(original)["metrics"]["best_step"]

    def test_resume_after_an_early_stop_does_not_train_again(self, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        # a learning rate this small leaves the validation AUC where it was: patience 1 stops at step 2
        config = tmp_path / "stop.yaml"
        config.write_text(
            "model:\n  max_dialogue_tokens: 32\n  lora_r: 4\ntrain:\n  batch_size: 12\n  lr_heads: 1.0e-12\n"
            "  patience: 1\n  eval_every: 1\n  checkpoint_every: 3\n  min_train_positives: 1\n  min_train_negatives: 1\n"
            "  head_start_steps: 0\n",  # no validated step 0: the first evaluation is step 1
            encoding="utf-8",
        )
        args = (
            "train",
            data_dir / "train.parquet",
            "--out",
            tmp_path / "M",
            "--backbone",
            "tiny",
            "--preset",
            "cpu-lora",
            "--max-steps",
            "10",
            "--config",
            config,
        )
        first = invoke(*args)
        assert first.exit_code == 0, first.output
        assert "(2 steps" in text(first)

        def no_step(*args: object, **kwargs: object) -> None:
            raise AssertionError("a finished run must not take another training step")

        monkeypatch.setattr(training, "_step_loss", no_step)
        again = invoke(*args, "--resume")
        assert again.exit_code == 0, again.output
        assert "(2 steps" in text(again)


# --------------------------------------------------------------------------- score and evaluate


class TestScoreAndEvaluate:
    def test_score_writes_one_row_per_lead(self, trained: tuple[Result, Path], data_dir: Path, tmp_path: Path) -> None:
        _, model = trained
        out = tmp_path / "S.csv"
        result = invoke("score", model, data_dir / "new.csv", "--out", out)
        assert result.exit_code == 0, result.output
        assert "16 leads in: 16 scored" in text(result)
        scores = read_table(out)
        assert list(scores.columns) == ["lead_id", "probability", "rank_score"]
        assert scores["lead_id"].tolist() == read_table(data_dir / "new.csv")["lead_id"].tolist()
        assert ((scores["probability"] > 0) & (scores["probability"] < 1)).all()
        assert not (tmp_path / "S.rejected.csv").exists()

    def test_evaluate_prints_the_model_and_the_oracle(self, trained: tuple[Result, Path], data_dir: Path) -> None:
        _, model = trained
        result = invoke("evaluate", model, data_dir / "holdout.parquet")
        assert result.exit_code == 0, result.output
        output = text(result)
        lines = output.splitlines()
        rank_by = read_manifest(model)["rank_by"]
        assert any("asLLR" in line and rank_by in line for line in lines)
        assert any("oracle" in line for line in lines)
        assert "40 leads" in output
        brier = [line for line in lines if "Brier" in line]
        assert len(brier) == 1 and "ECE" in brier[0]

    def test_score_with_a_folder_that_is_not_a_model(self, data_dir: Path, tmp_path: Path) -> None:
        (tmp_path / "not_a_model").mkdir()
        result = invoke("score", tmp_path / "not_a_model", data_dir / "new.csv", "--out", tmp_path / "S.csv")
        assert result.exit_code == 1
        assert "not a leadrank model directory" in text(result)
        assert not (tmp_path / "S.csv").exists()

    def test_evaluate_with_a_folder_that_is_not_a_model(self, data_dir: Path, tmp_path: Path) -> None:
        result = invoke("evaluate", tmp_path, data_dir / "holdout.parquet")
        assert result.exit_code == 1
        assert "not a leadrank model directory" in text(result)

    def test_an_unknown_rank_by_is_a_usage_error(self, trained: tuple[Result, Path], data_dir: Path, tmp_path: Path) -> None:
        _, model = trained
        result = invoke("score", model, data_dir / "new.csv", "--out", tmp_path / "S.csv", "--rank-by", "nope")
        assert result.exit_code == 2, result.output
        assert "nope" in text(result) and "blend" in text(result)
        assert not (tmp_path / "S.csv").exists()
