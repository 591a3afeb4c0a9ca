"""Train asLLR + HPRO: one loop for CPU, one GPU and many (Accelerate).

Modes share the loop: in ``lora`` mode a step runs the backbone with LoRA on a batch of
prompts; in ``frozen`` mode the backbone reads every prompt once (cached on disk) and the
step trains the heads on those states. Losses: alpha*BCE + lambda1*HPRO + lambda2*CE.

Checkpoints go through Accelerate's ``save_state``/``load_state`` (optimizer and RNG states,
read back ``weights_only``) beside the trainable weights as safetensors and the loop state as
JSON; ``resume=True`` continues from the last one to the same result as an uninterrupted run.
Every optimizer step's loss parts (and each validation) are logged: :attr:`TrainResult.log`,
saved as ``metrics.jsonl`` in the model folder and sent to the accelerator's trackers.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator, PartialState
from accelerate.logging import get_logger
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.minimums import check_minimums
from leadrank.data.schema import label_values, validate
from leadrank.data.split import check_no_leakage, validation_slice
from leadrank.encoding import SideEncoder
from leadrank.errors import EnvironmentProblem
from leadrank.funnel import FunnelBatchSampler, funnel_pairs, label_pairs, tier_membership
from leadrank.hardware import resolve_dtype, set_threads
from leadrank.losses import LearnedMargins, answer_ce, bce_loss, preference_loss
from leadrank.metrics import auc
from leadrank.model.asllr import ASLLR, answer_token_ids
from leadrank.model.backbone import Backbone, load_backbone
from leadrank.model.frozen import FeatureCache
from leadrank.model.inputs import collate, tokenize
from leadrank.model.reader import LeadInputs, LeadReader
from leadrank.settings import ModelConfig, TrainConfig

logger = get_logger(__name__)


@dataclass
class TrainResult:
    """A trained model with everything :func:`leadrank.artifact.from_training` needs to package it."""

    model: ASLLR
    backbone: Backbone
    features: FeatureSpec
    funnel: FunnelSpec
    model_config: ModelConfig
    train_config: TrainConfig
    history: list[dict[str, float]] = field(default_factory=list)  # one row per validation
    log: list[dict[str, float]] = field(default_factory=list)  # one row per optimizer step: the model folder's metrics.jsonl
    best_step: int = 0
    best_val_auc: float = float("nan")
    steps: int = 0
    seconds: float = 0.0
    val_labels: np.ndarray = field(default_factory=lambda: np.zeros(0))
    val_point: np.ndarray = field(default_factory=lambda: np.zeros(0))  # pointwise logits of the returned model
    val_pair: np.ndarray = field(default_factory=lambda: np.zeros(0))  # pairwise scores of the returned model
    margins: list[float] = field(default_factory=list)  # tier margins at the end (learned ones when learn_margins)
    side_encoder: SideEncoder | None = None  # the heads' side input, fitted on the training part


@dataclass
class _Data:
    """One part of the table, ready for the loop."""

    labels: torch.Tensor
    membership: torch.Tensor
    inputs: LeadInputs  # prompts and side input, as the scorer builds them
    token_ids: list[list[int]]  # lora mode only (frozen mode tokenizes just the leads the cache misses)
    pad_id: int
    has_text: torch.Tensor  # (rows,) bool: the lead has text for the language model to read
    side: torch.Tensor | None = None  # (rows, side width) the heads' side input
    features: torch.Tensor | None = None  # frozen mode: pooled states (zeros where there is no text)


def train(
    table: pd.DataFrame,
    features: FeatureSpec,
    funnel: FunnelSpec,
    model_config: ModelConfig,
    config: TrainConfig,
    *,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    progress: Callable[[dict[str, float]], None] | None = None,
    accelerator: Accelerator | None = None,
) -> TrainResult:
    """Train on a labelled table; the most recent ``val_fraction`` of it validates and stops early.

    ``accelerator``: run under the caller's :class:`~accelerate.Accelerator` (its device,
    processes and trackers: with ``log_with="mlflow"`` and ``init_trackers`` called, every
    logged row of :attr:`TrainResult.log` goes to MLflow too). Pass one that has prepared
    nothing else: its checkpoints hold what it prepared. Default: one built here.
    """
    validate(table, features, funnel)
    check_no_leakage(features.input_columns, funnel.supervision_columns)
    check_minimums(table, funnel.label_column, min_positives=config.min_train_positives, min_negatives=config.min_train_negatives)
    set_threads(config.threads)
    # bf16 autocast is applied here, not through Accelerate's process-wide mixed-precision state,
    # so runs with different settings can share a process.
    tracking = accelerator is None and config.log_with is not None
    if config.log_with is not None and tracking:
        _check_tracker(config.log_with)
    accelerator = accelerator or Accelerator(
        cpu=_cpu_only(),
        gradient_accumulation_steps=config.grad_accum_steps,
        # without HPRO the pairwise head gets no gradient; DDP must be told
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=config.hpro_weight == 0)],
        log_with=config.log_with,
    )
    set_seed(config.seed)
    started = time.perf_counter()
    backbone = load_backbone(model_config.backbone)
    if tracking:
        accelerator.init_trackers("leadrank", config=_flat_settings(model_config, config, backbone))
    run = _Run(table, features, funnel, model_config, config, backbone, accelerator)
    result = run.fit(checkpoint_dir, resume, progress)
    result.seconds = time.perf_counter() - started
    if tracking:
        accelerator.end_training()
    return result


def _check_tracker(name: str) -> None:
    """A clear error, before any work, when the tracker's package is not installed."""
    import importlib.util

    if importlib.util.find_spec(name) is None:
        raise EnvironmentProblem(f"log_with={name!r} needs the {name} package; install it with: pip install 'leadrank[{name}]'")


def _flat_settings(model_config: ModelConfig, config: TrainConfig, backbone: Backbone) -> dict[str, str | int | float | bool]:
    """The run's settings as flat tracker parameters: ``model.<field>``, ``train.<field>``, ``backbone.checksum``."""
    flat: dict[str, str | int | float | bool] = {"backbone.checksum": backbone.checksum}
    for section, values in (("model", model_config.model_dump(mode="json")), ("train", config.model_dump(mode="json"))):
        for key, value in values.items():
            flat[f"{section}.{key}"] = value if isinstance(value, (str, int, float, bool)) else json.dumps(value)
    return flat


@dataclass
class _Run:
    """One training run on an already validated table and a loaded backbone."""

    table: pd.DataFrame
    features: FeatureSpec
    funnel: FunnelSpec
    model_config: ModelConfig
    config: TrainConfig
    backbone: Backbone
    accelerator: Accelerator

    def fit(self, checkpoint_dir: Path | None, resume: bool, progress: Callable[[dict[str, float]], None] | None) -> TrainResult:
        model_config, config, funnel, accelerator = self.model_config, self.config, self.funnel, self.accelerator
        saved = _latest_checkpoint(checkpoint_dir) if resume and checkpoint_dir is not None else None
        head_start = model_config.mode == "lora" and config.head_start_steps > 0 and saved is None  # a checkpoint holds the heads
        start_heads = self._heads_fitted_on_frozen_reading() if head_start else None
        bf16 = resolve_dtype(config.dtype) == torch.bfloat16
        dtype = torch.bfloat16 if bf16 else torch.float32
        split = validation_slice(self.table, config.val_fraction)
        side_encoder = SideEncoder(self.features).fit(split.train) if model_config.side_input else None
        side_width = side_encoder.width if side_encoder is not None else 0
        tokenizer = self.backbone.tokenizer
        model = ASLLR(self.backbone.model, model_config, answer_token_ids(tokenizer, model_config.prompt), side_width)
        if start_heads is not None:
            model.heads.load_state_dict(start_heads)
        if config.gradient_checkpointing and model_config.mode == "lora":
            model.causal_lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        frozen = model_config.mode == "frozen"
        reader = LeadReader(
            model,
            tokenizer,
            self.features,
            side_encoder=side_encoder,
            cache=FeatureCache.for_model(model, self.backbone.checksum, dtype) if frozen else None,
            batch_size=config.feature_batch_size,
            dtype=dtype,
        )
        train_data = _prepare(split.train, funnel, reader, frozen, tokenizer)
        val_data = _prepare(split.test, funnel, reader, frozen, tokenizer)
        if frozen:
            model.to(accelerator.device)
            # one process per machine reads the leads into the disk cache first; the others then find them there
            with accelerator.local_main_process_first():
                for part in (train_data, val_data):
                    part.features = _read_frozen(reader, part, accelerator.is_main_process)

        sampler = FunnelBatchSampler(
            train_data.labels.numpy(),
            train_data.membership.numpy(),
            config.batch_size,
            min_positives=config.min_positives,
            seed=config.seed,
            num_replicas=accelerator.num_processes,
            rank=accelerator.process_index,
        )
        steps_per_epoch = max(1, len(sampler) // config.grad_accum_steps)
        total_steps = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
        if config.learn_margins and funnel.tiers:
            model.margins = LearnedMargins([t.margin for t in funnel.tiers])
        heads, lora = model.trainable_groups()
        groups = [{"params": heads, "lr": config.lr_heads}]
        if lora:
            groups.append({"params": lora, "lr": config.lr_heads * config.lora_lr_ratio})
        optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config, total_steps))
        model, optimizer = accelerator.prepare(model, optimizer)
        margins = torch.tensor([t.margin for t in funnel.tiers], dtype=torch.float32)

        core = accelerator.unwrap_model(model)
        state = _LoopState()
        if saved is not None:
            state = _load_checkpoint(saved, accelerator, core, scheduler)
            logger.info(f"Resumed from step {state.step} in {saved}", main_process_only=True)

        autocast = torch.autocast(accelerator.device.type, dtype=torch.bfloat16, enabled=bf16)
        if head_start:
            with autocast:  # the starting point is a candidate too: the run returns nothing worse than its heads
                _validate_and_track(reader, val_data, config, state, accelerator)
        model.train()
        own_bar = None
        if progress is None:  # without a caller's display, a bar of its own: training is never silent
            own_bar = progress = _step_bar(f"training ({model_config.mode})", total_steps, show=accelerator.is_main_process)
        while state.step < total_steps and not state.stopped:
            sampler.set_epoch(state.epoch)
            batches = list(sampler)
            for micro, batch in enumerate(batches):
                if micro < state.micro_done:
                    continue  # already trained on before the resume
                with accelerator.accumulate(model):
                    with autocast:
                        tier_margins = margins if core.margins is None else core.margins()
                        loss, parts = _step_loss(model, core, train_data, batch, tier_margins, funnel, config, accelerator)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(heads + lora, config.max_grad_norm)
                    optimizer.step()
                    if accelerator.sync_gradients:
                        scheduler.step()
                    optimizer.zero_grad()
                state.micro_done = micro + 1
                if not accelerator.sync_gradients:
                    continue
                state.step += 1
                parts = _mean_over_processes(parts, accelerator)
                parts |= {"step": state.step, "total_steps": total_steps, "lr": scheduler.get_last_lr()[0]}
                if state.step % config.eval_every == 0 or state.step == total_steps:
                    with autocast:
                        _validate_and_track(reader, val_data, config, state, accelerator)
                    parts |= {key: value for key, value in state.history[-1].items() if key != "step"}
                state.log.append({key: parts[key] for key in parts if key != "total_steps"})
                accelerator.log(state.log[-1], step=state.step)
                if progress is not None and accelerator.is_main_process:
                    progress(parts)
                finishing = state.step >= total_steps or state.stopped
                if checkpoint_dir is not None and (state.step % config.checkpoint_every == 0 or finishing):
                    _save_checkpoint(checkpoint_dir, accelerator, core, scheduler, state)
                if finishing:
                    break
            else:
                state.epoch += 1
                state.micro_done = 0

        if own_bar is not None:
            own_bar({"done": True})
        if state.best_weights is not None:
            core.load_state_dict(state.best_weights, strict=False)
        with autocast:
            val_point, val_pair = _val_outputs(reader, val_data)
        core.eval()
        return TrainResult(
            model=core,
            backbone=self.backbone,
            features=self.features,
            funnel=funnel,
            model_config=model_config,
            train_config=config,
            history=state.history,
            log=state.log,
            best_step=state.best_step,
            best_val_auc=state.best_val_auc,
            steps=state.step,
            val_labels=val_data.labels.numpy(),
            val_point=val_point,
            val_pair=val_pair,
            margins=(core.margins() if core.margins is not None else margins).tolist(),
            side_encoder=side_encoder,
        )

    def _heads_fitted_on_frozen_reading(self) -> dict[str, torch.Tensor]:
        """Head weights trained for ``head_start_steps`` on the backbone's frozen reading of the table.

        LoRA's B matrices start at zero, so at its first step the LoRA model reads leads exactly as
        the frozen backbone does: heads fitted on that reading are where fine-tuning can start.
        The probe reads with the loaded backbone before LoRA wraps it, and its model and optimizer
        are released from the accelerator after, so checkpoints hold the LoRA run alone.
        """
        probe = replace(
            self,
            model_config=self.model_config.model_copy(update={"mode": "frozen"}),
            config=self.config.model_copy(update={"head_start_steps": 0, "max_steps": self.config.head_start_steps}),
        ).fit(None, False, None)
        heads = {k: v.detach().clone() for k, v in probe.model.heads.state_dict().items()}
        self.accelerator.free_memory()
        return heads


def _step_bar(description: str, total: int, *, show: bool) -> Callable[[dict[str, float]], None]:
    """A tqdm bar of optimizer steps, fed the loop's ``parts``; ``{"done": True}`` closes it."""
    bar = tqdm(total=total, desc=description, unit="step", disable=not show, leave=False)

    def update(parts: dict[str, float]) -> None:
        if parts.get("done"):
            bar.close()
            return
        bar.update(int(parts["step"]) - bar.n)
        bar.set_postfix({k: f"{parts[k]:.3f}" for k in ("loss", "val_auc") if k in parts}, refresh=False)

    return update


def _read_frozen(reader: LeadReader, data: _Data, show: bool) -> torch.Tensor:
    """Pooled states of every row: read (or found in the cache) for leads with text, zeros for the rest."""
    with tqdm(total=int(data.has_text.sum()), desc="reading leads (frozen, cached)", unit="lead", disable=not show, leave=False) as bar:
        return reader.pooled(data.inputs.prompts, progress=bar.update)


def _cpu_only() -> bool:
    """No GPU: Accelerate then needs cpu=True to run several processes (torchrun, gloo)."""
    return not torch.cuda.is_available()


def process_state() -> PartialState:
    """This process's place in a (possibly multi-process) run; the same on CPU and GPU."""
    return PartialState(cpu=_cpu_only())


def _prepare(frame: pd.DataFrame, funnel: FunnelSpec, reader: LeadReader, frozen: bool, tokenizer) -> _Data:
    inputs = reader.inputs(frame)
    return _Data(
        labels=torch.tensor(label_values(frame[funnel.label_column]), dtype=torch.float32),
        membership=torch.as_tensor(tier_membership(frame, funnel)),
        inputs=inputs,
        token_ids=[] if frozen else tokenize(tokenizer, inputs.prompts),
        pad_id=tokenizer.pad_token_id,
        has_text=inputs.has_text,
        side=None if inputs.side is None else torch.from_numpy(inputs.side),
    )


def _schedule(config: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """Linear warmup to the peak, then exponential decay to ``final_lr_fraction`` at the last step."""
    warmup = min(config.warmup_steps, max(total_steps - 1, 0))
    decay_steps = max(total_steps - warmup, 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return config.final_lr_fraction ** (min(step - warmup, decay_steps) / decay_steps)

    return factor


def _forward(model, core: ASLLR, data: _Data, batch: list[int], device: torch.device):
    """(point logits, pair scores, answer logits or None, rows of ``batch`` they belong to or None = all)."""
    side = None if data.side is None else data.side[batch].to(device)
    has_text = data.has_text[batch].to(device)
    if data.features is not None:
        out = model(pooled=data.features[batch].to(device), side=side, has_text=has_text)
    else:
        input_ids, attention_mask = collate([data.token_ids[i] for i in batch], data.pad_id)
        out = model(input_ids.to(device), attention_mask.to(device), side=side, has_text=has_text)
    return out.point_logits, out.pair_scores, out.answer_logits, out.read_rows


def _step_loss(model, core: ASLLR, data: _Data, batch: list[int], margins, funnel: FunnelSpec, config: TrainConfig, accelerator):
    device = accelerator.device
    point, pair, answer_logits, read_rows = _forward(model, core, data, batch, device)
    labels = data.labels[batch].to(device)
    weights = config.loss_weights
    bce = bce_loss(point, labels)
    loss = weights.bce * bce
    parts = {"bce": bce.item()}
    if weights.hpro > 0:
        pairs = funnel_pairs(data.membership[batch], margins) if funnel.tiers else label_pairs(labels.cpu())
        hpro, stats = preference_loss(pair, pairs, max(len(funnel.tiers), 1))
        loss = loss + weights.hpro * hpro
        parts["hpro"] = hpro.item()
        names = [t.name for t in funnel.tiers] or ["label"]
        for t, name in enumerate(names):
            parts[f"pairs_{name}"] = stats["pairs"][t].item()
            parts[f"acc_{name}"] = stats["accuracy"][t].item()
    if answer_logits is not None and weights.ce > 0:
        ce = answer_ce(answer_logits, labels if read_rows is None else labels[read_rows], *core.answer_ids)
        loss = loss + weights.ce * ce
        parts["ce"] = ce.item()
    parts["loss"] = loss.item()
    return loss, parts


@dataclass
class _LoopState:
    step: int = 0
    epoch: int = 0
    micro_done: int = 0
    best_val_auc: float = float("-inf")
    best_step: int = 0
    evals_without_gain: int = 0
    stopped: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    log: list[dict[str, float]] = field(default_factory=list)
    best_weights: dict[str, torch.Tensor] | None = None


def _val_outputs(reader: LeadReader, data: _Data) -> tuple[np.ndarray, np.ndarray]:
    """(point logits, pair scores) of every row of ``data`` through the scorer's reader."""
    if data.features is not None:  # frozen: the states were read once, before the loop
        return reader.heads_on(data.features, data.inputs)
    return reader.head_outputs(data.inputs)


def _validate_and_track(reader: LeadReader, data: _Data, config: TrainConfig, state: _LoopState, accelerator: Accelerator) -> None:
    points, pairs = _val_outputs(reader, data)
    core = reader.model
    labels = data.labels.numpy()
    both_classes = 0 < labels.sum() < len(labels)
    point_auc = auc(labels, points) if both_classes else float("nan")
    pair_auc = auc(labels, pairs) if both_classes else float("nan")
    val_auc = pair_auc if config.hpro_weight > 0 else point_auc
    state.history.append({"step": state.step, "val_auc": val_auc, "val_auc_point": point_auc, "val_auc_pair": pair_auc})
    if not math.isnan(val_auc) and val_auc > state.best_val_auc:
        state.best_val_auc, state.best_step, state.evals_without_gain = val_auc, state.step, 0
        state.best_weights = {k: v.detach().clone() for k, v in _trainable_state(core).items()}
    else:
        state.evals_without_gain += 1
        state.stopped = state.evals_without_gain >= config.patience


def _mean_over_processes(parts: dict[str, float], accelerator: Accelerator) -> dict[str, float]:
    """The step's loss parts averaged over processes (pair counts summed): the same on every process."""
    if accelerator.num_processes == 1:
        return parts
    names = sorted(parts)
    values = accelerator.reduce(torch.tensor([parts[n] for n in names], dtype=torch.float64, device=accelerator.device), "sum")
    total = values.cpu().tolist()
    return {n: v if n.startswith("pairs_") else v / accelerator.num_processes for n, v in zip(names, total, strict=True)}


def _trainable_state(core: ASLLR) -> dict[str, torch.Tensor]:
    names = {id(p): n for n, p in core.named_parameters()}
    heads, lora = core.trainable_groups()
    return {names[id(p)]: p for p in heads + lora}


def _save_checkpoint(folder: Path, accelerator: Accelerator, core: ASLLR, scheduler, state: _LoopState) -> None:
    """Accelerate's ``save_state`` (optimizer, every process's RNG) plus the trainable weights and the
    loop state, written to a staging folder that is swapped in when complete.

    The trainable weights (heads, LoRA) are safetensors of their own: the frozen backbone is never
    copied, and Accelerate's model files are left out by the hooks of :func:`_weights_apart`.
    """
    staging = folder.with_name(folder.name + ".tmp")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    with _weights_apart(accelerator):
        accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    save_file({k: v.detach().cpu().contiguous() for k, v in _trainable_state(core).items()}, str(staging / "trainable.safetensors"))
    if state.best_weights is not None:
        save_file({k: v.cpu().contiguous() for k, v in state.best_weights.items()}, str(staging / "best.safetensors"))
    meta = {
        "step": state.step,
        "epoch": state.epoch,
        "micro_done": state.micro_done,
        "best_val_auc": state.best_val_auc,
        "best_step": state.best_step,
        "evals_without_gain": state.evals_without_gain,
        "stopped": state.stopped,
        "history": state.history,
        "log": state.log,
        "scheduler": scheduler.state_dict()["last_epoch"],
    }
    (staging / "state.json").write_text(json.dumps(meta), encoding="utf-8")  # written last: a folder with it is complete
    previous = folder.with_name(folder.name + ".old")
    shutil.rmtree(previous, ignore_errors=True)
    if folder.exists():
        folder.rename(previous)
    staging.rename(folder)
    shutil.rmtree(previous, ignore_errors=True)


@contextlib.contextmanager
def _weights_apart(accelerator: Accelerator) -> Iterator[None]:
    """Inside, Accelerate's ``save_state``/``load_state`` skip the model weights (saved and loaded by us)."""
    handles = [
        accelerator.register_save_state_pre_hook(lambda models, weights, output_dir: weights.clear()),
        accelerator.register_load_state_pre_hook(lambda models, input_dir: models.clear()),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint to resume from; a run killed between the two renames of a save left ``.old``."""
    for candidate in (folder, folder.with_name(folder.name + ".old")):
        if (candidate / "state.json").exists():
            return candidate
    return None


def _load_checkpoint(folder: Path, accelerator: Accelerator, core: ASLLR, scheduler) -> _LoopState:
    """Restore a :func:`_save_checkpoint` folder: Accelerate's ``load_state`` (which reads tensors only,
    ``weights_only``), then our weights and the loop state."""
    meta = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    with _weights_apart(accelerator):
        accelerator.load_state(str(folder))
    core.load_state_dict(load_file(str(folder / "trainable.safetensors")), strict=False)
    scheduler.last_epoch = meta["scheduler"]
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]
    best = folder / "best.safetensors"
    return _LoopState(
        step=meta["step"],
        epoch=meta["epoch"],
        micro_done=meta["micro_done"],
        best_val_auc=meta["best_val_auc"],
        best_step=meta["best_step"],
        evals_without_gain=meta["evals_without_gain"],
        stopped=meta["stopped"],
        history=meta["history"],
        log=meta["log"],
        best_weights=load_file(str(best)) if best.exists() else None,
    )
