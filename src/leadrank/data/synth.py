"""A new-energy-vehicle (NEV) CRM simulator with a known ground truth.

Every lead has a hidden intent that drives its CRM behaviour and what it says. The true
probability of a lock-in within the horizon is a *known function of what the lead table
shows*: a tabular scorecard (with interactions) plus the effects of facts stated in the
dialogue, plus two small effects a model cannot see (the specialist's skill and a slow drift
over time). So ``_true_propensity`` is the ceiling a perfect reader of the table reaches.

The dialogue is built so that no single keyword solves it. The same words carry opposite
meanings depending on
- which question a shared yes/no answer replies to ("Are you still comparing other brands?"
  "Yes, definitely." is bad news; the same answer to "Shall we book a test drive?" is good),
- who says it (a specialist's subsidy pitch is said to everyone; a customer who wants to order
  "before the subsidy ends" is keen),
- negation and tense ("we went with the BYD" vs "we almost went with the BYD"),
- the order of events (only the most recent follow-up note tells the current temperature).

The funnel after ``as_of`` (call connected, call duration, test drive, lock-in, defeat) is drawn
from the same propensity, so funnel tiers are informative but noisy: test drives also depend on
how hard the specialist pushes them, and explicit defeats mostly follow competitor purchases.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit

from leadrank.data import phrases as P
from leadrank.errors import ConfigurationError

SOURCES = np.array(["app", "web", "store_walk_in", "referral", "auto_show", "ads"])
CITY_TIERS = np.array(["tier1", "tier2", "tier3", "tier4"])
CURRENT_CARS = np.array(["none", "ice_sedan", "ice_suv", "hybrid", "ev"])
BUDGET_BANDS = np.array(["under 150k", "150k-250k", "250k-350k", "over 350k"])
STAGES_AT_AS_OF = np.array(["new", "call", "test_drive"])

SynthPreset = Literal["default", "dense"]
_PRESET_RATES: dict[SynthPreset, float] = {"default": 0.014, "dense": 0.10}


def check_preset(name: str) -> SynthPreset:
    """``name`` as a :meth:`SynthConfig.preset` name; raise :class:`ConfigurationError` naming the choices."""
    for preset in _PRESET_RATES:
        if name == preset:
            return preset
    raise ConfigurationError(f"Unknown preset {name!r}; choose one of {sorted(_PRESET_RATES)}.")


@dataclass(frozen=True)
class SynthConfig:
    """How many leads, over which dates, and how rare a lock-in is."""

    n: int = 20_000
    seed: int = 0
    start: str = "2026-01-01"
    days: int = 180
    horizon_days: int = 30
    positive_rate: float = 0.014
    n_specialists: int = 40

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be at least 1; got {self.n}.")
        if not 0.0 < self.positive_rate < 0.5:
            raise ValueError(f"positive_rate must be in (0, 0.5); got {self.positive_rate}.")
        if self.days < 1 or self.horizon_days < 1 or self.n_specialists < 1:
            raise ValueError("days, horizon_days and n_specialists must be at least 1.")

    @classmethod
    def preset(cls, name: SynthPreset, **overrides: object) -> SynthConfig:
        """``default``: 1.4 % positives as in the paper; ``dense``: 10 % for quick demos."""
        return replace(cls(positive_rate=_PRESET_RATES[check_preset(name)]), **overrides)  # type: ignore[arg-type]


def simulate(config: SynthConfig = SynthConfig()) -> pd.DataFrame:
    """Simulate ``config.n`` leads; deterministic for a given config."""
    rng = np.random.default_rng(config.seed)
    n = config.n
    intent = rng.normal(size=n)
    table = _arrivals(rng, config)
    time_frac = table.pop("_time_frac").to_numpy()
    table = pd.concat([table, _profile(rng, intent, time_frac, table["lead_age_days"].to_numpy())], axis=1)
    never_reached = (table["stage_at_as_of"].to_numpy() == "new") & (rng.uniform(size=n) < 0.5)
    facts = _dialogue_facts(rng, intent)
    facts.loc[never_reached] = 0
    tabular_logit = _tabular_logit(table)
    dialogue_logit = _dialogue_logit(facts)
    specialist_skill = rng.normal(0.0, 0.2, config.n_specialists)
    specialist = rng.integers(0, config.n_specialists, n)
    hidden = specialist_skill[specialist] + 0.3 * (time_frac - 0.5)
    logit_wo_bias = tabular_logit + dialogue_logit + hidden
    bias = brentq(lambda b: expit(logit_wo_bias + b).mean() - config.positive_rate, -30.0, 30.0)
    propensity = expit(logit_wo_bias + bias)

    table.insert(0, "specialist_id", [f"S{i:03d}" for i in specialist])
    table["dialogue"] = _render_dialogues(facts, never_reached, specialist, config.seed)
    outcome = _funnel(rng, propensity, logit_wo_bias + bias, facts, specialist_skill[specialist])
    table = pd.concat([table, outcome], axis=1)
    table["_true_propensity"] = propensity
    return table


def _arrivals(rng: np.random.Generator, config: SynthConfig) -> pd.DataFrame:
    n = config.n
    created_day = np.sort(rng.uniform(0, config.days, n))
    age = np.minimum(rng.exponential(12.0, n), 90.0).round().astype(int)
    as_of_day = np.minimum(np.floor(created_day + age), config.days)
    lead_age = (as_of_day - np.floor(created_day)).astype(int)
    start = pd.Timestamp(config.start)
    return pd.DataFrame(
        {
            "lead_id": [f"L{config.seed:03d}-{i:07d}" for i in range(n)],
            "as_of": start + pd.to_timedelta(as_of_day, unit="D"),
            "lead_age_days": lead_age,
            "_time_frac": as_of_day / config.days,
        }
    )


def _choice(rng: np.random.Generator, options: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One draw per row from per-row (n, k) unnormalised weights."""
    cumulative = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    picks = (rng.uniform(size=(len(weights), 1)) > cumulative).sum(axis=1)
    return options[np.minimum(picks, len(options) - 1)]


def _profile(rng: np.random.Generator, intent: np.ndarray, time_frac: np.ndarray, lead_age: np.ndarray) -> pd.DataFrame:
    """CRM fields: who the lead is and what they did, all noisy views of the intent."""
    n = len(intent)
    engaged = 0.8 * intent + 0.6 * rng.normal(size=n)
    source_weights = np.column_stack(
        [
            np.full(n, 3.0),  # app
            np.full(n, 2.0),  # web
            np.exp(0.5 * intent),  # store walk-in
            np.exp(0.6 * intent),  # referral
            np.full(n, 0.8),  # auto show
            2.0 * np.exp(-0.4 * intent) * (0.6 + 0.8 * time_frac),  # ads: a growing share
        ]
    )
    city_tier = CITY_TIERS[rng.choice(4, n, p=[0.3, 0.35, 0.2, 0.15])]
    budget_weights = np.column_stack([np.full(n, 1.0), np.full(n, 2.0), np.exp(0.3 * intent) * 2.0, np.full(n, 1.0)])
    app_30d = rng.poisson(np.exp(1.3 + 0.55 * engaged))
    stage_score = engaged + 0.4 * rng.normal(size=n)
    return pd.DataFrame(
        {
            "source": _choice(rng, SOURCES, source_weights),
            "stage_at_as_of": np.where(stage_score > 1.5, "test_drive", np.where(stage_score > -0.2, "call", "new")),
            "customer_age": np.clip(rng.normal(38, 9, n), 20, 72).round().astype(int),
            "city_tier": city_tier,
            "current_car": CURRENT_CARS[rng.choice(5, n, p=[0.2, 0.3, 0.25, 0.1, 0.15])],
            "family_size": np.clip(rng.poisson(2.2, n) + 1, 1, 7),
            "budget_band": _choice(rng, BUDGET_BANDS, budget_weights),
            "has_private_parking": rng.uniform(size=n) < np.where(city_tier == "tier1", 0.45, 0.75),
            "app_visits_7d": rng.binomial(app_30d, expit(-1.0 + 0.5 * engaged)),
            "app_visits_30d": app_30d,
            "configurator_sessions": rng.poisson(np.exp(-0.4 + 0.7 * engaged)),
            "used_financing_calculator": rng.uniform(size=n) < expit(-1.2 + 0.9 * engaged),
            "store_visits": rng.poisson(np.exp(-1.3 + 0.5 * engaged)),
            "followup_count": rng.poisson(0.8 + lead_age / 6 + 0.3 * np.exp(0.4 * engaged)),
            "days_since_last_contact": np.minimum(rng.exponential(np.exp(1.6 - 0.5 * engaged)), 60).round(1),
        }
    )


def _tabular_logit(table: pd.DataFrame) -> np.ndarray:
    """The ground-truth scorecard over CRM fields, with saturation and interactions."""
    source_effect = {"app": 0.0, "web": -0.1, "store_walk_in": 0.35, "referral": 0.45, "auto_show": -0.2, "ads": -0.35}
    stage_effect = {"new": -0.3, "call": 0.0, "test_drive": 0.7}
    budget_effect = {"under 150k": -0.8, "150k-250k": -0.15, "250k-350k": 0.3, "over 350k": 0.05}
    no_home_charging = (~table["has_private_parking"].to_numpy()) & (table["city_tier"].to_numpy() == "tier1")
    age = table["customer_age"].to_numpy()
    return (
        table["source"].map(source_effect).to_numpy()
        + table["stage_at_as_of"].map(stage_effect).to_numpy()
        + table["budget_band"].map(budget_effect).to_numpy()
        + 0.35 * np.log1p(table["app_visits_7d"].to_numpy())
        + 0.15 * np.log1p(table["app_visits_30d"].to_numpy())
        + 0.25 * np.log1p(table["configurator_sessions"].to_numpy())
        + 0.3 * table["used_financing_calculator"].to_numpy()
        + 0.3 * np.minimum(table["store_visits"].to_numpy(), 3)
        - 0.02 * np.minimum(table["days_since_last_contact"].to_numpy(), 30)
        - 0.5 * no_home_charging
        + 0.25 * (table["family_size"].to_numpy() >= 4)
        - 0.01 * np.abs(age - 40)
        - 0.01 * np.minimum(table["lead_age_days"].to_numpy(), 60)
    )


# Facts stated in the dialogue. Each is a small integer code per lead (0 = not mentioned);
# ``_DIALOGUE_EFFECTS`` gives each code's effect on the lock-in logit.
_DIALOGUE_EFFECTS: dict[str, tuple[float, ...]] = {
    "test_drive_answer": (0.0, 0.6, -0.45),  # none, yes, no to "book a test drive?"
    "other_brands_answer": (0.0, -0.55, 0.35),  # none, yes, no to "still comparing other brands?"
    "hold_slot_answer": (0.0, 0.9, -0.3),  # none, yes, no to "shall I hold a delivery slot?"
    "price_obstacle_answer": (0.0, -0.6, 0.4),  # none, yes, no to "is price still the obstacle?"
    "timing": (0.0, 0.6, -0.7),  # none, urgent (customer), no rush
    "decision_maker": (0.0, -0.35, 0.5),  # none, must still see it, has already approved
    "competitor": (0.0, -2.2, 0.45, -0.6, 0.3),  # none, bought it, almost bought it, considering it, no longer considering
    "concern": (0.0, 0.25, -0.4),  # none, raised and resolved, raised and still open
    "customer_enthusiasm": (0.0, 0.4),  # none, customer praises the car
    "last_note": (0.0, 0.5, -0.5),  # none, most recent note warm, most recent note cold
}
_FACT_PRESENCE = {
    "test_drive_answer": 0.55,
    "other_brands_answer": 0.45,
    "hold_slot_answer": 0.25,
    "price_obstacle_answer": 0.35,
    "timing": 0.45,
    "decision_maker": 0.3,
    "competitor": 0.2,
    "concern": 0.55,
    "customer_enthusiasm": 0.3,
    "last_note": 0.7,
}


def _dialogue_facts(rng: np.random.Generator, intent: np.ndarray) -> pd.DataFrame:
    """Draw which facts each lead states; positive facts are likelier for keen leads."""
    n = len(intent)
    talk = 0.45 * intent + np.sqrt(1 - 0.45**2) * rng.normal(size=n)
    facts = {}
    for name, effects in _DIALOGUE_EFFECTS.items():
        present = rng.uniform(size=n) < _FACT_PRESENCE[name]
        codes = np.arange(1, len(effects))
        weights = np.exp(np.outer(0.6 * talk + 0.5 * rng.normal(size=n), np.array(effects[1:])))
        if name == "competitor":
            weights[:, 0] *= 0.35  # outright purchases elsewhere are rarer than talk about rivals
        facts[name] = np.where(present, _choice(rng, codes, weights), 0)
    return pd.DataFrame(facts)


def _dialogue_logit(facts: pd.DataFrame) -> np.ndarray:
    return sum(np.asarray(effects)[facts[name].to_numpy()] for name, effects in _DIALOGUE_EFFECTS.items())


def _funnel(
    rng: np.random.Generator,
    propensity: np.ndarray,
    logit: np.ndarray,
    facts: pd.DataFrame,
    skill: np.ndarray,
) -> pd.DataFrame:
    """What happens in the horizon after ``as_of``: supervision only, never an input."""
    n = len(propensity)
    lock = rng.uniform(size=n) < propensity
    centred = logit - np.median(logit)
    bought_elsewhere = facts["competitor"].to_numpy() == 1
    defeat = ~lock & (rng.uniform(size=n) < expit(-2.2 - 0.5 * centred + 2.5 * bought_elsewhere))
    test_drive = ~lock & ~defeat & (rng.uniform(size=n) < expit(-2.6 + 0.8 * centred + 3.0 * skill + 0.5 * rng.normal(size=n)))
    connected = lock | test_drive | (rng.uniform(size=n) < expit(0.4 + 0.5 * centred))
    duration = np.where(connected, np.exp(rng.normal(4.2 + 0.35 * centred + 0.8 * lock, 0.8)), 0.0).round()
    stage = np.select([lock, defeat, test_drive, connected], ["lock", "defeat", "test_drive", "call"], "new")
    return pd.DataFrame({"label": lock.astype(int), "funnel_stage": stage, "call_duration_s": duration})


def _render_dialogues(facts: pd.DataFrame, never_reached: np.ndarray, specialist: np.ndarray, seed: int) -> list[str]:
    """Turn each lead's facts into a speaker-tagged transcript plus dated follow-up notes."""
    rand = random.Random(seed)
    names = [P.SPECIALIST_NAMES[s % len(P.SPECIALIST_NAMES)] for s in specialist]
    return ["" if silent else P.render(record, rand, name) for record, silent, name in zip(facts.to_dict("records"), never_reached, names)]
