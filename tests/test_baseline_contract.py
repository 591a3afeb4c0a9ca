"""The contract every baseline keeps, whatever model is behind it.

One parametrized case per baseline of leadrank.baselines (each of the six CTR models, the
funnel + CTR models, the funnel + recency rule, logistic regression plain and with HPRO,
LightGBM plain / + TF-IDF / + HPRO, CatBoost with the dialogue as text), each fitted once per
"world" on a small simulated table:

* the paper's world: the simulated NEV CRM, ``FeatureSpec.nev_default()``, the paper's funnel;
* a user's own world: the same leads with every column the baselines read or learn from renamed
  (label ``won``, stage ``deal_stage`` with other stage names, rule column ``viewing_minutes``,
  stage so far ``stage_so_far``, dialogue ``notes``), so a baseline that hard-codes a paper
  column name fails here.

The contract: one finite score per row in row order (probabilities in [0, 1] where the baseline
gives probabilities), not constant; a missing input column is a ValueError naming it at fit and
at predict time; predictions never read a supervision column and do not depend on row order;
every baseline refuses a FeatureSpec that lists an outcome column as a feature.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from leadrank.baselines import (
    CTR_MODELS,
    CatBoostTextBaseline,
    CTRBaseline,
    FunnelDirect,
    FunnelRecencyRule,
    FunnelTwoStage,
    GBDTBaseline,
    GBDTConfig,
    GBDTHPROBaseline,
    LogisticBaseline,
    PairwiseLogisticBaseline,
)
from leadrank.config import Feature, FeatureSpec, FunnelSpec
from leadrank.data.split import time_split
from leadrank.data.synth import SynthConfig, simulate

#: One epoch: the contract is about inputs and outputs, not about how well the model ranks.
QUICK_CTR: dict[str, Any] = {"epochs": 1, "validation_fraction": 0.2}
QUICK_GBDT = GBDTConfig(n_estimators=30, min_child_samples=10)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Keep the CPU use of these tests modest; restore the thread count afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------
# Two worlds: the paper's columns and funnel, and a user's own
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    name: str
    train: pd.DataFrame
    test: pd.DataFrame
    features: FeatureSpec
    funnel: FunnelSpec
    stage_column: str  # the stage reached so far (known at as_of), not the funnel's outcome stage
    stage_order: tuple[str, ...]
    recency_column: str

    def with_features(self, features: FeatureSpec) -> World:
        return World(self.name, self.train, self.test, features, self.funnel, self.stage_column, self.stage_order, self.recency_column)


#: The paper's stages -> the user's own stage names.
OWN_STAGES = {"defeat": "lost", "new": "enquiry", "call": "viewing", "test_drive": "offer", "lock": "signed"}
#: The paper's column names -> the user's own.
OWN_COLUMNS = {
    "label": "won",
    "funnel_stage": "deal_stage",
    "call_duration_s": "viewing_minutes",
    "stage_at_as_of": "stage_so_far",
    "days_since_last_contact": "days_idle",
    "dialogue": "notes",
}
OWN_FUNNEL = FunnelSpec.model_validate(
    {
        "stages": list(OWN_STAGES.values()),
        "stage_column": "deal_stage",
        "label_column": "won",
        "tiers": [
            {"name": "global", "winner": "stage == 'signed'", "loser": "stage == 'lost'", "margin": 1.0},
            {"name": "key", "winner": "stage == 'offer'", "loser": "stage in ('lost', 'enquiry', 'viewing')", "margin": 0.5},
            {
                "name": "long viewing",
                "winner": "stage == 'viewing' and viewing_minutes >= 2",
                "loser": "stage == 'viewing' and viewing_minutes < 2",
                "margin": 0.1,
            },
        ],
    }
)


def _own_table(table: pd.DataFrame) -> pd.DataFrame:
    own = table.rename(columns=OWN_COLUMNS)
    return own.assign(
        deal_stage=own["deal_stage"].map(OWN_STAGES),
        stage_so_far=own["stage_so_far"].map(OWN_STAGES),
        viewing_minutes=own["viewing_minutes"] / 60.0,
    )


def _own_features(features: FeatureSpec) -> FeatureSpec:
    renamed = [f.model_copy(update={"name": OWN_COLUMNS.get(f.name, f.name)}) for f in features.features]
    return features.model_copy(update={"features": renamed, "dialogue_column": OWN_COLUMNS[features.dialogue_column]})


@cache
def world(name: str) -> World:
    """About 420 training and 180 test leads (dense preset, about 10 % positives)."""
    split = time_split(simulate(SynthConfig.preset("dense", n=600, seed=7)), 0.3)
    nev = FeatureSpec.nev_default()
    if name == "paper":
        return World(
            "paper",
            split.train,
            split.test,
            nev,
            FunnelSpec.paper_default(),
            "stage_at_as_of",
            ("new", "call", "test_drive"),
            "days_since_last_contact",
        )
    own = World(
        "own",
        _own_table(split.train),
        _own_table(split.test),
        _own_features(nev),
        OWN_FUNNEL,
        "stage_so_far",
        ("enquiry", "viewing", "offer"),
        "days_idle",
    )
    for table in (own.train, own.test):  # nothing of the paper's naming is left to fall back on
        assert not set(OWN_COLUMNS) & set(table.columns)
        assert set(table["deal_stage"]) <= set(OWN_FUNNEL.stages)
    return own


WORLDS = ["paper", "own"]


# --------------------------------------------------------------------------------------------
# Every baseline, built the way leadrank.experiments builds it (with quick settings)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[World], Any]
    #: The scores are conversion probabilities (else ranks: 2 x stage rank + a part in [0, 1]).
    probabilities: bool = True
    #: Takes a FunnelSpec (``funnel=``); else only a label column.
    takes_funnel: bool = True
    #: Learns from the training table (needs its label; predict before fit is an error).
    learns: bool = True
    #: Reads the dialogue column.
    reads_text: bool = False
    #: Reads the stage-so-far and recency columns by name (not only through the FeatureSpec).
    reads_stage: bool = False

    def reads(self, w: World) -> list[str]:
        """Columns the baseline cannot score without: a categorical and a numeric feature, and the named ones."""
        columns = [w.stage_column, w.recency_column] if self.reads_stage else ["source", w.recency_column]
        if self.reads_text:
            columns.append(w.features.dialogue_column)
        return columns


def _ctr_case(model: str) -> Case:
    return Case(f"ctr-{model}", lambda w: CTRBaseline(w.features, model, funnel=w.funnel, seed=0, **QUICK_CTR))


CASES = [
    *(_ctr_case(model) for model in CTR_MODELS),
    Case(
        "funnel_two_stage",
        lambda w: FunnelTwoStage(
            w.features,
            stage_column=w.stage_column,
            stage_order=w.stage_order,
            min_positives=3,
            funnel=w.funnel,
            seed=0,
            ctr_options=QUICK_CTR,
        ),
        probabilities=False,
        reads_stage=True,
    ),
    Case("funnel_direct", lambda w: FunnelDirect(w.features, stage_column=w.stage_column, funnel=w.funnel, seed=0, **QUICK_CTR)),
    Case(
        "funnel_recency_rule",
        lambda w: FunnelRecencyRule(
            w.features, stage_column=w.stage_column, stage_order=w.stage_order, recency_column=w.recency_column, funnel=w.funnel
        ),
        probabilities=False,
        learns=False,
        reads_stage=True,
    ),
    Case("logistic", lambda w: LogisticBaseline(w.features, label_column=w.funnel.label_column), takes_funnel=False),
    Case("logistic_hpro", lambda w: PairwiseLogisticBaseline(w.features, w.funnel, seed=0)),
    Case("gbdt", lambda w: GBDTBaseline(w.features, label_column=w.funnel.label_column, config=QUICK_GBDT), takes_funnel=False),
    Case(
        "gbdt_tfidf",
        lambda w: GBDTBaseline(w.features, label_column=w.funnel.label_column, use_dialogue=True, config=QUICK_GBDT),
        takes_funnel=False,
        reads_text=True,
    ),
    Case("gbdt_hpro", lambda w: GBDTHPROBaseline(w.features, w.funnel, config=QUICK_GBDT)),
    Case("gbdt_hpro_tfidf", lambda w: GBDTHPROBaseline(w.features, w.funnel, use_dialogue=True, config=QUICK_GBDT), reads_text=True),
    Case(
        "catboost_text",
        lambda w: CatBoostTextBaseline(
            w.features, label_column=w.funnel.label_column, iterations=30, learning_rate=0.2, thread_count=1, seed=0
        ),
        takes_funnel=False,
        reads_text=True,
    ),
]
CASE_PARAMS = [pytest.param(case, id=case.id) for case in CASES]


@cache
def fitted(case_id: str, world_name: str) -> Any:
    """Each baseline is fitted once per world and module (the tests only read it)."""
    case = next(c for c in CASES if c.id == case_id)
    w = world(world_name)
    return case.build(w).fit(w.train)


def scores(case: Case, world_name: str, table: pd.DataFrame | None = None) -> np.ndarray:
    return fitted(case.id, world_name).predict(world(world_name).test if table is None else table)


def named(column: str) -> str:
    """A pattern matching an error message that quotes ``column``."""
    return re.escape(repr(column))


# --------------------------------------------------------------------------------------------
# 1. One finite score per row, in row order
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("world_name", WORLDS)
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_one_finite_score_per_test_row(case: Case, world_name: str) -> None:
    w = world(world_name)
    result = scores(case, world_name)
    assert isinstance(result, np.ndarray)
    assert result.shape == (len(w.test),)
    assert np.issubdtype(result.dtype, np.floating)
    assert np.isfinite(result).all()
    if case.probabilities:
        assert ((result >= 0) & (result <= 1)).all()
    else:  # 2 x stage rank (0 for a missing stage) + a part in [0, 1]
        assert ((result >= 0) & (result <= 2 * len(w.stage_order) + 1)).all()
    assert len(np.unique(result)) > 1, f"{case.id} gives every lead the same score"


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_each_score_belongs_to_its_row(case: Case) -> None:
    """Scoring any slice of the table gives that slice of the scores (nothing mixes rows)."""
    test = world("paper").test
    whole = scores(case, "paper")
    parts = [test.iloc[:1], test.iloc[1:60], test.iloc[60:]]
    np.testing.assert_allclose(np.concatenate([scores(case, "paper", part) for part in parts]), whole, rtol=1e-6, atol=1e-9)
    for row in (0, len(test) // 2, len(test) - 1):
        np.testing.assert_allclose(scores(case, "paper", test.iloc[[row]]), whole[[row]], rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------------------------
# 2. A missing input column is a clear error, at predict and at fit time
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("world_name", WORLDS)
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_missing_column_at_predict_time_is_named(case: Case, world_name: str) -> None:
    w = world(world_name)
    model = fitted(case.id, world_name)
    for column in case.reads(w):
        with pytest.raises(ValueError, match=named(column)):
            model.predict(w.test.drop(columns=column))


@pytest.mark.parametrize("world_name", WORLDS)
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_missing_column_at_fit_time_is_named(case: Case, world_name: str) -> None:
    w = world(world_name)
    needed = case.reads(w) + ([w.funnel.label_column] if case.learns else [])
    for column in needed:
        with pytest.raises(ValueError, match=named(column)):
            case.build(w).fit(w.train.drop(columns=column))


@pytest.mark.parametrize("case", [p for p in CASE_PARAMS if p.values[0].learns])
def test_predict_before_fit_says_so(case: Case) -> None:
    w = world("paper")
    with pytest.raises(ValueError, match=r"not fitted yet; call fit\(train_table\) first"):
        case.build(w).predict(w.test)


# --------------------------------------------------------------------------------------------
# 3. Predictions never read a supervision column
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("world_name", WORLDS)
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_predictions_do_not_read_supervision_columns(case: Case, world_name: str) -> None:
    w = world(world_name)
    supervision = w.funnel.supervision_columns
    assert set(supervision) <= set(w.test.columns)
    reference = scores(case, world_name)
    rng = np.random.default_rng(0)
    shuffled = w.test.assign(**{c: rng.permutation(w.test[c].to_numpy()) for c in supervision})
    assert all((shuffled[c].to_numpy() != w.test[c].to_numpy()).any() for c in supervision)  # really shuffled
    np.testing.assert_array_equal(scores(case, world_name, shuffled), reference)
    np.testing.assert_array_equal(scores(case, world_name, w.test.drop(columns=supervision)), reference)


# --------------------------------------------------------------------------------------------
# 4. Predictions do not depend on the row order
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_PARAMS)
@pytest.mark.parametrize("reindex", [False, True], ids=["same_index", "new_index"])
def test_predictions_do_not_depend_on_row_order(case: Case, reindex: bool) -> None:
    test = world("paper").test
    assert test["lead_id"].is_unique
    reference = pd.Series(scores(case, "paper"), index=test["lead_id"].to_numpy())
    permuted = test.iloc[np.random.default_rng(1).permutation(len(test))]
    if reindex:
        permuted = permuted.reset_index(drop=True)
    found = pd.Series(scores(case, "paper", permuted), index=permuted["lead_id"].to_numpy())
    np.testing.assert_allclose(found[reference.index].to_numpy(), reference.to_numpy(), rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------------------------
# 5. The leakage guard: an outcome column of the funnel as a feature is refused
# --------------------------------------------------------------------------------------------


def test_the_own_funnel_has_a_stage_and_a_rule_column() -> None:
    assert world("own").funnel.supervision_columns == ["won", "deal_stage", "viewing_minutes"]
    assert world("paper").funnel.supervision_columns == ["label", "funnel_stage", "call_duration_s"]


LEAK_PARAMS = [
    pytest.param(case, world_name, column, id=f"{case.id}-{world_name}-{column}")
    for world_name, funnel in (("paper", FunnelSpec.paper_default()), ("own", OWN_FUNNEL))
    for case in CASES
    # A baseline without a FunnelSpec knows only its label column.
    for column in (funnel.supervision_columns if case.takes_funnel else [funnel.label_column])
]


@pytest.mark.parametrize("case, world_name, column", LEAK_PARAMS)
def test_an_outcome_column_as_a_feature_is_refused(case: Case, world_name: str, column: str) -> None:
    w = world(world_name)
    outcome = Feature(name=column, kind="categorical" if column == w.funnel.stage_column else "numeric")
    leaking = w.with_features(w.features.model_copy(update={"features": [*w.features.features, outcome]}))
    with pytest.raises(ValueError, match=rf"{named(column)}.*outcome \(supervision\) column"):
        case.build(leaking).fit(w.train)


@pytest.mark.parametrize("world_name", WORLDS)
def test_the_two_stage_model_really_trains_a_model_inside_a_stage(world_name: str) -> None:
    """Else the contract above would only have checked its fallback (a stage's positive rate)."""
    groups = fitted("funnel_two_stage", world_name).groups_
    assert any(isinstance(group, CTRBaseline) for group in groups.values())


@pytest.mark.parametrize("model", list(CTR_MODELS))
def test_a_ctr_model_trains_when_the_last_batch_would_be_one_row(model: str) -> None:
    """deepctr's DCN-M cannot take a one-row batch; 2 x 64 + 1 rows must still train (and score one row)."""
    w = world("paper")
    train = w.train.iloc[: 2 * 64 + 1]
    assert train[w.funnel.label_column].nunique() == 2
    ctr = CTRBaseline(w.features, model, funnel=w.funnel, batch_size=64, epochs=1, validation_fraction=None).fit(train)
    assert np.isfinite(ctr.predict(w.test.iloc[:1])).all()
