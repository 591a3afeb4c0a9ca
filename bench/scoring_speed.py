"""Scoring speed: leadrank's scorer vs a naive Hugging Face loop, side by side in one run.

Both read the same simulated leads with the embedded SmolLM2-135M (an untrained asLLR, so
no training is needed: speed does not depend on the weights).

- naive: fp32, every batch padded to the longest prompt of the set, batch 16, full
  ``model(**batch).logits`` (the LM head over every position), as a first attempt would do;
- leadrank: ``Scorer.raw_scores`` (length-sorted batches with a token cap, bf16 where the
  CPU has native bf16, fp32 elsewhere: ``leadrank.hardware.resolve_dtype('auto')``; inference
  mode, no LM head);
- llama.cpp: llama-cpp-python's prompt processing (one prompt per call, the same token ids)
  on a BF16 GGUF converted from the shipped Q4_1 file, its fastest format on this CPU.

Also prints the machine's measured fp32 and bf16 matmul GFLOP/s and the scorer's achieved
GFLOP/s (2 x non-embedding parameters x tokens / s) against the peak of the dtype it ran in.

Run: .venv/bin/python bench/scoring_speed.py [--n 2000] [--threads 2] [--skip-llama-cpp]
(llama.cpp needs ``pip install -e '.[bench]'``, see bench/_llamacpp.py)
"""

from __future__ import annotations

import argparse
import time

import _llamacpp
import torch
from _common import linear_layers_gflops, matmul_gflops, untrained_artifact
from _machine import header

from leadrank.config import FeatureSpec
from leadrank.data.prompt import build_prompts
from leadrank.data.synth import SynthConfig, simulate
from leadrank.inference import Scorer
from leadrank.model.backbone import load_backbone
from leadrank.model.inputs import tokenize
from leadrank.settings import ModelConfig, ScoreConfig


@torch.inference_mode()
def naive(model, token_ids: list[list[int]], pad_id: int, batch_size: int = 16) -> float:
    width = max(len(t) for t in token_ids)
    started = time.perf_counter()
    for start in range(0, len(token_ids), batch_size):
        rows = token_ids[start : start + batch_size]
        ids = torch.full((len(rows), width), pad_id)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row) :], mask[i, width - len(row) :] = torch.tensor(row), 1
        model(input_ids=ids, attention_mask=mask).logits
    return time.perf_counter() - started


def llama_cpp(token_ids: list[list[int]], threads: int) -> float:
    model = _llamacpp.load(_llamacpp.bf16_gguf(), threads, context=max(len(t) for t in token_ids))
    _llamacpp.read_prompt(model, token_ids[0])  # warm-up
    started = time.perf_counter()
    for row in token_ids:
        _llamacpp.read_prompt(model, row)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-dialogue-tokens", type=int, default=96)
    parser.add_argument("--skip-llama-cpp", action="store_true", help="Leave out the llama.cpp row.")
    args = parser.parse_args()
    if not args.skip_llama_cpp:
        _llamacpp.require_llama_cpp()
    torch.set_num_threads(args.threads)
    print(header(), flush=True)
    features = FeatureSpec.nev_default()
    table = simulate(SynthConfig(n=args.n, seed=0))
    config = ModelConfig(mode="frozen", max_dialogue_tokens=args.max_dialogue_tokens)

    naive_backbone = load_backbone("smollm2-135m")
    tokenizer = naive_backbone.tokenizer
    token_ids = tokenize(tokenizer, build_prompts(table, features, tokenizer, args.max_dialogue_tokens))
    tokens = sum(len(t) for t in token_ids)
    width = max(len(t) for t in token_ids)
    non_embedding = sum(p.numel() for n, p in naive_backbone.model.named_parameters() if "embed" not in n)
    naive_seconds = naive(naive_backbone.model.eval(), token_ids, tokenizer.pad_token_id)

    scorer = Scorer(untrained_artifact(config), ScoreConfig(threads=args.threads))
    scorer.raw_scores(table.head(32))  # warm-up
    started = time.perf_counter()
    scorer.raw_scores(table)
    ours_seconds = time.perf_counter() - started
    llama_seconds = None if args.skip_llama_cpp else llama_cpp(token_ids, args.threads)

    peaks = {torch.float32: matmul_gflops(torch.float32), torch.bfloat16: matmul_gflops(torch.bfloat16)}
    dtype = {torch.float32: "fp32", torch.bfloat16: "bf16"}[scorer.dtype]
    rows_per_batch = min(scorer.config.max_batch_tokens or tokens, scorer.config.batch_size * tokens // args.n)
    own_shapes = linear_layers_gflops(naive_backbone.model.model, rows_per_batch, scorer.dtype)
    achieved = 2 * non_embedding * tokens / ours_seconds / 1e9
    print(f"{args.n} leads, {tokens:,} prompt tokens (mean {tokens / args.n:.0f}, max {width}), {args.threads} threads")
    print(f"matmul peak: fp32 {peaks[torch.float32]:.0f} GFLOP/s, bf16 {peaks[torch.bfloat16]:.0f} GFLOP/s")
    rows = {"naive HF fp32, fixed padding, batch 16": naive_seconds}
    if llama_seconds is not None:
        rows["llama.cpp BF16 GGUF, one prompt per call"] = llama_seconds
    rows[f"leadrank Scorer ({str(scorer.dtype).removeprefix('torch.')})"] = ours_seconds
    print("| scorer | seconds | tokens/s | leads/s | leadrank is faster by |")
    print("|---|---|---|---|---|")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds:.1f} | {tokens / seconds:,.0f} | {args.n / seconds:.1f} | {seconds / ours_seconds:.2f}x |")
    print(
        f"leadrank achieved {achieved:.0f} GFLOP/s = {achieved / peaks[scorer.dtype]:.0%} of the measured {dtype} matmul peak "
        f"({non_embedding / 1e6:.0f}M non-embedding parameters)"
    )
    print(
        f"the model's own linear layers alone, {dtype}, {rows_per_batch:,} tokens at once: {own_shapes:.0f} GFLOP/s; "
        f"leadrank reaches {achieved / own_shapes:.0%} of that"
    )


if __name__ == "__main__":
    main()
