"""The model verbs: train, score, evaluate and explain."""

from __future__ import annotations

import time
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
    RankByOption,
    SeedOption,
    ThreadsOption,
    app,
    console,
    given,
    handle_errors,
    noting_specs,
    read_specs,
    refuse_overwriting,
)
from leadrank.cli._render import print_results
from leadrank.config import DEFAULT_PRESET
from leadrank.settings import ScoreConfig


@app.command("train")
@handle_errors
def train_command(
    data: Annotated[str, typer.Argument(help="Labelled lead table; its most recent 10 % validates and stops training early.")],
    out: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    backbone: BackboneOption = None,
    mode: ModeOption = None,
    no_hpro: Annotated[bool, typer.Option("--no-hpro", help="Train without the HPRO loss (the paper's ablation).")] = False,
    preset: PresetOption = DEFAULT_PRESET,
    config: ConfigOption = None,
    features: FeaturesOption = None,
    funnel: FunnelOption = None,
    max_steps: MaxStepsOption = None,
    seed: SeedOption = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in OUT.checkpoints.")] = False,
    dtype: DtypeOption = None,
    threads: ThreadsOption = None,
    encoding: EncodingOption = "utf-8",
) -> None:
    """Train asLLR (+ HPRO) on a labelled table and write a model directory."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from leadrank import artifact as artifacts
    from leadrank.data.io import read_table
    from leadrank.settings import RunConfig, run_flags
    from leadrank.training import process_state, train

    feature_spec, funnel_spec = read_specs(features, funnel)
    flags = run_flags(
        backbone=backbone, mode=mode, max_steps=max_steps, seed=seed, hpro_weight=0.0 if no_hpro else None, dtype=dtype, threads=threads
    )
    run = RunConfig.resolve(preset, config, **flags)
    checkpoints = out.with_name(out.name + ".checkpoints")
    refuse_overwriting([out, checkpoints], [data, features, funnel, config])
    table = read_table(data, encoding=encoding)
    # fits in 80 columns: "training ━━━━━━━━━━━━━━━━ 120/600 steps 0:01:40 loss 0.412 val_auc 0.812"
    columns = [
        TextColumn("{task.description}"),
        BarColumn(bar_width=16),
        MofNCompleteColumn(),
        TextColumn("steps"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[parts]}"),
    ]
    main_process = process_state().is_main_process  # under torchrun / accelerate launch, one process reports and writes
    with Progress(*columns, console=console, disable=not main_process) as bar:
        task = bar.add_task("training", total=run.train.max_steps, parts="")

        def show(parts: dict[str, float]) -> None:
            shown = " ".join(f"{k} {parts[k]:.3f}" for k in ("loss", "val_auc") if k in parts)
            bar.update(task, completed=parts["step"], total=parts.get("total_steps"), parts=shown)

        with noting_specs(features, funnel):
            result = train(table, feature_spec, funnel_spec, run.model, run.train, checkpoint_dir=checkpoints, resume=resume, progress=show)
    if not main_process:
        return
    artifact = artifacts.from_training(result)
    artifacts.save(artifact, out)
    val = ", ".join(f"{k} {v:.4f}" for k, v in artifact.metrics.items() if k.startswith("val_auc"))
    console.print(
        f"Trained {run.model.mode} on {run.model.backbone} in {result.seconds:.0f} s "
        f"({result.steps} steps, best at step {result.best_step}); "
        f"validation: {val or 'n/a (one class)'}. Ranks by {_RANK_BY_WORDS[artifact.rank_by]}. Wrote {out}."
    )


_RANK_BY_WORDS = {"pair": "the pairwise (HPRO) head", "point": "the probability head", "blend": "a blend of both heads"}


@app.command()
@handle_errors
def score(
    model_dir: Annotated[Path, typer.Argument(help="Model directory from `leadrank train`, or a registry (its current version).")],
    data: Annotated[str, typer.Argument(help="Leads to score (no outcome columns needed).")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Where to write lead_id, probability (calibrated), rank_score, plus the CRM columns with --crm; "
            "the suffix picks the format (.csv, .parquet, .jsonl; file.duckdb::table with --crm).",
        ),
    ],
    rank_by: RankByOption = None,
    threads: ThreadsOption = None,
    dtype: DtypeOption = None,
    chunk_rows: Annotated[int, typer.Option(help="Rows read, scored and written at a time; memory stays flat.")] = 5_000,
    crm: Annotated[
        bool,
        typer.Option(
            "--crm",
            help="Add percentile and grade (against the model's validation leads, so a lead's are the same in any batch), "
            "trend and model_version. The hot list and grade counts need the whole batch, so the scores (a lead_id and "
            "two numbers per lead) are kept and written at the end; the model still reads each lead once.",
        ),
    ] = False,
    top: Annotated[
        int | None,
        typer.Option(
            "--top",
            help="Also write the N best leads, best first, with every CRM column, to OUT with .topN before the suffix "
            "(scores.csv -> scores.top50.csv; file.duckdb::scores -> table scores_top50): "
            "a file to hand to the sales team or import. Implies --crm.",
        ),
    ] = None,
    previous: Annotated[
        str | None,
        typer.Option(
            "--previous",
            help="An earlier output of this command (a --d365 one too): trend compares each lead's probability with it "
            "(improving, steady, declining; new when absent). Implies --crm.",
        ),
    ] = None,
    crm_config: Annotated[
        Path | None,
        typer.Option(
            "--crm-config",
            help="YAML with grade cut-offs and trend tolerance (leadrank.crm.CrmConfig). "
            "Default: A top 10 %, B next 20 %, C next 30 %, D the rest; steady within 0.02. Implies --crm.",
        ),
    ] = None,
    d365: Annotated[
        bool,
        typer.Option(
            "--d365",
            help="Write OUT as Dynamics 365 msdyn_predictivescore columns: msdyn_entityid, msdyn_entitytype, "
            "msdyn_score (0-100), msdyn_grade (0-3 = Grade A-D), "
            "msdyn_scoretrend (0 Improving, 1 Steady, 2 Declining, 3 Not enough info). "
            "The hot list keeps the readable columns. Implies --crm.",
        ),
    ] = False,
    cache: Annotated[
        str | None,
        typer.Option(
            "--cache",
            help="Score cache (file.parquet or file.duckdb::table), created when missing: leads whose prompt and "
            "model_version are unchanged since the last run reuse their scores instead of running the model. "
            "Prints how many were rescored and reused.",
        ),
    ] = None,
    encoding: EncodingOption = "utf-8",
) -> None:
    """Score leads with a trained model; invalid rows go to OUT.rejected.* with the reason."""
    from leadrank.crm import CrmConfig, CrmOutput
    from leadrank.data.io import read_table
    from leadrank.inference import ScoreCache, Scorer
    from leadrank.registry import model_folder

    refuse_overwriting([out], [model_dir, previous, cache, crm_config])
    scorer = Scorer.load(model_folder(model_dir), ScoreConfig(**given(rank_by=rank_by, threads=threads, dtype=dtype)))
    crm_output = None
    if crm or top is not None or previous or crm_config or d365:
        config = CrmConfig.from_yaml(crm_config) if crm_config else CrmConfig()
        crm_output = CrmOutput(config, read_table(previous, encoding=encoding) if previous else None, top, d365)
    score_cache = ScoreCache.open(cache) if cache else None
    started = time.perf_counter()
    summary = scorer.score_file(data, out, chunk_rows=chunk_rows, cache=score_cache, crm=crm_output, encoding=encoding)
    if score_cache is not None:
        score_cache.save()
    elapsed = time.perf_counter() - started
    console.print(
        f"{summary.rows_in:,} leads in: {summary.rows_scored:,} scored -> {out} in {elapsed:.1f} s "
        f"({summary.rows_scored / max(elapsed, 1e-9):.1f} leads/s), {summary.rows_rejected:,} rejected"
        + (f" -> {summary.rejected_path}" if summary.rejected_path else "")
    )
    if score_cache is not None:
        console.print(f"Cache {cache}: {score_cache.rescored:,} rescored, {score_cache.reused:,} reused.")
    if summary.crm is not None:
        grades = ", ".join(f"{g} {n:,}" for g, n in summary.crm.grades.items())
        trends = ", ".join(f"{t} {n:,}" for t, n in summary.crm.trends.items() if n)
        console.print(
            f"model_version {scorer.artifact.model_version}; grades: {grades}; trend: {trends}"
            + (f"; hot list -> {summary.crm.hot_list}" if summary.crm.hot_list else "")
        )


@app.command()
@handle_errors
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="Model directory from `leadrank train`, or a registry (its current version).")],
    data: Annotated[str, typer.Argument(help="Labelled leads, e.g. the later part of `leadrank split`.")],
    rank_by: RankByOption = None,
    dtype: DtypeOption = None,
    threads: ThreadsOption = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Also write each lead's lead_id, label, probability and rank_score (.csv, .parquet, .jsonl)."),
    ] = None,
    encoding: EncodingOption = "utf-8",
) -> None:
    """Metrics of a model on labelled leads: AUC, precision/recall at the top, calibration before/after; oracle row when known."""
    from leadrank import artifact as artifacts
    from leadrank.api import Model
    from leadrank.data.io import read_table, write_table
    from leadrank.registry import model_folder

    refuse_overwriting([out], [model_dir, data])
    model = Model(artifacts.load(model_folder(model_dir)), ScoreConfig(**given(rank_by=rank_by, dtype=dtype, threads=threads)))
    table = read_table(data, encoding=encoding)
    result = model.evaluate(table)
    print_results(result.table, title=f"{len(table):,} leads, {int(result.scores['label'].sum()):,} positives")
    console.print(f"Calling the top 20 % of these leads by the model finds {result.recall_at_20:.0%} of the buyers.")
    if out is not None:
        write_table(result.scores, out)
        console.print(f"Wrote {len(result.scores):,} scores to {out}.")
    c = result.calibration
    console.print(
        f"Probability calibration ({c['method']}), raw head -> calibrated: "
        f"Brier {c['brier_raw']:.4f} -> {c['brier_calibrated']:.4f}, ECE {c['ece_raw']:.4f} -> {c['ece_calibrated']:.4f}"
    )


@app.command("explain")
@handle_errors
def explain_command(
    model_dir: Annotated[Path, typer.Argument(help="Model directory from `leadrank train`, or a registry (its current version).")],
    lead_id: Annotated[str, typer.Argument(help="The lead to explain (its lead_id, compared as text).")],
    data: Annotated[str, typer.Argument(help="Table holding the lead (.csv, .parquet, .jsonl or file.duckdb::table).")],
    top: Annotated[int, typer.Option("--top", help="Show this many positive and negative fields, and this many turns.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the explanation as JSON instead of tables.")] = False,
    dtype: DtypeOption = None,
    threads: ThreadsOption = None,
    encoding: EncodingOption = "utf-8",
) -> None:
    """Why a lead scored as it did: masks each field and drops each dialogue turn (1 + fields + turns prompts)."""
    from leadrank.data.io import read_table
    from leadrank.explain import explain, find_lead
    from leadrank.inference import Scorer
    from leadrank.registry import model_folder

    lead = find_lead(read_table(data, encoding=encoding), lead_id)

    result = explain(Scorer.load(model_folder(model_dir), ScoreConfig(**given(dtype=dtype, threads=threads))), lead, top=top)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    console.print(
        f"Lead {result.lead_id}: probability {result.probability:.4f}, rank score {result.rank_score:+.4f} "
        f"({result.n_prompts} prompts scored in {result.seconds:.1f} s). Effect = score minus the score without it."
    )
    factors = Table(title="CRM fields (masked one at a time)")
    for column, justify in (("field", "left"), ("value", "left"), ("rank effect", "right"), ("probability effect", "right")):
        factors.add_column(column, justify=justify)  # type: ignore[arg-type]
    for f in result.factors:
        factors.add_row(f.field, f.value, f"{f.rank_effect:+.4f}", f"{f.probability_effect:+.4f}")
    console.print(factors)
    if result.turns:
        turns = Table(title="Dialogue turns (dropped one at a time)")
        for column, justify in (("#", "right"), ("turn", "left"), ("rank effect", "right"), ("probability effect", "right")):
            turns.add_column(column, justify=justify)  # type: ignore[arg-type]
        for t in result.turns:
            turns.add_row(str(t.index), t.text, f"{t.rank_effect:+.4f}", f"{t.probability_effect:+.4f}")
        console.print(turns)
