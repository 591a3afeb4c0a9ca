"""Probability calibration: leadrank.calibration (Calibration, fit_calibration) and its place in the artifact.

The calibration is fitted when a model is packaged, on the validation slice's pointwise
logits. Here the validation slice comes from a miscalibrated generator: the true chance of a
lead is sigmoid(0.5 * logit - 2), while the head as trained claims sigmoid(logit).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.isotonic import IsotonicRegression

from leadrank.artifact import Artifact, ArtifactError, from_training, load, read_manifest, save
from leadrank.calibration import ISOTONIC_MIN_LEADS, ISOTONIC_MIN_PER_CLASS, PLATT_MIN_PER_CLASS, Calibration, fit_calibration
from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.synth import SynthConfig, simulate
from leadrank.inference import Scorer
from leadrank.metrics import brier, ece
from leadrank.model.asllr import ASLLR, answer_token_ids
from leadrank.model.backbone import load_backbone
from leadrank.settings import ModelConfig, ScoreConfig, TrainConfig
from leadrank.training import TrainResult

FEATURES = FeatureSpec.nev_default()
FUNNEL = FunnelSpec.paper_default()
EXACT = ScoreConfig(dtype="fp32")

pytestmark = pytest.mark.usefixtures("isolated_cache")


def miscalibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels, logits): a head that ranks well but is far too confident."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, n)
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-(0.5 * logits - 2.0)))).astype(int)
    return labels, logits


def raw(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def package(folder: Path, labels: np.ndarray, point: np.ndarray, *, mode: str = "lora", seed: int = 0) -> Artifact:
    """An untrained tiny asLLR packaged with ``from_training`` as if its validation slice gave (labels, point).

    Packaging, not training, is under test: the heads are random (seeded) and the validation
    statistics are the given ones. The artifact is saved to ``folder / 'model'``.
    """
    torch.manual_seed(seed)
    model_config = ModelConfig(backbone="tiny", mode=mode, max_dialogue_tokens=32, lora_r=4)
    backbone = load_backbone("tiny")
    model = ASLLR(backbone.model, model_config, answer_token_ids(backbone.tokenizer, model_config.prompt)).eval()
    pair = np.random.default_rng(seed).normal(size=len(labels))
    result = TrainResult(
        model=model,
        backbone=backbone,
        features=FEATURES,
        funnel=FUNNEL,
        model_config=model_config,
        train_config=TrainConfig(),
        steps=0,
        val_labels=labels,
        val_point=point,
        val_pair=pair,
    )
    artifact = from_training(result)
    save(artifact, folder / "model")
    return artifact


@pytest.fixture(scope="module")
def leads() -> pd.DataFrame:
    return simulate(SynthConfig.preset("dense", n=12, seed=11)).drop(columns=["label", "funnel_stage", "call_duration_s"])


@pytest.fixture(scope="module")
def platt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("platt")
    package(folder, *miscalibrated(400, seed=1))
    return folder / "model"


# --------------------------------------------------------------------------- fitting


class TestFit:
    @pytest.mark.parametrize(("n", "method"), [(400, "platt"), (4000, "isotonic")])
    def test_calibration_lowers_ece_on_held_out_leads(self, n: int, method: str) -> None:
        labels, logits = miscalibrated(n, seed=1)
        calibration = fit_calibration(labels, logits)
        assert calibration.method == method
        held_labels, held_logits = miscalibrated(20_000, seed=2)
        before, after = ece(held_labels, raw(held_logits)), ece(held_labels, calibration.apply(held_logits))
        assert before > 0.2  # the generator is far off
        assert after < before / 4
        assert brier(held_labels, calibration.apply(held_logits)) < brier(held_labels, raw(held_logits))

    def test_platt_recovers_the_generators_slope_and_intercept(self) -> None:
        calibration = fit_calibration(*miscalibrated(900, seed=3))
        assert calibration.method == "platt"
        assert calibration.a == pytest.approx(0.5, abs=0.15)
        assert calibration.b == pytest.approx(-2.0, abs=0.4)

    @pytest.mark.parametrize(
        ("n", "positives", "method"),
        [
            (ISOTONIC_MIN_LEADS, ISOTONIC_MIN_PER_CLASS, "isotonic"),
            (ISOTONIC_MIN_LEADS - 1, 300, "platt"),  # too few leads for isotonic
            (5000, ISOTONIC_MIN_PER_CLASS - 1, "platt"),  # too few positives for isotonic
            (5000, 5000 - ISOTONIC_MIN_PER_CLASS + 1, "platt"),  # too few negatives
            (200, PLATT_MIN_PER_CLASS, "platt"),
            (200, PLATT_MIN_PER_CLASS - 1, "identity"),
            (200, 0, "identity"),
        ],
    )
    def test_the_method_follows_the_amount_of_data(self, n: int, positives: int, method: str) -> None:
        rng = np.random.default_rng(0)
        labels = np.zeros(n, dtype=int)
        labels[:positives] = 1
        logits = rng.normal(size=n) + 2.0 * labels  # positives score higher
        assert fit_calibration(labels, logits).method == method

    def test_a_model_that_ranks_validation_backwards_is_not_turned_around(self) -> None:
        labels, logits = miscalibrated(400, seed=4)
        calibration = fit_calibration(labels, -logits)
        assert calibration == Calibration()  # identity, never a negative slope

    def test_isotonic_apply_equals_scikit_learns_predict(self) -> None:
        labels, logits = miscalibrated(3000, seed=5)
        calibration = fit_calibration(labels, logits)
        reference = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(logits, labels)
        probe = np.linspace(-12, 12, 2001)  # beyond both ends too
        assert_allclose(calibration.apply(probe), reference.predict(probe), rtol=0, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.sampled_from([60, 300, 1500]),
    slope=st.floats(0.1, 3.0),
    shift=st.floats(-3.0, 1.0),
)
def test_calibration_never_reorders_leads(seed: int, n: int, slope: float, shift: float) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, n)
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-(slope * logits + shift)))).astype(int)
    calibration = fit_calibration(labels, logits)
    probe = np.sort(np.concatenate([logits, rng.normal(0.0, 5.0, 200)]))
    assert (np.diff(calibration.apply(probe)) >= 0).all()


class TestCheck:
    def test_a_non_positive_platt_slope_is_refused(self) -> None:
        with pytest.raises(ValueError, match="a must be > 0"):
            Calibration(method="platt", a=-0.3, b=0.0)

    def test_unsorted_isotonic_thresholds_are_refused(self) -> None:
        with pytest.raises(ValueError, match="non-decreasing"):
            Calibration(method="isotonic", x=[0.0, 1.0], y=[0.6, 0.2])

    def test_json_round_trip_is_exact(self) -> None:
        for labels, logits in (miscalibrated(400, 6), miscalibrated(4000, 7)):
            calibration = fit_calibration(labels, logits)
            again = Calibration.model_validate(json.loads(json.dumps(calibration.model_dump(mode="json"))))
            assert again == calibration
            assert_array_equal(again.apply(logits), calibration.apply(logits))


# --------------------------------------------------------------------------- packaging, save, load, scoring


class TestArtifact:
    def test_packaging_fits_on_the_validation_slice_and_records_ece_and_brier(self, tmp_path: Path) -> None:
        labels, point = miscalibrated(400, seed=1)
        artifact = package(tmp_path, labels, point)
        assert artifact.calibration == fit_calibration(labels, point)
        m = artifact.metrics
        assert m["val_ece_raw"] == pytest.approx(ece(labels, raw(point)))
        assert m["val_ece_calibrated"] == pytest.approx(ece(labels, artifact.calibration.apply(point)))
        assert m["val_brier_raw"] == pytest.approx(brier(labels, raw(point)))
        assert m["val_ece_calibrated"] < m["val_ece_raw"] and m["val_brier_calibrated"] < m["val_brier_raw"]

    def test_manifest_holds_plain_json_numbers(self, platt_dir: Path) -> None:
        entry = read_manifest(platt_dir)["calibration"]
        assert entry["method"] == "platt"
        assert isinstance(entry["a"], float) and isinstance(entry["b"], float)

    def test_round_trips_exactly_through_save_and_load(self, platt_dir: Path, tmp_path: Path) -> None:
        first = load(platt_dir)
        again = load(save(first, tmp_path / "again"))
        assert again.calibration == first.calibration == Calibration.model_validate(read_manifest(platt_dir)["calibration"])
        assert again.model_version == first.model_version

    def test_scorer_probability_is_the_calibrated_logit_and_keeps_the_order(self, platt_dir: Path, leads: pd.DataFrame) -> None:
        artifact = load(platt_dir)
        scorer = Scorer(artifact, EXACT)
        point, _ = scorer.raw_scores(leads)
        probability = scorer.score(leads)["probability"].to_numpy()
        assert_array_equal(probability, artifact.calibration.apply(point))
        assert not np.allclose(probability, raw(point))  # calibration is in use
        by_logit = np.argsort(point, kind="stable")
        assert (np.diff(probability[by_logit]) >= 0).all()

    def test_a_manifest_without_calibration_is_refused(self, platt_dir: Path, tmp_path: Path) -> None:
        folder = Path(shutil.copytree(platt_dir, tmp_path / "old"))
        manifest = json.loads((folder / "leadrank.json").read_text(encoding="utf-8"))
        del manifest["calibration"]
        (folder / "leadrank.json").write_text(json.dumps(manifest), encoding="utf-8")
        with pytest.raises(ArtifactError, match="calibration"):
            load(folder)

    def test_a_broken_calibration_entry_is_named(self, platt_dir: Path, tmp_path: Path) -> None:
        folder = Path(shutil.copytree(platt_dir, tmp_path / "broken"))
        manifest = json.loads((folder / "leadrank.json").read_text(encoding="utf-8"))
        manifest["calibration"]["a"] = -1.0
        (folder / "leadrank.json").write_text(json.dumps(manifest), encoding="utf-8")
        with pytest.raises(ArtifactError, match="'calibration' entry"):
            load(folder)
