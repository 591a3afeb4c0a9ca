"""leadrank: rank sales leads with an LLM reading CRM fields and dialogue.

The Python API (:mod:`leadrank.api`): ``leadrank.train(table) -> Model``, ``Model.score(table)``,
``Model.evaluate(table)``, ``Model.save(dir)``, ``leadrank.load(dir)`` and the scikit-learn estimator ``LeadRanker``.
They load torch on first use, so ``import leadrank`` (and the command line) stays light.
"""

from typing import Any

from leadrank.config import Feature, FeatureSpec, FunnelSpec, Tier
from leadrank.errors import ConfigurationError, DataContractError, EnvironmentProblem, LeadrankError

__version__ = "0.1.0"
__all__ = [
    "ConfigurationError",
    "DataContractError",
    "EnvironmentProblem",
    "Evaluation",
    "Feature",
    "FeatureSpec",
    "FunnelSpec",
    "LeadRanker",
    "LeadrankError",
    "Model",
    "Tier",
    "__version__",
    "load",
    "train",
]

_API = ("Evaluation", "LeadRanker", "Model", "load", "train")


def __getattr__(name: str) -> Any:
    if name in _API:
        from leadrank import api

        return getattr(api, name)
    raise AttributeError(f"module 'leadrank' has no attribute {name!r}")
