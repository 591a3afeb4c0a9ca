"""The registry verbs of the command line (retrain, rollback, versions) and the training minimums, through CliRunner."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from helpers import invoke, reset_accelerate, widen_consoles
from helpers import plain as text
from leadrank.artifact import FORMAT_VERSION, MANIFEST
from leadrank.data.io import write_table
from leadrank.data.synth import SynthConfig, simulate
from leadrank.registry import current, publish, versions

# every model field the presets set is pinned, so preset changes do not reach these tests
MODEL = {"mode": "lora", "pooling": "last", "pool_layer": -1, "max_dialogue_tokens": 32, "lora_r": 4}
TRAIN = {"batch_size": 12, "eval_every": 2, "warmup_steps": 1, "min_train_positives": 5, "min_train_negatives": 5}


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADRANK_CACHE", str(tmp_path_factory.getbasetemp() / "leadrank-cache"))
    widen_consoles(monkeypatch)
    reset_accelerate()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    write_table(simulate(SynthConfig.preset("dense", n=400, seed=11)), folder / "leads.parquet")
    (folder / "cfg.yaml").write_text(yaml.safe_dump({"model": MODEL, "train": TRAIN}), encoding="utf-8")
    return folder


def fake_models(reg: Path, tmp_path: Path, n: int) -> None:
    for i in range(n):
        folder = tmp_path / f"m{i}"
        folder.mkdir()
        (folder / MANIFEST).write_text(json.dumps({"format_version": FORMAT_VERSION}), encoding="utf-8")
        publish(reg, folder)


class TestVersionsAndRollback:
    def test_versions_of_an_empty_registry(self, tmp_path: Path) -> None:
        result = invoke("versions", tmp_path / "reg")
        assert result.exit_code == 0, result.output
        assert "No versions in" in text(result) and "leadrank retrain" in text(result)

    def test_versions_marks_the_current_one(self, tmp_path: Path) -> None:
        fake_models(tmp_path / "reg", tmp_path, 2)
        output = text(invoke("versions", tmp_path / "reg"))
        rows = {line.split("│")[2].strip(): line.split("│")[1].strip() for line in output.splitlines() if "│ v000" in line}
        assert rows == {"v0001": "", "v0002": "*"}

    def test_rollback_goes_back_one_version(self, tmp_path: Path) -> None:
        fake_models(tmp_path / "reg", tmp_path, 2)
        result = invoke("rollback", tmp_path / "reg")
        assert result.exit_code == 0, result.output
        assert "Current model: v0001 (was v0002)" in text(result)
        assert current(tmp_path / "reg").name == "v0001"

    def test_rollback_to_a_version(self, tmp_path: Path) -> None:
        fake_models(tmp_path / "reg", tmp_path, 3)
        result = invoke("rollback", tmp_path / "reg", "--to", "v0001")
        assert result.exit_code == 0, result.output
        assert current(tmp_path / "reg").name == "v0001"

    def test_rollback_works_when_the_current_folder_is_gone(self, tmp_path: Path) -> None:
        fake_models(tmp_path / "reg", tmp_path, 2)
        (tmp_path / "reg" / "versions" / "v0002" / MANIFEST).unlink()
        assert "v0002" in text(invoke("versions", tmp_path / "reg"))
        result = invoke("rollback", tmp_path / "reg")
        assert result.exit_code == 0, result.output
        assert "Current model: v0001 (was v0002)" in text(result)

    def test_rollback_of_an_empty_registry_is_a_usage_error(self, tmp_path: Path) -> None:
        result = invoke("rollback", tmp_path / "reg")
        assert result.exit_code == 1
        assert "is empty" in text(result)

    def test_rollback_to_an_unknown_version_names_the_known_ones(self, tmp_path: Path) -> None:
        fake_models(tmp_path / "reg", tmp_path, 2)
        result = invoke("rollback", tmp_path / "reg", "--to", "v7")
        assert result.exit_code == 1
        assert "Unknown version 'v7'" in text(result) and "['v0001', 'v0002']" in text(result)
        assert current(tmp_path / "reg").name == "v0002"


class TestMinimums:
    def test_train_refuses_too_few_positives_naming_the_counts(self, data_dir: Path, tmp_path: Path) -> None:
        result = invoke("train", data_dir / "leads.parquet", "--out", tmp_path / "M", "--backbone", "tiny")
        assert result.exit_code == 3
        output = text(result)
        assert re.search(r"the table has \d+ positive\(s\) \(minimum 100\)", output)
        assert "Widen the data window" in output and "min_train_positives" in output
        assert not (tmp_path / "M").exists()

    def test_retrain_refuses_too_few_positives_and_publishes_nothing(self, data_dir: Path, tmp_path: Path) -> None:
        result = invoke("retrain", tmp_path / "reg", data_dir / "leads.parquet", "--backbone", "tiny")
        assert result.exit_code == 3
        assert "(minimum 100)" in text(result)
        assert versions(tmp_path / "reg") == []

    def test_retrain_of_an_invalid_table_exits_3(self, data_dir: Path, tmp_path: Path) -> None:
        broken = simulate(SynthConfig.preset("dense", n=50, seed=1)).drop(columns=["label"])
        write_table(broken, tmp_path / "broken.parquet")
        result = invoke("retrain", tmp_path / "reg", tmp_path / "broken.parquet", "--backbone", "tiny")
        assert result.exit_code == 3
        assert "label" in text(result)


@pytest.mark.slow  # two retrains of a tiny model: ~10 s idle, far more on a busy machine
def test_retrain_publishes_compares_and_rolls_back(data_dir: Path, tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    args = ("retrain", reg, data_dir / "leads.parquet", "--backbone", "tiny", "--max-steps", "4", "--config", data_dir / "cfg.yaml")

    first = invoke(*args)
    assert first.exit_code == 0, first.output
    output = text(first)
    assert "current (none)" in output and "candidate" in output
    assert re.search(r"│ AUC\s+│\s+n/a │\s+0\.\d{4} │", output)
    assert re.search(r"│ P@5%\s+│\s+n/a │\s+\d+\.\d\d% │", output)
    assert "Published v0001: the registry was empty" in output

    second = invoke(*args, "--tolerance", "0")  # same data and seed: the same model, so equal AUCs pass
    assert second.exit_code == 0, second.output
    output = text(second)
    [auc_row] = [line for line in output.splitlines() if "│ AUC" in line]
    was, now = re.findall(r"0\.\d{4}", auc_row)
    assert "current (v0001)" in output and was == now
    assert "Published v0002: candidate AUC" in output
    assert [(v.id, v.is_current) for v in versions(reg)] == [("v0001", False), ("v0002", True)]

    listing = text(invoke("versions", reg))
    assert f"{versions(reg)[1].metrics['comparison_auc']:.4f}" in listing

    assert invoke("rollback", reg).exit_code == 0
    assert current(reg).name == "v0001"


class TestScoringFollowsTheRegistry:
    def test_score_evaluate_and_load_read_the_current_version_and_follow_a_rollback(self, tmp_path: Path) -> None:
        import leadrank
        from helpers import train_tiny_model
        from leadrank.data.io import read_table

        reg = tmp_path / "reg"
        for seed in (1, 2):  # two different models: v1, then v2 (current)
            table = simulate(SynthConfig.preset("dense", n=400, seed=seed))
            publish(reg, train_tiny_model(table, tmp_path / f"m{seed}"))
            reset_accelerate()
        leads = write_table(simulate(SynthConfig.preset("dense", n=30, seed=9)), tmp_path / "leads.parquet")

        def scored(model: Path, name: str) -> list[float]:
            result = invoke("score", model, leads, "--out", tmp_path / f"{name}.parquet", "--dtype", "fp32")
            assert result.exit_code == 0, result.output
            return read_table(tmp_path / f"{name}.parquet")["rank_score"].tolist()

        assert scored(reg, "via_registry") == scored(reg / "versions" / "v0002", "v2") != scored(reg / "versions" / "v0001", "v1")
        assert leadrank.load(reg).model_version == leadrank.load(reg / "versions" / "v0002").model_version
        assert invoke("rollback", reg).exit_code == 0
        assert scored(reg, "after_rollback") == scored(reg / "versions" / "v0001", "v1_again")
        assert invoke("evaluate", reg, leads).exit_code == 0
