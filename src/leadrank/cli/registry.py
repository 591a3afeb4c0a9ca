"""``leadrank retrain``, ``versions`` and ``rollback``: the model registry on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from leadrank.cli._common import (
    BackboneOption,
    ConfigOption,
    DtypeOption,
    EncodingOption,
    FeaturesOption,
    FunnelOption,
    MaxStepsOption,
    ModeOption,
    PresetOption,
    SeedOption,
    ThreadsOption,
    app,
    console,
    handle_errors,
    noting_specs,
    read_specs,
    refuse_overwriting,
)
from leadrank.config import DEFAULT_PRESET


@app.command()
@handle_errors
def retrain(
    registry: Annotated[Path, typer.Argument(help="Registry folder (created on the first run).")],
    data: Annotated[str, typer.Argument(help="Labelled lead table; the newest leads are kept out of training to compare the models on.")],
    window_days: Annotated[int | None, typer.Option(help="Use only the leads of the last N days (by as_of). Default: all of them.")] = None,
    holdout: Annotated[
        float, typer.Option(help="Most recent share of the window kept out of training; both models are compared on it.")
    ] = 0.15,
    tolerance: Annotated[float, typer.Option(help="Publish the candidate if its AUC >= the current model's AUC minus this.")] = 0.005,
    backbone: BackboneOption = None,
    mode: ModeOption = None,
    preset: PresetOption = DEFAULT_PRESET,
    config: ConfigOption = None,
    features: FeaturesOption = None,
    funnel: FunnelOption = None,
    max_steps: MaxStepsOption = None,
    seed: SeedOption = None,
    segment_column: Annotated[
        str | None, typer.Option(help="Each value of this column (e.g. city_tier) must meet the training minimums on its own.")
    ] = None,
    dtype: DtypeOption = None,
    threads: ThreadsOption = None,
    encoding: EncodingOption = "utf-8",
) -> None:
    """Train a candidate on the newest data; publish it only if it ranks the newest leads about as well as the current model."""
    from leadrank.data.io import read_table
    from leadrank.registry import TOP_SHARE
    from leadrank.registry import retrain as retrain_registry
    from leadrank.settings import RunConfig, run_flags

    feature_spec, funnel_spec = read_specs(features, funnel)
    flags = run_flags(backbone=backbone, mode=mode, max_steps=max_steps, seed=seed, dtype=dtype, threads=threads)
    run = RunConfig.resolve(preset, config, **flags)
    refuse_overwriting([registry], [data, features, funnel, config])
    table = read_table(data, encoding=encoding)
    with noting_specs(features, funnel):
        outcome = retrain_registry(
            registry,
            table,
            feature_spec,
            funnel_spec,
            run,
            window_days=window_days,
            holdout=holdout,
            tolerance=tolerance,
            segment_column=segment_column,
        )
    title = (
        f"Comparison slice: {outcome.comparison_rows:,} leads from {outcome.cutoff} "
        f"({outcome.comparison_positives:,} positives); candidate trained on {outcome.train_rows:,}"
    )
    side_by_side = Table(title=title)
    side_by_side.add_column("metric")
    side_by_side.add_column(f"current ({outcome.current_version})" if outcome.current_version else "current (none)", justify="right")
    side_by_side.add_column("candidate", justify="right")
    for key, name, shown in (("auc", "AUC", "{:.4f}"), (f"p@{TOP_SHARE:.0%}", f"P@{TOP_SHARE:.0%}", "{:.2%}")):
        was = shown.format(outcome.current[key]) if outcome.current else "n/a"
        side_by_side.add_row(name, was, shown.format(outcome.candidate[key]))
    console.print(side_by_side)
    console.print(outcome.decision)


@app.command()
@handle_errors
def rollback(
    registry: Annotated[Path, typer.Argument(help="Registry folder.")],
    to: Annotated[
        str | None, typer.Option("--to", help="Version to make current, e.g. v0002. Default: the one current before this one.")
    ] = None,
) -> None:
    """Make an earlier model version current again."""
    from leadrank.registry import current, versions
    from leadrank.registry import rollback as rollback_registry

    was = next((v.id for v in versions(registry) if v.is_current), None)  # even when its folder is gone
    now = rollback_registry(registry, to)
    console.print(f"Current model: {now} (was {was}) -> {current(registry)}")


@app.command("versions")
@handle_errors
def versions_command(registry: Annotated[Path, typer.Argument(help="Registry folder.")]) -> None:
    """List the published model versions; the current one is marked."""
    from leadrank.registry import versions

    listed = versions(registry)
    if not listed:
        console.print(f"No versions in {registry} yet; `leadrank retrain {registry} DATA` publishes the first.")
        return
    table = Table(title=str(registry))
    for column in ("", "version", "published (UTC)", "comparison AUC", "comparison P@5%"):
        table.add_column(column)
    for version in listed:
        auc_at, top_at = version.metrics.get("comparison_auc"), version.metrics.get("comparison_p@5%")
        table.add_row(
            "*" if version.is_current else "",
            version.id,
            version.published_at,
            "n/a" if auc_at is None else f"{auc_at:.4f}",
            "n/a" if top_at is None else f"{top_at:.2%}",
        )
    console.print(table)
