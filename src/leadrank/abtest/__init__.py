"""A/B tests of the call list on the sales floor: assign specialists, size the test, analyse it.

The randomisation unit is the sales specialist, not the lead: a specialist in a treatment arm
works from leadrank's call list, one in ``control`` keeps the current process. Leads handled by
one specialist share that specialist's skill, so they are not independent, and every estimate
here treats the specialist as the unit. One job per module: ``plan`` (blocked randomisation,
balance), ``power`` (minimum detectable effect), ``analysis`` (uplift, bootstrap CIs, cumulative
conversion), ``figures`` (the cumulative figure), ``simulate`` (a simulated test with a known
uplift); ``columns`` holds the column names, constants and shared input checks.
"""

from leadrank.abtest.analysis import BOOTSTRAP_SAMPLES, Analysis, analyze
from leadrank.abtest.columns import BALANCE_COLUMNS, CONFIDENCE, WELCH_TEST, arm_names
from leadrank.abtest.figures import plot_cumulative
from leadrank.abtest.plan import Plan, balance, plan
from leadrank.abtest.power import Power, estimate_power
from leadrank.abtest.simulate import ABSimConfig, simulate_outcomes, simulate_specialists

__all__ = [
    "BALANCE_COLUMNS",
    "BOOTSTRAP_SAMPLES",
    "CONFIDENCE",
    "WELCH_TEST",
    "ABSimConfig",
    "Analysis",
    "Plan",
    "Power",
    "analyze",
    "arm_names",
    "balance",
    "estimate_power",
    "plan",
    "plot_cumulative",
    "simulate_outcomes",
    "simulate_specialists",
]
