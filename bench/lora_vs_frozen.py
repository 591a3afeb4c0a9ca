"""Why does LoRA on CPU not beat its own frozen reading? Same data, same heads budget, side by side.

The cpu-lora run trains its heads for 120 steps of 16 leads with dropout 0.5 while the LoRA
weights move. This script trains the heads alone on the frozen last-token reading (LoRA's
own reading, without LoRA) with that same budget, and with the budget the frozen rows of
bench/train_quality.py use (600 steps, dropout 0.1). If the frozen reading with LoRA's budget
lands where LoRA does, the gap is the heads' budget, not LoRA.

Run: .venv/bin/python bench/lora_vs_frozen.py [--n 4000] [--seed 0]
(dense simulated leads, the same time split as bench/train_quality.py; the readings are cached)
"""

from __future__ import annotations

import argparse

import pandas as pd

from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.split import time_split
from leadrank.data.synth import SynthConfig, simulate
from leadrank.experiments import Trial, score_row
from leadrank.training import RunConfig

BUDGETS = {
    "cpu-lora heads budget: 120 steps, dropout 0.5": ({"head_dropout": 0.5}, {"max_steps": 120, "eval_every": 40, "patience": 3}),
    "frozen rows' budget: 600 steps, dropout 0.1": ({"head_dropout": 0.1}, {"max_steps": 600, "eval_every": 50, "patience": 4}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    features, funnel = FeatureSpec.nev_default(), FunnelSpec.paper_default()
    split = time_split(simulate(SynthConfig.preset("dense", n=args.n, seed=args.seed)), 0.3)
    rows = []
    for name, (model, train) in BUDGETS.items():
        recipe = RunConfig.resolve("cpu-lora", model={"mode": "frozen", **model}, train={**train, "lr_heads": 1e-3})
        run = Trial(split, features, funnel, args.seed, recipe).asllr({})
        rows.append(score_row(f"frozen last token + HPRO, {name}", split.test[funnel.label_column].to_numpy(), run.pair))
        rows[-1]["steps"] = run.result.steps
        print(rows[-1], flush=True)
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4f"))


if __name__ == "__main__":
    main()
