"""The data verbs: simulate, validate, describe and split a lead table, and draft a FeatureSpec."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from leadrank.cli._common import (
    EncodingOption,
    FeaturesOption,
    FunnelOption,
    app,
    console,
    err_console,
    handle_errors,
    noting_specs,
    read_specs,
    refuse_overwriting,
    spec_app,
    specs_used,
)
from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.split import TEST_FRACTION
from leadrank.errors import ConfigurationError


@app.command()
@handle_errors
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
    from leadrank.data.synth import SynthConfig, check_preset, simulate

    overrides: dict[str, object] = {"n": n, "seed": seed, "days": days}
    if positive_rate is not None:
        overrides["positive_rate"] = positive_rate
    config = SynthConfig.preset(check_preset(preset), **overrides)
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
@handle_errors
def validate(
    data: Annotated[str, typer.Argument(help="Lead table: .csv, .parquet, .jsonl or file.duckdb::table.")],
    features: FeaturesOption = None,
    funnel: FunnelOption = None,
    labels: Annotated[
        bool,
        typer.Option(
            "--labels/--no-labels", help="Require the outcome columns (label, stage, rule columns); use --no-labels for tables to score."
        ),
    ] = True,
    drop_invalid: Annotated[
        bool, typer.Option("--drop-invalid", help="Write the valid rows to --out and the rejected rows, with a _reason column, beside it.")
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", help="With --drop-invalid: where to write the valid rows.")] = None,
    encoding: EncodingOption = "utf-8",
    timezone: Annotated[
        str | None,
        typer.Option(
            "--timezone",
            help="IANA zone (e.g. Asia/Shanghai, UTC) the as_of values without an offset were recorded in. With it as_of may "
            "mix naive and offset times, and --drop-invalid writes every as_of in UTC, so later verbs read one kind of time.",
        ),
    ] = None,
) -> None:
    """Check a lead table against the data contract; list every problem and exit 3 if any."""
    from leadrank.config import TIME_COLUMN
    from leadrank.data.io import read_table, write_table
    from leadrank.data.schema import parse_as_of, split_valid
    from leadrank.data.schema import validate as validate_table

    rejected_path = out.with_name(f"{out.stem}.rejected{out.suffix}") if out else None
    refuse_overwriting([out, rejected_path], [data, features, funnel])
    feature_spec, funnel_spec = read_specs(features, funnel)
    table = read_table(data, encoding=encoding)
    if not drop_invalid:
        with noting_specs(features, funnel):
            validate_table(table, feature_spec, funnel_spec, require_labels=labels, timezone=timezone)
        console.print(
            f"OK: {len(table):,} leads follow the contract ({len(feature_spec.features)} features; {specs_used(features, funnel)})."
        )
        return
    if out is None:
        raise ConfigurationError("--drop-invalid needs --out FILE for the valid rows.")
    assert rejected_path is not None  # set whenever out is
    with noting_specs(features, funnel):
        valid, rejected = split_valid(table, feature_spec, funnel_spec, require_labels=labels, timezone=timezone)
    if timezone is not None:
        valid = valid.assign(**{TIME_COLUMN: parse_as_of(valid[TIME_COLUMN], timezone)})
    write_table(valid, out)
    if len(rejected):  # as `score` does: a rejected file only when some row is rejected
        write_table(rejected, rejected_path)
    where = f" -> {rejected_path} (reasons in its _reason column)" if len(rejected) else ""
    console.print(f"{len(table):,} rows in: {len(valid):,} valid -> {out}, {len(rejected):,} rejected{where}.")


@app.command()
@handle_errors
def describe(
    data: Annotated[str, typer.Argument(help="Labelled lead table.")],
    features: FeaturesOption = None,
    funnel: FunnelOption = None,
    tokens: Annotated[
        bool, typer.Option("--tokens/--no-tokens", help="Count dialogue tokens with the default backbone's tokenizer.")
    ] = True,
    encoding: EncodingOption = "utf-8",
) -> None:
    """Profile a labelled table: label rate, stages, dialogue length, oracle ceiling when known."""
    from leadrank.data.io import read_table
    from leadrank.data.schema import validate as validate_table

    feature_spec, funnel_spec = read_specs(features, funnel)
    table = read_table(data, encoding=encoding)
    with noting_specs(features, funnel):
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
@handle_errors
def split(
    data: Annotated[str, typer.Argument(help="Lead table to split by as_of.")],
    train_out: Annotated[Path, typer.Option("--train", help="Where to write the earlier part.")],
    test_out: Annotated[Path, typer.Option("--test", help="Where to write the later part.")],
    test_fraction: Annotated[float, typer.Option(help="Share of leads in the later part (ties in as_of stay together).")] = TEST_FRACTION,
    encoding: EncodingOption = "utf-8",
) -> None:
    """Split a table in strict time order: every training lead was seen before every test lead."""
    from leadrank.data.io import read_table, write_table
    from leadrank.data.split import time_split

    refuse_overwriting([train_out, test_out], [data])
    if Path(train_out).resolve() == Path(test_out).resolve():
        raise ConfigurationError(f"--train and --test are the same file ({train_out}); give each part its own.")
    parts = time_split(read_table(data, encoding=encoding), test_fraction)
    write_table(parts.train, train_out)
    write_table(parts.test, test_out)
    console.print(parts.summary())


@spec_app.command("infer")
@handle_errors
def spec_infer(
    data: Annotated[str, typer.Argument(help="Any CRM export (.csv, .parquet, .jsonl, file.duckdb::table).")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the draft FeatureSpec YAML.")],
    funnel: FunnelOption = None,
    keep: Annotated[
        list[str] | None, typer.Option("--keep", help="Use this column although it looks personal, like an id or like a leak (repeatable).")
    ] = None,
    encoding: EncodingOption = "utf-8",
) -> None:
    """Draft a FeatureSpec from a table: kinds inferred; ids, personal data, constants, leaks and outcome columns left out.

    Edit it before training.
    """
    from leadrank.data.infer import infer_feature_spec
    from leadrank.data.io import read_table

    refuse_overwriting([out], [data, funnel])
    funnel_spec = FunnelSpec.from_yaml(funnel) if funnel else FunnelSpec.paper_default()
    draft = infer_feature_spec(read_table(data, encoding=encoding), funnel_spec, keep=keep or ())
    draft.spec.to_yaml(out)
    console.print(f"Wrote {out}: {len(draft.spec.features)} features, dialogue column: {draft.spec.dialogue_column or 'none'}.")
    for column, reason in draft.left_out.items():
        console.print(f"  left out {column!r}: {reason}")
    for warning in draft.warnings:
        console.print(f"  [yellow]warning:[/] {warning}", highlight=False)
    console.print("Edit the descriptions (the model reads them) and units before training.")
