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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate.utils import is_bf16_available
from sklearn.decomposition import PCA
from tqdm.auto import tqdm

import leadrank
from leadrank._files import write_text_atomic
from leadrank.artifact import blend_scores, fit_calibration
from leadrank.baselines import (
    CTR_MODELS,
    CTRBaseline,
    FunnelDirect,
    FunnelRecencyRule,
    FunnelTwoStage,
    GBDTBaseline,
    GBDTConfig,
    LogisticBaseline,
)
from leadrank.baselines._columns import DEFAULT_STAGE_COLUMN
from leadrank.config import ID_COLUMN, FeatureSpec, FunnelSpec
from leadrank.data.io import write_table
from leadrank.data.profile import ORACLE_COLUMN
from leadrank.data.prompt import DEFAULT_TEMPLATE, build_prompts
from leadrank.data.split import TimeSplit, check_no_leakage, time_split
from leadrank.data.synth import SynthConfig, simulate
from leadrank.metrics import k_label, precision_at, ranking_report, top_count
from leadrank.model.asllr import ASLLR, answer_token_ids
from leadrank.model.backbone import load_backbone
from leadrank.model.frozen import FeatureCache, extract_features
from leadrank.model.inputs import tokenize
from leadrank.training import RunConfig, TrainResult, train

#: Precision at the top 0.1 % is reported only where that top set holds at least this many leads.
MIN_LEADS_FOR_PRECISION = 20
#: Width of the asLLR text embedding given to the baselines in the transfer suite (PCA of the reading).
EMBEDDING_DIM = 16


def score_row(name: str, labels: np.ndarray, scores: np.ndarray) -> dict[str, object]:
    """One results row: AUC, PR-AUC, P@0.1 % (only when its top set holds enough leads), P@1 %, P@5 %, R@5 %."""
    report = ranking_report(labels, scores)
    row: dict[str, object] = {"model": name, "auc": report["auc"], "pr_auc": report["pr_auc"]}
    enough = top_count(0.001, len(labels)) >= MIN_LEADS_FOR_PRECISION
    row["p@0.1%"] = precision_at(labels, scores, 0.001) if enough else np.nan
    for k in (0.01, 0.05):
        row[f"p@{k_label(k)}"] = precision_at(labels, scores, k)
    row["r@5%"] = report["r@5%"]
    return row


def compare_baselines(split: TimeSplit, features: FeatureSpec, funnel: FunnelSpec, *, seed: int = 0) -> pd.DataFrame:
    """Fit the LightGBM baselines on ``split.train``; score ``split.test``; add the oracle when known."""
    check_no_leakage(features.input_columns, funnel.supervision_columns)
    labels = split.test[funnel.label_column].astype(int).to_numpy()
    rows = []
    variants = [False, True] if features.dialogue_column else [False]
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
    """What to run and on which data; ``data=None`` simulates ``n`` dense leads per seed."""

    suites: tuple[str, ...]
    out: Path
    seeds: tuple[int, ...] = (0, 1, 2)
    data: pd.DataFrame | None = None
    data_name: str = ""
    features: FeatureSpec = field(default_factory=FeatureSpec.nev_default)
    funnel: FunnelSpec = field(default_factory=FunnelSpec.paper_default)
    n: int = 4000
    preset: str = "cpu-quick"
    backbone: str | None = None
    config_file: Path | None = None
    test_fraction: float = 0.3
    command: str = ""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.suites) - set(SUITES))
        if unknown or not self.suites:
            raise ValueError(f"unknown suite(s) {unknown or '(none given)'}; choose from {sorted(SUITES)} or 'all'.")
        if len(self.seeds) < 1 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one; got {list(self.seeds)}.")


@dataclass(frozen=True)
class Outcome:
    """One model's scores on the test part of one seed."""

    model: str
    scores: np.ndarray
    probability: np.ndarray | None = None
    seconds: float = 0.0


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

    def outcome(self, name: str, rank_by: str) -> Outcome:
        scores = {"point": self.point, "pair": self.pair, "blend": self.blend}[rank_by]
        seconds, self.seconds = self.seconds, 0.0
        return Outcome(name, scores, self.probability, seconds)


class Trial:
    """One seed: its split and specs, and the asLLR runs every suite of the bench shares."""

    def __init__(self, split: TimeSplit, features: FeatureSpec, funnel: FunnelSpec, seed: int, recipe: RunConfig) -> None:
        self.split, self.features, self.funnel, self.seed, self.recipe = split, features, funnel, seed, recipe
        self.labels = split.test[funnel.label_column].astype(int).to_numpy()
        self.notes: list[str] = []
        self._runs: dict[str, AsllrRun] = {}
        self._embeddings: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def frozen(self) -> bool:
        return self.recipe.model.mode == "frozen"

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
        point, pair = _test_scores(result, self.split.test, self.features, self.recipe)
        stats = {
            "point_mean": result.val_point.mean(), "point_std": result.val_point.std() or 1.0,
            "pair_mean": result.val_pair.mean(), "pair_std": result.val_pair.std() or 1.0,
        }
        probability = fit_calibration(result.val_labels, result.val_point).apply(point)
        return AsllrRun(point, pair, blend_scores(point, pair, stats), probability, result.margins, result, time.perf_counter() - started)

    def embedding(self, source: str) -> tuple[np.ndarray, np.ndarray]:
        """(train, test) asLLR readings reduced to :data:`EMBEDDING_DIM` by PCA fitted on train.

        ``source='frozen'``: the backbone as it ships; ``'tuned'``: the LoRA-trained model of the
        full asLLR run (its reading after fine-tuning).
        """
        if source not in self._embeddings:
            if source == "frozen":
                model_config = self.recipe.model.model_copy(update={"mode": "frozen"})
                backbone = load_backbone(model_config.backbone)
                model = ASLLR(backbone.model, model_config, answer_token_ids(backbone.tokenizer, DEFAULT_TEMPLATE))
                reader = _Reader(model, backbone.tokenizer, backbone.checksum, model_config.max_dialogue_tokens, cache=True)
            else:
                result = self.asllr({}).result
                reader = _Reader(result.model, result.backbone.tokenizer, result.backbone.checksum, self.recipe.model.max_dialogue_tokens, cache=False)
            train_states, test_states = reader.read(self.split.train, self.features), reader.read(self.split.test, self.features)
            pca = PCA(n_components=min(EMBEDDING_DIM, train_states.shape[1]), random_state=self.seed).fit(train_states)
            self._embeddings[source] = (pca.transform(train_states), pca.transform(test_states))
        return self._embeddings[source]


@dataclass
class _Reader:
    """Pooled readings of a model for whole tables (cached on disk for a frozen backbone)."""

    model: ASLLR
    tokenizer: object
    checksum: str
    max_dialogue_tokens: int
    cache: bool

    def read(self, table: pd.DataFrame, features: FeatureSpec) -> np.ndarray:
        dtype = torch.bfloat16 if is_bf16_available() else torch.float32
        prompts = build_prompts(table, features, self.tokenizer, self.max_dialogue_tokens, DEFAULT_TEMPLATE)
        cache = FeatureCache.for_model(self.model, self.checksum, dtype) if self.cache else None
        with tqdm(total=len(prompts), desc="reading leads", unit="lead", leave=False) as bar:
            states = extract_features(
                self.model, prompts, tokenize(self.tokenizer, prompts), cache, pad_id=self.tokenizer.pad_token_id,
                dtype=dtype, progress=bar.update,
            )
        return states.numpy()


@torch.inference_mode()
def _test_scores(result: TrainResult, test: pd.DataFrame, features: FeatureSpec, recipe: RunConfig) -> tuple[np.ndarray, np.ndarray]:
    """(point logits, pair scores) of a trained model on ``test``; frozen readings come from the cache."""
    model = result.model.eval()
    reader = _Reader(model, result.backbone.tokenizer, result.backbone.checksum, recipe.model.max_dialogue_tokens, cache=model.config.mode == "frozen")
    if model.config.mode == "frozen":
        out = model(pooled=torch.from_numpy(reader.read(test, features)))
        return out.point_logits.float().numpy(), out.pair_scores.float().numpy()
    states = torch.from_numpy(reader.read(test, features))  # LoRA: the fine-tuned reading, then the heads
    point, pair = model.heads(states)
    return point.float().numpy(), pair.float().numpy()


# --------------------------------------------------------------------------- the suites


def _ctr(trial: Trial, model: str, extra: tuple[np.ndarray, np.ndarray] | None = None, suffix: str = "") -> Outcome:
    started = time.perf_counter()
    ctr = CTRBaseline(trial.features, model, label_column=trial.funnel.label_column, seed=trial.seed)
    ctr.fit(trial.split.train, extra=None if extra is None else extra[0])
    probability = ctr.predict(trial.split.test, extra=None if extra is None else extra[1])
    return Outcome(ctr.name + suffix, probability, probability, time.perf_counter() - started)


def _gbdt(trial: Trial, use_dialogue: bool, extra: tuple[np.ndarray, np.ndarray] | None = None, suffix: str = "") -> Outcome:
    started = time.perf_counter()
    gbdt = GBDTBaseline(trial.features, label_column=trial.funnel.label_column, use_dialogue=use_dialogue, config=GBDTConfig(seed=trial.seed))
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
    yield trial.asllr({}).outcome("asLLR + CE + HPRO", "pair")


def suite_table1(trial: Trial) -> Iterator[Outcome]:
    """The paper's Table 1: the six CTR models vs the asLLR ablation base -> +CE -> +HPRO."""
    for model in CTR_MODELS:
        yield _ctr(trial, model)
    yield from _asllr_ablation(trial)


def suite_table2(trial: Trial) -> Iterator[Outcome]:
    """The paper's Table 2: funnel rule, funnel + CTR (two-stage, direct), asLLR without and with HPRO."""
    if _has_stage_columns(trial):
        yield _fitted(trial, FunnelRecencyRule(trial.features, label_column=trial.funnel.label_column))
        yield _fitted(trial, FunnelTwoStage(trial.features, label_column=trial.funnel.label_column, seed=trial.seed))
        yield _fitted(trial, FunnelDirect(trial.features, label_column=trial.funnel.label_column, seed=trial.seed))
    yield _fitted(trial, LogisticBaseline(trial.features, label_column=trial.funnel.label_column))
    yield _gbdt(trial, use_dialogue=False)
    if trial.features.dialogue_column:
        yield _gbdt(trial, use_dialogue=True)
    yield trial.asllr({"hpro_weight": 0.0}).outcome("asLLR without HPRO", "point")
    yield trial.asllr({}).outcome("asLLR with HPRO", "pair")


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
    use_dialogue = trial.features.dialogue_column is not None
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
    """The README's story in minutes: cheap baselines, then asLLR without and with HPRO."""
    if _has_stage_columns(trial):
        yield _fitted(trial, FunnelRecencyRule(trial.features, label_column=trial.funnel.label_column))
    yield _fitted(trial, LogisticBaseline(trial.features, label_column=trial.funnel.label_column))
    yield _gbdt(trial, use_dialogue=False)
    if trial.features.dialogue_column:
        yield _gbdt(trial, use_dialogue=True)
    yield trial.asllr({"hpro_weight": 0.0}).outcome("asLLR without HPRO", "point")
    yield trial.asllr({}).outcome("asLLR with HPRO", "pair")


@dataclass(frozen=True)
class Suite:
    title: str
    run: Callable[[Trial], Iterator[Outcome]]
    metrics: tuple[str, ...] = ("auc", "pr_auc", "p@1%", "p@5%", "r@5%")


SUITES: dict[str, Suite] = {
    "table1": Suite("The paper's Table 1: CTR models vs the asLLR ablation (base, +CE, +HPRO)", suite_table1),
    "table2": Suite("The paper's Table 2: funnel baselines vs asLLR without and with HPRO", suite_table2, ("auc", "p@0.1%", "p@1%", "r@5%")),
    "transfer": Suite("Embedding transfer: baselines with and without the asLLR text embedding", suite_transfer),
    "margins": Suite("HPRO margins: as configured vs none vs uniform vs learned", suite_margins),
    "rankby": Suite("Ranking by the pairwise head vs the pointwise head vs a blend", suite_rankby),
    "demo": Suite("leadrank demo: baselines vs asLLR without and with HPRO", suite_demo),
}


#: What ``--suite all`` runs: the paper's experiments (the demo suite is for ``leadrank demo``).
PAPER_SUITES = ("table1", "table2", "transfer", "margins", "rankby")


def _with_margins(funnel: FunnelSpec, margins: list[float]) -> FunnelSpec:
    tiers = [t.model_copy(update={"margin": m}) for t, m in zip(funnel.tiers, margins, strict=True)]
    return funnel.model_copy(update={"tiers": tiers})


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


# --------------------------------------------------------------------------- running and writing


def _trials(config: BenchConfig, recipe: RunConfig) -> Iterator[Trial]:
    for seed in config.seeds:
        if config.data is None:
            table = simulate(SynthConfig.preset("dense", n=config.n, seed=seed))
        else:
            table = config.data
        yield Trial(time_split(table, config.test_fraction), config.features, config.funnel, seed, recipe)


def run_bench(config: BenchConfig, progress: Callable[[str], None] | None = None) -> list[Path]:
    """Run ``config.suites`` over ``config.seeds``; returns the results directories written."""
    check_no_leakage(config.features.input_columns, config.funnel.supervision_columns)
    recipe = RunConfig.resolve(config.preset, config.config_file, model={"backbone": config.backbone} if config.backbone else {})
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
    data_info = _describe(config, sizes)
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
    return {"model": outcome.model, "seed": trial.seed, **metrics, "minutes": outcome.seconds / 60}


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
        }
    )


def _sizes(trial: Trial) -> dict:
    return {"train_rows": len(trial.split.train), "test_rows": len(trial.split.test), "test_positives": int(trial.labels.sum())}


def _describe(config: BenchConfig, sizes: list[dict]) -> dict:
    """Where the data came from and the split sizes (one number, or one per seed when they differ)."""
    source = config.data_name if config.data is not None else f"simulated dense preset, n={config.n} per seed (a fresh set per seed)"
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
            notes.append(f"{metric.upper()} omitted: the top {metric[2:]} of {test_rows:,} test leads is {top} lead(s) (< {MIN_LEADS_FOR_PRECISION}).")
            continue
        kept.append(metric)
    for metric in ("p@1%", "p@5%"):
        top = top_count(float(metric[2:-1]) / 100, test_rows)
        if metric in kept:
            notes.append(f"{metric.upper()} is over {top} leads per seed: a 95 % interval at 0.5 is about ±{1.96 * np.sqrt(0.25 / top):.2f}.")
    return kept, notes


def _write_suite(config: BenchConfig, name: str, runs: list[dict], predictions: pd.DataFrame, notes: list[str], data_info: dict, recipe: RunConfig) -> Path:
    from leadrank import report

    folder = config.out / name
    folder.mkdir(parents=True, exist_ok=True)
    metrics, precision_notes = _precision_notes(SUITES[name].metrics, runs, data_info)
    rows = [{k: v for k, v in r.items() if k in ("model", "seed", "minutes", *metrics)} for r in runs]
    asllr = f"asLLR recipe: preset {config.preset!r} ({recipe.model.mode} {recipe.model.backbone}, pooling {recipe.model.pooling}" + (
        f" of layer {recipe.model.pool_layer})" if recipe.model.pool_layer != -1 else ")"
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
    }
    write_text_atomic(folder / "results.json", json.dumps(results, indent=2, default=_json_default))
    write_table(predictions, folder / "predictions.parquet")
    loaded = report.load_results(folder)
    write_text_atomic(folder / "results.md", f"## {loaded.title}\n\n{report.markdown_table(loaded)}\n")
    report.draw_figures(loaded, predictions, folder / "figures", stages=loaded.stages)
    return folder


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
