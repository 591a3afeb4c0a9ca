"""Shared test helpers (not tests)."""

import re
from pathlib import Path

import pandas as pd
import pytest
from accelerate.state import AcceleratorState, GradientState
from rich.console import Console
from typer.testing import CliRunner, Result

from leadrank import cli
from leadrank.artifact import from_training, save
from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.settings import ModelConfig, TrainConfig
from leadrank.training import train

#: A tiny LoRA model trained in seconds: what the scoring, explaining and serving tests share.
TINY_MODEL = {"backbone": "tiny", "mode": "lora", "max_dialogue_tokens": 32, "lora_r": 4}
TINY_TRAIN = {
    "batch_size": 12,
    "max_steps": 4,
    "eval_every": 2,
    "warmup_steps": 1,
    "lr_heads": 1e-3,
    "min_train_positives": 1,
    "min_train_negatives": 1,
}


def reset_accelerate() -> None:
    """Accelerate keeps process-wide singletons; every training run in a test starts clean."""
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def train_tiny_model(table: pd.DataFrame, folder: Path, features: FeatureSpec | None = None) -> Path:
    """Train and save a tiny model on ``table`` in ``folder/model`` (its cache in ``folder/cache``)."""
    features = features or FeatureSpec.nev_default()
    funnel = FunnelSpec.paper_default()
    model_config, train_config = ModelConfig(**TINY_MODEL), TrainConfig(**TINY_TRAIN)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEADRANK_CACHE", str(folder / "cache"))
        reset_accelerate()
        result = train(table, features, funnel, model_config, train_config)
        reset_accelerate()
    return save(from_training(result), folder / "model")


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_RUNNER = CliRunner()


def widen_consoles(patch: pytest.MonkeyPatch) -> None:
    """Rich wraps at 80 columns off a terminal; long tmp paths and tables must stay on one line."""
    console, err_console = Console(width=400), Console(stderr=True, width=400)
    for module in (cli._common, cli._render, cli.data, cli.model, cli.bench, cli.abtest, cli.registry):
        patch.setattr(module, "console", console)
        if hasattr(module, "err_console"):
            patch.setattr(module, "err_console", err_console)


def invoke(*args: str | Path) -> Result:
    """Run ``leadrank ARGS`` in-process; Accelerate's process-wide state is reset after (train leaves it)."""
    result = _RUNNER.invoke(cli.app, [str(a) for a in args], env={"COLUMNS": "200"})
    reset_accelerate()
    return result


def plain(output: str | Result) -> str:
    """A command's output without ANSI colour codes."""
    return _ANSI.sub("", output if isinstance(output, str) else output.output)


def concentrated_control_outcomes() -> pd.DataFrame:
    """A/B outcomes (20 leads per specialist) where all 4 of control's conversions come from C1.

    Every bootstrap resample of control without C1 has no conversion: the relative uplift is
    undefined there, the difference in rates (0.175 - 0.05 = 0.125) is not.
    """
    return pd.DataFrame(
        [
            {"specialist_id": specialist, "date": f"2024-03-{1 + lead % 5:02d}", "arm": arm, "converted": int(lead < conversions)}
            for arm, specialist, conversions in [
                ("control", "C1", 4),
                ("control", "C2", 0),
                ("control", "C3", 0),
                ("control", "C4", 0),
                ("treatment", "T1", 3),
                ("treatment", "T2", 4),
                ("treatment", "T3", 3),
                ("treatment", "T4", 4),
            ]
            for lead in range(20)
        ]
    )
