"""What this machine computes fast, and the dtype to run the model in.

``accelerate.utils.is_bf16_available()`` is True on any CPU, but bf16 is only fast where the
CPU has bf16 instructions (AVX512_BF16 or AMX). Elsewhere torch emulates it: on an AVX-512
Xeon without AVX512_BF16, a bf16 matmul ran 7.1 GFLOP/s against 27.1 in fp32 (one thread),
about 4x slower. :func:`resolve_dtype` picks bf16 only where it is native.
"""

from __future__ import annotations

import json
import os
import platform
import time
import warnings
from functools import lru_cache
from pathlib import Path

import torch

from leadrank.settings import DTYPES


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads for torch from here on (None: leave torch's default)."""
    if threads is not None:
        torch.set_num_threads(threads)


# Flags worth recording next to a speed measurement; the first two make bf16 native.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
RELEVANT_FLAGS = (*NATIVE_BF16_FLAGS, "amx_tile", "amx_int8", "avx512_vnni", "avx512f", "avx2", "fma")

_CPUINFO = Path("/proc/cpuinfo")
_MEASUREMENT_FILE = "hardware.json"


def parse_cpuinfo(text: str) -> tuple[str | None, frozenset[str] | None]:
    """The model name and flags of the first processor in ``/proc/cpuinfo`` text.

    Either is None where the text does not have it (ARM kernels, for instance, write
    ``Features`` rather than ``flags``, with other names).
    """
    model = flags = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip() or None
        elif key == "flags" and flags is None:
            flags = frozenset(value.split())
        if model is not None and flags is not None:
            break
    return model, flags


@lru_cache(maxsize=1)
def _read_cpuinfo() -> tuple[str | None, frozenset[str] | None]:
    try:
        return parse_cpuinfo(_CPUINFO.read_text())
    except OSError:  # not Linux
        return None, None


def _cpu_model() -> str:
    return _read_cpuinfo()[0] or platform.processor() or platform.machine() or "unknown CPU"


def _visible_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_info() -> dict:
    """CPU model, its relevant flags (empty where unreadable), visible cores, torch version and threads."""
    flags = _read_cpuinfo()[1] or frozenset()
    return {
        "model": _cpu_model(),
        "flags": [flag for flag in RELEVANT_FLAGS if flag in flags],
        "cores": _visible_cores(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


@lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether bf16 runs in hardware here, so that it is faster than fp32.

    On CUDA: the GPU supports bf16 without emulation. On a CPU: it has AVX512_BF16 or AMX_BF16;
    where the flags cannot be read, a one-off matmul measurement decides (bf16 faster than
    fp32), kept in the leadrank cache for this CPU model.
    """
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported(including_emulation=False)
    flags = _read_cpuinfo()[1]
    if flags is not None:
        return any(flag in flags for flag in NATIVE_BF16_FLAGS)
    return _measured_native_bf16()


def _measured_native_bf16() -> bool:
    from leadrank.model.backbone import cache_dir  # transformers: kept out of a plain `import leadrank.hardware`

    path = cache_dir() / _MEASUREMENT_FILE
    try:
        measured = json.loads(path.read_text())
    except (OSError, ValueError):
        measured = {}
    model = _cpu_model()
    if model not in measured:
        fp32, bf16 = _matmul_gflops(torch.float32), _matmul_gflops(torch.bfloat16)
        measured[model] = {"fp32_gflops": round(fp32, 1), "bf16_gflops": round(bf16, 1), "native_bf16": bf16 > fp32}
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps(measured, indent=2))
        os.replace(partial, path)
    return measured[model]["native_bf16"]


def _matmul_gflops(dtype: torch.dtype, size: int = 512, repeats: int = 5) -> float:
    """The best of ``repeats`` timings of one ``size``-cube matmul, after a warm-up."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def resolve_dtype(choice: str) -> torch.dtype:
    """``'auto'``: bf16 where :func:`native_bf16`, else fp32; ``'fp32'`` and ``'bf16'`` as asked.

    A forced ``'bf16'`` without native bf16 is obeyed, with a warning that it will be slow.
    """
    if choice not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {choice!r}.")
    if choice == "fp32":
        return torch.float32
    if choice == "bf16":
        if not native_bf16():
            warnings.warn(
                "bf16 was asked for on hardware without native bf16 (no AVX512_BF16 or AMX on this CPU): torch "
                "emulates it, measured ~4x slower than fp32 on such a CPU. Use 'auto' or 'fp32' for speed.",
                RuntimeWarning,
                stacklevel=2,
            )
        return torch.bfloat16
    return torch.bfloat16 if native_bf16() else torch.float32


def describe(dtype: str = "auto") -> str:
    """One line for a benchmark header: CPU, cores, bf16 flags, torch, and what ``dtype`` resolves to."""
    info = cpu_info()
    parts = [info["model"], f"{info['cores']} cores"]
    if torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name()}")
    if _read_cpuinfo()[1] is None:
        parts.append("CPU flags unreadable")
    else:
        parts += [f"{flag}: {'yes' if flag in info['flags'] else 'no'}" for flag in NATIVE_BF16_FLAGS]
    resolved = {torch.bfloat16: "bf16", torch.float32: "fp32"}[resolve_dtype(dtype)]
    parts += [f"torch {info['torch']}", f"{info['threads']} threads", f"dtype {dtype} -> {resolved}"]
    return ", ".join(parts)
