"""Scaling of `leadrank score`: wall time and peak memory at 1k, 4k and 16k leads.

Saves an untrained cpu-quick artifact (speed does not depend on the weights), simulates the
largest table once and writes its first N rows as Parquet files, then runs the real command,
``leadrank score MODEL LEADS.parquet --out SCORES.parquet``, in a fresh process per size and
reads that process's wall time and peak resident memory. Scoring streams the table in chunks
of 5,000 rows, so time should grow linearly with leads and memory should stay flat.

Run: .venv/bin/python bench/scaling.py [--sizes 1000,4000,16000] [--threads 2]
(about 7 leads/s on 2 idle cores: the default sizes take ~50 min)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import untrained_artifact
from _machine import header

from leadrank import artifact as artifacts
from leadrank.data.io import write_table
from leadrank.data.synth import SynthConfig, simulate
from leadrank.settings import RunConfig

# Runs the CLI in this process and reports its own peak RSS (Linux: kilobytes) on the last line.
CHILD = """
import json, resource, sys
from leadrank.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    print(json.dumps({"peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def score_in_fresh_process(model: Path, leads: Path, out: Path, threads: int) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one ``leadrank score`` run."""
    command = [sys.executable, "-c", CHILD, "score", str(model), str(leads), "--out", str(out), "--threads", str(threads)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"leadrank score failed on {leads}:\n{done.stderr[-2000:]}")
    peak_kb = json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_kb"]
    return seconds, peak_kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,4000,16000", help="Comma-separated lead counts, smallest first.")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    print(header(), flush=True)
    with tempfile.TemporaryDirectory(prefix="leadrank-scaling-") as scratch:
        folder = Path(scratch)
        model = artifacts.save(untrained_artifact(RunConfig.resolve("cpu-quick").model), folder / "model")
        table = simulate(SynthConfig(n=sizes[-1], seed=0))
        rows = []
        for size in sizes:
            leads = write_table(table.head(size), folder / f"leads_{size}.parquet")
            seconds, peak_mb = score_in_fresh_process(model, leads, folder / f"scores_{size}.parquet", args.threads)
            rows.append((size, seconds, peak_mb))
            print(f"{size:,} leads: {seconds:.1f} s, peak RSS {peak_mb:,.0f} MB", file=sys.stderr, flush=True)
    slope, intercept = np.polyfit([r[0] for r in rows], [r[1] for r in rows], 1)
    print(f"`leadrank score`, cpu-quick recipe (SmolLM2 read to layer 15), {args.threads} threads, simulated leads\n")
    print("| leads | seconds | seconds per 1,000 leads | peak RSS (MB) | time vs smallest | leads vs smallest |")
    print("|---|---|---|---|---|---|")
    for size, seconds, peak_mb in rows:
        print(
            f"| {size:,} | {seconds:.1f} | {seconds / size * 1000:.1f} | {peak_mb:,.0f} "
            f"| {seconds / rows[0][1]:.2f}x | {size / rows[0][0]:.0f}x |"
        )
    worst = max(abs(seconds - (slope * size + intercept)) / seconds for size, seconds, _ in rows)
    print(
        f"\nlinear fit: {1 / slope:.1f} leads/s after a fixed {intercept:.1f} s (load, start-up); "
        f"largest deviation from the line {worst:.1%}"
    )
    print(f"peak RSS: {min(r[2] for r in rows):,.0f} to {max(r[2] for r in rows):,.0f} MB")


if __name__ == "__main__":
    main()
