"""Fixtures shared by the test modules."""

import pytest

from helpers import reset_accelerate


@pytest.fixture
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A session-wide tmp LEADRANK_CACHE (never ~/.cache) and a clean Accelerate state."""
    monkeypatch.setenv("LEADRANK_CACHE", str(tmp_path_factory.getbasetemp() / "leadrank-cache"))
    reset_accelerate()
