"""The public Python API: leadrank.train / load / Model.score / LeadRanker, and the README's example."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

import leadrank
from helpers import TINY_TRAIN, reset_accelerate
from leadrank.data.schema import LeadDataError
from leadrank.data.split import time_split
from leadrank.data.synth import SynthConfig, simulate
from leadrank.settings import RunConfig

README = Path(__file__).resolve().parents[1] / "README.md"
#: The cpu-quick recipe (frozen, dialogue reading, side input) on the tiny backbone.
TINY = {"backbone": "tiny", "max_dialogue_tokens": 32}


@pytest.fixture(autouse=True)
def clean_accelerate(isolated_cache: None) -> None:
    reset_accelerate()


@pytest.fixture(scope="module")
def parts():
    return time_split(simulate(SynthConfig.preset("dense", n=400, seed=2)), 0.3)


@pytest.fixture(scope="module")
def model(parts, tmp_path_factory: pytest.TempPathFactory) -> leadrank.Model:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEADRANK_CACHE", str(tmp_path_factory.mktemp("cache")))
        reset_accelerate()
        trained = leadrank.train(parts.train, model=TINY, training=TINY_TRAIN)
        reset_accelerate()
    return trained


def test_the_api_is_exported() -> None:
    assert {"train", "load", "Model", "LeadRanker", "LeadrankError"} <= set(leadrank.__all__)
    assert leadrank.train is leadrank.api.train


class TestModel:
    def test_scores_every_lead_in_input_order(self, model: leadrank.Model, parts) -> None:
        scores = model.score(parts.test)
        assert list(scores.columns) == ["lead_id", "probability", "rank_score"]
        assert scores["lead_id"].tolist() == parts.test["lead_id"].tolist()
        assert scores["probability"].between(0, 1).all() and scores["rank_score"].nunique() > 1

    def test_save_after_scoring_writes_the_model_as_trained(self, model: leadrank.Model, parts, tmp_path: Path) -> None:
        before = model.save(tmp_path / "before")
        expected = model.score(parts.test)
        after = model.save(tmp_path / "after")
        assert (before / "heads.safetensors").read_bytes() == (after / "heads.safetensors").read_bytes()
        assert leadrank.load(before).model_version == leadrank.load(after).model_version == model.model_version
        pd.testing.assert_frame_equal(leadrank.load(after).score(parts.test), expected, check_exact=False, atol=1e-5)

    def test_evaluate_measures_the_ranking_it_scores(self, model: leadrank.Model, parts) -> None:
        from leadrank.metrics import auc, recall_at

        result = model.evaluate(parts.test)
        labels = parts.test["label"].astype(int).to_numpy()
        assert result.scores["lead_id"].tolist() == parts.test["lead_id"].tolist()
        assert result.scores["label"].tolist() == labels.tolist()
        pd.testing.assert_frame_equal(result.scores.drop(columns="label"), model.score(parts.test))
        row = result.table.iloc[0]
        assert row["auc"] == pytest.approx(auc(labels, result.scores["rank_score"].to_numpy()))
        assert result.recall_at_20 == pytest.approx(recall_at(labels, result.scores["rank_score"].to_numpy(), 0.2))
        assert result.table["model"].tolist()[-1] == "oracle (true propensity)"  # the simulator's truth is in the table
        assert {"brier_raw", "brier_calibrated", "ece_raw", "ece_calibrated"} <= result.calibration.keys()

    def test_evaluate_needs_the_labels(self, model: leadrank.Model, parts) -> None:
        with pytest.raises(LeadDataError, match="label"):
            model.evaluate(parts.test.drop(columns="label"))

    def test_a_table_that_breaks_the_contract_lists_its_problems(self, model: leadrank.Model, parts) -> None:
        with pytest.raises(LeadDataError, match="customer_age"):
            model.score(parts.test.drop(columns="customer_age"))


class TestLeadRanker:
    def test_fit_predict_proba_and_decision_function(self, parts) -> None:
        ranker = leadrank.LeadRanker(model=TINY, training=TINY_TRAIN).fit(parts.train)
        probability = ranker.predict_proba(parts.test)
        assert probability.shape == (len(parts.test), 2)
        np.testing.assert_allclose(probability.sum(axis=1), 1.0)
        ranks = ranker.decision_function(parts.test)
        np.testing.assert_allclose(ranks, ranker.model_.score(parts.test)["rank_score"])
        assert set(ranker.predict(parts.test)) <= {0, 1}

    def test_is_a_scikit_learn_estimator(self) -> None:
        ranker = leadrank.LeadRanker(preset="cpu-lora", training={"seed": 3})
        assert clone(ranker).get_params()["training"] == {"seed": 3}

    def test_y_is_refused_with_the_reason(self, parts) -> None:
        with pytest.raises(TypeError, match="outcome columns from the table"):
            leadrank.LeadRanker().fit(parts.train, parts.train["label"])


def test_the_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's Python API block, as written but on the tiny backbone and fewer leads."""
    block = re.search(r"## Python API.*?```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S).group(1)
    assert "n=14_000" in block
    resolve = RunConfig.resolve

    def tiny(preset=None, config_file=None, **overrides):  # noqa: ANN001, ANN202
        model = {**overrides.get("model", {}), "backbone": "tiny"}
        training = {**overrides.get("train", {}), "max_steps": 20, "min_train_positives": 10}
        return resolve(preset, config_file, model=model, train=training)

    monkeypatch.setattr(RunConfig, "resolve", staticmethod(tiny))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(block.replace("n=14_000", "n=3_000"), namespace)  # noqa: S102 (our own README)
    assert (tmp_path / "model" / "leadrank.json").is_file()
    assert namespace["probability"].shape == (len(namespace["parts"].test),)
