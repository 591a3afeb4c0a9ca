"""Baselines a practitioner would try first, on the same split and FeatureSpec as the LLM."""

from leadrank.baselines.gbdt import GBDTBaseline, GBDTConfig

__all__ = ["GBDTBaseline", "GBDTConfig"]
