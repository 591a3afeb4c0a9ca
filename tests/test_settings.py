"""One config source: leadrank.settings, the options built from it, and the same run said three ways."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

import leadrank
from helpers import reset_accelerate
from leadrank.cli import app
from leadrank.config import PRESETS
from leadrank.data.io import write_table
from leadrank.data.synth import SynthConfig, simulate
from leadrank.errors import ConfigurationError
from leadrank.settings import ModelConfig, RunConfig, ScoreConfig, ServeSettings, TrainConfig, run_flags

pytestmark = pytest.mark.usefixtures("isolated_cache")

#: The verbs whose options are settings fields, and the settings they build.
SETTINGS_VERBS = {
    "train": (ModelConfig, TrainConfig),
    "retrain": (ModelConfig, TrainConfig),
    "bench": (ModelConfig, TrainConfig),
    "demo": (ModelConfig, TrainConfig),
    "score": (ScoreConfig,),
    "evaluate": (ScoreConfig,),
    "explain": (ScoreConfig,),
    "serve": (ServeSettings, ScoreConfig),
}
#: Options named like a field that set something else: demo's --seed seeds the simulated leads too.
NOT_SETTINGS = {("demo", "seed")}


def _command(name: str):  # noqa: ANN202  (typer's own command class)
    return typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]


class TestOptionsComeFromTheFields:
    @pytest.mark.parametrize("verb", sorted(SETTINGS_VERBS))
    def test_every_settings_option_has_the_fields_help_and_no_default_of_its_own(self, verb: str) -> None:
        checked = 0
        for param in _command(verb).params:
            owners = [model for model in SETTINGS_VERBS[verb] if param.name in model.model_fields]
            if param.param_type_name != "option" or not owners or (verb, param.name) in NOT_SETTINGS:
                continue
            field = owners[0].model_fields[param.name]
            assert param.default is None, f"{verb} --{param.name} declares a default of its own: {param.default!r}"
            assert (field.description or "").rstrip(".") in (param.help or ""), f"{verb} --{param.name}: help is not the field's"
            checked += 1
        assert checked, f"{verb} has no settings option at all"

    def test_limits_reach_the_option(self) -> None:
        (threads,) = [p for p in _command("score").params if p.name == "threads"]
        result = CliRunner().invoke(app, ["score", "m", "d.csv", "--out", "o.csv", "--threads", "0"])
        assert result.exit_code == 2 and "--threads" in result.output
        assert threads.min == 1

    def test_model_and_train_settings_have_distinct_names(self) -> None:
        assert not set(ModelConfig.model_fields) & set(TrainConfig.model_fields)


class TestPrecedence:
    def test_a_value_beats_yaml_beats_the_preset_beats_the_default(self, tmp_path: Path) -> None:
        config = tmp_path / "run.yaml"
        config.write_text("train:\n  lr_heads: 0.002\n  eval_every: 7\n", encoding="utf-8")
        run = RunConfig.resolve("cpu-quick", config, **run_flags(eval_every=9))
        assert run.train.eval_every == 9  # value over YAML (7) over preset (50)
        assert run.train.lr_heads == 0.002  # YAML over preset (1e-3)
        assert run.train.max_steps == 600  # the preset over the default (None)
        assert run.train.weight_decay == TrainConfig.model_fields["weight_decay"].default  # nothing set it
        assert RunConfig.resolve(None).train.eval_every == TrainConfig.model_fields["eval_every"].default

    def test_flat_values_go_to_the_section_that_declares_them_and_none_is_not_given(self) -> None:
        assert run_flags(backbone="tiny", max_steps=3, seed=None) == {"model": {"backbone": "tiny"}, "train": {"max_steps": 3}}

    def test_an_unknown_setting_is_a_configuration_error(self) -> None:
        with pytest.raises(ConfigurationError, match="'lr' is not a run setting"):
            run_flags(lr=0.1)

    def test_a_broken_limit_says_which_setting_in_words(self) -> None:
        with pytest.raises(ConfigurationError, match="batch_size must be at least 1; got 0"):
            ScoreConfig(batch_size=0)


# --------------------------------------------------------------------------- parity: flags, YAML, Python

#: What every path shares (a tiny table needs low minimums), in a YAML file of its own.
BASE = """\
model:
  max_dialogue_tokens: 32
train:
  batch_size: 12
  eval_every: 1
  head_start_steps: 1
  min_train_positives: 1
  min_train_negatives: 1
"""
#: The same run's own settings, as flags, as YAML and as Python values.
FLAGS = ["--backbone", "tiny", "--max-steps", "2", "--seed", "3", "--dtype", "fp32"]
MODEL, TRAIN = {"backbone": "tiny"}, {"max_steps": 2, "seed": 3, "dtype": "fp32"}
FULL = BASE.replace("model:\n", "model:\n  backbone: tiny\n").replace("train:\n", "train:\n  max_steps: 2\n  seed: 3\n  dtype: fp32\n")


@pytest.fixture(scope="module")
def leads(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    folder = tmp_path_factory.mktemp("parity")
    table = simulate(SynthConfig.preset("dense", n=240, seed=5))
    (folder / "base.yaml").write_text(BASE, encoding="utf-8")
    (folder / "full.yaml").write_text(FULL, encoding="utf-8")
    return table, write_table(table, folder / "leads.parquet")


def _manifest(model_dir: Path) -> dict:
    manifest = json.loads((model_dir / "leadrank.json").read_text(encoding="utf-8"))
    manifest["metrics"].pop("train_seconds")
    return manifest


@pytest.mark.parametrize("preset", PRESETS)
def test_the_same_run_as_flags_yaml_and_python_gives_the_same_model(preset: str, leads: tuple[pd.DataFrame, Path], tmp_path: Path) -> None:
    table, data = leads
    base, full = data.parent / "base.yaml", data.parent / "full.yaml"
    assert RunConfig.resolve(preset, base, **run_flags(**MODEL, **TRAIN)) == RunConfig.resolve(preset, full)

    runner = CliRunner()
    reset_accelerate()
    flags = runner.invoke(app, ["train", str(data), "--out", str(tmp_path / "flags"), "--preset", preset, "--config", str(base), *FLAGS])
    assert flags.exit_code == 0, flags.output
    reset_accelerate()
    yaml = runner.invoke(app, ["train", str(data), "--out", str(tmp_path / "yaml"), "--preset", preset, "--config", str(full)])
    assert yaml.exit_code == 0, yaml.output
    reset_accelerate()
    leadrank.train(table, preset=preset, config=base, model=MODEL, training=TRAIN).save(tmp_path / "python")

    expected = _manifest(tmp_path / "flags")
    assert expected["model_config"]["backbone"] == "tiny" and expected["train_config"]["max_steps"] == 2
    assert _manifest(tmp_path / "yaml") == expected
    assert _manifest(tmp_path / "python") == expected
