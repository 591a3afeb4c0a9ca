"""The experiment verbs: the report, the benchmark suites and the demo."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from leadrank.cli._common import (
    BackboneOption,
    ConfigOption,
    EncodingOption,
    FeaturesOption,
    FunnelOption,
    PresetOption,
    ThreadsOption,
    app,
    console,
    handle_errors,
    read_specs,
    refuse_overwriting,
)
from leadrank.config import DEFAULT_PRESET, FeatureSpec, FunnelSpec
from leadrank.errors import ConfigurationError


@app.command("report")
@handle_errors
def report_command(
    results: Annotated[
        list[Path], typer.Argument(help="Results directories from `leadrank bench`, or a parent folder whose subfolders hold results.json.")
    ],
    out: Annotated[Path, typer.Option("--out", help="HTML file to write (self-contained: figures embedded, works offline).")] = Path(
        "report.html"
    ),
) -> None:
    """Render benchmark results as one offline HTML report: tables (mean ± std over seeds), notes and figures."""
    from leadrank.report import find_results, write_report

    found = find_results(results)
    write_report(found, out)
    console.print(f"Wrote {out}: {len(found)} suite(s) from {', '.join(map(str, found))}.")


@app.command()
@handle_errors
def bench(
    suite: Annotated[
        list[str] | None,
        typer.Option(
            "--suite",
            help="'regime' (the default: the paper's sparse-label regime, learning curve), or the dense contrast suites "
            "table1, table2, transfer, margins, rankby, or 'all' for those five (repeatable).",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for the results; each suite writes OUT/<suite>/.")] = Path("runs/bench"),
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds; every number is mean ± std over them.")] = "0,1,2",
    data: Annotated[str | None, typer.Option("--data", help="Your labelled lead table. Default: simulated (see --n).")] = None,
    n: Annotated[
        int | None,
        typer.Option(
            "--n", help="Simulated leads: regime 60,000 at 1.4 % positives, one set; the dense suites 4,000 at 10 %, a fresh set per seed."
        ),
    ] = None,
    synth_preset: Annotated[
        str | None, typer.Option(help="Simulator preset: 'default' (1.4 % positives) or 'dense' (10 %). Default: the suite's.")
    ] = None,
    train_sizes: Annotated[
        str,
        typer.Option(
            help="Regime suite: comma-separated training sizes of the learning curve (newest leads), below the full training part."
        ),
    ] = "5000,10000,20000",
    preset: PresetOption = DEFAULT_PRESET,
    backbone: BackboneOption = None,
    config: ConfigOption = None,
    features: FeaturesOption = None,
    funnel: FunnelOption = None,
    threads: ThreadsOption = None,
    encoding: EncodingOption = "utf-8",
) -> None:
    """Run the paper's experiments as suites; write JSON, markdown and figures per suite."""
    import sys

    from leadrank.data.io import read_table
    from leadrank.experiments import PAPER_SUITES, BenchConfig
    from leadrank.hardware import set_threads

    set_threads(threads)
    refuse_overwriting([out], [data, features, funnel, config])
    feature_spec, funnel_spec = read_specs(features, funnel)
    names = tuple(dict.fromkeys(name for item in suite or ["regime"] for name in (PAPER_SUITES if item == "all" else (item,))))
    config_ = BenchConfig(
        suites=names,
        out=out,
        seeds=_parse_seeds(seeds),
        data=read_table(data, encoding=encoding) if data else None,
        data_name=str(data or ""),
        features=feature_spec,
        funnel=funnel_spec,
        n=n,
        synth_preset=synth_preset,
        train_sizes=_parse_seeds(train_sizes, "--train-sizes"),
        preset=preset,
        backbone=backbone,
        config_file=config,
        command="leadrank " + " ".join(sys.argv[1:]),
    )
    _run_and_show(config_)


def _parse_seeds(text: str, option: str = "--seeds") -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigurationError(f"{option} must be comma-separated integers like 0,1,2; got {text!r}.") from None


def _run_and_show(config) -> list[Path]:
    from leadrank.experiments import run_bench
    from leadrank.report import load_results, summary_frame

    started = time.perf_counter()
    folders = run_bench(config, progress=lambda message: console.print(f"  {message}", highlight=False))
    for folder in folders:
        results = load_results(folder)
        frame = summary_frame(results)
        table = Table(title=f"{results.title} ({results.data.get('test_rows', '?')} test leads, seeds {results.seeds})")
        for column in frame.columns:
            table.add_column(str(column), justify="left" if column == "model" else "right")
        for row in frame.itertuples(index=False):
            table.add_row(*map(str, row))
        console.print(table)
        for note in results.notes:
            console.print(f"  - {note}", highlight=False)
        console.print(f"  -> {folder}", highlight=False)
    console.print(f"Done in {(time.perf_counter() - started) / 60:.1f} min.")
    return folders


@app.command()
@handle_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the simulated data, the results and the report.")] = Path("runs/demo"),
    n: Annotated[
        int | None,
        typer.Option(
            "--n",
            min=1,
            help="Number of simulated leads (default preset, 1.4 % positives: the paper's regime). "
            "Default: the demo suite's, enough for the 100 training positives training asks for.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    backbone: BackboneOption = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML with `model:` and `train:` sections; overrides cpu-quick.")] = None,
    threads: ThreadsOption = None,
) -> None:
    """The main job, end to end: simulate -> validate -> baselines -> asLLR (cpu-quick) without and with HPRO -> report."""
    import sys

    from leadrank.data.io import read_table, write_table
    from leadrank.data.schema import validate as validate_table
    from leadrank.data.synth import SynthConfig, simulate
    from leadrank.experiments import SUITES, BenchConfig
    from leadrank.hardware import set_threads
    from leadrank.report import write_report
    from leadrank.settings import RunConfig

    set_threads(threads)
    n = n or SUITES["demo"].data.n
    started = time.perf_counter()
    features, funnel = FeatureSpec.nev_default(), FunnelSpec.paper_default()
    data_path = write_table(simulate(SynthConfig.preset("default", n=n, seed=seed)), out / "leads.parquet")
    console.print(f"[1/4] Simulated {n:,} leads -> {data_path}")
    table = read_table(data_path)
    validate_table(table, features, funnel)
    console.print("[2/4] Validated against the data contract")
    recipe = RunConfig.resolve(DEFAULT_PRESET, config, model={"backbone": backbone} if backbone else {}).model
    console.print(f"[3/4] Baselines and asLLR ({recipe.mode} {recipe.backbone} reads each lead once, then the heads train)")
    bench_config = BenchConfig(
        suites=("demo",),
        out=out,
        seeds=(seed,),
        data=table,
        data_name=f"{data_path} (simulated, 1.4 % positives, seed {seed})",
        features=features,
        funnel=funnel,
        backbone=backbone,
        config_file=config,
        command="leadrank " + " ".join(sys.argv[1:]),
    )
    folders = _run_and_show(bench_config)
    report = write_report(folders, out / "report.html", title=f"leadrank demo: {n:,} simulated leads (1.4 % positives), seed {seed}")
    console.print(f"[4/4] Report: {report}; done in {(time.perf_counter() - started) / 60:.1f} min.")
