"""``leadrank abtest plan | analyze | simulate``: the sales-floor A/B test on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TypedDict

import pandas as pd
import typer
from rich.console import OverflowMethod
from rich.markup import escape
from rich.table import Table

from leadrank.cli._common import EncodingOption, app, console, handle_errors, refuse_overwriting

abtest_app = typer.Typer(
    help="A/B test the call list on the sales floor: sales specialists, not leads, are randomised.",
    no_args_is_help=True,
)
app.add_typer(abtest_app, name="abtest")


class _ColumnWrap(TypedDict):
    overflow: OverflowMethod
    no_wrap: bool


#: Table cells wrap onto more lines on a narrow terminal (a long word folds) instead of being cut to "…".
_WRAP: _ColumnWrap = {"overflow": "fold", "no_wrap": False}


@abtest_app.command("plan")
@handle_errors
def abtest_plan(
    specialists: Annotated[
        str,
        typer.Argument(help="One row per specialist: specialist_id, lockins_7d, lockins_14d, lockins_30d, followups_30d, optional tier."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Where to write the assignment (.csv, .parquet, .jsonl or .duckdb[::table]).")],
    arms: Annotated[int, typer.Option(help="Number of arms, control included: control, treatment (or treatment_1, treatment_2, ...).")] = 2,
    days: Annotated[int, typer.Option(help="Planned duration in days, for the minimum detectable effect.")] = 28,
    leads_per_day: Annotated[
        float | None, typer.Option(help="Leads one specialist handles per day. Default: followups_30d / 30, averaged over specialists.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed and table give the same assignment.")] = 0,
    encoding: EncodingOption = "utf-8",
) -> None:
    """Assign specialists to arms, stratified by tier and balanced on recent lock-ins, then follow-ups; size the test."""
    from leadrank.abtest import WELCH_TEST, plan
    from leadrank.data.io import read_table, write_table

    refuse_overwriting([out], [specialists])
    result = plan(read_table(specialists, encoding=encoding), arms=arms, days=days, leads_per_day=leads_per_day, seed=seed)
    path = write_table(result.assignment, out)
    if result.tiers_derived:
        console.print("No 'tier' column: the tiers are quartiles of 30-day conversion (lockins_30d / followups_30d), q1 lowest.")
    assignment = result.assignment
    _print_frame(pd.crosstab(assignment["tier"], assignment["arm"]), "Specialists per tier and arm", "{:,}")
    _print_frame(result.balance, "Balance: mean per arm, standardized mean difference (|SMD| < 0.1 is good)", "{:.3f}")
    power = result.power
    console.print(
        f"Minimum detectable effect over {power.days} days (about {power.leads_per_specialist:,.0f} leads per specialist, "
        f"{power.specialists_control} control vs {power.specialists_treatment} treatment specialists, baseline conversion "
        f"{power.baseline_rate:.2%}): {power.mde_absolute:.2%} points, {power.mde_relative:+.0%} relative "
        f"({WELCH_TEST}, alpha {power.alpha:g}, power {power.power:.0%}; "
        f"clustering by specialist: ICC {power.icc:.3f}, design effect {power.design_effect:.2f})."
    )
    console.print(f"Wrote the assignment of {len(assignment):,} specialists to {path}.", markup=False)


@abtest_app.command("analyze")
@handle_errors
def abtest_analyze(
    outcomes: Annotated[
        str, typer.Argument(help="One row per lead handled: specialist_id, date, converted (0/1), and arm unless --assignment is given.")
    ],
    assignment: Annotated[
        str | None,
        typer.Option("--assignment", help="The assignment `leadrank abtest plan` wrote; each lead's arm is joined from its specialist."),
    ] = None,
    out_figure: Annotated[Path | None, typer.Option("--out-figure", help="Write a PNG of cumulative conversion per arm over time.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    encoding: EncodingOption = "utf-8",
) -> None:
    """Conversion per arm, relative uplift vs control with a bootstrap CI, and Welch's t-test on specialist conversion rates."""
    from leadrank.abtest import BOOTSTRAP_SAMPLES, CONFIDENCE, WELCH_TEST, analyze, plot_cumulative
    from leadrank.data.io import read_table

    refuse_overwriting([out_figure], [outcomes, assignment])
    result = analyze(read_table(outcomes, encoding=encoding), read_table(assignment, encoding=encoding) if assignment else None, seed=seed)
    table = Table(title="A/B test outcome (control first)")
    ci = f"{CONFIDENCE:.0%} CI"
    headers = ("arm", "specialists", "leads", "conversions", "conversion", "uplift", ci, "difference (points)", ci, "Welch p")
    for header in headers:
        table.add_column(header, justify="left" if header == "arm" else "right", **_WRAP)
    for row in result.summary.itertuples(index=False):
        compared = not pd.isna(row.uplift)
        table.add_row(
            escape(row.arm),
            f"{row.specialists:,}",
            f"{row.leads:,}",
            f"{row.conversions:,}",
            f"{row.conversion_rate:.2%}",
            f"{row.uplift:+.1%}" if compared else "",
            _interval(row.uplift_low, row.uplift_high, "{:+.1%}") if compared else "",
            f"{row.difference * 100:+.2f}" if compared else "",
            _interval(row.difference_low * 100, row.difference_high * 100, "{:+.2f}") if compared else "",
            f"{row.p_value:.4f}" if compared else "",
        )
    console.print(table)
    for row in result.summary.itertuples(index=False):
        if row.note:
            console.print(f"[yellow]{escape(row.arm)}:[/] {escape(row.note)}")
    console.print(
        f"Specialists are the unit: {WELCH_TEST} (unequal variances); "
        f"the CI resamples specialists within each arm (BCa, {BOOTSTRAP_SAMPLES:,} resamples, seed {seed})."
    )
    if out_figure is not None:
        console.print(f"Wrote {plot_cumulative(result, out_figure)}.", markup=False)


def _interval(low: float, high: float, form: str) -> str:
    return "n/a (see note)" if pd.isna(low) or pd.isna(high) else f"{form.format(low)} to {form.format(high)}"


@abtest_app.command("simulate")
@handle_errors
def abtest_simulate(
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Folder for specialists.csv, assignment.csv and outcomes.csv.")],
    uplift: Annotated[float, typer.Option(help="True relative uplift of the treatment arm (0.3: conversion +30 %).")] = 0.3,
    specialists: Annotated[int, typer.Option(help="Number of specialists.")] = 80,
    days: Annotated[int, typer.Option(help="Days the simulated test runs.")] = 28,
    seed: Annotated[int, typer.Option(help="Random seed; also the seed of the plan the test ran under.")] = 0,
) -> None:
    """Simulate a sales floor and a finished A/B test with a known uplift, to try `plan` and `analyze` on."""
    from leadrank.abtest import ABSimConfig, plan, simulate_outcomes, simulate_specialists
    from leadrank.data.io import write_table

    config = ABSimConfig(n_specialists=specialists, days=days, uplift=uplift, seed=seed)
    floor = simulate_specialists(config)
    planned = plan(floor, days=days, seed=seed)
    outcomes = simulate_outcomes(planned.assignment, config)
    paths = [
        write_table(floor, out_dir / "specialists.csv"),
        write_table(planned.assignment, out_dir / "assignment.csv"),
        write_table(outcomes, out_dir / "outcomes.csv"),
    ]
    console.print(
        f"Simulated {specialists:,} specialists and {len(outcomes):,} leads over {days} days, true uplift {uplift:+.0%}: "
        + ", ".join(map(str, paths)),
        markup=False,
    )
    console.print(
        f"Try: leadrank abtest plan {paths[0]} --out {out_dir / 'my_assignment.csv'} --days {days} --seed {seed}\n"
        f"     leadrank abtest analyze {paths[2]} --assignment {paths[1]} --out-figure {out_dir / 'cumulative.png'}",
        markup=False,
    )


def _print_frame(frame: pd.DataFrame, title: str, number_format: str) -> None:
    table = Table(title=title)
    table.add_column(escape(str(frame.index.name or "")), **_WRAP)
    for column in frame.columns:
        table.add_column(escape(str(column)), justify="right", **_WRAP)
    for label, row in frame.iterrows():
        table.add_row(escape(str(label)), *(number_format.format(value) for value in row))
    console.print(table)
