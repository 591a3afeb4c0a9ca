"""One lead at a time, as a scoring service sees it: cold start, per-lead latency, peak memory.

Each engine runs in a fresh process that loads its model, then scores the same simulated
leads one per call (the load test, bench/load_test.py, measures queueing under many clients):

- leadrank, cpu-quick recipe: ``Scorer.score`` on a one-row table (prompt, tokens, SmolLM2 read
  to layer 15, heads) from a saved artifact, as ``leadrank serve`` does for a lone request;
- leadrank, full model: the same with the final layer's last token (the paper's reading);
- llama.cpp: prompt processing of the same prompt on the BF16 GGUF (full model, tokenising
  included), the same work as the full-model row without the heads.

Artifacts are untrained (latency does not depend on the weights).

Run: .venv/bin/python bench/service_latency.py [--leads 50] [--threads 2] [--skip-llama-cpp]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _llamacpp
import numpy as np

# leadrank (and with it torch) is imported inside the functions that need it, so that the
# llama.cpp process carries only what a llama.cpp service would: its memory is llama.cpp's own.


def child(engine: str, model: Path, leads: Path, threads: int) -> None:
    """Load, score each lead alone, print one JSON line: load seconds, latencies, peak RSS."""
    started = time.perf_counter()
    if engine == "llama.cpp":
        prompts = json.loads(leads.with_suffix(".prompts.json").read_text())
        llama = _llamacpp.load(model, threads, context=1024)
        loaded, count = time.perf_counter(), len(prompts)
        score_one = lambda i: _llamacpp.read_prompt(llama, llama.tokenize(prompts[i].encode(), add_bos=False, special=True))  # noqa: E731
    else:
        from leadrank import artifact as artifacts
        from leadrank.data.io import read_table
        from leadrank.inference import Scorer
        from leadrank.settings import ScoreConfig

        table = read_table(leads)
        scorer = Scorer(artifacts.load(model), ScoreConfig(threads=threads))
        loaded, count = time.perf_counter(), len(table)
        score_one = lambda i: scorer.score(table.iloc[[i]])  # noqa: E731
    score_one(0)  # first call: lazy initialisation, counted as start-up
    first = time.perf_counter()
    latencies = []
    for i in range(count):
        begun = time.perf_counter()
        score_one(i)
        latencies.append(time.perf_counter() - begun)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"load_s": loaded - started, "first_s": first - loaded, "latencies": latencies, "peak_rss_kb": rss_kb}))


def run_child(engine: str, model: Path, leads: Path, threads: int) -> dict:
    command = [sys.executable, __file__, "--child", engine, "--model", str(model), "--leads-file", str(leads), "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{engine} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-llama-cpp", action="store_true", help="Leave out the llama.cpp row.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--leads-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.model, args.leads_file, args.threads)
    from _common import untrained_artifact
    from _machine import header

    from leadrank import artifact as artifacts
    from leadrank.data.io import read_table, write_table
    from leadrank.data.prompt import build_prompts
    from leadrank.data.synth import SynthConfig, simulate
    from leadrank.settings import RunConfig

    print(header(), flush=True)
    quick = RunConfig.resolve("cpu-quick").model
    engines = {
        "leadrank, cpu-quick (layer 15 mean)": quick,
        "leadrank, full model (last token)": quick.model_copy(update={"pooling": "last", "pool_layer": -1}),
    }
    with tempfile.TemporaryDirectory(prefix="leadrank-latency-") as scratch:
        folder = Path(scratch)
        leads = write_table(simulate(SynthConfig(n=args.leads, seed=1)), folder / "leads.parquet")
        models = {
            name: artifacts.save(untrained_artifact(config), folder / f"model{i}") for i, (name, config) in enumerate(engines.items())
        }
        if not args.skip_llama_cpp:
            artifact = artifacts.load(models["leadrank, full model (last token)"])
            prompts = build_prompts(read_table(leads), artifact.features, artifact.tokenizer, quick.max_dialogue_tokens)
            leads.with_suffix(".prompts.json").write_text(json.dumps(prompts))
            models["llama.cpp BF16 GGUF (full model)"] = _llamacpp.bf16_gguf()
        results = {}
        for name, model in models.items():
            engine = "llama.cpp" if name.startswith("llama.cpp") else "leadrank"
            results[name] = run_child(engine, model, leads, args.threads)
            print(f"{name}: done", file=sys.stderr, flush=True)
    print(f"{args.leads} simulated leads scored one per call, {args.threads} threads, each engine in a fresh process\n")
    print("| engine | load (s) | first call (s) | p50 latency (ms) | p95 latency (ms) | peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        p50, p95 = np.percentile(np.array(r["latencies"]) * 1000, [50, 95])
        print(f"| {name} | {r['load_s']:.2f} | {r['first_s']:.2f} | {p50:.0f} | {p95:.0f} | {r['peak_rss_kb'] / 1024:,.0f} |")


if __name__ == "__main__":
    main()
