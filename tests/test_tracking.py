"""What training records: metrics.jsonl in the model folder, and the run in MLflow through Accelerate's trackers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from helpers import TINY_TRAIN, reset_accelerate
from leadrank.artifact import TRAINING_LOG, ArtifactError, from_training, load, save
from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.synth import SynthConfig, simulate
from leadrank.errors import EnvironmentProblem
from leadrank.settings import ModelConfig, TrainConfig
from leadrank.training import train

FUNNEL = FunnelSpec.paper_default()
pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return simulate(SynthConfig.preset("dense", n=300, seed=3))


def _train(table: pd.DataFrame, **train_overrides: object):  # noqa: ANN202
    reset_accelerate()
    model = ModelConfig(backbone="tiny", mode="frozen", max_dialogue_tokens=32)
    return train(table, FeatureSpec.nev_default(), FUNNEL, model, TrainConfig(**{**TINY_TRAIN, **train_overrides}), progress=lambda _: None)


class TestMetricsLog:
    def test_every_step_is_logged_with_its_loss_parts_and_every_validation(self, table: pd.DataFrame, tmp_path: Path) -> None:
        result = _train(table, max_steps=4, eval_every=2)
        folder = save(from_training(result), tmp_path / "model")
        rows = [json.loads(line) for line in (folder / TRAINING_LOG).read_text(encoding="utf-8").splitlines()]
        assert [row["step"] for row in rows] == [1, 2, 3, 4]
        tiers = [t.name for t in FUNNEL.tiers]
        for row in rows:
            assert {"loss", "bce", "hpro", "lr"} | {f"pairs_{t}" for t in tiers} | {f"acc_{t}" for t in tiers} <= row.keys()
            assert row["loss"] == pytest.approx(2.0 * row["bce"] + 1.0 * row["hpro"])  # frozen: no answer-token CE
        validated = [row["step"] for row in rows if "val_auc" in row]
        assert validated == [h["step"] for h in result.history] == [2, 4]
        assert load(folder).training_log == rows

    def test_the_log_is_checksummed_with_the_model(self, table: pd.DataFrame, tmp_path: Path) -> None:
        folder = save(from_training(_train(table, max_steps=2)), tmp_path / "model")
        (folder / TRAINING_LOG).write_text('{"step": 1, "loss": 0.0}\n', encoding="utf-8")
        with pytest.raises(ArtifactError, match=TRAINING_LOG):
            load(folder)


class TestMlflow:
    def test_the_run_settings_and_every_step_reach_a_local_mlflow_store(
        self, table: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        mlflow = pytest.importorskip("mlflow")
        store = f"file:{tmp_path / 'mlruns'}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
        monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "leads-test")
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
        _train(table, max_steps=3, eval_every=3, log_with="mlflow")

        client = mlflow.tracking.MlflowClient(tracking_uri=store)
        experiment = client.get_experiment_by_name("leads-test")
        (run,) = client.search_runs([experiment.experiment_id])
        assert run.data.params["train.max_steps"] == "3"
        assert run.data.params["model.backbone"] == "tiny"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3]
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_auc")] == [3]
        assert run.info.status == "FINISHED"

    def test_a_missing_tracker_package_is_a_clear_error_before_any_work(self, table: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
        import importlib.util

        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
        with pytest.raises(EnvironmentProblem, match=r"pip install 'leadrank\[mlflow\]'"):
            _train(table, log_with="mlflow")
