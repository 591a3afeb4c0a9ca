"""Does LoRA on CPU beat its own frozen reading? Same data, same heads budget, side by side.

Each budget trains the heads on the frozen last-token reading (LoRA's own reading, without
LoRA); ``--lora-steps N`` adds the pair that answers the question: LoRA and its frozen reading
with the same N steps of 16 leads, head dropout 0.1 and learning rates. ``--head-start-steps K``
starts LoRA from heads trained K steps on the frozen reading (the frozen row then has K steps):
probe, then fine-tune. The first two rows show
why the cpu-lora preset's 120 steps with dropout 0.5 say little: the heads are under-trained.

Run: .venv/bin/python bench/lora_vs_frozen.py [--n 4000] [--seed 0] [--lora-steps 300] [--head-start-steps 300]
(dense simulated leads, the same time split as bench/train_quality.py; frozen readings are cached;
a LoRA step takes about 8 s on 2 cores)
"""

from __future__ import annotations

import argparse

import pandas as pd
from _machine import header

from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.split import time_split
from leadrank.data.synth import SynthConfig, simulate
from leadrank.experiments import Trial, score_row
from leadrank.settings import RunConfig


def budgets(lora_steps: int | None, head_start_steps: int) -> dict[str, tuple[str, dict, dict]]:
    """name -> (mode, model overrides, train overrides)."""
    rows = {
        "frozen, cpu-lora heads budget: 120 steps, dropout 0.5": (
            "frozen",
            {"head_dropout": 0.5},
            {"max_steps": 120, "eval_every": 40, "patience": 3},
        ),
        "frozen, 600 steps, dropout 0.1": ("frozen", {"head_dropout": 0.1}, {"max_steps": 600, "eval_every": 50, "patience": 4}),
    }
    if lora_steps:
        budget = {"eval_every": 50, "patience": 4, "checkpoint_every": 50}
        frozen_steps = head_start_steps or lora_steps
        rows[f"frozen, {frozen_steps} steps, dropout 0.1"] = ("frozen", {"head_dropout": 0.1}, budget | {"max_steps": frozen_steps})
        start = f" after those {head_start_steps} frozen head steps" if head_start_steps else ""
        lora = budget | {"max_steps": lora_steps, "head_start_steps": head_start_steps}
        rows[f"LoRA, {lora_steps} steps{start}, dropout 0.1"] = ("lora", {"head_dropout": 0.1}, lora)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lora-steps", type=int, default=None, help="Add LoRA and frozen rows with this many steps.")
    parser.add_argument(
        "--head-start-steps", type=int, default=0, help="LoRA starts from heads trained this many steps on the frozen reading."
    )
    args = parser.parse_args()
    print(header(), flush=True)
    features, funnel = FeatureSpec.nev_default(), FunnelSpec.paper_default()
    split = time_split(simulate(SynthConfig.preset("dense", n=args.n, seed=args.seed)), 0.3)
    labels = split.test[funnel.label_column].to_numpy()
    rows = []
    for name, (mode, model, train) in budgets(args.lora_steps, args.head_start_steps).items():
        recipe = RunConfig.resolve("cpu-lora", model={"mode": mode, **model}, train={**train, "lr_heads": 1e-3})
        run = Trial(split, features, funnel, args.seed, recipe).asllr({})
        rows.append(score_row(f"{name} + HPRO", labels, run.pair))
        rows[-1].update(steps=run.result.steps, best_step=run.result.best_step, minutes=run.seconds / 60)
        print(rows[-1], flush=True)
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4f"))


if __name__ == "__main__":
    main()
