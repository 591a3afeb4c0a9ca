"""Does the frozen LLM reading add to the best funnel-supervised models? (target (b) of the sparse regime)

On one simulated set at the 1.4 % preset (the demo's by default: 14,000 leads, seed 0, time
split 70/30), the two strongest families (logistic regression on tabular + TF-IDF, LightGBM on
tabular + TF-IDF), each without and with the funnel tiers (HPRO), each without and with the
cpu-quick reading of the dialogue (frozen SmolLM2-135M, mean of the middle layer, PCA to 16
dimensions fitted on the training part) as extra inputs. The reading comes from the disk
cache when `leadrank demo` (or an earlier run) read these leads; otherwise it is read once.
Each row is the mean over model seeds; "+ reading" rows also print the paired bootstrap
difference to the same model without it (seed 0), over the test leads.

Run: .venv/bin/python bench/reading_transfer.py [--n 14000] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _machine import header

from leadrank.baselines import GBDTHPROBaseline, PairwiseLogisticBaseline
from leadrank.baselines.gbdt import GBDTBaseline, GBDTConfig
from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.split import time_split
from leadrank.data.synth import SynthConfig, simulate
from leadrank.experiments import Trial
from leadrank.metrics import auc, bootstrap_difference, precision_at
from leadrank.settings import RunConfig


def fit_predict(name: str, trial: Trial, extra: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    features, funnel, seed = trial.features, trial.funnel, trial.seed
    train_extra, test_extra = (None, None) if extra is None else extra
    if name.startswith("LR"):
        model = PairwiseLogisticBaseline(features, funnel, hpro_weight=1.0 if "HPRO" in name else 0.0, seed=seed)
    elif "HPRO" in name:
        model = GBDTHPROBaseline(features, funnel, use_dialogue=True, config=GBDTConfig(seed=seed))
    else:
        model = GBDTBaseline(features, label_column=funnel.label_column, use_dialogue=True, config=GBDTConfig(seed=seed))
    model.fit(trial.split.train, extra=train_extra)
    return model.predict(trial.split.test, extra=test_extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=14_000)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(header())
    features, funnel = FeatureSpec.nev_default(), FunnelSpec.paper_default()
    split = time_split(simulate(SynthConfig.preset("default", n=args.n, seed=0)), 0.3)
    recipe = RunConfig.resolve("cpu-quick")
    labels = split.test[funnel.label_column].to_numpy(int)
    started = time.perf_counter()
    base = Trial(split, features, funnel, 0, recipe)
    text, reading = base.tfidf_svd(), base.embedding("frozen")
    print(
        f"{args.n:,} leads, test {len(labels):,} with {labels.sum()} positives; TF-IDF SVD and reading ready in "
        f"{time.perf_counter() - started:.0f} s (reading: PCA-{reading[0].shape[1]})\n"
    )
    with_reading = (np.hstack([text[0], reading[0]]), np.hstack([text[1], reading[1]]))
    # the logistic regression reads the TF-IDF as SVD dimensions (extra inputs); LightGBM reads its own TF-IDF n-grams
    inputs = {"LR": {"": text, " + reading": with_reading}, "LightGBM": {"": None, " + reading": reading}}
    print("| model (tabular + TF-IDF) | AUC | P@1 % | P@5 % | + reading minus without, AUC (95 % interval, seed 0) |")
    print("|---|---|---|---|---|")
    for family in ("LR", "LR + HPRO (paper tiers)", "LightGBM", "LightGBM + HPRO (paper tiers)"):
        first: dict[str, np.ndarray] = {}
        for suffix, extra in inputs[family.split(" ")[0]].items():
            runs = []
            for seed in seeds:
                trial = Trial(split, features, funnel, seed, recipe)
                runs.append(fit_predict(family, trial, extra))
            first[suffix] = runs[0]
            row = [
                np.mean([metric(labels, r) for r in runs])
                for metric in (auc, lambda y, s: precision_at(y, s, 0.01), lambda y, s: precision_at(y, s, 0.05))
            ]
            gain = ""
            if suffix:
                d, low, high = bootstrap_difference(labels, first[suffix], first[""], "auc")
                gain = f"{d:+.4f} ({low:+.4f} to {high:+.4f})"
            print(f"| {family}{suffix} | {row[0]:.4f} | {row[1]:.1%} | {row[2]:.1%} | {gain} |")
    print(f"\n{len(seeds)} model seeds; done in {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
