"""Scoring threads when the machine is shared: 1 vs 2 threads, idle and with one core kept busy.

The Scorer's ``threads`` (``leadrank score --threads``, ``leadrank serve --threads``) is a setting
because on a 2-core machine another busy process can make 2 threads slower than 1: torch's
threads wait for each other at every operation, and one of them waits for the busy core.
This measures it with the cpu-quick recipe (untrained artifact: speed does not depend on the
weights) on the same simulated leads; the busy process is a pure-Python loop (one core).

Run: .venv/bin/python bench/threads.py [--n 200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch
from _common import untrained_artifact
from _machine import header

from leadrank.data.synth import SynthConfig, simulate
from leadrank.inference import Scorer
from leadrank.settings import RunConfig


def leads_per_second(scorer: Scorer, table, threads: int) -> float:
    torch.set_num_threads(threads)
    scorer.raw_scores(table.head(16))  # warm-up at this thread count
    started = time.perf_counter()
    scorer.raw_scores(table)
    return len(table) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    print(header(), flush=True)
    table = simulate(SynthConfig(n=args.n, seed=0))
    scorer = Scorer(untrained_artifact(RunConfig.resolve("cpu-quick").model))
    rows = []
    for load in ("idle", "one core busy"):
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load != "idle" else None
        try:
            rows.append((load, {threads: leads_per_second(scorer, table, threads) for threads in (1, 2)}))
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    print(f"{args.n} simulated leads, cpu-quick recipe, leads/s on {os.cpu_count()} cores\n")
    print("| machine | 1 thread | 2 threads | 2 threads vs 1 |")
    print("|---|---|---|---|")
    for load, speed in rows:
        print(f"| {load} | {speed[1]:.1f} | {speed[2]:.1f} | {speed[2] / speed[1]:.2f}x |")


if __name__ == "__main__":
    main()
