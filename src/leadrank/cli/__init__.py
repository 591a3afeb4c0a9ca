"""The ``leadrank`` command line: thin verbs over the library.

Exit codes (see :mod:`leadrank.errors`): 0 done, 1 a file, model or environment problem, 2 a
usage error, 3 input data that break the data contract (every problem is listed). The A/B verbs live in
:mod:`leadrank.cli.abtest`, the registry verbs (retrain, versions, rollback) in
:mod:`leadrank.cli.registry`; importing this package registers them all on :data:`app`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import pandas as pd
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
    err_console,
    handle_errors,
    noting_specs,
    read_specs,
    refuse_overwriting,
    set_threads,
    spec_app,
    specs_used,
)
from leadrank.config import DEFAULT_PRESET, FeatureSpec, FunnelSpec
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
    dtype: DtypeOption = "auto",
    threads: ThreadsOption = None,
    encoding: EncodingOption = "utf-8",
) -> None:
    """Train asLLR (+ HPRO) on a labelled table and write a model directory."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from leadrank import artifact as artifacts
    from leadrank.data.io import read_table
    from leadrank.training import RunConfig, process_state, train

    feature_spec, funnel_spec = read_specs(features, funnel)
    model_overrides = {k: v for k, v in {"backbone": backbone, "mode": mode}.items() if v is not None}
    train_overrides = {
        k: v
        for k, v in {
            "max_steps": max_steps,
            "seed": seed,
            "hpro_weight": 0.0 if no_hpro else None,
            "dtype": dtype,
            "threads": threads,
        }.items()
        if v is not None
    }
    run = RunConfig.resolve(preset, config, model=model_overrides, train=train_overrides)
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
    model_dir: Annotated[Path, typer.Argument(help="Model directory from `leadrank train`.")],
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
    dtype: DtypeOption = "auto",
    chunk_rows: Annotated[int, typer.Option(help="Rows read, scored and written at a time; memory stays flat.")] = 5_000,
    crm: Annotated[
        bool,
        typer.Option(
            "--crm",
            help="Add percentile and grade (within this batch), trend and model_version. "
            "Percentile needs the whole batch, so the scores (a lead_id and two numbers per lead) are kept "
            "and written at the end; the model still reads each lead once.",
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
    from leadrank import artifact as artifacts
    from leadrank.crm import CrmConfig, CrmOutput
    from leadrank.data.io import read_table
    from leadrank.inference import ScoreCache, ScoreConfig, Scorer

    refuse_overwriting([out], [model_dir, previous, cache, crm_config])
    scorer = Scorer(artifacts.load(model_dir), ScoreConfig(rank_by=rank_by, threads=threads, dtype=dtype))  # type: ignore[arg-type]
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
    model_dir: Annotated[Path, typer.Argument(help="Model directory from `leadrank train`.")],
    data: Annotated[str, typer.Argument(help="Labelled leads, e.g. the later part of `leadrank split`.")],
    rank_by: RankByOption = None,
    dtype: DtypeOption = "auto",
    threads: ThreadsOption = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Also write each lead's lead_id, label, probability and rank_score (.csv, .parquet, .jsonl)."),
    ] = None,
    encoding: EncodingOption = "utf-8",
) -> None:
    """Metrics of a model on labelled leads: AUC, precision/recall at the top, calibration before/after; oracle row when known."""
    from scipy.special import expit

    from leadrank import artifact as artifacts
    from leadrank.config import ID_COLUMN
    from leadrank.data.io import read_table, write_table
    from leadrank.data.profile import ORACLE_COLUMN
    from leadrank.data.schema import label_values
    from leadrank.data.schema import validate as validate_table
    from leadrank.experiments import score_row
    from leadrank.inference import ScoreConfig, Scorer
    from leadrank.metrics import brier, ece, precision_at, recall_at

    refuse_overwriting([out], [model_dir, data])
    artifact = artifacts.load(model_dir)
    table = read_table(data, encoding=encoding)
    validate_table(table, artifact.features, artifact.funnel)
    scorer = Scorer(artifact, ScoreConfig(rank_by=rank_by, dtype=dtype, threads=threads))  # type: ignore[arg-type]
    point, pair = scorer.raw_scores(table)
    scores = scorer.to_scores(table[ID_COLUMN], point, pair)
    labels = label_values(table[artifact.funnel.label_column])
    ranked = {f"asLLR (rank by {scorer.rank_by})": scores["rank_score"].to_numpy()}
    if ORACLE_COLUMN in table.columns:
        ranked["oracle (true propensity)"] = table[ORACLE_COLUMN].to_numpy()
    rows = [
        score_row(name, labels, values) | {"p@20%": precision_at(labels, values, 0.2), "r@20%": recall_at(labels, values, 0.2)}
        for name, values in ranked.items()
    ]
    _print_results(pd.DataFrame(rows), title=f"{len(table):,} leads, {labels.sum():,} positives")
    console.print(f"Calling the top 20 % of these leads by the model finds {rows[0]['r@20%']:.0%} of the buyers.")
    if out is not None:
        write_table(scores.assign(label=labels)[[ID_COLUMN, "label", "probability", "rank_score"]], out)
        console.print(f"Wrote {len(scores):,} scores to {out}.")
    raw, probability = expit(point), scores["probability"].to_numpy()
    console.print(
        f"Probability calibration ({artifact.calibration.method}), raw head -> calibrated: "
        f"Brier {brier(labels, raw):.4f} -> {brier(labels, probability):.4f}, ECE {ece(labels, raw):.4f} -> {ece(labels, probability):.4f}"
    )


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


@app.command("explain")
@handle_errors
def explain_command(
    model_dir: Annotated[Path, typer.Argument(help="Model directory from `leadrank train`.")],
    lead_id: Annotated[str, typer.Argument(help="The lead to explain (its lead_id, compared as text).")],
    data: Annotated[str, typer.Argument(help="Table holding the lead (.csv, .parquet, .jsonl or file.duckdb::table).")],
    top: Annotated[int, typer.Option("--top", help="Show this many positive and negative fields, and this many turns.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the explanation as JSON instead of tables.")] = False,
    dtype: DtypeOption = "auto",
    threads: ThreadsOption = None,
    encoding: EncodingOption = "utf-8",
) -> None:
    """Why a lead scored as it did: masks each field and drops each dialogue turn (1 + fields + turns prompts)."""
    from leadrank import artifact as artifacts
    from leadrank.data.io import read_table
    from leadrank.explain import explain, find_lead
    from leadrank.inference import Scorer

    lead = find_lead(read_table(data, encoding=encoding), lead_id)
    from leadrank.inference import ScoreConfig

    result = explain(Scorer(artifacts.load(model_dir), ScoreConfig(dtype=dtype, threads=threads)), lead, top=top)  # type: ignore[arg-type]
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


@app.command()
@handle_errors
def serve(
    model_dir: Annotated[Path, typer.Argument(help="Model directory from `leadrank train`.")],
    host: Annotated[str, typer.Option(help="Address to listen on; 127.0.0.1 keeps the service on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    max_batch: Annotated[int, typer.Option(help="Most leads per request and per merged scoring batch; larger requests get 422.")] = 256,
    max_request_bytes: Annotated[int, typer.Option(help="Larger request bodies get 413.")] = 8 * 2**20,
    max_dialogue_chars: Annotated[
        int, typer.Option(help="Most characters in one lead's dialogue; longer gets 422 naming the lead.")
    ] = 100_000,
    workers: Annotated[int, typer.Option(help="Server processes; each loads its own copy of the model.")] = 1,
    batch_wait_ms: Annotated[float, typer.Option(help="How long to wait for more requests to merge into one scoring batch.")] = 5.0,
    threads: ThreadsOption = None,
    rank_by: RankByOption = None,
    dtype: DtypeOption = "auto",
) -> None:
    """Serve the model over HTTP: POST /score and /explain, GET /health and /model (docs at /docs).

    Set LEADRANK_API_TOKEN to require 'Authorization: Bearer <token>' on every endpoint but /health.
    """
    from leadrank.inference import ScoreConfig
    from leadrank.serve import ServeSettings, run

    settings = ServeSettings(
        max_batch=max_batch,
        max_request_bytes=max_request_bytes,
        max_dialogue_chars=max_dialogue_chars,
        batch_wait_ms=batch_wait_ms,
        score=ScoreConfig(threads=threads, rank_by=rank_by, dtype=dtype),  # type: ignore[arg-type]
    )
    run(model_dir, settings, host=host, port=port, workers=workers)


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
        int,
        typer.Option(
            "--n",
            help="Number of simulated leads (default preset, 1.4 % positives: the paper's regime; 14,000 hold >= 100 training positives).",
        ),
    ] = 14_000,
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
    from leadrank.experiments import BenchConfig
    from leadrank.report import write_report
    from leadrank.training import RunConfig

    set_threads(threads)
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


from leadrank.cli import abtest, registry  # noqa: E402, F401  (importing them registers their verbs on app)

__all__ = ["app"]
