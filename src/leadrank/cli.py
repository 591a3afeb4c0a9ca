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
