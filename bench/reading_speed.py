"""The frozen reading's cost: the whole prompt (the paper) vs the dialogue only, same leads, same run.

``reading: prompt`` serialises the CRM fields and the dialogue into one prompt;
``reading: dialogue`` leaves the fields out of the prompt (they reach the heads as the side
input) and does not run the model at all for a lead without dialogue. Both read with the
cpu-quick recipe otherwise (frozen SmolLM2-135M, mean of layer 15, 96 dialogue tokens), through
``Scorer.raw_scores`` (what ``leadrank score`` runs), untrained heads (speed does not depend
on the weights), on simulated leads of the default (1.4 %) preset.

Run: .venv/bin/python bench/reading_speed.py [--n 400] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import untrained_artifact
from _machine import header

from leadrank.data.synth import SynthConfig, simulate
from leadrank.inference import Scorer
from leadrank.model.inputs import tokenize
from leadrank.settings import RunConfig

READINGS = {
    "whole prompt (the paper's reading)": {"reading": "prompt", "side_input": False},
    "dialogue only + side input (cpu-quick)": {"reading": "dialogue", "side_input": True},
}


def measure(model_overrides: dict, table) -> dict[str, float]:
    config = RunConfig.resolve("cpu-quick", model=model_overrides).model
    scorer = Scorer(untrained_artifact(config, table))
    inputs = scorer.inputs(table)
    tokens = sum(len(ids) for ids in tokenize(scorer.artifact.tokenizer, inputs.prompts))
    scorer.raw_scores(table.head(16))  # warm-up
    started = time.perf_counter()
    scorer.raw_scores(table)
    seconds = time.perf_counter() - started
    read = sum(bool(p) for p in inputs.prompts)
    return {"leads/s": len(table) / seconds, "tokens/lead": tokens / len(table), "read": read / len(table)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(header(), flush=True)
    torch.set_num_threads(args.threads)
    table = simulate(SynthConfig.preset("default", n=args.n, seed=0))
    results = {name: measure(overrides, table) for name, overrides in READINGS.items()}
    base = results[next(iter(READINGS))]["leads/s"]
    print(f"{args.n} simulated leads (default preset), {args.threads} threads, frozen cpu-quick reading\n")
    print("| reading | leads read by the LLM | tokens per lead | leads/s | vs whole prompt |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['read']:.0%} | {r['tokens/lead']:.0f} | {r['leads/s']:.1f} | {r['leads/s'] / base:.2f}x |")


if __name__ == "__main__":
    main()
