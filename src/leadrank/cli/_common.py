"""What every ``leadrank`` verb shares: the app, consoles, error handling, common options."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

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


def handle_errors(command: F) -> F:
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


def read_specs(features: Path | None, funnel: Path | None) -> tuple[FeatureSpec, FunnelSpec]:
    return (
        FeatureSpec.from_yaml(features) if features else FeatureSpec.nev_default(),
        FunnelSpec.from_yaml(funnel) if funnel else FunnelSpec.paper_default(),
    )


DtypeOption = Annotated[
    str,
    typer.Option(
        "--dtype",
        help="'auto' (bf16 where the CPU has native bf16 instructions, AVX512_BF16 or AMX, or on a bf16 GPU; fp32 elsewhere), "
        "'fp32' or 'bf16'. Forced bf16 on a CPU without them runs ~4x slower than fp32.",
    ),
]
RankByOption = Annotated[
    str | None, typer.Option("--rank-by", help="'pair' (HPRO head), 'point' (probability head) or 'blend'; default: the model's choice.")
]
