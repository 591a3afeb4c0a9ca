"""The paper's experiments as runnable suites (``leadrank bench --suite NAME``).

Every suite runs its models on the same strict time split, once per seed; with the default
simulated data each seed is a fresh simulated set, with a user's table the split stays and
the seed changes the models' randomness. asLLR runs are shared between the suites of one
bench run (table1's "+HPRO" is table2's "with HPRO", margins' "paper" and rankby's source),
and in frozen mode every reading of a lead is cached on disk, so a lead is read once.

Each suite writes ``OUT/<suite>/``: ``results.json`` (per-seed rows and the mean ± std
summary), ``predictions.parquet`` (test scores per model and seed), ``results.md`` and
figures (see :mod:`leadrank.report`).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

import leadrank
from leadrank import artifact as artifacts
from leadrank._files import write_text_atomic
from leadrank.artifact import blend_scores
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
from leadrank.baselines._columns import DEFAULT_STAGE_COLUMN
from leadrank.config import DEFAULT_PRESET, ID_COLUMN, TIME_COLUMN, FeatureSpec, FunnelSpec
from leadrank.data.io import write_table
from leadrank.data.minimums import check_minimums
from leadrank.data.profile import ORACLE_COLUMN
from leadrank.data.schema import label_values
from leadrank.data.split import TEST_FRACTION, TimeSplit, check_no_leakage, time_split
from leadrank.data.synth import SynthConfig, check_preset, simulate
from leadrank.errors import ConfigurationError
from leadrank.hardware import describe, resolve_dtype
from leadrank.inference import Scorer
from leadrank.metrics import (
    MIN_LEADS_FOR_PRECISION,
    bootstrap_difference,
    bootstrap_intervals,
    score_row,
    top_count,
)
from leadrank.model.asllr import ASLLR, answer_token_ids, resolve_pool_layer
from leadrank.model.backbone import load_backbone
from leadrank.model.frozen import FeatureCache
from leadrank.model.reader import LeadReader
from leadrank.settings import RunConfig, ScoreConfig
from leadrank.training import TrainResult, train

#: Width of the asLLR text embedding given to the baselines in the transfer suite (PCA of the reading).
EMBEDDING_DIM = 16
#: Width of the dialogue's TF-IDF, reduced by truncated SVD, that the linear models read in the regime suite.
TFIDF_SVD_DIM = 64
#: The heads' tuning grid in the regime suite: BCE-only and HPRO runs each get all of it, and keep the
#: point with the best AUC on their validation slice (the newest leads of their training part).
HEADS_GRID: tuple[dict, ...] = ({"lr_heads": 1e-3, "weight_decay": 0.0}, {"lr_heads": 3e-4, "weight_decay": 0.01})
#: The learning curve goes below the 100 positives `leadrank train` asks for (it is an experiment on
#: how much the funnel gives when labels are few); its asLLR runs accept this many.
CURVE_MIN_POSITIVES = 50
#: The model pairs whose paired bootstrap difference the regime suite reports at every training size.
REGIME_DIFFERENCES = (
    ("asLLR + HPRO (paper tiers)", "asLLR, BCE only"),
    ("asLLR + HPRO (total order)", "asLLR, BCE only"),
    ("LightGBM tabular + TF-IDF + HPRO (paper tiers)", "LightGBM tabular + TF-IDF"),
    ("LightGBM tabular + TF-IDF + HPRO (total order)", "LightGBM tabular + TF-IDF"),
    ("Logistic regression tabular + TF-IDF + HPRO (paper tiers)", "Logistic regression tabular + TF-IDF"),
)


TEXT_SKIPPED = "The dialogue column is empty in every training lead: the text baselines (TF-IDF, CatBoost text) were skipped."


def has_text(table: pd.DataFrame, features: FeatureSpec) -> bool:
    """Whether ``table`` has a dialogue column with text in at least one row."""
    column = features.dialogue_column
    return column is not None and column in table.columns and bool(table[column].fillna("").astype(str).str.strip().ne("").any())


def compare_baselines(split: TimeSplit, features: FeatureSpec, funnel: FunnelSpec, *, seed: int = 0) -> pd.DataFrame:
    """Fit the LightGBM baselines on ``split.train``; score ``split.test``; add the oracle when known."""
    check_no_leakage(features.input_columns, funnel.supervision_columns)
    labels = label_values(split.test[funnel.label_column])
    rows = []
    variants = [False, True] if has_text(split.train, features) else [False]
    for use_dialogue in variants:
        model = GBDTBaseline(features, label_column=funnel.label_column, use_dialogue=use_dialogue, config=GBDTConfig(seed=seed))
        model.fit(split.train)
        rows.append(score_row(model.name, labels, model.predict(split.test)))
    if ORACLE_COLUMN in split.test.columns:
        rows.append(score_row("oracle (true propensity)", labels, split.test[ORACLE_COLUMN].to_numpy()))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class BenchConfig:
    """What to run and on which data.

    ``data=None`` simulates: ``n`` leads of the ``synth_preset`` (None: the suites' own data,
    :class:`SuiteData`), one set for all seeds when ``one_set`` (the seeds then vary the models
    only) or a fresh set per seed.
    """

    suites: tuple[str, ...]
    out: Path
    seeds: tuple[int, ...] = (0, 1, 2)
    data: pd.DataFrame | None = None
    data_name: str = ""
    features: FeatureSpec = field(default_factory=FeatureSpec.nev_default)
    funnel: FunnelSpec = field(default_factory=FunnelSpec.paper_default)
    n: int | None = None
    synth_preset: str | None = None
    one_set: bool | None = None
    train_sizes: tuple[int, ...] = (5_000, 10_000, 20_000)
    preset: str = DEFAULT_PRESET
    backbone: str | None = None
    config_file: Path | None = None
    test_fraction: float = TEST_FRACTION
    command: str = ""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.suites) - set(SUITES))
        if unknown or not self.suites:
            raise ConfigurationError(f"unknown suite(s) {unknown or '(none given)'}; choose from {sorted(SUITES)} or 'all'.")
        if len(self.seeds) < 1 or len(set(self.seeds)) != len(self.seeds):
            raise ConfigurationError(f"seeds must be distinct and at least one; got {list(self.seeds)}.")
        kinds = {SUITES[name].data for name in self.suites}
        if len(kinds) > 1 and self.data is None and (self.n is None or self.synth_preset is None or self.one_set is None):
            raise ConfigurationError(
                f"suites {list(self.suites)} simulate different data by default "
                f"({', '.join(sorted(f'{k.preset} n={k.n}' for k in kinds))}); run them separately or pass --n and --synth-preset."
            )

    @property
    def simulated(self) -> SuiteData:
        """The simulated data: the suites' own, with what was given explicitly."""
        own = SUITES[self.suites[0]].data
        return SuiteData(
            preset=self.synth_preset or own.preset, n=self.n or own.n, one_set=own.one_set if self.one_set is None else self.one_set
        )


@dataclass(frozen=True)
class Outcome:
    """One model's scores on the test part of one seed."""

    model: str
    scores: np.ndarray
    probability: np.ndarray | None = None
    seconds: float = 0.0
    train_size: int | None = None  # set on the rows of a learning curve


# --------------------------------------------------------------------------- asLLR runs


@dataclass
class AsllrRun:
    """Test-part scores of one trained asLLR variant; its probability is calibrated as an artifact's."""

    point: np.ndarray
    pair: np.ndarray
    blend: np.ndarray
    probability: np.ndarray
    margins: list[float]
    result: TrainResult
    seconds: float  # charged to the first row that uses the run; rows that reuse it cost nothing
    rank_by: str = "point"  # the artifact's choice (on its validation slice): what `leadrank score` ranks by

    def outcome(self, name: str, rank_by: str | None = None) -> Outcome:
        """The run's test scores ranked by ``rank_by``; None = the model's own choice, as a user gets it."""
        scores = {"point": self.point, "pair": self.pair, "blend": self.blend}[rank_by or self.rank_by]
        seconds, self.seconds = self.seconds, 0.0
        return Outcome(name, scores, self.probability, seconds)


class Trial:
    """One seed: its split and specs, and the asLLR runs every suite of the bench shares."""

    def __init__(
        self,
        split: TimeSplit,
        features: FeatureSpec,
        funnel: FunnelSpec,
        seed: int,
        recipe: RunConfig,
        *,
        recipe_name: str = DEFAULT_PRESET,
        train_sizes: tuple[int, ...] = (),
    ) -> None:
        self.split, self.features, self.funnel, self.seed, self.recipe = split, features, funnel, seed, recipe
        self.recipe_name, self.train_sizes = recipe_name, train_sizes
        self.labels = label_values(split.test[funnel.label_column])
        self.notes: list[str] = []
        self._runs: dict[str, AsllrRun] = {}
        self._embeddings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._tfidf: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def frozen(self) -> bool:
        return self.recipe.model.mode == "frozen"

    @property
    def has_text(self) -> bool:
        """Whether some training lead has dialogue text; without it the text baselines skip themselves, with a note."""
        if not has_text(self.split.train, self.features):
            if self.features.dialogue_column and (note := TEXT_SKIPPED) not in self.notes:
                self.notes.append(note)
            return False
        return True

    def newest(self, size: int) -> Trial:
        """This trial trained on only the newest ``size`` leads of its training part (same test part)."""
        train_part = self.split.train
        if size >= len(train_part):
            return self
        newest = train_part.iloc[np.argsort(pd.to_datetime(train_part[TIME_COLUMN]).to_numpy(), kind="stable")[-size:]]
        smaller = Trial(replace(self.split, train=newest), self.features, self.funnel, self.seed, self.recipe, recipe_name=self.recipe_name)
        smaller.notes = self.notes
        return smaller

    def without_dialogue(self) -> Trial:
        """This trial on the same split with the dialogue column dropped (a CRM export with no text)."""
        column = self.features.dialogue_column
        split = replace(self.split, train=self.split.train.drop(columns=[column]), test=self.split.test.drop(columns=[column]))
        features = self.features.model_copy(update={"dialogue_column": None})
        return Trial(split, features, self.funnel, self.seed, self.recipe, recipe_name=self.recipe_name)

    def tfidf_svd(self) -> tuple[np.ndarray, np.ndarray]:
        """(train, test) TF-IDF n-grams of the dialogue reduced to :data:`TFIDF_SVD_DIM` (fitted on train)."""
        if self._tfidf is None:
            column = self.features.dialogue_column
            settings = GBDTConfig()  # the same n-grams the LightGBM baseline reads
            vectorizer = TfidfVectorizer(
                ngram_range=(1, 2), min_df=settings.tfidf_min_df, max_features=settings.tfidf_max_features, sublinear_tf=True
            )
            train_text = vectorizer.fit_transform(self.split.train[column].fillna(""))
            svd = TruncatedSVD(n_components=TFIDF_SVD_DIM, random_state=0).fit(train_text)
            self._tfidf = svd.transform(train_text), svd.transform(vectorizer.transform(self.split.test[column].fillna("")))
        return self._tfidf

    def asllr(self, train_overrides: dict, funnel: FunnelSpec | None = None) -> AsllrRun:
        """Train (once per bench run) the recipe with ``train_overrides`` and score the test part."""
        funnel = funnel or self.funnel
        key = json.dumps([train_overrides, funnel.model_dump(mode="json")], sort_keys=True)
        if key not in self._runs:
            self._runs[key] = self._train(train_overrides, funnel)
        return self._runs[key]

    def _train(self, train_overrides: dict, funnel: FunnelSpec) -> AsllrRun:
        started = time.perf_counter()
        config = self.recipe.train.model_copy(update={"seed": self.seed, **train_overrides})
        result = train(self.split.train, self.features, funnel, self.recipe.model, config)
        # scored as `leadrank score` scores: the artifact's calibration, statistics and ranking choice
        artifact = artifacts.from_training(result)
        scorer = Scorer(artifact, ScoreConfig(dtype=config.dtype), reading_cache=self.frozen)
        point, pair = scorer.raw_scores(self.split.test)
        return AsllrRun(
            point,
            pair,
            blend_scores(point, pair, artifact.score_stats),
            artifact.calibration.apply(point),
            result.margins,
            result,
            time.perf_counter() - started,
            artifact.rank_by,
        )

    def embedding(self, source: str) -> tuple[np.ndarray, np.ndarray]:
        """(train, test) asLLR readings reduced to :data:`EMBEDDING_DIM` by PCA fitted on train.

        ``source='frozen'``: the backbone as it ships; ``'tuned'``: the LoRA-trained model of the
        full asLLR run (its reading after fine-tuning).
        """
        if source not in self._embeddings:
            if source == "frozen":
                model_config = self.recipe.model.model_copy(update={"mode": "frozen"})
                backbone = load_backbone(model_config.backbone)
                side_width = 1 if model_config.side_input else 0  # the heads are not used: only the reading
                model = ASLLR(backbone.model, model_config, answer_token_ids(backbone.tokenizer, model_config.prompt), side_width)
                tables = [self.split.train, self.split.test]
                train_states, test_states = _read(model, backbone.tokenizer, backbone.checksum, self.features, tables, cache=True)
            else:
                result = self.asllr({}).result
                tables = [self.split.train, self.split.test]
                train_states, test_states = _read(
                    result.model, result.backbone.tokenizer, result.backbone.checksum, self.features, tables, cache=False
                )
            pca = PCA(n_components=min(EMBEDDING_DIM, train_states.shape[1]), random_state=self.seed).fit(train_states)
            self._embeddings[source] = (pca.transform(train_states), pca.transform(test_states))
        return self._embeddings[source]


def _read(
    model: ASLLR, tokenizer: PreTrainedTokenizerBase, checksum: str, features: FeatureSpec, tables: list[pd.DataFrame], *, cache: bool
) -> list[np.ndarray]:
    """The pooled reading of every lead of each table (zeros for a lead with no text), through the scorer's reader."""
    dtype = resolve_dtype("auto")
    score = ScoreConfig()
    reader = LeadReader(
        model,
        tokenizer,
        features,
        cache=FeatureCache.for_model(model, checksum, dtype) if cache else None,
        batch_size=score.batch_size,
        max_batch_tokens=score.max_batch_tokens,
        dtype=dtype,
    )
    readings = []
    for table in tables:
        prompts = reader.inputs(table).prompts
        with tqdm(total=sum(bool(p) for p in prompts), desc="reading leads", unit="lead", leave=False) as bar:
            readings.append(reader.pooled(prompts, progress=bar.update).numpy())
    return readings


# --------------------------------------------------------------------------- the suites


def _ctr(trial: Trial, model: str, extra: tuple[np.ndarray, np.ndarray] | None = None, suffix: str = "") -> Outcome:
    started = time.perf_counter()
    ctr = CTRBaseline(trial.features, model, funnel=trial.funnel, seed=trial.seed)
    ctr.fit(trial.split.train, extra=None if extra is None else extra[0])
    probability = ctr.predict(trial.split.test, extra=None if extra is None else extra[1])
    return Outcome(ctr.name + suffix, probability, probability, time.perf_counter() - started)


def _gbdt(trial: Trial, use_dialogue: bool, extra: tuple[np.ndarray, np.ndarray] | None = None, suffix: str = "") -> Outcome:
    started = time.perf_counter()
    gbdt = GBDTBaseline(
        trial.features, label_column=trial.funnel.label_column, use_dialogue=use_dialogue, config=GBDTConfig(seed=trial.seed)
    )
    gbdt.fit(trial.split.train, extra=None if extra is None else extra[0])
    probability = gbdt.predict(trial.split.test, extra=None if extra is None else extra[1])
    return Outcome(gbdt.name + suffix, probability, probability, time.perf_counter() - started)


def _fitted(trial: Trial, model) -> Outcome:
    started = time.perf_counter()
    scores = model.fit(trial.split.train).predict(trial.split.test)
    probability = scores if isinstance(model, FunnelDirect | LogisticBaseline) else None  # the two-stage score is a rank, not a probability
    return Outcome(model.name, scores, probability, time.perf_counter() - started)


def _has_stage_columns(trial: Trial) -> bool:
    if DEFAULT_STAGE_COLUMN in trial.split.train.columns and "days_since_last_contact" in trial.split.train.columns:
        return True
    trial.notes.append(
        f"Funnel rule and funnel + CTR rows skipped: they need the columns {DEFAULT_STAGE_COLUMN!r} and 'days_since_last_contact'."
    )
    return False


def _asllr_ablation(trial: Trial) -> Iterator[Outcome]:
    yield trial.asllr({"hpro_weight": 0.0, "ce_weight": 0.0}).outcome("asLLR base (BCE)", "point")
    if trial.frozen:
        trial.notes.append("'+CE' row not run: in frozen mode the answer-token loss has no trainable weights, so it equals the base.")
    else:
        yield trial.asllr({"hpro_weight": 0.0}).outcome("asLLR + CE", "point")
    yield trial.asllr({}).outcome("asLLR + CE + HPRO")


def suite_table1(trial: Trial) -> Iterator[Outcome]:
    """The paper's Table 1: the six CTR models vs the asLLR ablation base -> +CE -> +HPRO."""
    for model in CTR_MODELS:
        yield _ctr(trial, model)
    yield from _asllr_ablation(trial)


def suite_table2(trial: Trial) -> Iterator[Outcome]:
    """The paper's Table 2: funnel rule, funnel + CTR (two-stage, direct), asLLR without and with HPRO."""
    if _has_stage_columns(trial):
        yield _fitted(trial, FunnelRecencyRule(trial.features, funnel=trial.funnel))
        yield _fitted(trial, FunnelTwoStage(trial.features, funnel=trial.funnel, seed=trial.seed))
        yield _fitted(trial, FunnelDirect(trial.features, funnel=trial.funnel, seed=trial.seed))
    yield _fitted(trial, LogisticBaseline(trial.features, label_column=trial.funnel.label_column))
    yield _gbdt(trial, use_dialogue=False)
    if trial.has_text:
        yield _gbdt(trial, use_dialogue=True)
    yield trial.asllr({"hpro_weight": 0.0}).outcome("asLLR without HPRO", "point")
    yield trial.asllr({}).outcome("asLLR with HPRO")


def suite_transfer(trial: Trial) -> Iterator[Outcome]:
    """Each CTR model and LightGBM (+ TF-IDF) with and without the asLLR text embedding as inputs."""
    sources = ["frozen"] if trial.frozen else ["frozen", "tuned"]
    if trial.frozen:
        trial.notes.append("'tuned' embedding rows not run: the recipe is frozen (run with a LoRA preset for them).")
    else:
        trial.notes.append(
            "The tuned embedding of a training lead comes from a model trained on that lead: the baselines see it "
            "fitted to the label in training and not in test, so the tuned rows lean optimistic on training and may underuse it."
        )
    trial.notes.append(f"Embedding: the asLLR reading of each lead, PCA to {EMBEDDING_DIM} dimensions fitted on the training part.")
    use_dialogue = trial.has_text
    yield _gbdt(trial, use_dialogue)
    for source in sources:
        yield _gbdt(trial, use_dialogue, trial.embedding(source), f" + {source} asLLR embedding")
    for model in CTR_MODELS:
        yield _ctr(trial, model)
        for source in sources:
            yield _ctr(trial, model, trial.embedding(source), f" + {source} asLLR embedding")


def suite_margins(trial: Trial) -> Iterator[Outcome]:
    """HPRO with the paper's margins vs no margin vs one uniform margin vs learned margins."""
    if not trial.funnel.tiers:
        trial.notes.append("Margins suite needs preference tiers in the FunnelSpec; this funnel has none.")
        return
    paper = [t.margin for t in trial.funnel.tiers]
    uniform = float(np.mean(paper))
    variants = {
        f"margins as configured {_fmt(paper)}": trial.funnel,
        "no margin (0)": _with_margins(trial.funnel, [0.0] * len(paper)),
        f"uniform margin {uniform:.2f}": _with_margins(trial.funnel, [uniform] * len(paper)),
    }
    for name, funnel in variants.items():
        yield trial.asllr({}, funnel).outcome(f"asLLR + HPRO, {name}", "pair")
    learned = trial.asllr({"learn_margins": True})
    trial.notes.append(f"Seed {trial.seed}: learned margins ended at {_fmt(learned.margins)} (started at {_fmt(paper)}).")
    yield learned.outcome("asLLR + HPRO, learned margins", "pair")


def suite_rankby(trial: Trial) -> Iterator[Outcome]:
    """One asLLR + HPRO model ranked by its pairwise head, its pointwise head, and a blend."""
    run = trial.asllr({})
    for rank_by in ("pair", "point", "blend"):
        yield run.outcome(f"asLLR + HPRO, rank by {rank_by}", rank_by)


def suite_demo(trial: Trial) -> Iterator[Outcome]:
    """The README's story in minutes, on sparse labels: baselines without and with the funnel, asLLR without and with HPRO."""
    yield _fitted(trial, LogisticBaseline(trial.features, label_column=trial.funnel.label_column))
    if trial.has_text:
        yield _linear(trial, None, "Logistic regression tabular + TF-IDF")
        yield _gbdt(trial, use_dialogue=True)
        yield _gbdt_hpro(trial, trial.funnel, "paper tiers")
    yield trial.asllr({"hpro_weight": 0.0}).outcome("asLLR, BCE only")
    yield trial.asllr({}).outcome("asLLR + HPRO (paper tiers)")


def _linear(trial: Trial, funnel: FunnelSpec | None, name: str) -> Outcome:
    """Logistic regression on the tabular encoding + the dialogue's TF-IDF (SVD); with ``funnel``, + its tier pairs."""
    started = time.perf_counter()
    train_text, test_text = trial.tfidf_svd()
    model = PairwiseLogisticBaseline(trial.features, funnel or trial.funnel, hpro_weight=1.0 if funnel else 0.0, seed=trial.seed)
    scores = model.fit(trial.split.train, extra=train_text).predict(trial.split.test, extra=test_text)
    return Outcome(name, scores, scores, time.perf_counter() - started)


def _gbdt_hpro(trial: Trial, funnel: FunnelSpec, tiers: str) -> Outcome:
    started = time.perf_counter()
    gbdt = GBDTHPROBaseline(trial.features, funnel, use_dialogue=True, config=GBDTConfig(seed=trial.seed))
    scores = gbdt.fit(trial.split.train).predict(trial.split.test)
    return Outcome(f"{gbdt.name} ({tiers})", scores, None, time.perf_counter() - started)


def _tuned_asllr(trial: Trial, name: str, train_overrides: dict, funnel: FunnelSpec | None = None) -> Outcome:
    """The recipe over :data:`HEADS_GRID`, keeping the point with the best validation AUC; ranked as the model chooses."""
    minimum = {"min_train_positives": min(trial.recipe.train.min_train_positives, CURVE_MIN_POSITIVES)}
    runs = [trial.asllr({**minimum, **point, **train_overrides}, funnel) for point in HEADS_GRID]
    seconds = sum(run.seconds for run in runs)
    best = max(runs, key=lambda run: -np.inf if np.isnan(run.result.best_val_auc) else run.result.best_val_auc)
    return replace(best.outcome(name), seconds=seconds)


def _regime_models(trial: Trial, full: bool) -> Iterator[Outcome]:
    """Each model family without and with funnel supervision on one training part; the costly baselines on the full one."""
    order = FunnelSpec.total_order()
    yield _fitted(trial, LogisticBaseline(trial.features, label_column=trial.funnel.label_column))
    if trial.has_text:
        yield _linear(trial, None, "Logistic regression tabular + TF-IDF")
        yield _linear(trial, trial.funnel, "Logistic regression tabular + TF-IDF + HPRO (paper tiers)")
        yield _gbdt(trial, use_dialogue=True)
        yield _gbdt_hpro(trial, trial.funnel, "paper tiers")
        yield _gbdt_hpro(trial, order, "total order")
    yield _tuned_asllr(trial, "asLLR, BCE only", {"hpro_weight": 0.0})
    yield _tuned_asllr(trial, "asLLR + HPRO (paper tiers)", {})
    yield _tuned_asllr(trial, "asLLR + HPRO (total order)", {}, order)
    if full and trial.has_text:
        started = time.perf_counter()
        catboost = CatBoostTextBaseline(trial.features, label_column=trial.funnel.label_column, seed=trial.seed)
        scores = catboost.fit(trial.split.train).predict(trial.split.test)
        yield Outcome(catboost.name, scores, scores, time.perf_counter() - started)
        yield _ctr(trial, REGIME_CTR_MODEL)


def suite_regime(trial: Trial) -> Iterator[Outcome]:
    """The paper's regime (sparse labels): every model family without and with the funnel, over training sizes.

    The learning curve trains on the newest ``train_sizes`` leads of the training part and on
    all of it; the test part stays. Then the table without its dialogue column (target: the
    default recipe within 0.005 AUC of the better of logistic regression and LightGBM).
    """
    full = len(trial.split.train)
    for size in [n for n in trial.train_sizes if n < full] + [full]:
        for outcome in _regime_models(trial.newest(size), size == full):
            yield replace(outcome, train_size=size)
    if trial.features.dialogue_column:
        plain = trial.without_dialogue()
        for outcome in (
            _fitted(plain, LogisticBaseline(plain.features, label_column=plain.funnel.label_column)),
            _gbdt(plain, use_dialogue=False),
            plain.asllr({}).outcome(f"asLLR ({trial.recipe_name}), no LLM: heads on the side input"),
        ):
            yield replace(outcome, model=f"no dialogue: {outcome.model}")


@dataclass(frozen=True)
class SuiteData:
    """The data a suite simulates by default."""

    preset: str  # SynthConfig preset: 'default' (1.4 % lock-ins, the paper's regime) or 'dense' (10 %)
    n: int  # leads per set
    one_set: bool  # one set whose seeds vary the models only; else a fresh set per seed


#: The dense contrast set of the paper-table suites: 4,000 leads, 10 % positives, a fresh set per seed.
DENSE = SuiteData("dense", 4_000, one_set=False)
#: The paper's regime: 60,000 leads at 1.4 % positives, so the newest 30 % (test) holds >= 250 positives.
SPARSE = SuiteData("default", 60_000, one_set=True)


@dataclass(frozen=True)
class Suite:
    title: str
    run: Callable[[Trial], Iterator[Outcome]]
    metrics: tuple[str, ...] = ("auc", "pr_auc", "p@1%", "p@5%", "r@5%")
    data: SuiteData = DENSE


SUITES: dict[str, Suite] = {
    "table1": Suite("The paper's Table 1: CTR models vs the asLLR ablation (base, +CE, +HPRO)", suite_table1),
    "table2": Suite(
        "The paper's Table 2: funnel baselines vs asLLR without and with HPRO", suite_table2, ("auc", "p@0.1%", "p@1%", "r@5%")
    ),
    "transfer": Suite("Embedding transfer: baselines with and without the asLLR text embedding", suite_transfer),
    "margins": Suite("HPRO margins: as configured vs none vs uniform vs learned", suite_margins),
    "rankby": Suite("Ranking by the pairwise head vs the pointwise head vs a blend", suite_rankby),
    "demo": Suite(
        "leadrank demo: funnel supervision on sparse labels, baselines and asLLR",
        suite_demo,
        ("auc", "pr_auc", "p@1%", "p@5%"),
        SuiteData("default", 14_000, one_set=True),
    ),
    "regime": Suite(
        "The paper's regime (1.4 % positives): funnel supervision in every model family, over training sizes",
        suite_regime,
        ("auc", "pr_auc", "p@1%", "p@5%"),
        SPARSE,
    ),
}

#: The CTR model the regime suite runs (the best of the six on the dense suites).
REGIME_CTR_MODEL = "xdeepfm"


#: What ``--suite all`` runs: the paper's experiments (the demo suite is for ``leadrank demo``).
PAPER_SUITES = ("table1", "table2", "transfer", "margins", "rankby")


def _with_margins(funnel: FunnelSpec, margins: list[float]) -> FunnelSpec:
    tiers = [t.model_copy(update={"margin": m}) for t, m in zip(funnel.tiers, margins, strict=True)]
    return funnel.model_copy(update={"tiers": tiers})


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


# --------------------------------------------------------------------------- running and writing


def _trials(config: BenchConfig, recipe: RunConfig) -> Iterator[Trial]:
    data = config.simulated
    split = None
    for seed in config.seeds:
        if split is None or not (config.data is not None or data.one_set):
            table = (
                config.data
                if config.data is not None
                else simulate(SynthConfig.preset(check_preset(data.preset), n=data.n, seed=0 if data.one_set else seed))
            )
            split = time_split(table, config.test_fraction)
            check_minimums(
                split.train,
                config.funnel.label_column,
                min_positives=recipe.train.min_train_positives,
                min_negatives=recipe.train.min_train_negatives,
            )
        yield Trial(split, config.features, config.funnel, seed, recipe, recipe_name=config.preset, train_sizes=config.train_sizes)


def run_bench(config: BenchConfig, progress: Callable[[str], None] | None = None) -> list[Path]:
    """Run ``config.suites`` over ``config.seeds``; returns the results directories written.

    The results are written after every seed (with the seeds done so far), so a long run can be
    read while it goes on and a stopped one keeps the seeds it finished.
    """
    check_no_leakage(config.features.input_columns, config.funnel.supervision_columns)
    recipe = RunConfig.resolve(config.preset, config.config_file, model={"backbone": config.backbone} if config.backbone else {})
    _check_backbone(recipe)
    runs: dict[str, list[dict]] = {name: [] for name in config.suites}
    predictions: dict[str, list[pd.DataFrame]] = {name: [] for name in config.suites}
    notes: dict[str, list[str]] = {name: [] for name in config.suites}
    sizes: list[dict] = []
    for trial in _trials(config, recipe):
        sizes.append(_sizes(trial))
        for name in config.suites:
            trial.notes = []
            for outcome in itertools.chain(SUITES[name].run(trial), _oracle(trial)):  # lazily: progress as it goes
                if progress is not None:
                    progress(f"seed {trial.seed} {name}: {outcome.model} ({outcome.seconds:.0f} s)")
                runs[name].append(_run_row(outcome, trial))
                predictions[name].append(_prediction_frame(outcome, trial))
            notes[name] += [n for n in trial.notes if n not in notes[name]]
        done = replace(config, seeds=config.seeds[: len(sizes)])
        written = _write_suites(done, runs, predictions, notes, _describe(done, sizes), recipe, progress)
    return written


def _check_backbone(recipe: RunConfig) -> None:
    """Fail before the baselines, not after them, on a backbone that is missing or lacks the recipe's pool layer."""
    backbone = load_backbone(recipe.model.backbone)
    resolve_pool_layer(recipe.model, backbone.model.config.num_hidden_layers)


def _write_suites(
    config: BenchConfig,
    runs: dict,
    predictions: dict,
    notes: dict,
    data_info: dict,
    recipe: RunConfig,
    progress: Callable[[str], None] | None,
) -> list[Path]:
    written = []
    for name in config.suites:
        if not runs[name]:  # e.g. margins on a funnel without tiers and no oracle: nothing to write
            if progress is not None:
                progress(f"{name}: no rows to write. " + " ".join(notes[name]))
            continue
        frame = pd.concat(predictions[name], ignore_index=True)
        written.append(_write_suite(config, name, runs[name], frame, notes[name], data_info, recipe))
    return written


def _oracle(trial: Trial) -> list[Outcome]:
    if ORACLE_COLUMN not in trial.split.test.columns:
        return []
    truth = trial.split.test[ORACLE_COLUMN].to_numpy(float)
    return [Outcome("oracle (true propensity)", truth, truth)]


def _run_row(outcome: Outcome, trial: Trial) -> dict:
    row = score_row(outcome.model, trial.labels, outcome.scores)
    metrics = {k: None if isinstance(v, float) and np.isnan(v) else v for k, v in row.items() if k != "model"}
    size = {} if outcome.train_size is None else {"train_size": outcome.train_size}
    return {"model": outcome.model, "seed": trial.seed, **size, **metrics, "minutes": outcome.seconds / 60}


def _prediction_frame(outcome: Outcome, trial: Trial) -> pd.DataFrame:
    test = trial.split.test
    stage = test[trial.funnel.stage_column].astype(str) if trial.funnel.stage_column in test.columns else None
    return pd.DataFrame(
        {
            "model": outcome.model,
            "seed": trial.seed,
            "lead_id": test[ID_COLUMN].astype(str).to_numpy(),
            "label": trial.labels,
            "stage": stage.to_numpy() if stage is not None else None,
            "score": np.asarray(outcome.scores, dtype=float),
            "probability": np.asarray(outcome.probability, dtype=float) if outcome.probability is not None else np.nan,
            "train_size": np.nan if outcome.train_size is None else outcome.train_size,
        }
    )


def _sizes(trial: Trial) -> dict:
    return {"train_rows": len(trial.split.train), "test_rows": len(trial.split.test), "test_positives": int(trial.labels.sum())}


def _describe(config: BenchConfig, sizes: list[dict]) -> dict:
    """Where the data came from and the split sizes (one number, or one per seed when they differ)."""
    data = config.simulated
    sets = "one set; the seeds vary the models" if data.one_set else "a fresh set per seed"
    source = config.data_name if config.data is not None else f"simulated {data.preset} preset, n={data.n:,} ({sets})"
    info: dict = {"source": source}
    for key in sizes[0]:
        values = [size[key] for size in sizes]
        info[key] = values[0] if len(set(values)) == 1 else values
    return info


def _precision_notes(metrics: tuple[str, ...], runs: list[dict], data_info: dict) -> tuple[list[str], list[str]]:
    """Drop P@k columns with too few leads in the top set; say so, with the interval width at P@1 % / P@5 %."""
    kept, notes = [], []
    test_rows = min(np.atleast_1d(data_info["test_rows"]))
    for metric in metrics:
        if metric.startswith("p@") and all(r.get(metric) is None for r in runs):
            top = top_count(float(metric[2:-1]) / 100, test_rows)
            notes.append(
                f"{metric.upper()} omitted: the top {metric[2:]} of {test_rows:,} test leads is {top} lead(s) "
                f"(< {MIN_LEADS_FOR_PRECISION})."
            )
            continue
        kept.append(metric)
    for metric in ("p@1%", "p@5%"):
        top = top_count(float(metric[2:-1]) / 100, test_rows)
        if metric in kept:
            notes.append(
                f"{metric.upper()} is over {top} leads per seed: a 95 % interval at 0.5 is about ±{1.96 * np.sqrt(0.25 / top):.2f}."
            )
    return kept, notes


def _write_suite(
    config: BenchConfig, name: str, runs: list[dict], predictions: pd.DataFrame, notes: list[str], data_info: dict, recipe: RunConfig
) -> Path:
    from leadrank import report

    folder = config.out / name
    folder.mkdir(parents=True, exist_ok=True)
    metrics, precision_notes = _precision_notes(SUITES[name].metrics, runs, data_info)
    curve = [r for r in runs if "train_size" in r]
    largest = max((r["train_size"] for r in curve), default=None)
    headline = [r for r in runs if r.get("train_size", largest) == largest]  # the full training part, and rows without a curve
    rows = [{k: v for k, v in r.items() if k in ("model", "seed", "minutes", *metrics)} for r in headline]
    extra: dict = {}
    if curve:
        extra["learning_curve"] = [{k: v for k, v in r.items() if k in ("model", "seed", "train_size", "minutes", *metrics)} for r in curve]
        extra["differences"] = _differences(predictions)
        predictions = predictions[predictions["train_size"].isna() | (predictions["train_size"] == largest)]
    extra["intervals"] = _intervals(predictions)
    layer = {-1: "", "middle": " of the middle layer"}.get(recipe.model.pool_layer, f" of layer {recipe.model.pool_layer}")
    asllr = (
        f"asLLR recipe: preset {config.preset!r} ({recipe.model.mode} {recipe.model.backbone}, pooling {recipe.model.pooling}{layer}); "
        "an asLLR row that names no head ranks as `leadrank score` does, by the head the model chose on its validation "
        "slice (rank_by in its leadrank.json), scored through the same Scorer."
    )
    results = {
        "suite": name,
        "title": SUITES[name].title,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "leadrank_version": leadrank.__version__,
        "command": config.command,
        "data": data_info,
        "seeds": list(config.seeds),
        "stages": list(config.funnel.stages),
        "metrics": metrics,
        "notes": [asllr, *notes, *precision_notes],
        "runs": rows,
        "summary": report.summarise(rows),
        "machine": describe(),
        **extra,
    }
    write_text_atomic(folder / "results.json", json.dumps(results, indent=2, default=_json_default))
    write_table(predictions, folder / "predictions.parquet")
    loaded = report.load_results(folder)
    write_text_atomic(folder / "results.md", _markdown(loaded, extra))
    report.draw_figures(loaded, predictions, folder / "figures", stages=loaded.stages)
    for metric in ("auc", "p@1%") if curve else ():
        report.plot_learning_curve(
            extra["learning_curve"], folder / "figures" / f"learning_curve_{metric.replace('@', '_at_').replace('%', '')}.png", metric
        )
    return folder


def _markdown(results, extra: dict) -> str:
    """results.md: mean ± std over seeds, the 95 % intervals, and the paired differences per training size."""
    from leadrank import report

    parts = [f"## {results.title}\n", report.markdown_table(results), ""]
    parts += [
        "### 95 % bootstrap intervals over the test leads (per seed, averaged over seeds)\n",
        report.interval_table(extra["intervals"], INTERVAL_METRICS),
        "",
    ]
    if extra.get("differences"):
        parts += [
            "### Paired bootstrap differences (same test leads), mean over seeds [low, high]\n",
            _differences_table(extra["differences"]),
            "",
        ]
    return "\n".join(parts) + "\n"


def _differences_table(differences: list[dict]) -> str:
    frame = pd.DataFrame(differences)
    frame[["point", "low", "high"]] = pd.DataFrame(frame["difference"].tolist(), index=frame.index)
    mean = frame.groupby(["model", "versus", "train_size", "metric"], sort=False)[["point", "low", "high"]].mean().reset_index()
    lines = ["| model | versus | training leads | metric | difference [95 % interval] |", "|---|---|---|---|---|"]
    for row in mean.itertuples(index=False):
        scale, unit = (100, " pt") if row.metric.startswith("p@") else (1, "")
        lines.append(
            f"| {row.model} | {row.versus} | {row.train_size:,} | {row.metric} | "
            f"{row.point * scale:+.3f}{unit} [{row.low * scale:+.3f}, {row.high * scale:+.3f}] |"
        )
    return "\n".join(lines)


#: Metrics given a 95 % bootstrap interval over the test leads.
INTERVAL_METRICS = ("auc", "p@1%", "p@5%")


def _intervals(predictions: pd.DataFrame) -> dict[str, dict[str, list[float]]]:
    """Per model: [point, low, high] of each :data:`INTERVAL_METRICS`, per seed (same resamples for every model) then averaged."""
    per_model: dict[str, list[dict]] = {}
    for _, part in predictions.groupby("seed", sort=True):
        labels = part.groupby("lead_id", sort=False)["label"].first()
        scores = {
            model: rows.set_index("lead_id")["score"].reindex(labels.index).to_numpy() for model, rows in part.groupby("model", sort=False)
        }
        for model, by_metric in bootstrap_intervals(labels.to_numpy(), scores, INTERVAL_METRICS).items():
            per_model.setdefault(model, []).append(by_metric)
    return {
        model: {metric: np.mean([seed[metric] for seed in seeds], axis=0).round(4).tolist() for metric in INTERVAL_METRICS}
        for model, seeds in per_model.items()
    }


def _differences(predictions: pd.DataFrame) -> list[dict]:
    """Paired bootstrap differences (:data:`REGIME_DIFFERENCES`) per training size, averaged over seeds."""
    out = []
    for (size, seed), part in predictions.dropna(subset=["train_size"]).groupby(["train_size", "seed"], sort=True):
        labels = part.groupby("lead_id", sort=False)["label"].first()
        scores = {
            model: rows.set_index("lead_id")["score"].reindex(labels.index).to_numpy() for model, rows in part.groupby("model", sort=False)
        }
        for better, base in REGIME_DIFFERENCES:
            if better in scores and base in scores:
                for metric in INTERVAL_METRICS:
                    diff = bootstrap_difference(labels.to_numpy(), scores[better], scores[base], metric, seed=int(seed))
                    out.append(
                        {
                            "model": better,
                            "versus": base,
                            "train_size": int(size),
                            "seed": int(seed),
                            "metric": metric,
                            "difference": list(diff),
                        }
                    )
    return out


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
