"""The machine a bench result was measured on: every bench script prints :func:`header` first.

So every result under bench/results/ says which CPU, bf16 flags, torch and dtype its numbers
come from (the leadrank rows run in ``dtype='auto'``, the library's default).
"""

from __future__ import annotations

from leadrank.hardware import cpu_info, describe


def header() -> str:
    """Two lines and a blank one: :func:`leadrank.hardware.describe` and the CPU's relevant flags."""
    flags = " ".join(cpu_info()["flags"]) or "none readable"
    return f"machine: {describe()}\nCPU flags: {flags}\n"
