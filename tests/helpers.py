"""Shared test helpers (not tests)."""

from accelerate.state import AcceleratorState, GradientState


def reset_accelerate() -> None:
    """Accelerate keeps process-wide singletons; every training run in a test starts clean."""
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
