"""leadrank: rank sales leads with an LLM reading CRM fields and dialogue."""

from leadrank.config import Feature, FeatureSpec, FunnelSpec, Tier

__version__ = "0.1.0"
__all__ = ["Feature", "FeatureSpec", "FunnelSpec", "Tier", "__version__"]
