"""Is the simulator hard enough that reading the dialogue matters? (issue: foundation)

For several seeds of 50k leads with the default preset, on the 70/30 time split:
positive rate, oracle AUC, LightGBM on tabular columns, LightGBM on tabular + TF-IDF.
Run: .venv/bin/python bench/simulator_difficulty.py [--n 50000] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse

import pandas as pd
from _machine import header

from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.split import time_split
from leadrank.data.synth import SynthConfig, simulate
from leadrank.experiments import compare_baselines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    print(header(), flush=True)
    features, funnel = FeatureSpec.nev_default(), FunnelSpec.paper_default()
    rows = []
    for seed in args.seeds:
        table = simulate(SynthConfig(n=args.n, seed=seed))
        results = compare_baselines(time_split(table, 0.3), features, funnel, seed=seed).set_index("model")["auc"]
        rows.append(
            {
                "seed": seed,
                "positive rate": float(table["label"].mean()),
                "oracle AUC": float(results["oracle (true propensity)"]),
                "LGBM tabular": float(results["LightGBM tabular"]),
                "LGBM tab+TF-IDF": float(results["LightGBM tabular + TF-IDF"]),
            }
        )
        print(rows[-1], flush=True)
    frame = pd.DataFrame(rows).set_index("seed")
    frame.loc["mean"] = frame.mean()
    frame["oracle - tabular"] = frame["oracle AUC"] - frame["LGBM tabular"]
    frame["oracle - tab+TF-IDF"] = frame["oracle AUC"] - frame["LGBM tab+TF-IDF"]
    print(frame.round(4).to_string())


if __name__ == "__main__":
    main()
