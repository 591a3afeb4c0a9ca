"""What the LLM should read on a CPU: the whole prompt (the paper) or the dialogue only, with and without the side input.

Three cpu-quick variants (frozen SmolLM2-135M, mean of layer 15, 96 dialogue tokens, heads
trained with BCE + HPRO on the paper's tiers, ranked as the model chooses on its validation
slice), the same leads and split, next to logistic regression and LightGBM:

- whole prompt, no side input: the paper's reading (the CRM fields serialised as text);
- whole prompt + side input: the same reading, the fields also reach the heads encoded;
- dialogue only + side input: the fields reach the heads encoded, the LLM reads the dialogue.

Each reading is cached on disk, so a rerun costs the training only.

Run: .venv/bin/python bench/reading_choice.py [--n 4000] [--seed 0] [--preset dense]
"""

from __future__ import annotations

import argparse
import time

from _machine import header

from leadrank import artifact as artifacts
from leadrank.baselines import LogisticBaseline
from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.split import time_split
from leadrank.data.synth import SynthConfig, simulate
from leadrank.experiments import compare_baselines, score_row
from leadrank.inference import Scorer
from leadrank.settings import RunConfig
from leadrank.training import train

VARIANTS = {
    "asLLR, whole prompt, no side input (the paper's reading)": {"reading": "prompt", "side_input": False},
    "asLLR, whole prompt + side input": {"reading": "prompt", "side_input": True},
    "asLLR, dialogue only + side input": {"reading": "dialogue", "side_input": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="dense", help="simulator preset: dense (10 %% positives) or default (1.4 %%)")
    args = parser.parse_args()
    print(header(), flush=True)
    features, funnel = FeatureSpec.nev_default(), FunnelSpec.paper_default()
    split = time_split(simulate(SynthConfig.preset(args.preset, n=args.n, seed=args.seed)), 0.3)
    labels = split.test[funnel.label_column].to_numpy()
    print(f"{args.n} {args.preset} leads, seed {args.seed}\n{split.summary()}\n", flush=True)
    rows = [score_row("Logistic regression", labels, LogisticBaseline(features).fit(split.train).predict(split.test))]
    rows += compare_baselines(split, features, funnel, seed=args.seed).to_dict("records")
    for name, model in VARIANTS.items():
        started = time.perf_counter()
        run = RunConfig.resolve("cpu-quick", model=model, train={"seed": args.seed})
        result = train(split.train, features, funnel, run.model, run.train)
        artifact = artifacts.from_training(result)
        scores = Scorer(artifact, reading_cache=True).score(split.test)["rank_score"].to_numpy()
        rows.append(score_row(f"{name}, rank by {artifact.rank_by}", labels, scores) | {"minutes": (time.perf_counter() - started) / 60})
        print(f"{rows[-1]['model']}: AUC {rows[-1]['auc']:.4f} ({rows[-1]['minutes']:.1f} min)", flush=True)
    print("\n| model | AUC | P@1 % | P@5 % | minutes (reading included, first run) |")
    print("|---|---|---|---|---|")
    for row in rows:
        minutes = f"{row['minutes']:.1f}" if "minutes" in row else ""
        print(f"| {row['model']} | {row['auc']:.4f} | {row['p@1%']:.1%} | {row['p@5%']:.1%} | {minutes} |")


if __name__ == "__main__":
    main()
