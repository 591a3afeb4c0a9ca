"""Model directories: leadrank.artifact (from_training, save, load, read_manifest).

A trained model must score exactly the same after a save/load round trip, the directory must
hold no pickle, saving must be atomic, and loading must refuse directories it cannot trust
with a message that says why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import pickletools
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from safetensors import safe_open

import leadrank.artifact as artifact_module
from helpers import TINY_TRAIN, reset_accelerate
from leadrank.artifact import Artifact, ArtifactError, from_training, load, read_manifest, save
from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.prompt import DEFAULT_TEMPLATE
from leadrank.data.split import validation_slice
from leadrank.data.synth import SynthConfig, simulate
from leadrank.errors import EnvironmentProblem
from leadrank.inference import Scorer
from leadrank.metrics import auc
from leadrank.registry import RegistryError
from leadrank.settings import ModelConfig, ScoreConfig, TrainConfig
from leadrank.training import TrainResult, train

FEATURES = FeatureSpec.nev_default()
FUNNEL = FunnelSpec.paper_default()
EXACT = ScoreConfig(dtype="fp32")
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}


pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return simulate(SynthConfig.preset("dense", n=300, seed=7))


@dataclasses.dataclass
class Trained:
    result: TrainResult
    model_config: ModelConfig
    train_config: TrainConfig
    artifact: Artifact  # in memory; build a Scorer on it at most once (the Scorer merges LoRA in place)
    directory: Path  # the artifact saved right after training


def _train(table: pd.DataFrame, folder: Path, mode: str, model: dict | None = None, **train_overrides: object) -> Trained:
    model_config = ModelConfig(**{"backbone": "tiny", "mode": mode, "max_dialogue_tokens": 32, "lora_r": 4, **(model or {})})
    train_config = TrainConfig(**{**TINY_TRAIN, **train_overrides})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEADRANK_CACHE", str(folder / "cache"))
        reset_accelerate()
        result = train(table, FEATURES, FUNNEL, model_config, train_config)
        reset_accelerate()
    artifact = from_training(result)
    directory = save(artifact, folder / "model")
    return Trained(result, model_config, train_config, artifact, directory)


@pytest.fixture(scope="module")
def lora(table: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return _train(table, tmp_path_factory.mktemp("lora"), "lora")


@pytest.fixture(scope="module")
def frozen_mean(table: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return _train(table, tmp_path_factory.mktemp("frozen"), "frozen", model={"pooling": "mean", "pool_layer": 1})


@pytest.fixture(scope="module")
def no_hpro(table: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return _train(table, tmp_path_factory.mktemp("nohpro"), "frozen", hpro_weight=0.0)


@pytest.fixture
def copy_of(tmp_path: Path):  # noqa: ANN201
    """A private copy of a saved model directory, safe to break."""

    def make(trained: Trained) -> Path:
        return Path(shutil.copytree(trained.directory, tmp_path / "copy"))

    return make


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _edit_manifest(folder: Path, edit) -> None:  # noqa: ANN001
    path = folder / "leadrank.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    edit(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")


# --------------------------------------------------------------------------- round trip


class TestRoundTrip:
    @pytest.mark.parametrize("which", ["lora", "frozen_mean"])
    def test_loaded_model_scores_like_the_trained_one(self, which: str, table: pd.DataFrame, request: pytest.FixtureRequest) -> None:
        trained: Trained = request.getfixturevalue(which)
        loaded = load(trained.directory)
        sample = table.iloc[:48]
        from_disk = Scorer(loaded, EXACT).score(sample)
        in_memory = Scorer(trained.artifact, EXACT).score(sample)
        assert from_disk["lead_id"].tolist() == in_memory["lead_id"].tolist() == sample["lead_id"].tolist()
        assert_allclose(from_disk["probability"], in_memory["probability"], rtol=0, atol=1e-5)
        assert_allclose(from_disk["rank_score"], in_memory["rank_score"], rtol=0, atol=1e-5)
        # and the scores are not all the same number (a broken load could make them constant)
        assert from_disk["rank_score"].std() > 0

    @pytest.mark.parametrize("which", ["lora", "frozen_mean"])
    def test_loaded_artifact_keeps_what_it_was_trained_with(self, which: str, request: pytest.FixtureRequest) -> None:
        trained: Trained = request.getfixturevalue(which)
        loaded = load(trained.directory)
        assert loaded.model_config == trained.model_config
        assert loaded.features == FEATURES and loaded.funnel == FUNNEL and loaded.model_config.prompt == DEFAULT_TEMPLATE
        assert loaded.backbone_reference == "tiny"
        assert loaded.backbone_checksum == trained.result.backbone.checksum
        assert loaded.score_stats == pytest.approx(trained.artifact.score_stats)
        assert loaded.train_config == trained.train_config.model_dump(mode="json")
        assert loaded.rank_by == trained.artifact.rank_by
        assert loaded.calibration == trained.artifact.calibration
        assert loaded.model_version == trained.artifact.model_version  # the same weights give the same id
        assert not loaded.model.training

    def test_a_loaded_model_saves_and_loads_again_to_the_same_scores(self, lora: Trained, table: pd.DataFrame, tmp_path: Path) -> None:
        first = load(lora.directory)
        again = load(save(first, tmp_path / "again"))
        sample = table.iloc[:24]
        assert_allclose(
            Scorer(again, EXACT).score(sample)["rank_score"],
            Scorer(load(lora.directory), EXACT).score(sample)["rank_score"],
            rtol=0,
            atol=1e-5,
        )


# --------------------------------------------------------------------------- directory layout


class TestLayout:
    def test_lora_directory_holds_manifest_heads_adapter_and_tokenizer(self, lora: Trained) -> None:
        folder = lora.directory
        assert (folder / "leadrank.json").is_file()
        assert (folder / "heads.safetensors").is_file()
        assert (folder / "adapter" / "adapter_model.safetensors").is_file()
        assert (folder / "tokenizer").is_dir() and any((folder / "tokenizer").iterdir())

    def test_frozen_directory_has_no_adapter(self, frozen_mean: Trained) -> None:
        folder = frozen_mean.directory
        assert (folder / "leadrank.json").is_file()
        assert (folder / "heads.safetensors").is_file()
        assert (folder / "tokenizer").is_dir()
        assert not (folder / "adapter").exists()

    @pytest.mark.parametrize("which", ["lora", "frozen_mean"])
    def test_no_file_is_a_pickle(self, which: str, request: pytest.FixtureRequest) -> None:
        folder: Path = request.getfixturevalue(which).directory
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert files
        for path in files:
            assert path.suffix not in PICKLE_SUFFIXES, path
            head = path.read_bytes()[:4]
            assert not (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")), f"{path} is a pickle"
            assert head != b"PK\x03\x04", f"{path} is a torch.save zip archive"
            if path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
            if path.suffix == ".safetensors":
                with safe_open(str(path), framework="pt") as handle:
                    assert list(handle.keys())

    def test_heads_file_holds_both_heads(self, lora: Trained) -> None:
        with safe_open(str(lora.directory / "heads.safetensors"), framework="pt") as handle:
            keys = set(handle.keys())
        assert any(k.startswith("point.") for k in keys) and any(k.startswith("pair.") for k in keys)


# --------------------------------------------------------------------------- atomic save


class _Boom(RuntimeError):
    pass


class TestSave:
    def test_a_failed_save_leaves_the_existing_model_intact(self, lora: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        home = tmp_path / "models"
        target = save(load(lora.directory), home / "M")
        before = _digest(target)
        real = artifact_module.save_file

        def save_heads_then_fail(tensors, filename, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            real(tensors, filename, *args, **kwargs)
            raise _Boom("disk full after heads.safetensors")

        monkeypatch.setattr(artifact_module, "save_file", save_heads_then_fail)
        with pytest.raises(_Boom, match="disk full"):
            save(load(lora.directory), target)
        assert _digest(target) == before
        assert sorted(p.name for p in home.iterdir()) == ["M"]  # no staging or .old folder beside it
        monkeypatch.undo()
        assert load(target).rank_by == "blend"

    def test_a_failed_first_save_leaves_nothing(self, lora: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        home = tmp_path / "models"
        home.mkdir()

        def fail(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise _Boom("no space")

        monkeypatch.setattr(artifact_module, "save_file", fail)
        with pytest.raises(_Boom):
            save(load(lora.directory), home / "M")
        assert list(home.iterdir()) == []

    def test_saving_over_a_model_directory_replaces_it(self, lora: Trained, no_hpro: Trained, tmp_path: Path) -> None:
        target = save(load(lora.directory), tmp_path / "M")
        assert (target / "adapter").is_dir()
        save(load(no_hpro.directory), target)
        assert read_manifest(target)["rank_by"] == "point"
        assert not (target / "adapter").exists()  # nothing of the old model is left over
        assert sorted(p.name for p in tmp_path.iterdir()) == ["M"]

    def test_saving_over_a_non_model_directory_is_refused(self, lora: Trained, tmp_path: Path) -> None:
        target = tmp_path / "results"
        target.mkdir()
        (target / "notes.txt").write_text("my notes", encoding="utf-8")
        with pytest.raises(ArtifactError, match="not a leadrank model directory"):
            save(load(lora.directory), target)
        assert [p.name for p in target.iterdir()] == ["notes.txt"]
        assert (target / "notes.txt").read_text(encoding="utf-8") == "my notes"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


# --------------------------------------------------------------------------- load errors


class TestLoadErrors:
    def test_a_folder_without_a_manifest(self, tmp_path: Path) -> None:
        (tmp_path / "heads.safetensors").write_bytes(b"")
        with pytest.raises(ArtifactError, match="not a leadrank model directory"):
            load(tmp_path)
        with pytest.raises(ArtifactError, match="not a leadrank model directory"):
            read_manifest(tmp_path)

    def test_a_missing_folder(self, tmp_path: Path) -> None:
        with pytest.raises(ArtifactError, match="not a leadrank model directory"):
            load(tmp_path / "nowhere")

    def test_an_unknown_format_version(self, lora: Trained, copy_of) -> None:  # noqa: ANN001
        folder = copy_of(lora)
        _edit_manifest(folder, lambda m: m.update(format_version=99))
        with pytest.raises(ArtifactError, match="format version 99"):
            load(folder)
        with pytest.raises(ArtifactError, match="format version"):
            read_manifest(folder)

    def test_an_edited_backbone_checksum(self, lora: Trained, copy_of) -> None:  # noqa: ANN001
        folder = copy_of(lora)
        _edit_manifest(folder, lambda m: m["backbone"].update(checksum="0" * 64))
        with pytest.raises(ArtifactError, match="Backbone mismatch"):
            load(folder)

    def test_a_lora_model_without_its_adapter(self, lora: Trained, copy_of) -> None:  # noqa: ANN001
        folder = copy_of(lora)
        (folder / "adapter" / "adapter_model.safetensors").unlink()
        with pytest.raises(ArtifactError, match="incomplete"):
            load(folder)

    def test_an_unavailable_backbone_says_how_to_point_to_it(self, frozen_mean: Trained, copy_of, tmp_path: Path) -> None:  # noqa: ANN001
        folder = copy_of(frozen_mean)
        _edit_manifest(folder, lambda m: m["backbone"].update(reference=str(tmp_path / "gone")))
        with pytest.raises(ArtifactError, match="--backbone"):
            load(folder)
        # pointing to the right backbone (same checksum) loads it
        assert load(folder, backbone="tiny").model_config == frozen_mean.model_config


# --------------------------------------------------------------------------- manifest and metrics


class TestManifest:
    def test_read_manifest_returns_configs_and_metrics(self, lora: Trained, table: pd.DataFrame) -> None:
        manifest = read_manifest(lora.directory)
        assert manifest["format_version"] == artifact_module.FORMAT_VERSION
        assert ModelConfig.model_validate(manifest["model_config"]) == lora.model_config
        assert TrainConfig.model_validate(manifest["train_config"]) == lora.train_config
        assert FeatureSpec.model_validate(manifest["features"]) == FEATURES
        assert FunnelSpec.model_validate(manifest["funnel"]) == FUNNEL
        assert manifest["backbone"] == {"reference": "tiny", "checksum": lora.result.backbone.checksum}
        assert set(manifest["score_stats"]) == {"point_mean", "point_std", "pair_mean", "pair_std"}

        metrics = manifest["metrics"]
        assert metrics["train_steps"] == 4 == lora.result.steps
        assert metrics["best_step"] == lora.result.best_step
        validation = validation_slice(table, lora.train_config.val_fraction).test
        assert 0 < validation["label"].sum() < len(validation), "the fixture's validation slice must hold both classes"
        assert {"val_auc_point", "val_auc_pair", "val_auc_blend"} <= metrics.keys()
        assert all(0.0 <= metrics[k] <= 1.0 for k in ("val_auc_point", "val_auc_pair", "val_auc_blend"))
        assert metrics["val_auc_pair"] == pytest.approx(auc(lora.result.val_labels, lora.result.val_pair))
        assert metrics["val_auc_point"] == pytest.approx(auc(lora.result.val_labels, lora.result.val_point))

    def test_score_stats_describe_the_validation_scores(self, lora: Trained) -> None:
        stats = lora.artifact.score_stats
        assert stats["point_mean"] == pytest.approx(float(np.mean(lora.result.val_point)))
        assert stats["pair_mean"] == pytest.approx(float(np.mean(lora.result.val_pair)))
        assert stats["point_std"] == pytest.approx(float(np.std(lora.result.val_point)))
        assert stats["pair_std"] == pytest.approx(float(np.std(lora.result.val_pair)))

    def test_no_val_auc_when_the_validation_slice_has_one_class(self, frozen_mean: Trained) -> None:
        one_class = dataclasses.replace(frozen_mean.result, val_labels=np.zeros_like(frozen_mean.result.val_labels))
        artifact = from_training(one_class)
        assert not any(k.startswith("val_auc") for k in artifact.metrics)
        assert {"train_steps", "train_seconds", "best_step"} <= artifact.metrics.keys()

    def test_ranks_by_the_best_validated_ranking_with_hpro(self, lora: Trained, frozen_mean: Trained) -> None:
        for trained in (lora, frozen_mean):
            metrics, chosen = trained.artifact.metrics, trained.artifact.rank_by
            aucs = {name: metrics[f"val_auc_{name}"] for name in ("point", "pair", "blend")}
            assert aucs[chosen] == max(aucs.values())
            assert read_manifest(trained.directory)["rank_by"] == chosen

    def test_ranks_by_the_point_head_without_hpro(self, no_hpro: Trained) -> None:
        assert no_hpro.artifact.rank_by == "point"
        assert read_manifest(no_hpro.directory)["rank_by"] == "point"
        assert load(no_hpro.directory).rank_by == "point"


# --------------------------------------------------------------------------- a model folder cannot be bent


def _record_checksum(folder: Path, name: str) -> None:
    """Write the current checksum of ``name`` into the manifest, as a careful tamperer would."""
    _edit_manifest(folder, lambda m: m["files"].update({name: hashlib.sha256((folder / name).read_bytes()).hexdigest()}))


def _refused(folder: Path, name: str, why: str) -> str:
    """The pattern of a refusal that names ``folder / name`` and says why."""
    return f"{re.escape(str(folder / name))} {why}"


class _MakeDir:
    """Unpickling this creates a folder: proof that nothing unpickled it when the folder is absent."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return os.mkdir, (str(self.path),)


class TestIntegrity:
    def test_the_error_kinds(self) -> None:
        for kind, builtin in ((ArtifactError, ValueError), (RegistryError, ValueError)):
            assert issubclass(kind, EnvironmentProblem) and issubclass(kind, builtin)
            assert kind("x").exit_code == 1

    @pytest.mark.parametrize("which", ["lora", "frozen_mean"])
    def test_the_manifest_records_every_file_and_the_model_version(self, which: str, request: pytest.FixtureRequest) -> None:
        folder: Path = request.getfixturevalue(which).directory
        manifest = read_manifest(folder)
        assert manifest["files"] == {name: digest for name, digest in _digest(folder).items() if name != "leadrank.json"}
        assert "heads.safetensors" in manifest["files"] and "tokenizer/tokenizer.json" in manifest["files"]
        assert ("adapter/adapter_model.safetensors" in manifest["files"]) == (which == "lora")
        assert manifest["model_version"] == request.getfixturevalue(which).artifact.model_version

    @pytest.mark.parametrize("key", ["model_version", "files", "model_config", "features", "score_stats", "calibration"])
    def test_a_missing_manifest_entry_is_named(self, key: str, frozen_mean: Trained, copy_of) -> None:  # noqa: ANN001
        folder = copy_of(frozen_mean)
        _edit_manifest(folder, lambda m: m.pop(key))
        with pytest.raises(ArtifactError, match=rf"leadrank\.json has no '{key}' entry; the model folder was changed after training"):
            load(folder)

    def test_a_missing_backbone_checksum_is_named(self, frozen_mean: Trained, copy_of) -> None:  # noqa: ANN001
        folder = copy_of(frozen_mean)
        _edit_manifest(folder, lambda m: m["backbone"].pop("checksum"))
        with pytest.raises(ArtifactError, match=r"leadrank\.json has no 'backbone\.checksum' entry"):
            load(folder)

    def test_a_manifest_that_is_not_json(self, frozen_mean: Trained, copy_of) -> None:  # noqa: ANN001
        folder = copy_of(frozen_mean)
        (folder / "leadrank.json").write_text('{"format_version": 3,', encoding="utf-8")
        with pytest.raises(ArtifactError, match=r"leadrank\.json is not valid JSON"):
            load(folder)

    def test_an_older_format_says_to_retrain(self, frozen_mean: Trained, copy_of) -> None:  # noqa: ANN001
        folder = copy_of(frozen_mean)
        _edit_manifest(folder, lambda m: m.update(format_version=2))
        for read in (load, read_manifest):
            with pytest.raises(ArtifactError, match=r"format version 2; .* reads version 4\. .*retrain it with this leadrank"):
                read(folder)

    @pytest.mark.parametrize("name", ["tokenizer/tokenizer_config.json", "tokenizer/tokenizer.json", "adapter/adapter_config.json"])
    def test_a_changed_file_is_refused(self, name: str, lora: Trained, copy_of) -> None:  # noqa: ANN001
        folder = copy_of(lora)
        with open(folder / name, "a", encoding="utf-8") as handle:
            handle.write("\n")  # still valid JSON, still loads: only the checksum can tell
        why = "does not match its checksum in leadrank.json; the model folder was changed after training"
        with pytest.raises(ArtifactError, match=_refused(folder, name, why)):
            load(folder)

    def test_a_changed_weight_is_refused(self, frozen_mean: Trained, copy_of) -> None:  # noqa: ANN001
        folder = copy_of(frozen_mean)
        data = bytearray((folder / "heads.safetensors").read_bytes())
        data[-1] ^= 0x01  # the lowest bit of the last weight
        (folder / "heads.safetensors").write_bytes(bytes(data))
        with pytest.raises(ArtifactError, match=_refused(folder, "heads.safetensors", "does not match its checksum")):
            load(folder)

    def test_a_missing_file_is_refused(self, frozen_mean: Trained, copy_of) -> None:  # noqa: ANN001
        folder = copy_of(frozen_mean)
        (folder / "tokenizer" / "tokenizer_config.json").unlink()
        with pytest.raises(ArtifactError, match=_refused(folder, "tokenizer/tokenizer_config.json", "is missing")):
            load(folder)

    @pytest.mark.parametrize("name", ["pytorch_model.bin", "adapter/extra.safetensors", "tokenizer/added_tokens.json"])
    def test_an_unlisted_file_is_refused(self, name: str, lora: Trained, copy_of, tmp_path: Path) -> None:  # noqa: ANN001
        folder = copy_of(lora)
        marker = tmp_path / "unpickled"
        (folder / name).write_bytes(pickle.dumps(_MakeDir(marker)))
        with pytest.raises(ArtifactError, match=_refused(folder, name, "has no checksum in leadrank.json")):
            load(folder)
        assert not marker.exists()

    def test_a_removed_checksum_entry_is_refused(self, frozen_mean: Trained, copy_of) -> None:  # noqa: ANN001
        folder = copy_of(frozen_mean)
        _edit_manifest(folder, lambda m: m["files"].pop("tokenizer/tokenizer_config.json"))
        with pytest.raises(ArtifactError, match=_refused(folder, "tokenizer/tokenizer_config.json", "has no checksum")):
            load(folder)

    def test_a_truncated_heads_file_is_refused_even_with_its_checksum(self, frozen_mean: Trained, copy_of) -> None:  # noqa: ANN001
        folder = copy_of(frozen_mean)
        heads = folder / "heads.safetensors"
        heads.write_bytes(heads.read_bytes()[: heads.stat().st_size // 2])
        with pytest.raises(ArtifactError, match=_refused(folder, "heads.safetensors", "does not match its checksum")):
            load(folder)
        _record_checksum(folder, "heads.safetensors")
        with pytest.raises(ArtifactError, match=_refused(folder, "heads.safetensors", "is not a readable safetensors file")):
            load(folder)

    def test_a_pickle_in_place_of_the_heads_is_never_unpickled(self, frozen_mean: Trained, copy_of, tmp_path: Path) -> None:  # noqa: ANN001
        folder = copy_of(frozen_mean)
        marker = tmp_path / "unpickled"
        payload = pickle.dumps(_MakeDir(marker))
        (folder / "heads.safetensors").write_bytes(payload)
        _record_checksum(folder, "heads.safetensors")
        with pytest.raises(ArtifactError, match=_refused(folder, "heads.safetensors", "is not a readable safetensors file")):
            load(folder)
        assert not marker.exists()
        calls = [arg for op, arg, _ in pickletools.genops(payload) if op.name in ("STACK_GLOBAL", "GLOBAL", "SHORT_BINUNICODE")]
        assert "mkdir" in calls and any(op.name == "REDUCE" for op, _, _ in pickletools.genops(payload))  # live, read without running it

    def test_a_link_out_of_the_folder_is_refused(self, frozen_mean: Trained, copy_of, tmp_path: Path) -> None:  # noqa: ANN001
        folder = copy_of(frozen_mean)
        outside = tmp_path / "elsewhere.json"
        shutil.move(folder / "tokenizer" / "tokenizer.json", outside)
        (folder / "tokenizer" / "tokenizer.json").symlink_to(outside)  # the same bytes, so the checksum matches
        with pytest.raises(ArtifactError, match=_refused(folder, "tokenizer/tokenizer.json", "is a link to .* outside the model folder")):
            load(folder)


class TestDegenerateStatistics:
    @pytest.mark.parametrize("edit", [{"point_std": 0.0}, {"pair_std": float("nan")}, {"pair_mean": float("inf")}])
    def test_save_refuses_them(self, edit: dict, frozen_mean: Trained, tmp_path: Path) -> None:
        artifact = dataclasses.replace(frozen_mean.artifact, score_stats=frozen_mean.artifact.score_stats | edit)
        with pytest.raises(ArtifactError, match=f"score_stats {next(iter(edit))} is .*the validation slice gave constant or non-finite"):
            save(artifact, tmp_path / "M")
        assert list(tmp_path.iterdir()) == []

    @pytest.mark.parametrize("edit", [{"pair_std": 0.0}, {"point_mean": float("nan")}])
    def test_load_refuses_them(self, edit: dict, frozen_mean: Trained, copy_of) -> None:  # noqa: ANN001
        folder = copy_of(frozen_mean)
        _edit_manifest(folder, lambda m: m["score_stats"].update(edit))
        with pytest.raises(ArtifactError, match=rf"leadrank\.json: score_stats {next(iter(edit))} is .*constant or non-finite"):
            load(folder)

    def test_load_refuses_a_non_finite_calibration(self, frozen_mean: Trained, copy_of) -> None:  # noqa: ANN001
        folder = copy_of(frozen_mean)
        _edit_manifest(folder, lambda m: m.update(calibration={"method": "platt", "a": float("nan"), "b": 0.0}))
        with pytest.raises(ArtifactError, match=r"(?s)'calibration' entry is not valid.*must be finite numbers"):
            load(folder)
