"""Tests for leadrank.training: both modes, logged parts, HPRO on/off, determinism, early stopping,
best-weight restore, crash + resume, and the checks that run before any model is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

import leadrank.training as training
from helpers import TINY_TRAIN, reset_accelerate
from leadrank.config import Feature, FeatureSpec, FunnelSpec
from leadrank.data.schema import LeadDataError
from leadrank.data.split import validation_slice
from leadrank.data.synth import SynthConfig, simulate
from leadrank.funnel import FunnelBatchSampler, tier_membership
from leadrank.hardware import resolve_dtype
from leadrank.metrics import auc
from leadrank.model.backbone import load_backbone
from leadrank.model.frozen import FeatureCache
from leadrank.model.reader import LeadReader
from leadrank.settings import ModelConfig, TrainConfig
from leadrank.training import TrainResult, train

FEATURES = FeatureSpec.nev_default()
FUNNEL = FunnelSpec.paper_default()
TIER_NAMES = [t.name for t in FUNNEL.tiers]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return simulate(SynthConfig.preset("dense", n=480, seed=7))


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory, table: pd.DataFrame) -> Path:
    """One feature cache for the module, filled up front: frozen runs read the tiny backbone's
    states once, and every frozen run below starts from a warm cache (see
    test_frozen_result_does_not_depend_on_a_warm_feature_cache for why that matters)."""
    folder = tmp_path_factory.mktemp("leadrank-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEADRANK_CACHE", str(folder))
        reset_accelerate()
        run(table, "frozen", max_steps=1)
        reset_accelerate()
    assert list((folder / "features").rglob("*.safetensors"))
    return folder


@pytest.fixture(autouse=True)
def _private_cache(shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADRANK_CACHE", str(shared_cache))


@pytest.fixture(autouse=True)
def _fresh_accelerate_state() -> None:
    """Accelerate keeps process-wide singletons; start every test from a clean slate so that
    the bf16 setting of an earlier test (in this file or another) cannot leak into this one.
    (Without it, see test_two_runs_with_different_bf16_in_one_process.)"""
    reset_accelerate()


def run(
    table: pd.DataFrame,
    mode: str = "frozen",
    *,
    features: FeatureSpec = FEATURES,
    funnel: FunnelSpec = FUNNEL,
    model: dict[str, object] | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    **overrides: object,
) -> tuple[TrainResult, list[dict[str, float]]]:
    # tiny tables (the default minimums are for real runs); dtype stays at its default, as users get it
    settings: dict[str, object] = {**TINY_TRAIN, **overrides}
    model_config = ModelConfig(**{"backbone": "tiny", "mode": mode, "max_dialogue_tokens": 64, **(model or {})})
    logged: list[dict[str, float]] = []
    result = train(
        table,
        features,
        funnel,
        model_config,
        TrainConfig(**settings),
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        progress=logged.append,
    )
    return result, logged


def trainable(result: TrainResult) -> dict[str, torch.Tensor]:
    """Every trainable tensor (heads + LoRA) of a trained model, by name."""
    return {n: p.detach().clone() for n, p in result.model.named_parameters() if p.requires_grad}


def head_state(result: TrainResult, head: str) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in getattr(result.model.heads, head).state_dict().items()}


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 0.0) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=0, atol=atol) for k in a)


def recomputed_val_auc(result: TrainResult, table: pd.DataFrame, config: TrainConfig) -> float:
    """Pairwise AUC of the returned model on the validation slice, read again from scratch with
    the scorer's reader in the run's precision (the frozen states come from the run's cache)."""
    validation = validation_slice(table, config.val_fraction).test
    dtype = resolve_dtype(config.dtype)
    frozen = result.model.config.mode == "frozen"
    cache = FeatureCache.for_model(result.model, result.backbone.checksum, dtype) if frozen else None
    reader = LeadReader(result.model, result.backbone.tokenizer, FEATURES, cache=cache, batch_size=config.feature_batch_size, dtype=dtype)
    _, pair = reader.head_outputs(reader.inputs(validation))
    return auc(validation[FUNNEL.label_column].astype(int).to_numpy(), pair)


# --------------------------------------------------------------------------- modes and logged parts


class TestModes:
    def test_lora_mode_trains_and_logs_every_part(self, table: pd.DataFrame) -> None:
        before = trainable(run(table, "lora", max_steps=1, lr_heads=1e-12)[0])
        result, logged = run(table, "lora")
        assert result.steps == 4
        assert [row["step"] for row in logged] == [1, 2, 3, 4]
        assert [h["step"] for h in result.history] == [2, 4]
        assert all(0.0 <= h["val_auc"] <= 1.0 for h in result.history)
        for row in logged:
            assert {"bce", "hpro", "ce", "loss", "lr"} <= row.keys()
            for name in TIER_NAMES:
                assert row[f"pairs_{name}"] >= 1  # the sampler puts a winner and a loser of every tier in a batch
                assert 0.0 <= row[f"acc_{name}"] <= 1.0
            expected = 2.0 * row["bce"] + 1.0 * row["hpro"] + 0.5 * row["ce"]
            assert row["loss"] == pytest.approx(expected, rel=1e-4)
        assert ("val_auc" in logged[1]) and ("val_auc" not in logged[0])
        after = trainable(result)
        assert any(".lora_B." in n for n in after)
        changed = {n for n in after if not torch.allclose(after[n], before[n], rtol=0, atol=1e-7)}
        assert any(n.startswith("heads.") for n in changed) and any(".lora_" in n for n in changed)

    def test_lora_can_start_from_heads_fitted_on_the_frozen_reading(self, table: pd.DataFrame) -> None:
        probe, _ = run(table, "frozen", max_steps=3, dtype="fp32")
        reset_accelerate()
        result, logged = run(table, "lora", head_start_steps=3, dtype="fp32")
        # step 0 is validated: LoRA's B is zero there, so the model is the probe (its heads, the frozen reading)
        assert result.history[0]["step"] == 0
        assert result.history[0]["val_auc"] == pytest.approx(probe.best_val_auc, abs=1e-3)
        assert result.best_val_auc >= result.history[0]["val_auc"]
        assert [row["step"] for row in logged] == [1, 2, 3, 4]  # then the LoRA steps, as without a head start

    def test_frozen_mode_trains_without_the_semantic_head(self, table: pd.DataFrame) -> None:
        result, logged = run(table, "frozen")
        assert result.steps == 4 and len(result.history) == 2
        assert all(0.0 <= h["val_auc"] <= 1.0 for h in result.history)
        for row in logged:
            assert "ce" not in row
            assert {"bce", "hpro", "loss"} <= row.keys()
            assert {f"pairs_{n}" for n in TIER_NAMES} | {f"acc_{n}" for n in TIER_NAMES} <= row.keys()
            assert row["loss"] == pytest.approx(2.0 * row["bce"] + row["hpro"], rel=1e-4)
        assert not any(p.requires_grad for p in result.model.lm.parameters())

    def test_without_hpro_there_is_no_hpro_part_and_val_auc_is_the_pointwise(self, table: pd.DataFrame) -> None:
        result, logged = run(table, "frozen", hpro_weight=0.0)
        for row in logged:
            assert "hpro" not in row
            assert not any(k.startswith(("pairs_", "acc_")) for k in row)
            assert row["loss"] == pytest.approx(2.0 * row["bce"], rel=1e-5)
        assert all(h["val_auc"] == h["val_auc_point"] for h in result.history)

    def test_with_hpro_val_auc_is_the_pairwise(self, table: pd.DataFrame) -> None:
        result, _ = run(table, "frozen")
        assert all(h["val_auc"] == h["val_auc_pair"] for h in result.history)

    def test_a_funnel_without_tiers_falls_back_to_label_pairs(self, table: pd.DataFrame) -> None:
        plain = FunnelSpec(stages=FUNNEL.stages, tiers=[])
        result, logged = run(table, "frozen", funnel=plain)
        assert result.steps == 4
        for row in logged:
            assert "hpro" in row
            assert row["pairs_label"] > 0  # the sampler puts positives in every batch
            assert not any(f"pairs_{n}" in row for n in TIER_NAMES)

    def test_hpro_changes_the_pairwise_head(self, table: pd.DataFrame) -> None:
        with_hpro, _ = run(table, "frozen")
        without, _ = run(table, "frozen", hpro_weight=0.0)
        untrained, _ = run(table, "frozen", max_steps=1, lr_heads=1e-12)
        assert not same_tensors(head_state(with_hpro, "pair"), head_state(without, "pair"), atol=1e-6)
        # nothing else trains the pairwise head: without HPRO it stays as initialised
        assert same_tensors(head_state(without, "pair"), head_state(untrained, "pair"), atol=1e-9)
        assert not same_tensors(head_state(without, "point"), head_state(untrained, "point"), atol=1e-6)

    def test_two_runs_with_different_bf16_in_one_process(self) -> None:
        small = simulate(SynthConfig.preset("dense", n=150, seed=1))
        run(small, "frozen", max_steps=1, dtype="fp32")
        result, _ = run(small, "frozen", max_steps=1, dtype="bf16")
        assert result.steps == 1

    def test_a_saved_folder_backbone_trains_like_tiny(self, table: pd.DataFrame, tmp_path: Path) -> None:
        tiny = load_backbone("tiny")
        folder = tmp_path / "tiny-hf"
        tiny.model.save_pretrained(folder)
        tiny.tokenizer.save_pretrained(folder)
        from_tiny, _ = run(table, "lora", max_steps=2, lr_heads=1e-2)
        reset_accelerate()
        from_folder, _ = run(table, "lora", max_steps=2, lr_heads=1e-2, model={"backbone": str(folder)})
        assert from_folder.backbone.reference == str(folder)
        assert same_tensors(trainable(from_tiny), trainable(from_folder), atol=1e-6)

    def test_frozen_result_does_not_depend_on_a_warm_feature_cache(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        small = simulate(SynthConfig.preset("dense", n=150, seed=2))
        monkeypatch.setenv("LEADRANK_CACHE", str(tmp_path / "fresh"))
        cold, _ = run(small, "frozen", seed=1)  # computes the features and caches them
        warm, _ = run(small, "frozen", seed=1)  # reads them back
        assert same_tensors(trainable(cold), trainable(warm), atol=1e-6)

    def test_gradient_accumulation_counts_optimizer_steps(self, table: pd.DataFrame) -> None:
        result, logged = run(table, "frozen", grad_accum_steps=3, max_steps=2, eval_every=1)
        assert [row["step"] for row in logged] == [1, 2]
        assert [h["step"] for h in result.history] == [1, 2]
        # the accumulation setting of one run does not leak into the next
        result, logged = run(table, "frozen", grad_accum_steps=1, max_steps=2, eval_every=1)
        assert [row["step"] for row in logged] == [1, 2]


# --------------------------------------------------------------------------- determinism


class TestSeeds:
    def test_same_seed_same_weights(self, table: pd.DataFrame) -> None:
        (a, logged_a), (b, logged_b) = run(table, "frozen", seed=3), run(table, "frozen", seed=3)
        assert same_tensors(trainable(a), trainable(b))
        assert a.history == b.history and logged_a == logged_b

    def test_same_seed_same_weights_with_lora(self, table: pd.DataFrame) -> None:
        a, _ = run(table, "lora", max_steps=2, seed=3)
        b, _ = run(table, "lora", max_steps=2, seed=3)
        assert same_tensors(trainable(a), trainable(b))

    def test_different_seed_different_weights(self, table: pd.DataFrame) -> None:
        a, logged_a = run(table, "frozen", seed=3)
        b, logged_b = run(table, "frozen", seed=4)
        assert not same_tensors(head_state(a, "pair"), head_state(b, "pair"), atol=1e-6)
        assert not same_tensors(head_state(a, "point"), head_state(b, "point"), atol=1e-6)
        assert [r["bce"] for r in logged_a] != [r["bce"] for r in logged_b]


# --------------------------------------------------------------------------- stopping and best weights


class TestStopping:
    def test_stops_after_patience_validations_without_gain(self, table: pd.DataFrame) -> None:
        # a learning rate this small leaves every score (and so the val AUC) exactly where it was
        result, logged = run(table, "frozen", lr_heads=1e-12, patience=1, eval_every=1, max_steps=10)
        assert result.steps == 2 < 10
        assert [h["step"] for h in result.history] == [1, 2]
        assert result.history[0]["val_auc"] == result.history[1]["val_auc"]
        assert result.best_step == 1
        assert len(logged) == 2

    def test_patience_counts_validations(self, table: pd.DataFrame) -> None:
        result, _ = run(table, "frozen", lr_heads=1e-12, patience=3, eval_every=2, max_steps=20)
        assert result.steps == 8  # validations at 2 (best), 4, 6, 8 -> three without gain
        assert [h["step"] for h in result.history] == [2, 4, 6, 8]

    def test_runs_to_max_steps_while_improving(self, table: pd.DataFrame) -> None:
        result, _ = run(table, "frozen", patience=100, eval_every=1, max_steps=6)
        assert result.steps == 6 and len(result.history) == 6
        aucs = [h["val_auc"] for h in result.history]
        assert result.best_val_auc == max(aucs)
        assert result.best_step == result.history[aucs.index(max(aucs))]["step"]

    @pytest.mark.parametrize(("mode", "lr", "steps"), [("frozen", 0.3, 3), ("lora", 0.05, 5)])
    def test_best_weights_are_restored(self, table: pd.DataFrame, mode: str, lr: float, steps: int) -> None:
        # learning rates this high make the validation AUC swing, so the best step is not the last
        # (in fp32: in bf16 the trajectory, and so which step is best, depends on the CPU's rounding)
        overrides = {"lr_heads": lr, "patience": 100, "eval_every": 1, "max_steps": steps, "dtype": "fp32"}
        result, logged = run(table, mode, **overrides)
        assert result.best_step < result.steps, "the setting must make the last step worse than the best"
        config = TrainConfig(**{"batch_size": 12, **overrides})
        assert recomputed_val_auc(result, table, config) == pytest.approx(result.best_val_auc, abs=1e-9)
        last = result.history[-1]
        assert last["val_auc"] != pytest.approx(result.best_val_auc, abs=1e-6)
        assert logged[-1]["val_auc"] == last["val_auc"]


# --------------------------------------------------------------------------- checkpoints and resume


class _Crash(RuntimeError):
    pass


def _crash_after_first_save(monkeypatch: pytest.MonkeyPatch, at_step: int | None = None) -> list[int]:
    saved: list[int] = []
    real = training._save_checkpoint

    def save_then_crash(folder, accelerator, core, scheduler, state):  # noqa: ANN001, ANN202
        real(folder, accelerator, core, scheduler, state)
        saved.append(state.step)
        if at_step is None or state.step >= at_step:
            raise _Crash(f"simulated crash after saving step {state.step}")

    monkeypatch.setattr(training, "_save_checkpoint", save_then_crash)
    return saved


class TestResume:
    @pytest.mark.parametrize(
        ("mode", "head_start_steps"), [("lora", 0), ("frozen", 0), ("lora", 3)], ids=["lora", "frozen", "lora-head-start"]
    )
    def test_crash_and_resume_matches_an_uninterrupted_run(
        self, table: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, head_start_steps: int
    ) -> None:
        settings = {"max_steps": 6, "checkpoint_every": 2, "eval_every": 2, "patience": 100, "head_start_steps": head_start_steps}
        a, logged_a = run(table, mode, checkpoint_dir=tmp_path / "a", **settings)
        assert (tmp_path / "a" / "state.json").exists()

        with monkeypatch.context() as patch:
            saved = _crash_after_first_save(patch)
            with pytest.raises(_Crash):
                run(table, mode, checkpoint_dir=tmp_path / "b", **settings)
        assert saved == [2]
        b, logged_b = run(table, mode, checkpoint_dir=tmp_path / "b", resume=True, **settings)

        assert b.steps == a.steps == 6
        assert [row["step"] for row in logged_b] == [3, 4, 5, 6]  # resumed, not restarted
        weights_a, weights_b = trainable(a), trainable(b)
        assert weights_a.keys() == weights_b.keys()
        for name in weights_a:
            assert torch.allclose(weights_a[name], weights_b[name], rtol=0, atol=1e-6), name
        assert len(b.history) == len(a.history) == 3 + (head_start_steps > 0)  # + step 0 after a head start
        for ha, hb in zip(a.history, b.history, strict=True):
            assert ha["step"] == hb["step"]
            assert ha["val_auc"] == pytest.approx(hb["val_auc"], abs=1e-9)
        assert (b.best_step, b.best_val_auc) == (a.best_step, pytest.approx(a.best_val_auc, abs=1e-9))
        for row_a, row_b in zip(logged_a[2:], logged_b, strict=True):
            assert row_a.keys() == row_b.keys()
            for key in row_a:
                assert row_a[key] == pytest.approx(row_b[key], rel=1e-5, abs=1e-7), key

    @pytest.mark.parametrize("after_end", [0, 1], ids=["crash-at-epoch-end", "crash-just-after"])
    def test_resume_across_an_epoch_boundary(
        self, table: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after_end: int
    ) -> None:
        train_part = validation_slice(table, 0.1).train
        labels = train_part[FUNNEL.label_column].astype(int).to_numpy()
        per_epoch = len(FunnelBatchSampler(labels, tier_membership(train_part, FUNNEL), 64))
        assert 5 <= per_epoch <= 10  # batch 64 leaves 56 stream rows: about 8 batches per epoch
        crash = per_epoch + after_end
        settings = {"batch_size": 64, "max_steps": crash + 3, "checkpoint_every": 1, "eval_every": 2, "patience": 100}
        a, _ = run(table, "frozen", checkpoint_dir=tmp_path / "a", **settings)
        with monkeypatch.context() as patch:
            _crash_after_first_save(patch, at_step=crash)
            with pytest.raises(_Crash):
                run(table, "frozen", checkpoint_dir=tmp_path / "b", **settings)
        assert json.loads((tmp_path / "b" / "state.json").read_text())["step"] == crash
        b, logged_b = run(table, "frozen", checkpoint_dir=tmp_path / "b", resume=True, **settings)
        assert [row["step"] for row in logged_b] == list(range(crash + 1, crash + 4))
        assert same_tensors(trainable(a), trainable(b), atol=1e-6)
        assert [h["val_auc"] for h in a.history] == pytest.approx([h["val_auc"] for h in b.history], abs=1e-9)

    def test_resume_without_a_checkpoint_starts_fresh(self, table: pd.DataFrame, tmp_path: Path) -> None:
        a, _ = run(table, "frozen", seed=5)
        b, logged = run(table, "frozen", seed=5, checkpoint_dir=tmp_path / "empty", resume=True)
        assert logged[0]["step"] == 1
        assert same_tensors(trainable(a), trainable(b))

    def test_a_finished_checkpoint_is_not_trained_again(self, table: pd.DataFrame, tmp_path: Path) -> None:
        a, _ = run(table, "frozen", checkpoint_dir=tmp_path / "run")
        b, logged = run(table, "frozen", checkpoint_dir=tmp_path / "run", resume=True)
        assert logged == []
        assert b.steps == a.steps
        assert same_tensors(trainable(a), trainable(b))


# --------------------------------------------------------------------------- checks before training


class TestRefusedBeforeLoading:
    @pytest.fixture
    def no_model(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def load_backbone(*args: object, **kwargs: object) -> None:
            raise AssertionError("no model may be loaded for a table or spec that is refused")

        monkeypatch.setattr(training, "load_backbone", load_backbone)

    @pytest.mark.usefixtures("no_model")
    def test_a_leaking_feature_spec_is_refused(self, table: pd.DataFrame) -> None:
        leaking = FeatureSpec(
            features=[*FEATURES.features, Feature(name="call_duration_s", kind="numeric")],
            dialogue_column=FEATURES.dialogue_column,
        )
        with pytest.raises((ValueError, LeadDataError), match="call_duration_s"):
            run(table, "frozen", features=leaking)

    @pytest.mark.usefixtures("no_model")
    def test_a_label_as_feature_is_refused(self, table: pd.DataFrame) -> None:
        leaking = FeatureSpec(features=[*FEATURES.features, Feature(name="label", kind="numeric")], dialogue_column="dialogue")
        with pytest.raises(ValueError, match="'label'"):
            run(table, "frozen", features=leaking)

    @pytest.mark.usefixtures("no_model")
    def test_an_invalid_table_is_refused(self, table: pd.DataFrame) -> None:
        broken = table.copy()
        broken["app_visits_7d"] = broken["app_visits_7d"].astype(object)
        broken.iloc[3, broken.columns.get_loc("app_visits_7d")] = "lots"
        broken = broken.drop(columns=["label"])
        with pytest.raises(LeadDataError) as info:
            run(broken, "lora")
        columns = {p.column for p in info.value.problems}
        assert {"label", "app_visits_7d"} <= columns
