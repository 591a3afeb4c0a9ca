"""Two CPU processes (torchrun, gloo) train exactly like one process on the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from leadrank.data.io import write_table
from leadrank.data.synth import SynthConfig, simulate

pytestmark = pytest.mark.slow

MODEL = {"backbone": "tiny", "max_dialogue_tokens": 32, "lora_r": 4, "head_dropout": 0.0, "lora_dropout": 0.0}
TRAIN = {
    "batch_size": 12,
    "max_steps": 3,
    "dtype": "fp32",
    "eval_every": 100,
    "checkpoint_every": 100,
    "lr_heads": 1e-3,
    "min_train_positives": 1,
    "min_train_negatives": 1,
    "head_start_steps": 0,
}  # cpu-lora's head start off: LoRA steps from step 1


def _train(tmp_path: Path, name: str, launcher: list[str], train_overrides: dict, model_overrides: dict | None = None) -> Path:
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump({"model": MODEL | (model_overrides or {}), "train": TRAIN | train_overrides}), encoding="utf-8")
    out = tmp_path / name
    env = os.environ | {"OMP_NUM_THREADS": "1", "LEADRANK_CACHE": str(tmp_path / "cache")}
    command = launcher + [
        "-m",
        "leadrank",
        "train",
        str(tmp_path / "leads.parquet"),
        "--out",
        str(out),
        "--preset",
        "cpu-lora",
        "--config",
        str(config),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_two_processes_match_one_process_with_gradient_accumulation(tmp_path: Path) -> None:
    write_table(simulate(SynthConfig.preset("dense", n=500, seed=2)), tmp_path / "leads.parquet")
    # Same global batch: 2 processes x 12 leads, or 1 process x 12 leads x 2 accumulation steps.
    two = _train(tmp_path, "two", [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"], {})
    one = _train(tmp_path, "one", [sys.executable], {"grad_accum_steps": 2})
    for weights in ("heads.safetensors", "adapter/adapter_model.safetensors"):
        a, b = load_file(str(one / weights)), load_file(str(two / weights))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=f"{weights}:{key}")
    # LoRA B starts at zero: non-zero B weights prove that optimizer steps happened.
    adapter = load_file(str(two / "adapter/adapter_model.safetensors"))
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)


def test_frozen_mode_two_processes_match_one_process(tmp_path: Path) -> None:
    """Frozen mode under DDP (heads on cached readings) trains exactly like one process with 2 accumulation steps."""
    write_table(simulate(SynthConfig.preset("dense", n=500, seed=3)), tmp_path / "leads.parquet")
    frozen = {"mode": "frozen", "pooling": "mean", "pool_layer": 1}
    two = _train(tmp_path, "two", [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"], {}, frozen)
    one = _train(tmp_path, "one", [sys.executable], {"grad_accum_steps": 2}, frozen)
    a, b = load_file(str(one / "heads.safetensors")), load_file(str(two / "heads.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    assert not (two / "adapter").exists()
