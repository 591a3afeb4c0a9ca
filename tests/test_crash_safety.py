"""Crash safety: `leadrank train` and `leadrank score` killed with SIGKILL (kill -9) mid-run, then run again.

Each test runs the real command line in subprocesses (tiny backbone), so they are slow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml
from safetensors.torch import load_file

from helpers import reset_accelerate
from leadrank.artifact import MANIFEST, from_training, load, save
from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.io import read_table, write_table
from leadrank.data.synth import SynthConfig, simulate
from leadrank.inference import Scorer
from leadrank.settings import ModelConfig, ScoreConfig, TrainConfig
from leadrank.training import train

pytestmark = pytest.mark.slow

MODEL = {"backbone": "tiny", "mode": "lora", "pooling": "last", "pool_layer": -1, "max_dialogue_tokens": 32, "lora_r": 4}
TRAIN = {
    "batch_size": 12,
    "max_steps": 8,
    "eval_every": 2,
    "warmup_steps": 1,
    "lr_heads": 1e-3,
    "patience": 100,
    "checkpoint_every": 1,
    "min_train_positives": 1,
    "min_train_negatives": 1,
}
POLL_S = 0.02
ROW_GROUP_BYTES = 200  # a Parquet file's size once its first chunk of scores is in (the magic bytes alone are 4)
WAIT_S = 300


def leadrank(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "leadrank", *(str(a) for a in args)]


def environment(cache: Path) -> dict[str, str]:
    return os.environ | {"OMP_NUM_THREADS": "1", "LEADRANK_CACHE": str(cache), "COLUMNS": "200"}


def run_to_end(command: list[str], cache: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, env=environment(cache), capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def kill_when(command: list[str], cache: Path, ready: Callable[[], bool], watch: Callable[[], None]) -> None:
    """Start ``command``, call ``watch`` at every poll, and SIGKILL it as soon as ``ready()``."""
    process = subprocess.Popen(command, env=environment(cache), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + WAIT_S
    try:
        while not ready():
            watch()
            if process.poll() is not None:
                pytest.fail(f"the command ended (exit {process.returncode}) before the moment to kill it:\n{process.stdout.read()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the moment to kill the command did not come within {WAIT_S} s")
            time.sleep(POLL_S)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
    watch()


def absent_or_complete(model_dir: Path) -> None:
    """A model directory is either not there or has its manifest (it appears by one rename)."""
    assert not model_dir.exists() or (model_dir / MANIFEST).is_file(), f"{model_dir} is half-written"


# --------------------------------------------------------------------------- train


def test_a_killed_training_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    write_table(simulate(SynthConfig.preset("dense", n=300, seed=21)), tmp_path / "leads.parquet")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({"model": MODEL, "train": TRAIN}), encoding="utf-8")
    cache = tmp_path / "cache"

    def command(out: str, *extra: str) -> list[str]:
        return leadrank("train", tmp_path / "leads.parquet", "--out", tmp_path / out, "--config", tmp_path / "cfg.yaml", *extra)

    run_to_end(command("whole"), cache)

    state = tmp_path / "killed.checkpoints" / "state.json"
    kill_when(command("killed"), cache, ready=state.exists, watch=lambda: absent_or_complete(tmp_path / "killed"))
    killed_at = json.loads(state.read_text(encoding="utf-8"))
    assert killed_at["step"] < TRAIN["max_steps"], "killed after the end: the test proves nothing"
    assert not (tmp_path / "killed").exists()
    # a probe in the checkpoint's log: a resumed run carries it to its last checkpoint, a restarted one does not
    probe = {"step": -1.0, "val_auc": 0.0}
    state.write_text(json.dumps(killed_at | {"history": [probe, *killed_at["history"]]}), encoding="utf-8")

    run_to_end(command("killed", "--resume"), cache)
    final = json.loads(state.read_text(encoding="utf-8"))
    assert final["history"][0] == probe and final["step"] == TRAIN["max_steps"]

    for weights in ("heads.safetensors", "adapter/adapter_model.safetensors"):
        whole, resumed = load_file(str(tmp_path / "whole" / weights)), load_file(str(tmp_path / "killed" / weights))
        assert whole.keys() == resumed.keys()
        assert all((whole[k] == resumed[k]).all() for k in whole), f"{weights} differs from the uninterrupted run"
    leads = simulate(SynthConfig.preset("dense", n=24, seed=22))
    exact = ScoreConfig(dtype="fp32")
    pd.testing.assert_frame_equal(
        Scorer(load(tmp_path / "killed"), exact).score(leads), Scorer(load(tmp_path / "whole"), exact).score(leads)
    )
    expected = {"leads.parquet", "cfg.yaml", "whole", "whole.checkpoints", "killed", "killed.checkpoints"}
    assert {p.name for p in tmp_path.iterdir()} - {"cache"} == expected, "temporary folders were left behind"


# --------------------------------------------------------------------------- score


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    table = simulate(SynthConfig.preset("dense", n=300, seed=5))
    features, funnel = FeatureSpec.nev_default(), FunnelSpec.paper_default()
    model_config, train_config = ModelConfig(**MODEL), TrainConfig(**TRAIN | {"max_steps": 2})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEADRANK_CACHE", str(folder / "cache"))
        reset_accelerate()
        result = train(table, features, funnel, model_config, train_config)
        reset_accelerate()
    return save(from_training(result), folder / "model")


@pytest.fixture(scope="module")
def killed_score(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where `leadrank score` was killed mid-file and then run again to the end (out.parquet).

    Parquet, because each chunk reaches the temporary file as one row group when it is
    written; a CSV's text buffer hides a small file's chunks until it is closed.
    """
    tmp_path = tmp_path_factory.mktemp("score")
    leads = simulate(SynthConfig.preset("dense", n=160, seed=9)).drop(columns=["label", "funnel_stage", "call_duration_s"])
    write_table(leads, tmp_path / "leads.csv")
    cache = model_dir.parent / "cache"

    def command(out: str) -> list[str]:
        return leadrank("score", model_dir, tmp_path / "leads.csv", "--out", tmp_path / out, "--chunk-rows", "8")

    run_to_end(command("whole.parquet"), cache)

    def partial_written() -> bool:  # the temporary file holds at least one row group
        return any(p.stat().st_size > ROW_GROUP_BYTES for p in tmp_path.glob(".out.parquet.*"))

    def nothing_at_the_output_path() -> None:
        assert not (tmp_path / "out.parquet").exists(), "a file appeared at the output path before the run ended"

    kill_when(command("out.parquet"), cache, ready=partial_written, watch=nothing_at_the_output_path)
    run_to_end(command("out.parquet"), cache)
    return tmp_path


def test_a_killed_scoring_run_leaves_no_partial_output_and_reruns_to_the_same_file(killed_score: Path) -> None:
    whole, rerun = read_table(killed_score / "whole.parquet"), read_table(killed_score / "out.parquet")
    assert len(rerun) == 160
    pd.testing.assert_frame_equal(rerun, whole)
    assert (killed_score / "out.parquet").read_bytes() == (killed_score / "whole.parquet").read_bytes()


def test_a_rerun_clears_the_temporary_file_of_a_killed_run(killed_score: Path) -> None:
    assert not list(killed_score.glob(".out.parquet.*")), "partial temporary files remain beside the output"
