"""How fast the simulator is: leads per second at 100k leads, one core.

Run: OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python bench/synth_speed.py
"""

from __future__ import annotations

import time

from _machine import header

from leadrank.data.synth import SynthConfig, simulate


def main() -> None:
    print(header(), flush=True)
    for n in (10_000, 100_000):
        started = time.perf_counter()
        table = simulate(SynthConfig(n=n, seed=0))
        elapsed = time.perf_counter() - started
        print(f"{n:>7,} leads: {elapsed:5.1f} s ({n / elapsed:,.0f} leads/s), label rate {table['label'].mean():.2%}")


if __name__ == "__main__":
    main()
