"""Turn benchmark RESULTS directories into markdown, figures and one offline HTML report.

A RESULTS directory (written by ``leadrank bench``) holds:

* ``results.json``: suite, title, command, data description, seeds, metric names, notes,
  one row per (model, seed) in ``runs`` (see :class:`Results`) and, optionally, one row per
  (model, training size, seed) in ``learning_curve`` (drawn by :func:`plot_learning_curve`);
* ``predictions.parquet`` (optional here): one row per (model, seed, test lead) with
  ``model, seed, lead_id, label, stage, score, probability``.

The summary is always recomputed from ``runs`` (:func:`summarise`); the stored ``summary``
is not trusted. Figures are drawn with matplotlib's object API (``Figure`` + the Agg
canvas), never through pyplot's global state; text from the results is drawn literally
(a ``$`` does not start math) and escaped in the HTML.

Example:
    >>> from leadrank.report import find_results, write_report  # doctest: +SKIP
    >>> write_report(find_results([Path("runs/bench")]), Path("report.html"))  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sklearn.calibration import calibration_curve

from leadrank._files import atomic_path, write_text_atomic
from leadrank.config import FunnelSpec
from leadrank.metrics import top_count

__all__ = [
    "Results",
    "SUITE_ORDER",
    "TOP_SHARE",
    "draw_figures",
    "find_results",
    "interval_table",
    "load_predictions",
    "load_results",
    "markdown_table",
    "plot_learning_curve",
    "summarise",
    "summary_frame",
    "write_report",
]

RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "predictions.parquet"
_REQUIRED_PREDICTION_COLUMNS = ("model", "seed", "lead_id", "label", "score")
_OPTIONAL_PREDICTION_COLUMNS = ("stage", "probability")
_K_GRID = np.geomspace(0.001, 0.5, 40)  # precision@k curve: top 0.1 % .. 50 %
_FRACTION_GRID = np.linspace(0.0, 1.0, 201)  # gain curve: share of leads contacted


# --- results.json ---------------------------------------------------------------------------


class Run(BaseModel):
    """One (model, seed) row of ``runs``; every other key is a metric value (number or null)."""

    model_config = ConfigDict(extra="allow")

    model: str
    seed: int
    __pydantic_extra__: dict[str, float | None] = Field(init=False)


class CurvePoint(BaseModel):
    """One (model, training size, seed) row of ``learning_curve``; every other key is a metric value."""

    model_config = ConfigDict(extra="allow")

    model: str
    train_size: int = Field(gt=0)
    seed: int
    __pydantic_extra__: dict[str, float | None] = Field(init=False)


class Results(BaseModel):
    """The contents of ``RESULTS/results.json``; unknown top-level keys are ignored."""

    suite: str
    title: str
    created: datetime
    leadrank_version: str
    command: str
    data: dict[str, str | int | float | list[int | float] | None]  # a list: one value per seed
    seeds: list[int]
    stages: list[str] | None = None  # the funnel's stages, low to high, for the per-stage figure
    metrics: list[str] = Field(min_length=1)
    notes: list[str] = []
    runs: list[Run] = Field(min_length=1)
    summary: list[dict[str, Any]] = []
    learning_curve: list[CurvePoint] = []  # empty: the suite has no learning-curve figure

    @model_validator(mode="after")
    def _runs_have_metrics(self) -> Results:
        for i, run in enumerate(self.runs):
            missing = [m for m in self.metrics if m not in (run.model_extra or {})]
            if missing:
                raise ValueError(
                    f"runs[{i}] (model {run.model!r}, seed {run.seed}) lacks metric(s) {missing} listed in 'metrics'; "
                    "give each run a value (null when not computed) or drop the name from 'metrics'"
                )
        return self

    def run_dicts(self) -> list[dict[str, Any]]:
        """``runs`` as plain dicts, the input of :func:`summarise`."""
        return [run.model_dump() for run in self.runs]


def load_results(directory: str | Path) -> Results:
    """Read and check ``directory/results.json``; errors name the file and each bad field."""
    path = Path(directory) / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No {RESULTS_FILE} in {Path(directory)}; point at a directory written by `leadrank bench`.")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}. Rerun the benchmark to rewrite it.") from None
    try:
        return Results.model_validate(raw)
    except ValidationError as exc:
        problems = "\n".join(f"  - {_field_name(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path} does not follow the results format:\n{problems}\nFix these fields or rerun the benchmark.") from None


def _field_name(loc: tuple[int | str, ...]) -> str:
    """('runs', 1, 'auc') -> "field 'runs[1].auc'"; an empty location is the whole file."""
    if not loc:
        return "results"
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return f"field '{name}'"


def find_results(paths: Sequence[str | Path]) -> list[Path]:
    """Results directories from ``paths``: each is one, or a parent searched for ``*/results.json``."""
    found: list[Path] = []
    for path in map(Path, paths):
        if (path / RESULTS_FILE).is_file():
            found.append(path)
        elif path.is_dir():
            below = sorted(p.parent for p in path.rglob(RESULTS_FILE))
            if not below:
                raise FileNotFoundError(f"No {RESULTS_FILE} in {path} or its subdirectories; run `leadrank bench` first.")
            found.extend(below)
        else:
            raise FileNotFoundError(f"{path} is not a directory; pass a results directory from `leadrank bench`.")
    return found


# --- summary --------------------------------------------------------------------------------


def _is_oracle(model: str) -> bool:
    return model.lower().startswith("oracle")


def _model_order(models: Sequence[str]) -> list[str]:
    """Distinct models in order of first appearance, oracle rows last."""
    distinct = list(dict.fromkeys(models))
    return sorted(distinct, key=_is_oracle)  # stable: keeps appearance order within each group


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _metric_keys(runs: list[dict[str, Any]]) -> list[str]:
    """Keys other than model/seed whose non-null values are all numbers, in order of first appearance."""
    keys = [k for k in dict.fromkeys(k for run in runs for k in run) if k not in ("model", "seed")]
    return [k for k in keys if all(_is_number(run[k]) for run in runs if run.get(k) is not None)]


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per model: ``model``, ``n_seeds``, and ``<metric>_mean`` / ``<metric>_std`` per numeric key.

    The std is the sample std (ddof=1) and ``None`` for a single seed; NaN/null values are
    left out of both. Models keep their order of first appearance in ``runs``, oracle last.

    Example:
        >>> summarise([{"model": "a", "seed": 0, "auc": 0.5}, {"model": "a", "seed": 1, "auc": 0.75}])
        [{'model': 'a', 'n_seeds': 2, 'auc_mean': 0.625, 'auc_std': 0.1767766952966369}]
    """
    for i, run in enumerate(runs):
        if not isinstance(run.get("model"), str):
            raise ValueError(f"runs[{i}] needs a 'model' name (text); got {run.get('model')!r}.")
    keys = _metric_keys(runs)
    summary = []
    for model in _model_order([run["model"] for run in runs]):
        rows = [run for run in runs if run["model"] == model]
        entry: dict[str, Any] = {"model": model, "n_seeds": len(rows)}
        for key in keys:
            values = pd.Series([run.get(key) for run in rows], dtype=float).dropna()
            entry[f"{key}_mean"] = float(values.mean()) if len(values) else None
            entry[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else None
        summary.append(entry)
    return summary


def _cell(mean: float | None, std: float | None, form: str = "{:.3f}") -> str:
    if mean is None or math.isnan(mean):
        return "n/a"
    return form.format(mean) if std is None else f"{form.format(mean)} ± {form.format(std)}"


def _metric_cell(entry: Mapping[str, Any], metric: str) -> str:
    """ "mean ± std" of ``metric`` in a :func:`summarise` entry: p@/r@ in percent (one decimal), others with 3 decimals."""
    return _cell(entry[f"{metric}_mean"], entry[f"{metric}_std"], "{:.1%}" if _is_share(metric) else "{:.3f}")


def summary_frame(results: Results) -> pd.DataFrame:
    """Display table: one row per model (oracle last), ``seeds`` (n), then "mean ± std" per metric (3 decimals)."""
    rows = []
    for entry in summarise(results.run_dicts()):
        row = {"model": entry["model"], "seeds": entry["n_seeds"]}
        row.update({m: _cell(entry[f"{m}_mean"], entry[f"{m}_std"]) for m in results.metrics})
        rows.append(row)
    return pd.DataFrame(rows, columns=["model", "seeds", *results.metrics])


def markdown_table(results: Results) -> str:
    """The summary as a GitHub markdown table, then the notes as a list."""
    text = summary_frame(results).to_markdown(index=False, disable_numparse=True)
    text += "\n\nmean ± sample std over seeds; a single seed shows the mean alone."
    if results.notes:
        text += "\n\nNotes:\n" + "\n".join(f"- {note}" for note in results.notes)
    return text + "\n"


def _is_share(metric: str) -> bool:
    """precision@k and recall@k are shares of leads or buyers, shown as percentages."""
    return metric.startswith(("p@", "r@"))


def _interval_cell(metric: str, interval: tuple[float, float, float] | None) -> str:
    if interval is None:
        return "n/a"
    point, low, high = interval
    if _is_share(metric):
        return f"{point:.1%} [{low:.1%}, {high:.1%}]"
    return f"{point:.3f} [{low:.3f}, {high:.3f}]"


def interval_table(intervals: Mapping[str, Mapping[str, tuple[float, float, float]]], metrics: Sequence[str]) -> str:
    """A GitHub markdown table of "point [low, high]" per model (oracle last) and metric.

    ``intervals`` is ``{model: {metric: (point, low, high)}}`` as from
    :func:`leadrank.metrics.bootstrap_intervals`. p@/r@ metrics are shown in percent with
    one decimal ("12.3% [10.1%, 14.6%]"), others with 3 decimals; a missing metric is "n/a".
    """
    rows = [{"model": model, **{m: _interval_cell(m, intervals[model].get(m)) for m in metrics}} for model in _model_order(list(intervals))]
    return pd.DataFrame(rows, columns=["model", *metrics]).to_markdown(index=False, disable_numparse=True) + "\n"


# --- predictions ----------------------------------------------------------------------------


def load_predictions(directory: str | Path) -> pd.DataFrame | None:
    """Read ``directory/predictions.parquet``; ``None`` when there is none. Bad columns raise naming them."""
    path = Path(directory) / PREDICTIONS_FILE
    if not path.is_file():
        return None
    frame = pd.read_parquet(path)
    missing = [c for c in _REQUIRED_PREDICTION_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {missing}; it needs {list(_REQUIRED_PREDICTION_COLUMNS + _OPTIONAL_PREDICTION_COLUMNS)}.")
    for column in _OPTIONAL_PREDICTION_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    frame["stage"] = frame["stage"].astype(object)
    frame["probability"] = pd.to_numeric(frame["probability"], errors="raise")
    if not frame["label"].isin((0, 1)).all():
        raise ValueError(f"{path}: column 'label' must hold only 0 and 1; got {sorted(frame['label'].unique())[:5]}.")
    if not np.isfinite(frame["score"].to_numpy(dtype=float)).all():
        raise ValueError(f"{path}: column 'score' has NaN or infinite values; every lead needs a finite score.")
    probabilities = frame["probability"].dropna()
    if ((probabilities < 0) | (probabilities > 1)).any():
        raise ValueError(f"{path}: column 'probability' must lie in [0, 1] (or be null); got values outside it.")
    return frame


def _sorted_labels(part: pd.DataFrame) -> np.ndarray:
    """Labels from highest score to lowest; ties keep row order (as in leadrank.metrics)."""
    return part["label"].to_numpy(dtype=int)[np.argsort(-part["score"].to_numpy(dtype=float), kind="stable")]


def _mean_curve(predictions: pd.DataFrame, model: str, point: Any) -> np.ndarray:
    """Average over seeds of ``point(sorted_labels)`` for one model."""
    rows = predictions[predictions["model"] == model]
    return np.mean([point(_sorted_labels(part)) for _, part in rows.groupby("seed")], axis=0)


def _gain(labels: np.ndarray) -> np.ndarray:
    """Share of all buyers found when contacting each fraction in _FRACTION_GRID (0 at 0)."""
    if not labels.any():
        return np.full(len(_FRACTION_GRID), np.nan)
    cumulative = np.concatenate([[0], np.cumsum(labels)])
    counts = np.array([0] + [top_count(f, len(labels)) for f in _FRACTION_GRID[1:]])
    return cumulative[counts] / labels.sum()


def _precision_curve(labels: np.ndarray) -> np.ndarray:
    counts = np.array([top_count(k, len(labels)) for k in _K_GRID])
    return np.cumsum(labels)[counts - 1] / counts


# --- figures --------------------------------------------------------------------------------

# The 10 strong hues of tab20, then their light twins: 20 colours before one repeats. The line
# style changes every 10 models, so even neighbours in the legend differ in two ways.
_TAB20 = colormaps["tab20"]
assert isinstance(_TAB20, ListedColormap)  # a list of 20 colours, not a gradient
# matplotlib's stubs type ListedColormap.colors as any colour spec; tab20's is a tuple of RGB tuples.
_TAB20_COLOURS = cast(tuple[tuple[float, float, float], ...], _TAB20.colors)
_COLOURS = _TAB20_COLOURS[0::2] + _TAB20_COLOURS[1::2]
_LINESTYLES = ("-", "-.", ":")
_LEGEND_CHARS_PER_INCH = 14  # about how many 8 pt characters fit in one inch of legend


def _plain(text: str) -> str:
    """``text`` as matplotlib shows it literally: a ``$`` would otherwise start math (and may fail to parse)."""
    return text.replace("$", r"\$")


def _style(model: str, index: int) -> dict[str, Any]:
    if _is_oracle(model):
        return {"color": "black", "linestyle": "--", "label": _plain(model)}
    linestyle = _LINESTYLES[index // 10 % len(_LINESTYLES)]
    return {"color": _COLOURS[index % len(_COLOURS)], "linestyle": linestyle, "label": _plain(model)}


def _legend_below(figure: Figure, ax: Any) -> None:
    """Put ``ax``'s legend under the plot, where it never covers a curve, in as many columns as fit.

    The figure grows by the legend's height, so the plot keeps its size; the figure must use
    the constrained layout, which makes room for an "outside" legend.
    """
    handles, labels = ax.get_legend_handles_labels()
    entry_width = max(len(label) for label in labels) + 6  # characters, the line sample included
    columns = max(1, min(len(labels), int(figure.get_figwidth() * _LEGEND_CHARS_PER_INCH // entry_width)))
    rows = math.ceil(len(labels) / columns)
    figure.set_figheight(figure.get_figheight() + 0.2 * (rows + 1))
    figure.legend(handles, labels, loc="outside lower center", ncols=columns, fontsize=8)


def _log_percent_axis(ax: Any) -> None:
    """Log x axis labelled 0.1, 1, 10 (percent) rather than 10^-1, 10^0, 10^1."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))


def _save(figure: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return path


def _gain_figure(predictions: pd.DataFrame, models: list[str]) -> Figure:
    figure = Figure(figsize=(10, 4), layout="constrained")
    gain_ax, lift_ax = figure.subplots(1, 2)
    for i, model in enumerate(models):
        gain = _mean_curve(predictions, model, _gain)
        gain_ax.plot(_FRACTION_GRID * 100, gain * 100, **_style(model, i))
        lift_ax.plot(_FRACTION_GRID[1:] * 100, gain[1:] / _FRACTION_GRID[1:], **_style(model, i))
    gain_ax.plot([0, 100], [0, 100], color="grey", linewidth=0.8, label="random")
    lift_ax.axhline(1.0, color="grey", linewidth=0.8)
    gain_ax.set(xlabel="leads contacted (% of test set, by score)", ylabel="buyers found (%)", title="Cumulative gain")
    lift_ax.set(xlabel="leads contacted (%)", ylabel="lift (× random)", title="Lift")
    _log_percent_axis(lift_ax)
    _legend_below(figure, gain_ax)  # one legend for both panels
    return figure


def _precision_figure(predictions: pd.DataFrame, models: list[str]) -> Figure:
    figure = Figure(figsize=(6, 4), layout="constrained")
    ax = figure.subplots()
    for i, model in enumerate(models):
        ax.plot(_K_GRID * 100, _mean_curve(predictions, model, _precision_curve), **_style(model, i))
    ax.axhline(predictions["label"].mean(), color="grey", linewidth=0.8, label="base rate")
    ax.set(xlabel="top k (% of test leads)", ylabel="precision@k", title="Precision in the top k")
    _log_percent_axis(ax)
    _legend_below(figure, ax)
    return figure


def _reliability_figure(predictions: pd.DataFrame, models: list[str]) -> Figure:
    figure = Figure(figsize=(5, 5), layout="constrained")
    ax = figure.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, label="perfectly calibrated")
    for i, model in enumerate(models):
        rows = predictions[(predictions["model"] == model) & predictions["probability"].notna()]
        observed, predicted = calibration_curve(rows["label"], rows["probability"], n_bins=10, strategy="quantile")
        ax.plot(predicted, observed, marker="o", **_style(model, i))
    ax.set(xlabel="mean predicted probability", ylabel="observed buyer rate", title="Reliability (10 equal-count bins)")
    _legend_below(figure, ax)
    return figure


def _stage_order(observed: Sequence[str], stages: Sequence[str] | None) -> list[str]:
    """Observed stages in funnel order (``stages``, default the paper's funnel); unknown ones after, by name."""
    order = list(stages) if stages is not None else FunnelSpec.paper_default().stages
    return sorted(observed, key=lambda s: (order.index(s) if s in order else len(order), s))


def _stage_figure(rows: pd.DataFrame, title: str, stages: Sequence[str] | None) -> Figure:
    order = _stage_order(rows["stage"].unique().tolist(), stages)
    groups = [rows.loc[rows["stage"] == stage, "score"].to_numpy(dtype=float) for stage in order]
    figure = Figure(figsize=(6, 4), layout="constrained")
    ax = figure.subplots()
    ax.boxplot(groups, tick_labels=[f"{_plain(s)}\n(n={len(g)})" for s, g in zip(order, groups)])
    ax.set(xlabel="funnel stage reached", ylabel="ranking score", title=_plain(title))
    return figure


def plot_learning_curve(rows: Sequence[Mapping[str, Any]], out_path: str | Path, metric: str = "auc") -> Path:
    """Write a PNG of ``metric`` against training size to ``out_path``; return the path.

    ``rows`` are dicts with ``model``, ``train_size``, ``seed`` and metric values, as in the
    ``learning_curve`` list of results.json; rows without a value for ``metric`` are left
    out. Each model is a line through its mean over seeds with a min–max band over seeds;
    the x axis is log scale with a tick at each size. An oracle does not learn from the
    training set, so it is a dashed horizontal line at its mean.
    """
    return _save(_learning_curve_figure(rows, metric), Path(out_path))


def _learning_curve_figure(rows: Sequence[Mapping[str, Any]], metric: str) -> Figure:
    frame = pd.DataFrame(list(rows), columns=["model", "train_size", metric]).dropna(subset=[metric])
    models = _model_order(frame["model"].tolist())
    if not [m for m in models if not _is_oracle(m)]:
        raise ValueError(f"No learning-curve row of a non-oracle model has a value for {metric!r}; nothing to draw.")
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    ax = figure.subplots()
    for i, model in enumerate(models):
        values = frame.loc[frame["model"] == model]
        style = _style(model, i)
        if _is_oracle(model):
            ax.axhline(values[metric].mean(), **style)
            continue
        stats = values.groupby("train_size")[metric].agg(["mean", "min", "max"])
        ax.plot(stats.index, stats["mean"], marker="o", **style)
        ax.fill_between(stats.index, stats["min"], stats["max"], color=style["color"], alpha=0.15, linewidth=0)
    sizes = sorted(frame.loc[~frame["model"].map(_is_oracle), "train_size"].unique())
    ax.set_xscale("log")
    ax.set_xticks(sizes, labels=[f"{size:,}" for size in sizes])
    ax.minorticks_off()
    ax.set(xlabel="training leads (log scale)", ylabel=metric, title=_plain(f"Learning curve: {metric}"))
    _legend_below(figure, ax)
    return figure


def _curve_metrics(results: Results) -> list[str]:
    """Metrics of ``results.metrics`` that some non-oracle learning-curve row gives a value for."""
    learners = [point.model_extra or {} for point in results.learning_curve if not _is_oracle(point.model)]
    return [m for m in results.metrics if any(values.get(m) is not None for values in learners)]


def _curve_caption(results: Results, metric: str) -> str:
    caption = f"Learning curve of {metric}: mean over seeds at each training size (log scale), band: min–max over seeds."
    if any(_is_oracle(point.model) for point in results.learning_curve):
        caption += " Dashed: oracle."
    return caption


def _main_metric(results: Results) -> str:
    """The metric that picks a suite's best model: AUC when the suite measures it, else its first metric."""
    return "auc" if "auc" in results.metrics else results.metrics[0]


def _best_model(results: Results, available: Sequence[str]) -> str | None:
    """The non-oracle model with the highest mean :func:`_main_metric` among ``available``."""
    key = _main_metric(results)
    means = {e["model"]: e.get(f"{key}_mean") for e in summarise(results.run_dicts())}
    candidates: dict[str, float] = {}
    for model in available:
        mean = means.get(model)
        if not _is_oracle(model) and mean is not None:
            candidates[model] = mean
    return max(candidates, key=candidates.__getitem__) if candidates else None


#: Captions per figure file stem; the HTML report shows them under each figure.
FIGURE_CAPTIONS = {
    "gain": "Cumulative gain and lift per model, averaged over seeds (grey: random order).",
    "precision_at_k": "Precision in the top k % of test leads (log scale), averaged over seeds.",
    "reliability": "Reliability diagram for models that give probabilities, all seeds pooled.",
    "stage_scores": "Score distribution per funnel stage for the best non-oracle model (first seed).",
}


def draw_figures(results: Results, predictions: pd.DataFrame, out_dir: str | Path, *, stages: Sequence[str] | None = None) -> list[Path]:
    """Write the PNG figures of one suite to ``out_dir``; return their paths.

    Gain/lift and precision@k curves average each model's per-seed curves; the reliability
    diagram pools all seeds of models that give probabilities; the per-stage box plot shows
    the first seed of the best non-oracle model (highest mean AUC, else of the first metric).
    Figures without data (no probabilities, no stages) are skipped. ``stages`` gives the
    funnel order (low -> high); by default the paper's funnel, with unknown stages after it
    by name. Up to 20 models get distinct colours; legends sit under the plots.
    """
    out = Path(out_dir)
    models = _model_order(predictions["model"].tolist())
    paths = [
        _save(_gain_figure(predictions, models), out / "gain.png"),
        _save(_precision_figure(predictions, models), out / "precision_at_k.png"),
    ]
    with_probability = [m for m in models if predictions.loc[predictions["model"] == m, "probability"].notna().any()]
    if with_probability:
        paths.append(_save(_reliability_figure(predictions, with_probability), out / "reliability.png"))
    best = _best_model(results, models)
    if best is not None:
        rows = predictions[(predictions["model"] == best) & predictions["stage"].notna()]
        if len(rows):
            seed = rows["seed"].min()
            title = f"Scores by funnel stage: {best} (seed {seed})"
            paths.append(_save(_stage_figure(rows[rows["seed"] == seed], title, stages), out / "stage_scores.png"))
    return paths


# --- HTML -----------------------------------------------------------------------------------

#: Suites in reading order: the headline run (the demo, or the paper's regime) first, then the
#: paper's tables; other suites follow in the order given.
SUITE_ORDER = ("demo", "regime", "table1", "table2", "transfer", "margins", "rankby")
#: The share of test leads the summary's "calling the top ... finds ... of the buyers" is about.
TOP_SHARE = 0.10

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1, h2 { border-bottom: 1px solid #ddd; padding-bottom: .3rem; }
table { border-collapse: collapse; margin: 1rem 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: .3rem .6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead { background: #f3f3f3; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; }
dt { font-weight: 600; }
code { background: #f6f6f6; padding: 0 .2rem; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, .note { color: #555; font-size: .9rem; }
.unavailable { color: #a33; }
"""


@dataclass(frozen=True)
class _Suite:
    """One results directory, read once: its results and its predictions (``None`` when not written)."""

    directory: Path
    results: Results
    predictions: pd.DataFrame | None


def _load_suite(directory: Path) -> _Suite:
    return _Suite(directory, load_results(directory), load_predictions(directory))


def _suite_rank(suite: _Suite) -> int:
    name = suite.results.suite
    return SUITE_ORDER.index(name) if name in SUITE_ORDER else len(SUITE_ORDER)


def _e(value: object) -> str:
    return html.escape(str(value))


def _meta_html(results: Results) -> str:
    items = {
        "command": f"<code>{_e(results.command)}</code>",
        "data": _e(", ".join(f"{k}: {v}" for k, v in results.data.items())),
        "seeds": _e(", ".join(map(str, results.seeds))),
        "created": _e(results.created.isoformat()),
        "leadrank": _e(results.leadrank_version),
    }
    return "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items.items()) + "</dl>"


def _figure_html(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>'


def _figures_html(suite: _Suite) -> str:
    """The prediction figures (or a line saying they are unavailable), then one learning curve per metric."""
    results, predictions = suite.results, suite.predictions
    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        if predictions is None:
            parts.append(f'<p class="unavailable">Figures unavailable: no {PREDICTIONS_FILE} in {_e(suite.directory)}.</p>')
        else:
            for path in draw_figures(results, predictions, tmp, stages=results.stages):
                caption = FIGURE_CAPTIONS[path.stem]
                if path.stem == "stage_scores":
                    caption += f" Model: {_best_model(results, predictions['model'].unique().tolist())}."
                parts.append(_figure_html(path, caption))
        rows = [point.model_dump() for point in results.learning_curve]
        for i, metric in enumerate(_curve_metrics(results)):
            path = plot_learning_curve(rows, Path(tmp) / f"learning_curve_{i}.png", metric)
            parts.append(_figure_html(path, _curve_caption(results, metric)))
    return "".join(parts)


def _suite_html(index: int, suite: _Suite) -> str:
    results = suite.results
    table = summary_frame(results).to_html(index=False, border=0, escape=True)
    notes = "".join(f"<li>{_e(note)}</li>" for note in results.notes)
    return (
        f'<section><h2 id="suite-{index}">{_e(results.title)} <small>({_e(results.suite)})</small></h2>'
        f"{_meta_html(results)}{table}"
        '<p class="note">mean ± sample std over seeds; a single seed shows the mean alone.</p>'
        + (f"<ul>{notes}</ul>" if notes else "")
        + f"{_figures_html(suite)}</section>"
    )


def _share_found(labels: np.ndarray) -> float:
    """Share of the buyers among the top :data:`TOP_SHARE` of leads (``labels`` sorted by score, with a buyer)."""
    return float(labels[: top_count(TOP_SHARE, len(labels))].sum() / labels.sum())


def _buyers_found(suite: _Suite, model: str) -> str:
    """ "X % of the buyers" that calling ``model``'s top :data:`TOP_SHARE` finds, averaged over seeds with a buyer."""
    if suite.predictions is None:
        return f"n/a: no {PREDICTIONS_FILE}"
    rows = suite.predictions[suite.predictions["model"] == model]
    shares = [_share_found(_sorted_labels(part)) for _, part in rows.groupby("seed") if part["label"].any()]
    if not shares:
        return "n/a: no buyer among its test leads"
    return f"{np.mean(shares):.1%} of the buyers"


def _summary_row(index: int, suite: _Suite) -> str:
    results = suite.results
    metric = _main_metric(results)
    link = f'<a href="#suite-{index}">{_e(results.suite)}</a>'
    best = _best_model(results, [run.model for run in results.runs])
    if best is None:
        return f'<tr><td>{link}</td><td colspan="4">no non-oracle model has a value for {_e(metric)}</td></tr>'
    entry = next(e for e in summarise(results.run_dicts()) if e["model"] == best)
    cells = [
        f"{_e(best)} <small>(highest mean {_e(metric)})</small>",
        *(_e(_metric_cell(entry, m)) if m in results.metrics else "n/a" for m in ("auc", "p@1%")),
        _e(_buyers_found(suite, best)),
    ]
    return f"<tr><td>{link}</td>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _summary_html(suites: Sequence[_Suite]) -> str:
    """What the page opens on: per suite, its best model, that model's AUC and P@1 %, and what its top leads find."""
    headers = ("suite", "best model", "AUC", "P@1%", f"calling its top {TOP_SHARE:.0%} of leads finds")
    rows = "".join(_summary_row(i, suite) for i, suite in enumerate(suites))
    return (
        '<div class="summary"><h2>Summary</h2><table><thead><tr>'
        + "".join(f"<th>{_e(h)}</th>" for h in headers)
        + f"</tr></thead><tbody>{rows}</tbody></table>"
        '<p class="note">Best model: the one with the highest mean over seeds of the suite\'s main metric '
        "(AUC when the suite measures it, else its first metric). The oracle, which knows each lead's true "
        "propensity, is the ceiling and never the best. AUC and P@1% are mean ± sample std over seeds; "
        f"the last column is the share of all buyers among the {TOP_SHARE:.0%} of test leads it scores highest, "
        "averaged over seeds.</p></div>"
    )


def _page_title(suites: Sequence[_Suite]) -> str:
    """The title of the only suite; for several, "leadrank benchmark: " and their names."""
    if len(suites) == 1:
        return suites[0].results.title
    return "leadrank benchmark: " + ", ".join(dict.fromkeys(suite.results.suite for suite in suites))


def write_report(results_dirs: Sequence[str | Path], out: str | Path, *, title: str | None = None) -> Path:
    """Write one self-contained HTML report (inline CSS, base64 PNGs, no scripts) for the given RESULTS dirs.

    The page opens on a summary (per suite: the best model, its AUC and P@1 %, and the share of
    buyers its top :data:`TOP_SHARE` of leads holds), then one section per suite, in
    :data:`SUITE_ORDER`. ``title`` heads the page; by default the title of the only suite, or
    "leadrank benchmark: " and the suites' names. Every text from the results (names, notes,
    paths) is HTML-escaped. A directory without ``predictions.parquet`` still gets its tables,
    with a line saying its figures are unavailable. The file is written atomically.
    """
    if not results_dirs:
        raise ValueError("No results directories given; pass at least one directory written by `leadrank bench`.")
    suites = sorted((_load_suite(Path(d)) for d in results_dirs), key=_suite_rank)  # stable: unknown suites keep their order
    heading = _e(title if title is not None else _page_title(suites))
    sections = "".join(_suite_html(i, suite) for i, suite in enumerate(suites))
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{heading}</title><style>{_CSS}</style></head>"
        f"<body><h1>{heading}</h1>{_summary_html(suites)}{sections}</body></html>\n"
    )
    target = Path(out)
    write_text_atomic(target, page)
    return target
