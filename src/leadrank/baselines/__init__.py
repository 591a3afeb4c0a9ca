"""Baselines a practitioner would try first, on the same split and FeatureSpec as the LLM.

deepctr-torch (behind :class:`CTRBaseline`, :class:`FunnelTwoStage` and
:class:`FunnelDirect`) and catboost (behind :class:`CatBoostTextBaseline`) are imported
only when such a model is fitted.
"""

from leadrank.baselines.catboost_text import CatBoostTextBaseline
from leadrank.baselines.ctr import MODELS as CTR_MODELS
from leadrank.baselines.ctr import TUNED as CTR_TUNED
from leadrank.baselines.ctr import CTRBaseline
from leadrank.baselines.funnel_ctr import FunnelDirect, FunnelTwoStage
from leadrank.baselines.gbdt import GBDTBaseline, GBDTConfig, GBDTHPROBaseline
from leadrank.baselines.linear import LogisticBaseline, PairwiseLogisticBaseline
from leadrank.baselines.rules import FunnelRecencyRule

__all__ = [
    "CTR_MODELS",
    "CTR_TUNED",
    "CTRBaseline",
    "CatBoostTextBaseline",
    "FunnelDirect",
    "FunnelRecencyRule",
    "FunnelTwoStage",
    "GBDTBaseline",
    "GBDTConfig",
    "GBDTHPROBaseline",
    "LogisticBaseline",
    "PairwiseLogisticBaseline",
]
