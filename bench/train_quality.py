"""Does asLLR learn on CPU? One time split, side by side (issue: asLLR + HPRO).

Rows: LightGBM on tabular columns (and + TF-IDF), the untrained backbone answering the
prompt's Yes/No question zero-shot, asLLR frozen (heads on cached states), asLLR LoRA with
and without HPRO, and the oracle. Dense simulated preset so that a few thousand leads hold
enough positives to learn from.

Run: .venv/bin/python bench/train_quality.py [--n 4000] [--seed 0] [--lora-steps 120]
     [--skip lora,frozen,...] > bench/results/train_quality.md
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch
from _machine import header

from leadrank import artifact as artifacts
from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.prompt import DEFAULT_TEMPLATE, build_prompts
from leadrank.data.split import time_split
from leadrank.data.synth import SynthConfig, simulate
from leadrank.experiments import compare_baselines, score_row
from leadrank.hardware import resolve_dtype
from leadrank.inference import Scorer
from leadrank.model.asllr import ASLLR, answer_token_ids
from leadrank.model.backbone import load_backbone
from leadrank.model.inputs import collate, length_sorted_batches, tokenize
from leadrank.settings import ModelConfig, RunConfig
from leadrank.training import train


@torch.inference_mode()
def zero_shot(test: pd.DataFrame, features: FeatureSpec, max_dialogue_tokens: int) -> np.ndarray:
    """log P(Yes) - log P(No) of the untrained backbone after "Answer:" (bf16 autocast where the hardware has it natively)."""
    backbone = load_backbone("smollm2-135m")
    yes, no = answer_token_ids(backbone.tokenizer, DEFAULT_TEMPLATE)
    model = ASLLR(backbone.model, ModelConfig(mode="frozen"), (yes, no)).eval()
    prompts = build_prompts(test, features, backbone.tokenizer, max_dialogue_tokens)
    ids = tokenize(backbone.tokenizer, prompts)
    scores = np.zeros(len(ids))
    for batch in length_sorted_batches([len(t) for t in ids], 16):
        input_ids, mask = collate([ids[i] for i in batch], backbone.tokenizer.pad_token_id)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=resolve_dtype("auto") == torch.bfloat16):
            logits = model(input_ids, mask).answer_logits.float()
        scores[batch] = (logits[:, yes] - logits[:, no]).numpy()
    return scores


def asllr_row(name: str, train_part: pd.DataFrame, test: pd.DataFrame, run: RunConfig, features, funnel) -> dict:
    started = time.perf_counter()
    result = train(train_part, features, funnel, run.model, run.train)
    artifact = artifacts.from_training(result)
    scorer = Scorer(artifact)
    point, pair = scorer.raw_scores(test)
    labels = test[funnel.label_column].to_numpy()
    row = score_row(name, labels, pair if run.train.hpro_weight > 0 else point)
    row["auc_point_head"] = score_row("", labels, point)["auc"]
    row["minutes"] = (time.perf_counter() - started) / 60
    row["steps"] = result.steps
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lora-steps", type=int, default=120)
    parser.add_argument("--skip", default="", help="comma-separated: zero_shot,frozen_last,frozen,lora,lora_no_hpro")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    print(header(), flush=True)
    features, funnel = FeatureSpec.nev_default(), FunnelSpec.paper_default()
    table = simulate(SynthConfig.preset("dense", n=args.n, seed=args.seed))
    split = time_split(table, 0.3)
    test, labels = split.test, split.test["label"].to_numpy()
    print(f"{args.n} dense leads, seed {args.seed}: {split.summary()}", flush=True)
    rows = [r for r in compare_baselines(split, features, funnel, seed=args.seed).to_dict("records") if not r["model"].startswith("oracle")]
    for row in rows:
        print(row, flush=True)
    quick = RunConfig.resolve("cpu-lora", train={"max_steps": args.lora_steps, "seed": args.seed})
    if "zero_shot" not in skip:
        started = time.perf_counter()
        rows.append(score_row("SmolLM2 untrained, zero-shot Yes/No", labels, zero_shot(test, features, quick.model.max_dialogue_tokens)))
        rows[-1]["minutes"] = (time.perf_counter() - started) / 60
        print(rows[-1], flush=True)
    if "frozen_last" not in skip:  # the LoRA run's own reading, without LoRA
        frozen_last = RunConfig.resolve(
            "cpu-lora",
            model={"mode": "frozen", "pooling": "last", "head_dropout": 0.1},
            train={"max_steps": 600, "eval_every": 50, "patience": 4, "lr_heads": 1e-3, "seed": args.seed},
        )
        rows.append(asllr_row("asLLR frozen (last token) + HPRO", split.train, test, frozen_last, features, funnel))
        print(rows[-1], flush=True)
    if "frozen" not in skip:
        frozen = RunConfig.resolve(
            "cpu-lora",
            model={"mode": "frozen", "pooling": "mean", "pool_layer": 15, "head_dropout": 0.1},
            train={"max_steps": 600, "eval_every": 50, "patience": 4, "lr_heads": 1e-3, "seed": args.seed},
        )
        rows.append(asllr_row("asLLR frozen (mean of layer 15) + HPRO", split.train, test, frozen, features, funnel))
        print(rows[-1], flush=True)
    if "lora" not in skip:
        rows.append(asllr_row(f"asLLR LoRA cpu-lora + HPRO ({args.lora_steps} steps)", split.train, test, quick, features, funnel))
        print(rows[-1], flush=True)
    if "lora_no_hpro" not in skip:
        no_hpro = RunConfig.resolve("cpu-lora", train={"max_steps": args.lora_steps, "seed": args.seed, "hpro_weight": 0.0})
        rows.append(asllr_row(f"asLLR LoRA cpu-lora, no HPRO ({args.lora_steps} steps)", split.train, test, no_hpro, features, funnel))
        print(rows[-1], flush=True)
    rows.append(score_row("oracle (true propensity)", labels, test["_true_propensity"].to_numpy()))
    frame = pd.DataFrame(rows)
    print(frame.to_markdown(index=False, floatfmt=".4f"))


if __name__ == "__main__":
    main()
