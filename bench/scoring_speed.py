"""Scoring speed: leadrank's scorer vs a naive Hugging Face loop, side by side in one run.

Both read the same simulated leads with the embedded SmolLM2-135M (an untrained asLLR, so
no training is needed: speed does not depend on the weights).

- naive: fp32, every batch padded to the longest prompt of the set, batch 16, full
  ``model(**batch).logits`` (the LM head over every position), as a first attempt would do;
- leadrank: ``Scorer.raw_scores`` (length-sorted batches with a token cap, bf16 where the
  CPU has it, inference mode, no LM head).

Also prints the machine's measured fp32 and bf16 matmul GFLOP/s and the scorer's achieved
GFLOP/s (2 x non-embedding parameters x tokens / s) against that peak.

Run: .venv/bin/python bench/scoring_speed.py [--n 2000] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.prompt import DEFAULT_TEMPLATE, build_prompts
from leadrank.data.synth import SynthConfig, simulate
from leadrank.artifact import Artifact
from leadrank.inference import ScoreConfig, Scorer
from leadrank.model.asllr import ASLLR, ModelConfig, answer_token_ids
from leadrank.model.backbone import load_backbone
from leadrank.model.inputs import tokenize


def matmul_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-dialogue-tokens", type=int, default=96)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    features, funnel = FeatureSpec.nev_default(), FunnelSpec.paper_default()
    table = simulate(SynthConfig(n=args.n, seed=0))
    config = ModelConfig(mode="frozen", max_dialogue_tokens=args.max_dialogue_tokens)

    naive_backbone = load_backbone("smollm2-135m")
    tokenizer = naive_backbone.tokenizer
    token_ids = tokenize(tokenizer, build_prompts(table, features, tokenizer, args.max_dialogue_tokens))
    tokens = sum(len(t) for t in token_ids)
    width = max(len(t) for t in token_ids)
    non_embedding = sum(p.numel() for n, p in naive_backbone.model.named_parameters() if "embed" not in n)
    naive_seconds = naive(naive_backbone.model.eval(), token_ids, tokenizer.pad_token_id)

    backbone = load_backbone("smollm2-135m")
    model = ASLLR(backbone.model, config, answer_token_ids(tokenizer, DEFAULT_TEMPLATE))
    artifact = Artifact(
        model=model, tokenizer=tokenizer, features=features, funnel=funnel, model_config=config,
        template=DEFAULT_TEMPLATE, backbone_reference="smollm2-135m", backbone_checksum=backbone.checksum,
        rank_by="point", score_stats={}, train_config={}, metrics={},
    )
    scorer = Scorer(artifact, ScoreConfig(threads=args.threads))
    scorer.raw_scores(table.head(32))  # warm-up
    started = time.perf_counter()
    scorer.raw_scores(table)
    ours_seconds = time.perf_counter() - started

    fp32, bf16 = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
    achieved = 2 * non_embedding * tokens / ours_seconds / 1e9
    print(f"{args.n} leads, {tokens:,} prompt tokens (mean {tokens / args.n:.0f}, max {width}), {args.threads} threads")
    print(f"matmul peak: fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s")
    print("| scorer | seconds | tokens/s | leads/s | speed-up |")
    print("|---|---|---|---|---|")
    print(f"| naive HF fp32, fixed padding, batch 16 | {naive_seconds:.1f} | {tokens / naive_seconds:,.0f} | {args.n / naive_seconds:.1f} | 1.00x |")
    print(f"| leadrank Scorer ({str(scorer.dtype).removeprefix('torch.')}) | {ours_seconds:.1f} | {tokens / ours_seconds:,.0f} | {args.n / ours_seconds:.1f} | {naive_seconds / ours_seconds:.2f}x |")
    print(f"leadrank achieved {achieved:.0f} GFLOP/s = {achieved / bf16:.0%} of the measured bf16 matmul peak ({non_embedding / 1e6:.0f}M non-embedding parameters)")


if __name__ == "__main__":
    main()
