"""The ``leadrank`` command line: thin verbs over the library.

Exit codes: 0 success, 1 a usage or environment problem (message says the fix), 2 the lead
table breaks the data contract (every problem is listed).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.schema import LeadDataError

app = typer.Typer(
    help="Rank sales leads with an LLM that reads CRM fields and conversations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
spec_app = typer.Typer(help="Draft and check FeatureSpec files.", no_args_is_help=True)
app.add_typer(spec_app, name="spec")
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., object])

FeaturesOption = Annotated[
    Path | None,
    typer.Option("--features", help="FeatureSpec YAML naming the input columns. Default: the shipped NEV spec (configs/features_nev.yaml)."),
]
FunnelOption = Annotated[
    Path | None,
    typer.Option("--funnel", help="FunnelSpec YAML with stages and preference tiers. Default: the paper's funnel (configs/funnel.yaml)."),
]


def _handle_errors(command: F) -> F:
    """Map domain errors to exit codes and readable messages, without tracebacks."""

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return command(*args, **kwargs)
        except LeadDataError as exc:
            err_console.print(f"[bold red]Invalid lead table[/]\n{exc}", highlight=False)
            raise typer.Exit(code=2) from None
        except (ValueError, FileNotFoundError, KeyError) as exc:
            err_console.print(f"[bold red]Error:[/] {exc}", highlight=False)
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


def _specs(features: Path | None, funnel: Path | None) -> tuple[FeatureSpec, FunnelSpec]:
    return (
        FeatureSpec.from_yaml(features) if features else FeatureSpec.nev_default(),
        FunnelSpec.from_yaml(funnel) if funnel else FunnelSpec.paper_default(),
    )


@app.command()
@_handle_errors
def synth(
    out: Annotated[Path, typer.Option("--out", help="Where to write the leads (.parquet, .csv, .jsonl or .duckdb[::table]).")],
    n: Annotated[int, typer.Option("--n", help="Number of leads.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same table.")] = 0,
    preset: Annotated[
        str, typer.Option(help="'default': 1.4 % lock-ins, as in the paper; 'dense': about 10 %, for quick demos.")
    ] = "default",
    positive_rate: Annotated[float | None, typer.Option(help="Override the preset's share of leads that lock in.")] = None,
    days: Annotated[int, typer.Option(help="Days over which leads arrive.")] = 180,
    report: Annotated[bool, typer.Option("--report", help="Also print the table's profile and the oracle ceiling.")] = False,
) -> None:
    """Simulate a new-energy-vehicle CRM with a known ground truth (`_true_propensity`)."""
    from leadrank.data.io import write_table
    from leadrank.data.synth import SynthConfig, simulate

    overrides: dict[str, object] = {"n": n, "seed": seed, "days": days}
    if positive_rate is not None:
        overrides["positive_rate"] = positive_rate
    config = SynthConfig.preset(preset, **overrides)  # type: ignore[arg-type]
    started = time.perf_counter()
    table = simulate(config)
    elapsed = time.perf_counter() - started
    path = write_table(table, out)
    console.print(
        f"Simulated {len(table):,} leads in {elapsed:.1f} s: {int(table['label'].sum()):,} lock-ins "
        f"({table['label'].mean():.2%}). Wrote {path}."
    )
    if report:
        _print_profile(table, FeatureSpec.nev_default(), FunnelSpec.paper_default(), tokenizer=True)


@app.command()
@_handle_errors
def validate(
    data: Annotated[str, typer.Argument(help="Lead table: .csv, .parquet, .jsonl or file.duckdb::table.")],
    features: FeaturesOption = None,
    funnel: FunnelOption = None,
    labels: Annotated[
        bool, typer.Option("--labels/--no-labels", help="Require the outcome columns (label, stage, rule columns); use --no-labels for tables to score.")
    ] = True,
    drop_invalid: Annotated[
        bool, typer.Option("--drop-invalid", help="Write the valid rows to --out and the rejected rows, with a _reason column, beside it.")
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", help="With --drop-invalid: where to write the valid rows.")] = None,
) -> None:
    """Check a lead table against the data contract; list every problem and exit 2 if any."""
    from leadrank.data.io import read_table, write_table
    from leadrank.data.schema import split_valid, validate as validate_table

    feature_spec, funnel_spec = _specs(features, funnel)
    table = read_table(data)
    if not drop_invalid:
        validate_table(table, feature_spec, funnel_spec, require_labels=labels)
        console.print(f"OK: {len(table):,} leads follow the contract ({len(feature_spec.features)} features).")
        return
    if out is None:
        raise ValueError("--drop-invalid needs --out FILE for the valid rows.")
    valid, rejected = split_valid(table, feature_spec, funnel_spec, require_labels=labels)
    rejected_path = out.with_name(f"{out.stem}.rejected{out.suffix}")
    write_table(valid, out)
    write_table(rejected, rejected_path)
    console.print(
        f"{len(table):,} rows in: {len(valid):,} valid -> {out}, {len(rejected):,} rejected -> {rejected_path} "
        f"(reasons in its _reason column)."
    )


@app.command()
@_handle_errors
def describe(
    data: Annotated[str, typer.Argument(help="Labelled lead table.")],
    features: FeaturesOption = None,
    funnel: FunnelOption = None,
    tokens: Annotated[bool, typer.Option("--tokens/--no-tokens", help="Count dialogue tokens with the default backbone's tokenizer.")] = True,
) -> None:
    """Profile a labelled table: label rate, stages, dialogue length, oracle ceiling when known."""
    from leadrank.data.io import read_table
    from leadrank.data.schema import validate as validate_table

    feature_spec, funnel_spec = _specs(features, funnel)
    table = read_table(data)
    validate_table(table, feature_spec, funnel_spec)
    _print_profile(table, feature_spec, funnel_spec, tokenizer=tokens)


def _print_profile(table: pd.DataFrame, features: FeatureSpec, funnel: FunnelSpec, *, tokenizer: bool) -> None:
    from leadrank.data.profile import profile_table
    from leadrank.model.backbone import BackboneNotFoundError, load_tokenizer

    loaded = None
    if tokenizer:
        try:
            loaded = load_tokenizer()
        except BackboneNotFoundError as exc:
            err_console.print(f"No token counts: {exc}")
    profile = profile_table(table, features, funnel, tokenizer=loaded)
    console.print(f"{profile.rows:,} leads, {profile.positives:,} positives ({profile.label_rate:.2%})")
    stages = ", ".join(f"{stage} {count:,} ({count / profile.rows:.1%})" for stage, count in profile.stage_counts.items())
    console.print(f"Funnel stage in the horizon: {stages}")
    if profile.dialogue_tokens:
        t = profile.dialogue_tokens
        console.print(
            f"Dialogue tokens (default tokenizer): mean {t['mean']:.0f}, median {t['p50']:.0f}, p95 {t['p95']:.0f}, "
            f"max {t['max']:.0f}; empty {t['empty_share']:.1%}"
        )
    console.print(f"Time split: cutoff {profile.cutoff}, test {profile.test_rows:,} leads with {profile.test_positives:,} positives")
    if profile.oracle:
        o = profile.oracle
        console.print(
            f"Oracle ceiling on the test part: AUC {o['auc']:.4f}, P@1% {o['p@1%']:.2%}, P@5% {o['p@5%']:.2%}, R@5% {o['r@5%']:.2%}"
        )


@app.command()
@_handle_errors
def split(
    data: Annotated[str, typer.Argument(help="Lead table to split by as_of.")],
    train_out: Annotated[Path, typer.Option("--train", help="Where to write the earlier part.")],
    test_out: Annotated[Path, typer.Option("--test", help="Where to write the later part.")],
    test_fraction: Annotated[float, typer.Option(help="Share of leads in the later part (ties in as_of stay together).")] = 0.3,
) -> None:
    """Split a table in strict time order: every training lead was seen before every test lead."""
    from leadrank.data.io import read_table, write_table
    from leadrank.data.split import time_split

    parts = time_split(read_table(data), test_fraction)
    write_table(parts.train, train_out)
    write_table(parts.test, test_out)
    console.print(parts.summary())


@app.command("train")
@_handle_errors
def train_command(
    data: Annotated[str, typer.Argument(help="Labelled lead table; its most recent 10 % validates and stops training early.")],
    out: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    backbone: Annotated[str | None, typer.Option(help="'smollm2-135m' (embedded), 'tiny' (tests), or a local Hugging Face model folder.")] = None,
    mode: Annotated[str | None, typer.Option(help="'lora' fine-tunes the backbone (the paper); 'frozen' trains heads on cached states.")] = None,
    no_hpro: Annotated[bool, typer.Option("--no-hpro", help="Train without the HPRO loss (the paper's ablation).")] = False,
    preset: Annotated[str, typer.Option(help="'cpu-quick' (short CPU run) or 'paper' (GPU, the paper's settings).")] = "cpu-quick",
    config: Annotated[Path | None, typer.Option("--config", help="YAML with `model:` and `train:` sections; overrides the preset.")] = None,
    features: FeaturesOption = None,
    funnel: FunnelOption = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many optimizer steps.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in OUT.checkpoints.")] = False,
) -> None:
    """Train asLLR (+ HPRO) on a labelled table and write a model directory."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from leadrank import artifact as artifacts
    from leadrank.data.io import read_table
    from leadrank.training import RunConfig, process_state, train

    feature_spec, funnel_spec = _specs(features, funnel)
    model_overrides = {k: v for k, v in {"backbone": backbone, "mode": mode}.items() if v is not None}
    train_overrides = {k: v for k, v in {"max_steps": max_steps, "seed": seed, "hpro_weight": 0.0 if no_hpro else None}.items() if v is not None}
    run = RunConfig.resolve(preset, config, model=model_overrides, train=train_overrides)
    table = read_table(data)
    checkpoints = out.with_name(out.name + ".checkpoints")
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"), TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[parts]}")]
    main_process = process_state().is_main_process  # under torchrun / accelerate launch, one process reports and writes
    with Progress(*columns, console=console, disable=not main_process) as bar:
        task = bar.add_task("training", total=run.train.max_steps, parts="")

        def show(parts: dict[str, float]) -> None:
            shown = "  ".join(f"{k} {parts[k]:.3f}" for k in ("loss", "bce", "hpro", "ce", "val_auc") if k in parts)
            bar.update(task, completed=parts["step"], total=parts.get("total_steps"), parts=shown)

        result = train(table, feature_spec, funnel_spec, run.model, run.train, checkpoint_dir=checkpoints, resume=resume, progress=show)
    if not main_process:
        return
    artifact = artifacts.from_training(result, feature_spec, funnel_spec, run.model, run.train, _default_template())
    artifacts.save(artifact, out)
    val = ", ".join(f"{k} {v:.4f}" for k, v in artifact.metrics.items() if k.startswith("val_auc"))
    console.print(
        f"Trained {run.model.mode} on {run.model.backbone} in {result.seconds:.0f} s ({result.steps} steps, best at step {result.best_step}); "
        f"validation: {val or 'n/a (one class)'}. Ranks by the {artifact.rank_by} head. Wrote {out}."
    )


def _default_template():
    from leadrank.data.prompt import DEFAULT_TEMPLATE

    return DEFAULT_TEMPLATE


RankByOption = Annotated[
    str | None, typer.Option("--rank-by", help="'pair' (HPRO head), 'point' (probability head) or 'blend'; default: the model's choice.")
]


@app.command()
@_handle_errors
def score(
    model_dir: Annotated[Path, typer.Argument(help="Model directory from `leadrank train`.")],
    data: Annotated[str, typer.Argument(help="Leads to score (no outcome columns needed).")],
    out: Annotated[Path, typer.Option("--out", help="Where to write lead_id, probability, rank_score.")],
    rank_by: RankByOption = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (with other jobs running, 1 can beat 2).")] = None,
    chunk_rows: Annotated[int, typer.Option(help="Rows read, scored and written at a time; memory stays flat.")] = 5_000,
) -> None:
    """Score leads with a trained model; invalid rows go to OUT.rejected.* with the reason."""
    from leadrank import artifact as artifacts
    from leadrank.inference import ScoreConfig, Scorer

    scorer = Scorer(artifacts.load(model_dir), ScoreConfig(rank_by=rank_by, threads=threads))  # type: ignore[arg-type]
    started = time.perf_counter()
    summary = scorer.score_file(data, out, chunk_rows=chunk_rows)
    elapsed = time.perf_counter() - started
    console.print(
        f"{summary.rows_in:,} leads in: {summary.rows_scored:,} scored -> {out} in {elapsed:.1f} s "
        f"({summary.rows_scored / max(elapsed, 1e-9):.1f} leads/s), {summary.rows_rejected:,} rejected"
        + (f" -> {summary.rejected_path}" if summary.rejected_path else "")
    )


@app.command()
@_handle_errors
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="Model directory from `leadrank train`.")],
    data: Annotated[str, typer.Argument(help="Labelled leads, e.g. the later part of `leadrank split`.")],
    rank_by: RankByOption = None,
) -> None:
    """Metrics of a model on labelled leads: AUC, precision/recall at the top, calibration; oracle row when known."""
    from leadrank import artifact as artifacts
    from leadrank.data.io import read_table
    from leadrank.data.profile import ORACLE_COLUMN
    from leadrank.data.schema import validate as validate_table
    from leadrank.experiments import score_row
    from leadrank.inference import ScoreConfig, Scorer
    from leadrank.metrics import brier, ece

    artifact = artifacts.load(model_dir)
    table = read_table(data)
    validate_table(table, artifact.features, artifact.funnel)
    scorer = Scorer(artifact, ScoreConfig(rank_by=rank_by))  # type: ignore[arg-type]
    scores = scorer.score(table)
    labels = table[artifact.funnel.label_column].astype(int).to_numpy()
    rows = [score_row(f"asLLR (rank by {scorer.rank_by})", labels, scores["rank_score"].to_numpy())]
    if ORACLE_COLUMN in table.columns:
        rows.append(score_row("oracle (true propensity)", labels, table[ORACLE_COLUMN].to_numpy()))
    _print_results(pd.DataFrame(rows), title=f"{len(table):,} leads, {labels.sum():,} positives")
    probability = scores["probability"].to_numpy()
    console.print(f"Probability calibration: Brier {brier(labels, probability):.4f}, ECE {ece(labels, probability):.4f}")


@spec_app.command("infer")
@_handle_errors
def spec_infer(
    data: Annotated[str, typer.Argument(help="Any CRM export (.csv, .parquet, .jsonl, file.duckdb::table).")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the draft FeatureSpec YAML.")],
    funnel: FunnelOption = None,
) -> None:
    """Draft a FeatureSpec from a table: kinds inferred, ids and outcome columns left out. Edit it before training."""
    from leadrank.data.infer import infer_feature_spec
    from leadrank.data.io import read_table

    funnel_spec = FunnelSpec.from_yaml(funnel) if funnel else FunnelSpec.paper_default()
    spec, skipped = infer_feature_spec(read_table(data), funnel_spec)
    spec.to_yaml(out)
    console.print(f"Wrote {out}: {len(spec.features)} features, dialogue column: {spec.dialogue_column or 'none'}.")
    for column, reason in skipped.items():
        console.print(f"  left out {column!r}: {reason}")
    console.print("Edit the descriptions (the model reads them) and units before training.")


@app.command()
@_handle_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the simulated data and the results.")] = Path("runs/demo"),
    n: Annotated[int, typer.Option("--n", help="Number of simulated leads.")] = 50_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """The main job, end to end: simulate -> validate -> time split -> baselines -> metrics with the oracle ceiling."""
    from leadrank.data.io import read_table, write_table
    from leadrank.data.schema import validate as validate_table
    from leadrank.data.split import time_split
    from leadrank.data.synth import SynthConfig, simulate
    from leadrank.experiments import compare_baselines
    from leadrank._files import write_text_atomic

    started = time.perf_counter()
    features, funnel = FeatureSpec.nev_default(), FunnelSpec.paper_default()
    with console.status("Simulating leads..."):
        data_path = write_table(simulate(SynthConfig(n=n, seed=seed)), out / "leads.parquet")
    console.print(f"[1/4] Simulated {n:,} leads -> {data_path}")
    table = read_table(data_path)
    validate_table(table, features, funnel)
    console.print("[2/4] Validated against the data contract")
    split = time_split(table, 0.3)
    console.print(f"[3/4] {split.summary()}")
    with console.status("Training LightGBM baselines..."):
        results = compare_baselines(split, features, funnel, seed=seed)
    console.print("[4/4] Trained and scored the baselines")
    _print_results(results, title=f"Test part: {len(split.test):,} leads after {split.cutoff:%Y-%m-%d}")
    write_text_atomic(out / "results.json", json.dumps(results.to_dict("records"), indent=2, default=float))
    console.print(f"Results in {out / 'results.json'}; done in {time.perf_counter() - started:.0f} s.")


def _print_results(results: pd.DataFrame, title: str) -> None:
    table = Table(title=title)
    for column in results.columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in results.itertuples(index=False):
        cells = [row[0]] + [_format_metric(name, value) for name, value in zip(results.columns[1:], row[1:])]
        table.add_row(*cells)
    console.print(table)


def _format_metric(name: str, value: float) -> str:
    if pd.isna(value):
        return "n/a"
    return f"{value:.4f}" if name in ("auc", "pr_auc") else f"{value:.2%}"
