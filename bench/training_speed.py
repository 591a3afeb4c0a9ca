"""LoRA training speed: leadrank's loop vs a naive fp32 loop, side by side in one run.

Same leads, same SmolLM2-135M, same batch of 16, same LoRA (r=16 on the attention
projections) and heads. Each variant runs in its own process so its peak RSS is its own.

- naive: fp32, every batch padded to the longest prompt of the set, the full causal-LM
  forward (logits at every position, hidden states of every layer kept), AdamW;
- leadrank: ``leadrank.training.train`` (bf16 autocast where the CPU has native bf16, batches padded
  to their own longest prompt, the LM head only at the answer position);
- leadrank cpu-lora: the same with LoRA in the top 8 layers only (the preset's choice).

Samples/s is measured over the steps after the first (warm-up).
Run: .venv/bin/python bench/training_speed.py [--steps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from _machine import header

N_LEADS = 400
BATCH = 16
DIALOGUE_TOKENS = 96


def _table():
    from leadrank.data.synth import SynthConfig, simulate

    return simulate(SynthConfig.preset("dense", n=N_LEADS, seed=0))


def run_naive(steps: int) -> list[float]:
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model

    from leadrank.config import FeatureSpec
    from leadrank.data.prompt import build_prompts
    from leadrank.model.asllr import ScoringHeads
    from leadrank.model.backbone import load_backbone
    from leadrank.model.inputs import tokenize

    table = _table()
    backbone = load_backbone("smollm2-135m")
    tokenizer = backbone.tokenizer
    ids = tokenize(tokenizer, build_prompts(table, FeatureSpec.nev_default(), tokenizer, DIALOGUE_TOKENS))
    width = max(len(t) for t in ids)
    model = get_peft_model(backbone.model, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    heads = ScoringHeads(backbone.model.config.hidden_size)
    params = [p for p in model.parameters() if p.requires_grad] + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    labels = torch.tensor(table["label"].to_numpy(), dtype=torch.float32)
    times = []
    for step in range(steps):
        started = time.perf_counter()
        rows = list(range(step * BATCH, (step + 1) * BATCH))
        input_ids = torch.full((BATCH, width), tokenizer.pad_token_id)
        mask = torch.zeros((BATCH, width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, width - len(ids[r]) :], mask[i, width - len(ids[r]) :] = torch.tensor(ids[r]), 1
        out = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
        point, pair = heads(out.hidden_states[-1][:, -1])
        loss = 2 * F.binary_cross_entropy_with_logits(point, labels[rows]) + 0.5 * F.cross_entropy(
            out.logits[:, -1], (labels[rows] > 0).long()
        )
        loss = loss + 0.0 * pair.sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - started)
    return times


def run_leadrank(steps: int, top_layers: int | None) -> list[float]:
    from leadrank.config import FeatureSpec, FunnelSpec
    from leadrank.settings import ModelConfig, TrainConfig
    from leadrank.training import train

    stamps = []
    train(
        _table(),
        FeatureSpec.nev_default(),
        FunnelSpec.paper_default(),
        ModelConfig(max_dialogue_tokens=DIALOGUE_TOKENS, lora_top_layers=top_layers),
        TrainConfig(
            batch_size=BATCH,
            max_steps=steps,
            eval_every=10_000,
            checkpoint_every=10_000,
            lr_heads=1e-3,
            min_train_positives=1,
            min_train_negatives=1,
        ),  # a speed run on a small table
        progress=lambda parts: stamps.append(time.perf_counter()),
    )
    return [b - a for a, b in zip(stamps, stamps[1:])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variant", choices=["naive", "leadrank", "cpu-lora"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.variant:
        times = {
            "naive": lambda: run_naive(args.steps),
            "leadrank": lambda: run_leadrank(args.steps, None),
            "cpu-lora": lambda: run_leadrank(args.steps, 8),
        }[args.variant]()
        steady = times[1:] if len(times) > 1 else times
        print(
            json.dumps(
                {
                    "samples_per_s": BATCH * len(steady) / sum(steady),
                    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                }
            )
        )
        return
    print(header(), flush=True)
    results = {}
    for variant in ("naive", "leadrank", "cpu-lora"):
        done = subprocess.run(
            [sys.executable, __file__, "--variant", variant, "--steps", str(args.steps), "--threads", str(args.threads)],
            capture_output=True,
            text=True,
            check=True,
        )
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    base = results["naive"]["samples_per_s"]
    print(f"SmolLM2-135M LoRA r=16, batch {BATCH}, {DIALOGUE_TOKENS}-token dialogue budget, {args.threads} threads, {args.steps} steps")
    print("| loop | samples/s | speed-up | peak RSS (MB) |")
    print("|---|---|---|---|")
    names = {
        "naive": "naive fp32, fixed padding",
        "leadrank": "leadrank (LoRA in all layers)",
        "cpu-lora": "leadrank cpu-lora (LoRA in top 8 layers)",
    }
    for variant, r in results.items():
        print(f"| {names[variant]} | {r['samples_per_s']:.2f} | {r['samples_per_s'] / base:.2f}x | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
