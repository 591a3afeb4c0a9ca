"""leadrank.registry (publish, current, versions, rollback, retrain) and leadrank.data.minimums.

The registry tests use stand-in model directories (a manifest and one weights file): the
registry only copies and points at them. The retrain tests train tiny models.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

import leadrank.registry as registry
import leadrank.training as training
from helpers import reset_accelerate
from leadrank.artifact import FORMAT_VERSION, MANIFEST, ArtifactError, load, read_manifest, save
from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.minimums import TooFewLeadsError, check_minimums
from leadrank.data.split import time_split
from leadrank.data.synth import SynthConfig, simulate
from leadrank.registry import RegistryError, current, publish, retrain, rollback, versions
from leadrank.settings import RunConfig, TrainConfig

FEATURES = FeatureSpec.nev_default()
FUNNEL = FunnelSpec.paper_default()
# every model field the presets set is pinned, so preset changes do not reach these tests
RUN = {
    "model": {"backbone": "tiny", "mode": "lora", "pooling": "last", "pool_layer": -1, "max_dialogue_tokens": 32, "lora_r": 4},
    "train": {
        "batch_size": 12,
        "max_steps": 4,
        "eval_every": 2,
        "warmup_steps": 1,
        "lr_heads": 1e-3,
        "min_train_positives": 5,
        "min_train_negatives": 5,
    },
}


def fake_model(folder: Path, weights: bytes = b"w") -> Path:
    """A stand-in model directory: what the registry reads of one (its manifest) plus a file."""
    folder.mkdir(parents=True)
    (folder / MANIFEST).write_text(json.dumps({"format_version": FORMAT_VERSION}), encoding="utf-8")
    (folder / "heads.safetensors").write_bytes(weights)
    return folder


@pytest.fixture
def reg(tmp_path: Path) -> Path:
    return tmp_path / "reg"


def publish_n(reg: Path, tmp_path: Path, n: int) -> list[str]:
    return [publish(reg, fake_model(tmp_path / f"m{i}", weights=f"w{i}".encode())) for i in range(n)]


def current_weights(reg: Path) -> bytes:
    return (current(reg) / "heads.safetensors").read_bytes()


# --------------------------------------------------------------------------- publish / current / versions


class TestPublish:
    def test_an_empty_registry_has_no_current_and_no_versions(self, reg: Path) -> None:
        assert versions(reg) == []
        with pytest.raises(RegistryError, match="empty.*leadrank retrain"):
            current(reg)

    def test_publish_copies_the_model_and_makes_it_current(self, reg: Path, tmp_path: Path) -> None:
        source = fake_model(tmp_path / "m", weights=b"abc")
        version = publish(reg, source, metrics={"comparison_auc": 0.7})
        assert version == "v0001"
        assert current(reg) == reg / "versions" / "v0001"
        assert current_weights(reg) == b"abc"
        assert (source / "heads.safetensors").read_bytes() == b"abc"  # copied, not moved
        [listed] = versions(reg)
        assert (listed.id, listed.path, listed.is_current, listed.metrics) == ("v0001", current(reg), True, {"comparison_auc": 0.7})

    def test_versions_are_numbered_and_the_newest_is_current(self, reg: Path, tmp_path: Path) -> None:
        assert publish_n(reg, tmp_path, 3) == ["v0001", "v0002", "v0003"]
        assert [(v.id, v.is_current) for v in versions(reg)] == [("v0001", False), ("v0002", False), ("v0003", True)]
        assert current_weights(reg) == b"w2"

    def test_a_folder_that_is_not_a_model_is_refused_and_nothing_changes(self, reg: Path, tmp_path: Path) -> None:
        publish_n(reg, tmp_path, 1)
        before = (reg / "registry.json").read_text(encoding="utf-8")
        (tmp_path / "notes").mkdir()
        with pytest.raises(ArtifactError, match="not a leadrank model directory"):
            publish(reg, tmp_path / "notes")
        assert (reg / "registry.json").read_text(encoding="utf-8") == before
        assert sorted(p.name for p in (reg / "versions").iterdir()) == ["v0001"]

    def test_registry_json_says_what_is_current(self, reg: Path, tmp_path: Path) -> None:
        publish_n(reg, tmp_path, 2)
        state = json.loads((reg / "registry.json").read_text(encoding="utf-8"))
        assert (state["current"], state["previous"]) == ("v0002", ["v0001"])
        assert [(e["action"], e["version"]) for e in state["history"]] == [("publish", "v0001"), ("publish", "v0002")]

    def test_a_broken_registry_file_is_named(self, reg: Path, tmp_path: Path) -> None:
        publish_n(reg, tmp_path, 1)
        (reg / "registry.json").write_text('{"current": 3}', encoding="utf-8")
        with pytest.raises(RegistryError, match="registry.json is not a valid registry file"):
            current(reg)

    def test_a_missing_version_folder_is_named_with_the_fix(self, reg: Path, tmp_path: Path) -> None:
        publish_n(reg, tmp_path, 2)
        (current(reg) / MANIFEST).unlink()
        with pytest.raises(RegistryError, match=r"v0002.*missing.*--to VERSION"):
            current(reg)


class TestCrashSafety:
    def test_a_copy_that_fails_leaves_the_registry_as_it_was(self, reg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        publish_n(reg, tmp_path, 1)

        def half_copy(src: Path, dst: Path, **kwargs: object) -> None:
            (Path(dst) / "heads.safetensors").write_bytes(b"half")
            raise OSError("disk full")

        monkeypatch.setattr(registry.shutil, "copytree", half_copy)
        with pytest.raises(OSError, match="disk full"):
            publish(reg, fake_model(tmp_path / "next"))
        assert [v.id for v in versions(reg)] == ["v0001"]
        assert current_weights(reg) == b"w0"
        assert sorted(p.name for p in (reg / "versions").iterdir()) == ["v0001"]  # no half-copied folder left

    def test_a_crash_before_the_pointer_moves_keeps_the_old_state_and_burns_the_number(
        self, reg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        publish_n(reg, tmp_path, 1)
        with monkeypatch.context() as patch:
            patch.setattr(registry, "write_text_atomic", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
            with pytest.raises(KeyboardInterrupt):
                publish(reg, fake_model(tmp_path / "crashed"))
        assert (reg / "versions" / "v0002").is_dir()  # copied, never named by registry.json
        assert [v.id for v in versions(reg)] == ["v0001"] and current(reg).name == "v0001"
        assert publish(reg, fake_model(tmp_path / "next", weights=b"next")) == "v0003"
        assert current_weights(reg) == b"next"


# --------------------------------------------------------------------------- rollback


class TestRollback:
    def test_an_empty_registry_cannot_roll_back(self, reg: Path) -> None:
        with pytest.raises(RegistryError, match="empty"):
            rollback(reg)

    def test_rollback_steps_back_one_version_at_a_time(self, reg: Path, tmp_path: Path) -> None:
        publish_n(reg, tmp_path, 3)
        assert rollback(reg) == "v0002" and current_weights(reg) == b"w1"
        assert rollback(reg) == "v0001" and current_weights(reg) == b"w0"
        with pytest.raises(RegistryError, match="no earlier one"):
            rollback(reg)
        assert current(reg).name == "v0001"
        assert [v.is_current for v in versions(reg)] == [True, False, False]

    def test_a_rolled_back_version_is_not_returned_to_after_a_new_publish(self, reg: Path, tmp_path: Path) -> None:
        publish_n(reg, tmp_path, 2)
        rollback(reg)  # v0002 was bad
        assert publish(reg, fake_model(tmp_path / "new")) == "v0003"
        assert rollback(reg) == "v0001"

    def test_rollback_to_a_named_version_and_back(self, reg: Path, tmp_path: Path) -> None:
        publish_n(reg, tmp_path, 3)
        assert rollback(reg, to="v0001") == "v0001"
        assert current_weights(reg) == b"w0"
        assert rollback(reg) == "v0003"  # a plain rollback undoes the jump

    def test_an_unknown_version_is_refused_naming_the_known_ones(self, reg: Path, tmp_path: Path) -> None:
        publish_n(reg, tmp_path, 2)
        with pytest.raises(RegistryError, match=r"Unknown version 'v0009'.*\['v0001', 'v0002'\]"):
            rollback(reg, to="v0009")
        assert current(reg).name == "v0002"

    def test_the_current_version_is_refused(self, reg: Path, tmp_path: Path) -> None:
        publish_n(reg, tmp_path, 2)
        with pytest.raises(RegistryError, match="already the current"):
            rollback(reg, to="v0002")

    def test_rollback_is_logged(self, reg: Path, tmp_path: Path) -> None:
        publish_n(reg, tmp_path, 2)
        rollback(reg)
        last = json.loads((reg / "registry.json").read_text(encoding="utf-8"))["history"][-1]
        assert (last["action"], last["version"], last["from"]) == ("rollback", "v0001", "v0002")


# --------------------------------------------------------------------------- minimum data


class TestMinimums:
    def test_counts_and_minimums_are_named(self) -> None:
        leads = pd.DataFrame({"label": [1, 1, 0, 0, 0]})
        check_minimums(leads, "label", min_positives=2, min_negatives=3)
        with pytest.raises(TooFewLeadsError, match=r"2 positive\(s\) \(minimum 3\) and 3 negative\(s\) \(minimum 3\).*min_train_positives"):
            check_minimums(leads, "label", min_positives=3, min_negatives=3)
        with pytest.raises(TooFewLeadsError, match=r"3 negative\(s\) \(minimum 4\)"):
            check_minimums(leads, "label", min_positives=1, min_negatives=4)

    def test_boolean_labels_count(self) -> None:
        with pytest.raises(TooFewLeadsError, match=r"1 positive\(s\)"):
            check_minimums(pd.DataFrame({"label": [True, False]}), "label", min_positives=2, min_negatives=1)

    def test_each_segment_must_meet_the_minimums(self) -> None:
        leads = pd.DataFrame({"label": [1, 0, 1, 0, 0, 1], "tier": ["a", "a", "b", "b", "b", None]})
        check_minimums(leads, "label", min_positives=1, min_negatives=0)
        with pytest.raises(TooFewLeadsError) as info:
            check_minimums(leads, "label", min_positives=1, min_negatives=1, segment_column="tier")
        message = str(info.value)
        assert "tier=nan has 1 positive(s) (minimum 1) and 0 negative(s)" in message
        assert "tier='a'" not in message and "tier='b'" not in message  # those segments are fine

    def test_an_unknown_segment_column_is_named(self) -> None:
        with pytest.raises(ValueError, match="'city' is not in the table"):
            check_minimums(pd.DataFrame({"label": [1, 0]}), "label", min_positives=1, min_negatives=1, segment_column="city")

    def test_train_refuses_a_small_table_before_loading_a_model(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def no_model(*args: object, **kwargs: object) -> None:
            raise AssertionError("no model may be loaded for a table that is too small")

        monkeypatch.setattr(training, "load_backbone", no_model)
        table = simulate(SynthConfig.preset("dense", n=300, seed=5))
        positives = int(table["label"].sum())
        assert positives < TrainConfig().min_train_positives  # the default refuses this table
        with pytest.raises(TooFewLeadsError, match=rf"the table has {positives} positive\(s\) \(minimum 100\)"):
            training.train(table, FEATURES, FUNNEL, RunConfig.model_validate(RUN).model, TrainConfig())


# --------------------------------------------------------------------------- retrain


@pytest.fixture(scope="module")
def leads() -> pd.DataFrame:
    return simulate(SynthConfig.preset("dense", n=400, seed=11))


def run_retrain(reg: Path, leads: pd.DataFrame, run: dict[str, dict[str, object]] = RUN, **options: object) -> registry.RetrainOutcome:
    reset_accelerate()
    try:
        return retrain(reg, leads, FEATURES, FUNNEL, RunConfig.model_validate(run), **options)
    finally:
        reset_accelerate()


@pytest.fixture(scope="module")
def first(leads: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, registry.RetrainOutcome]:
    """A registry after its first retrain: (the registry, the outcome)."""
    folder = tmp_path_factory.mktemp("retrain")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEADRANK_CACHE", str(folder / "cache"))
        return folder / "reg", run_retrain(folder / "reg", leads, tolerance=0.0)


@pytest.fixture
def reg_copy(first: tuple[Path, registry.RetrainOutcome], tmp_path: Path) -> Path:
    return Path(shutil.copytree(first[0], tmp_path / "reg"))


def negate_heads(model: torch.nn.Module) -> None:
    """Negate both heads' outputs: the model then ranks backwards by either head or their blend (AUC a -> 1 - a)."""
    with torch.no_grad():
        for head in (model.heads.point, model.heads.pair):
            head[-1].weight.neg_()
            head[-1].bias.neg_()


def worse_candidate(first: tuple[Path, registry.RetrainOutcome], reg: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[float, float]:
    """Set up a retrain whose candidate ranks the comparison slice worse than the current model.

    Retraining with the same data and seed gives the first model again, with AUC ``a`` on the
    slice; negating its heads gives ``1 - a``. The side below chance goes to the
    candidate: when ``a < 0.5`` a negated copy of the first model is published as the current
    one (v0002), otherwise the candidate is negated after training.
    Returns the (current, candidate) AUCs to expect.
    """
    a = first[1].candidate["auc"]
    assert abs(a - 0.5) > 0.01, "the first model must rank the slice differently from chance"
    if a < 0.5:
        model = load(current(reg))
        negate_heads(model.model)
        publish(reg, save(dataclasses.replace(model, model_version=""), reg.parent / "negated"))  # "": computed anew
    else:
        real = registry.train

        def train_backwards(*args: object, **kwargs: object) -> training.TrainResult:
            result = real(*args, **kwargs)
            negate_heads(result.model)
            return result

        monkeypatch.setattr(registry, "train", train_backwards)
    return max(a, 1 - a), min(a, 1 - a)


@pytest.mark.slow  # each retrain trains a tiny model: ~5 s idle, far more on a busy machine
@pytest.mark.usefixtures("isolated_cache")
class TestRetrain:
    def test_the_first_retrain_publishes(self, first: tuple[Path, registry.RetrainOutcome], leads: pd.DataFrame) -> None:
        reg, outcome = first
        assert (outcome.published, outcome.current, outcome.current_version) == ("v0001", None, None)
        assert current(reg).name == "v0001"
        assert read_manifest(current(reg))["model_config"]["backbone"] == "tiny"
        assert "registry was empty" in outcome.decision
        assert versions(reg)[0].metrics == {f"comparison_{k}": v for k, v in outcome.candidate.items()}
        assert not list(reg.glob(".candidate-*"))  # the scratch copy is gone

    def test_the_newest_leads_are_kept_out_to_compare_on(self, first: tuple[Path, registry.RetrainOutcome], leads: pd.DataFrame) -> None:
        _, outcome = first
        expected = time_split(leads, 0.15)
        assert outcome.cutoff == expected.cutoff
        assert (outcome.train_rows, outcome.comparison_rows) == (len(expected.train), len(expected.test))
        assert outcome.comparison_positives == int(expected.test["label"].sum())
        assert 0.0 <= outcome.candidate["p@5%"] <= 1.0

    def test_an_equal_candidate_is_published(self, reg_copy: Path, leads: pd.DataFrame) -> None:
        outcome = run_retrain(reg_copy, leads, tolerance=0.0)  # same data and seed: the same model
        assert outcome.current_version == "v0001"
        assert outcome.candidate["auc"] == pytest.approx(outcome.current["auc"], abs=1e-9)
        assert outcome.published == "v0002" and current(reg_copy).name == "v0002"
        assert outcome.decision.startswith("Published v0002: candidate AUC")

    def test_a_worse_candidate_is_not_published(
        self, first: tuple[Path, registry.RetrainOutcome], reg_copy: Path, leads: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        current_auc, candidate_auc = worse_candidate(first, reg_copy, monkeypatch)
        before, listed = (reg_copy / "registry.json").read_text(encoding="utf-8"), sorted((reg_copy / "versions").iterdir())
        outcome = run_retrain(reg_copy, leads, tolerance=0.005)
        assert outcome.current["auc"] == pytest.approx(current_auc, abs=1e-6)
        assert outcome.candidate["auc"] == pytest.approx(candidate_auc, abs=1e-6)
        assert outcome.published is None
        assert outcome.decision.startswith(f"Kept {current(reg_copy).name}: candidate AUC") and "discarded" in outcome.decision
        assert (reg_copy / "registry.json").read_text(encoding="utf-8") == before
        assert sorted((reg_copy / "versions").iterdir()) == listed
        assert not list(reg_copy.glob(".candidate-*"))

    def test_the_tolerance_lets_a_slightly_worse_candidate_through(
        self, first: tuple[Path, registry.RetrainOutcome], reg_copy: Path, leads: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        current_auc, candidate_auc = worse_candidate(first, reg_copy, monkeypatch)
        outcome = run_retrain(reg_copy, leads, tolerance=current_auc - candidate_auc + 0.001)
        assert outcome.candidate["auc"] < outcome.current["auc"]
        assert outcome.published is not None and current(reg_copy).name == outcome.published
        assert load(current(reg_copy)).metrics == read_manifest(current(reg_copy))["metrics"]  # a loadable model


@pytest.mark.usefixtures("isolated_cache")
class TestRetrainChecks:
    """What retrain refuses or selects before any model is trained."""

    def test_a_window_keeps_only_the_newest_days(self, reg: Path, leads: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
        seen: list[pd.DataFrame] = []
        monkeypatch.setattr(registry, "train", lambda table, *a, **k: seen.append(table) or (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            run_retrain(reg, leads, window_days=60)
        times = pd.to_datetime(leads["as_of"])
        window = leads[times >= times.max() - pd.Timedelta(days=60)]
        assert len(window) < len(leads)
        assert set(seen[0]["lead_id"]) == set(time_split(window, 0.15).train["lead_id"])

    def test_too_few_leads_in_a_segment_is_refused_before_training(
        self, reg: Path, leads: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(registry, "train", lambda *a, **k: pytest.fail("must not train"))
        with pytest.raises(TooFewLeadsError, match="segment specialist_id="):  # 40 specialists, ~1 positive each
            run_retrain(reg, leads, segment_column="specialist_id")
        assert not reg.exists()

    def test_a_comparison_slice_with_one_class_is_refused(self, reg: Path, leads: pd.DataFrame) -> None:
        newest = leads["lead_id"].isin(time_split(leads, 0.05).test["lead_id"])
        one_class = leads.assign(label=leads["label"].where(~newest, 0), funnel_stage=leads["funnel_stage"].where(~newest, "defeat"))
        with pytest.raises(ValueError, match=r"holds only negatives.*\(--window-days\).*\(--holdout\)"):
            run_retrain(reg, one_class, holdout=0.05)

    def test_a_negative_tolerance_is_refused(self, reg: Path, leads: pd.DataFrame) -> None:
        with pytest.raises(ValueError, match="tolerance must be >= 0"):
            run_retrain(reg, leads, tolerance=-0.1)

    def test_comparison_minimums_are_a_share_of_the_training_minimums(self) -> None:
        assert registry.comparison_minimums(RunConfig()) == (30, 30)  # defaults: 100 to train
        assert registry.comparison_minimums(RunConfig.model_validate(RUN)) == (2, 2)  # 5 to train: ceil(1.5)
        lopsided = RunConfig.model_validate({"train": {"min_train_positives": 20, "min_train_negatives": 200}})
        assert registry.comparison_minimums(lopsided) == (6, 60)

    def test_a_comparison_slice_with_too_few_positives_is_refused_before_training(
        self, reg: Path, leads: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Enough positives to train (36 >= 20) but too few to compare AUCs on (4 < 6): a model must not be published by chance."""
        monkeypatch.setattr(registry, "train", lambda *a, **k: pytest.fail("must not train"))
        parts = time_split(leads, 0.15)
        positives = int(parts.test["label"].sum())
        assert int(parts.train["label"].sum()) >= 20 and positives < 6
        with pytest.raises(TooFewLeadsError) as info:
            run_retrain(reg, leads, run=with_minimums(20))
        message = str(info.value)
        assert "compare the models on" in message
        assert f"has {positives} positive(s) (minimum 6) and {len(parts.test) - positives} negative(s) (minimum 6)" in message
        assert "longer window (--window-days" in message and "larger holdout share (--holdout, now 0.15)" in message
        assert not reg.exists()

    def test_a_larger_holdout_meets_the_comparison_minimums(self, reg: Path, leads: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
        """The fix the refusal names works: a holdout of 30 % holds enough positives, so training starts."""
        monkeypatch.setattr(registry, "train", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        assert int(time_split(leads, 0.3).test["label"].sum()) >= 6
        with pytest.raises(KeyboardInterrupt):
            run_retrain(reg, leads, run=with_minimums(20), holdout=0.3)


def with_minimums(minimum: int) -> dict[str, dict[str, object]]:
    """RUN with both training minimums set to ``minimum``."""
    return {**RUN, "train": {**RUN["train"], "min_train_positives": minimum, "min_train_negatives": minimum}}
