"""Every run setting, declared once: what the model is, how it trains, scores and serves, and how the CRM grades.

Each field carries its default, its limits and its description; the command line builds its
options from them (``leadrank.cli._common.setting``), a YAML recipe sets them by name and
the Python API takes them as keyword arguments, and :meth:`RunConfig.resolve` is the one place
where a preset, a YAML file and explicit values meet (later wins: value > YAML > preset > default).
This module imports no torch, so ``leadrank --help`` stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from leadrank.config import PRESETS, Settings, YamlModel
from leadrank.data.prompt import PromptTemplate
from leadrank.errors import ConfigurationError

if TYPE_CHECKING:
    from leadrank.losses import LossWeights

Dtype = Literal["auto", "fp32", "bf16"]
DTYPES: tuple[str, ...] = get_args(Dtype)
RankBy = Literal["pair", "point", "blend"]

#: The precision setting of training and scoring, declared once (with its help).
DtypeSetting = Annotated[
    Dtype,
    Field(
        description="'auto' (bf16 where the CPU has native bf16 instructions, AVX512_BF16 or AMX, or on a bf16 GPU; fp32 elsewhere), "
        "'fp32' or 'bf16'. Forced bf16 on a CPU without them runs ~4x slower than fp32."
    ),
]
#: The CPU threads setting of training and scoring, declared once (with its help).
ThreadsSetting = Annotated[
    int | None,
    Field(ge=1, description="CPU threads for the model (with other jobs running, 1 can beat 2); null: torch's default."),
]


class ModelConfig(BaseModel):
    """What the model is: backbone, adaptation mode, pooling, LoRA and head shapes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # backbone
    backbone: str = Field(default="smollm2-135m", description="'smollm2-135m', 'tiny', or a local Hugging Face causal-LM folder.")
    mode: Literal["lora", "frozen"] = Field(
        default="lora", description="'lora': fine-tune (the paper); 'frozen': heads on cached hidden states."
    )
    # what the model reads
    reading: Literal["prompt", "dialogue"] = Field(
        default="prompt",
        description="'prompt': the CRM fields and the dialogue as text (the paper); 'dialogue': the dialogue only "
        "(far fewer tokens; a lead without dialogue is not read at all), the fields reach the heads as the side input.",
    )
    side_input: bool = Field(
        default=False, description="The heads also read the lead's tabular encoding (fitted on the training part, saved with the model)."
    )
    prompt: PromptTemplate = Field(default_factory=PromptTemplate, description="The prompt's instruction, question and answer words.")
    # reading the lead
    pooling: Literal["last", "mean"] = Field(default="last", description="'last': last token (the paper); 'mean': mean over tokens.")
    pool_layer: int | Literal["middle"] = Field(
        default=-1,
        description="Hidden-state layer the heads read: 0 = embeddings, -1 = final, 'middle' = half the backbone's depth "
        "(rounded down: 15 of SmolLM2's 30, 1 of the tiny test model's 2), so one preset fits every backbone.",
    )
    max_dialogue_tokens: int = Field(default=256, ge=0, description="Dialogue token budget; the newest turns are kept.")
    # LoRA
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    lora_targets: tuple[str, ...] = Field(default=("q_proj", "k_proj", "v_proj", "o_proj"), description="Module names that get LoRA.")
    lora_top_layers: int | None = Field(
        default=None, ge=1, description="Put LoRA only in the top N layers (cheaper backward on CPU); null = all layers."
    )
    # heads
    head_hidden: int = Field(default=128, ge=1)
    head_dropout: float = Field(default=0.5, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.reading == "dialogue" and not self.side_input:
            raise ValueError(
                "reading='dialogue' leaves the CRM fields out of the prompt, so without the side input the model would "
                "never see them; set side_input: true (or reading: prompt)."
            )
        if self.mode == "lora" and self.pool_layer != -1:
            raise ValueError(
                f"mode='lora' trains through the final layer but pool_layer={self.pool_layer}; use pool_layer=-1 with LoRA "
                f"(on the command line: --preset cpu-lora or --preset paper), or mode='frozen'."
            )
        return self


class TrainConfig(BaseModel):
    """How to train: batches, learning rates and schedule, loss weights, stopping, checkpoints."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # batches
    batch_size: int = Field(default=16, ge=2, description="Leads per batch per process (pairs are built inside a batch).")
    grad_accum_steps: int = Field(default=1, ge=1)
    min_positives: int = Field(default=2, ge=1, description="Positives guaranteed in every batch.")
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many optimizer steps (overrides epochs).")
    # optimisation
    lr_heads: float = Field(default=5e-5, gt=0, description="Learning rate of the heads (the paper: 5e-5).")
    lora_lr_ratio: float = Field(default=0.05, gt=0, description="LoRA learning rate as a share of lr_heads (the paper: 1/20).")
    head_start_steps: int = Field(
        default=0,
        ge=0,
        description="LoRA mode: first train the heads alone this many steps on the frozen reading (cached), then LoRA "
        "and heads from there (probe, then fine-tune); 0 = LoRA starts with fresh heads.",
    )
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_steps: int = Field(default=10, ge=0)
    final_lr_fraction: float = Field(default=0.1, gt=0, le=1, description="Exponential decay to this share of the peak by the last step.")
    max_grad_norm: float = Field(default=1.0, gt=0)
    # losses
    bce_weight: float = Field(default=2.0, ge=0)
    hpro_weight: float = Field(default=1.0, ge=0, description="0 disables HPRO (the ablation 'asLLR without HPRO').")
    ce_weight: float = Field(default=0.5, ge=0)
    learn_margins: bool = Field(default=False, description="Train the tier margins too (non-negative, order kept); the margins study.")
    # minimum data (checked before any model is loaded)
    min_train_positives: int = Field(
        default=100, ge=1, description="Refuse to train on a table with fewer positives (lower it for experiments only)."
    )
    min_train_negatives: int = Field(
        default=100, ge=1, description="Refuse to train on a table with fewer negatives (lower it for experiments only)."
    )
    # validation and stopping
    val_fraction: float = Field(default=0.1, gt=0, lt=0.5, description="Most recent share of the training table used to validate.")
    eval_every: int = Field(default=50, ge=1, description="Validate every N optimizer steps.")
    patience: int = Field(default=3, ge=1, description="Stop after N validations without improvement.")
    # machinery
    checkpoint_every: int = Field(default=100, ge=1)
    seed: int = 0
    dtype: DtypeSetting = "auto"
    gradient_checkpointing: bool = False
    threads: ThreadsSetting = None
    feature_batch_size: int = Field(default=16, ge=1, description="Leads per batch when reading them (the frozen reading, validation).")
    log_with: Literal["mlflow"] | None = Field(
        default=None,
        description="Also log the run (settings, every step's losses, validation) to MLflow through Accelerate's trackers; "
        "needs the 'mlflow' extra; where to: MLFLOW_TRACKING_URI (a server URL, or file:./mlruns with MLFLOW_ALLOW_FILE_STORE=true), "
        "the experiment: MLFLOW_EXPERIMENT_NAME "
        "(default 'leadrank').",
    )

    @property
    def loss_weights(self) -> LossWeights:
        from leadrank.losses import LossWeights

        return LossWeights(bce=self.bce_weight, hpro=self.hpro_weight, ce=self.ce_weight)


class RunConfig(YamlModel):
    """A whole recipe: the model and how to train it (``configs/presets/*.yaml``)."""

    file_error = ConfigurationError

    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @classmethod
    def resolve(cls, preset: str | None = None, config_file: Path | None = None, **overrides: dict) -> RunConfig:
        """Preset, then a YAML file, then explicit overrides (``model={...}``, ``train={...}``), later wins."""
        merged: dict = {"model": {}, "train": {}}
        if preset is not None:
            if preset not in PRESETS:
                raise ConfigurationError(f"Unknown preset {preset!r}; choose one of {list(PRESETS)}.")
            _merge(merged, cls._packaged(f"presets/{preset}.yaml").model_dump(exclude_unset=True))
        if config_file is not None:
            _merge(merged, cls.from_yaml(config_file).model_dump(exclude_unset=True))
        _merge(merged, overrides)
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            source = " + ".join(
                part for part in (f"preset {preset}" if preset else "", str(config_file or ""), "options" if overrides else "") if part
            )
            raise ConfigurationError(f"The run configuration ({source or 'defaults'}) is not valid:\n{exc}") from None


def run_flags(**flags: Any) -> dict[str, dict[str, Any]]:
    """Flat settings (``backbone=``, ``max_steps=``; None: not given) as :meth:`RunConfig.resolve`'s
    ``model=`` and ``train=`` sections, each by the model that declares the field."""
    sections: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    for name, value in flags.items():
        if value is None:
            continue
        section = "model" if name in ModelConfig.model_fields else "train" if name in TrainConfig.model_fields else None
        if section is None:
            raise ConfigurationError(f"{name!r} is not a run setting; the settings are the fields of ModelConfig and TrainConfig.")
        sections[section][name] = value
    return sections


def _merge(into: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


class ScoreConfig(Settings):
    """How to run the scorer; the defaults suit a 2-core CPU and a 135M backbone."""

    batch_size: int = Field(16, ge=1, description="Most leads read in one batch.")
    max_batch_tokens: int | None = Field(8192, ge=1, description="Most padded tokens in one batch; null: no cap.")
    dtype: DtypeSetting = "auto"
    threads: ThreadsSetting = None
    rank_by: RankBy | None = Field(
        None, description="'pair' (HPRO head), 'point' (probability head) or 'blend'; null: the model's choice (its manifest's rank_by)."
    )


#: Environment variable holding the bearer token; unset or empty means no token is needed.
TOKEN_ENV = "LEADRANK_API_TOKEN"


def _token_from_env() -> str | None:
    return os.environ.get(TOKEN_ENV) or None


class ServeSettings(Settings):
    """How the service runs; ``leadrank serve``'s options are these fields."""

    max_batch: int = Field(256, ge=1, description="Most leads in one request, and in one micro-batch of merged requests.")
    max_request_bytes: int = Field(8 * 2**20, ge=1, description="Larger request bodies get 413.")
    max_dialogue_chars: int = Field(
        100_000,
        ge=1,
        description="Most characters in one lead's dialogue; a longer one gets 422 naming the lead. The model reads only "
        "the newest turns that fit its token budget, so clients can send those.",
    )
    batch_wait_ms: float = Field(5.0, ge=0, description="How long the worker waits for more requests to merge into a batch.")
    api_token: str | None = Field(
        default_factory=_token_from_env,
        repr=False,
        description=f"Bearer token required on every endpoint but /health; None: no token. Default: ${TOKEN_ENV}.",
    )
    score: ScoreConfig = Field(ScoreConfig(), description="How the Scorer runs (threads, bf16, rank_by).")


class CrmConfig(YamlModel):
    """Grade cut-offs and the trend tolerance; a YAML file uses the same field names.

    Example YAML::

        grade_a_min_percentile: 95   # A: the top 5 %
        grade_b_min_percentile: 80
        grade_c_min_percentile: 50
        trend_tolerance: 0.01
    """

    file_error = ConfigurationError

    grade_a_min_percentile: float = Field(default=90.0, ge=0, le=100, description="Lowest percentile graded A (90: the top 10 %).")
    grade_b_min_percentile: float = Field(default=70.0, ge=0, le=100, description="Lowest percentile graded B (70: the next 20 %).")
    grade_c_min_percentile: float = Field(
        default=40.0, ge=0, le=100, description="Lowest percentile graded C (40: the next 30 %); below it, D."
    )
    trend_tolerance: float = Field(
        default=0.02, ge=0, lt=1, description="Change of the calibrated probability (absolute; 0.02 = 2 points) still called 'steady'."
    )

    @model_validator(mode="after")
    def _check_order(self) -> Self:
        a, b, c = self.grade_a_min_percentile, self.grade_b_min_percentile, self.grade_c_min_percentile
        if not a >= b >= c:
            raise ValueError(
                f"grade cut-offs must not increase from A to C; got grade_a_min_percentile={a}, "
                f"grade_b_min_percentile={b}, grade_c_min_percentile={c}."
            )
        return self
