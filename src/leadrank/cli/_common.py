"""What every ``leadrank`` verb shares: the app, consoles, error handling, common options."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click
import typer
import yaml
from pydantic import BaseModel
from rich.console import Console
from safetensors import SafetensorError

from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.schema import LeadDataError
from leadrank.errors import EXIT_DATA, EXIT_ENVIRONMENT, EXIT_USAGE, DataContractError, LeadrankError
from leadrank.settings import ModelConfig, ScoreConfig, TrainConfig

app = typer.Typer(
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
    typer.Option(
        "--features", help="FeatureSpec YAML naming the input columns. Default: the shipped NEV spec (configs/features_nev.yaml)."
    ),
]
FunnelOption = Annotated[
    Path | None,
    typer.Option("--funnel", help="FunnelSpec YAML with stages and preference tiers. Default: the paper's funnel (configs/funnel.yaml)."),
]


def handle_errors(command: F) -> F:
    """Turn every failure into a short message and the exit code of its kind (see :mod:`leadrank.errors`).

    Nothing reaches the user as a traceback unless ``--debug`` (or ``LEADRANK_DEBUG=1``) asks for it.
    """

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, click.exceptions.ClickException, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            err_console.print("Interrupted.")
            raise typer.Exit(code=130) from None
        except Exception as exc:  # the CLI's one error boundary
            if debugging():
                raise
            title, code = describe_failure(exc)
            err_console.print(
                f"[bold red]{title}[/]\n{exc}" if isinstance(exc, LeadDataError) else f"[bold red]{title}:[/] {_message(exc)}",
                highlight=False,
            )
            for note in getattr(exc, "__notes__", ()):
                err_console.print(note, highlight=False)
            raise typer.Exit(code=code) from None

    return wrapper  # type: ignore[return-value]


def debugging() -> bool:
    """Whether failures show their traceback (``leadrank --debug`` or ``LEADRANK_DEBUG=1``)."""
    return _debug.on or os.environ.get("LEADRANK_DEBUG", "") not in ("", "0")


class _Debug:
    on = False


_debug = _Debug()


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"leadrank {importlib.metadata.version('leadrank')}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of a failure.")] = False,
) -> None:
    """Rank sales leads with an LLM that reads CRM fields and conversations.

    Exit codes: 0 done; 1 a file, folder, model or environment problem (or an unexpected error);
    2 a usage error (a bad flag, option value or config setting); 3 input data that break the
    data contract (a table, spec, rule). The message says what to do.
    """
    _debug.on = debug


def describe_failure(exc: BaseException) -> tuple[str, int]:
    """A failure's title and exit code: leadrank's own errors by kind, the usual outside ones mapped."""
    if isinstance(exc, LeadDataError):
        return "Invalid lead table", EXIT_DATA
    if isinstance(exc, LeadrankError):
        return "Error", exc.exit_code
    if isinstance(exc, UnicodeDecodeError):
        return "Not UTF-8 text (pass --encoding, e.g. --encoding latin-1, where the verb reads a table)", EXIT_DATA
    if isinstance(exc, RecursionError):
        return "Nested too deeply (e.g. a funnel rule with thousands of nested 'not'); simplify it", EXIT_DATA
    if isinstance(exc, yaml.YAMLError):
        return "Not valid YAML", EXIT_USAGE
    if isinstance(exc, SafetensorError):
        return "A weights file is broken or not a safetensors file", EXIT_ENVIRONMENT
    if isinstance(exc, OSError):
        return "File or folder problem", EXIT_ENVIRONMENT
    if isinstance(exc, (ValueError, KeyError)):
        return "Error", EXIT_ENVIRONMENT
    return f"Unexpected error ({type(exc).__name__}); rerun with --debug for the traceback and please report it", EXIT_ENVIRONMENT


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) not in str(exc):
        return f"{exc.filename}: {exc.strerror or exc}"
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


def read_specs(features: Path | None, funnel: Path | None) -> tuple[FeatureSpec, FunnelSpec]:
    """The specs named by --features and --funnel, the shipped ones where a flag is left out."""
    return (
        FeatureSpec.from_yaml(features) if features else FeatureSpec.nev_default(),
        FunnelSpec.from_yaml(funnel) if funnel else FunnelSpec.paper_default(),
    )


def specs_used(features: Path | None, funnel: Path | None) -> str:
    """Which specs a table is checked against, in words (the shipped ones say so)."""
    return (
        f"FeatureSpec {features or 'shipped NEV spec (pass --features for your own)'}; "
        f"FunnelSpec {funnel or 'shipped paper funnel (pass --funnel for your own)'}"
    )


@contextlib.contextmanager
def noting_specs(features: Path | None, funnel: Path | None) -> Iterator[None]:
    """A data-contract error raised inside says which specs the table was checked against."""
    try:
        yield
    except DataContractError as exc:
        exc.add_note(f"Checked against: {specs_used(features, funnel)}.")
        raise


def setting(model: type[BaseModel], name: str, *flags: str, preset: bool = False) -> Any:
    """A Typer option for the settings field ``model.name``: its help and limits come from the field.

    The option's own default is None (not given), so the field's default (or, with ``preset``,
    the preset's value) applies: each setting and its default are declared once, on the field.
    """
    field = model.model_fields[name]
    default = field.get_default(call_default_factory=True)
    shown = "none" if default is None else repr(default) if isinstance(default, str) else str(default)
    where = f"the preset's ({shown} without one)" if preset else shown
    limits = {key: getattr(rule, attr) for rule in field.metadata for key, attr in (("min", "ge"), ("max", "le")) if hasattr(rule, attr)}
    return typer.Option(*flags, help=f"{(field.description or '').rstrip('.')}. Default: {where}.", **limits)


# The settings options several verbs share: help, limits and defaults from the settings fields.
BackboneOption = Annotated[str | None, setting(ModelConfig, "backbone", preset=True)]
ModeOption = Annotated[str | None, setting(ModelConfig, "mode", preset=True)]
MaxStepsOption = Annotated[int | None, setting(TrainConfig, "max_steps", "--max-steps", preset=True)]
SeedOption = Annotated[int | None, setting(TrainConfig, "seed", preset=True)]
DtypeOption = Annotated[str | None, setting(ScoreConfig, "dtype", "--dtype")]
ThreadsOption = Annotated[int | None, setting(ScoreConfig, "threads", "--threads")]
RankByOption = Annotated[str | None, setting(ScoreConfig, "rank_by", "--rank-by")]
PresetOption = Annotated[
    str,
    typer.Option(
        help="'cpu-quick' (frozen SmolLM2, minutes on CPU), 'cpu-lora' (LoRA, hours on CPU) or 'paper' (LoRA, GPU, the paper's settings)."
    ),
]
ConfigOption = Annotated[Path | None, typer.Option("--config", help="YAML with `model:` and `train:` sections; overrides the preset.")]
EncodingOption = Annotated[
    str,
    typer.Option("--encoding", help="Text encoding of a CSV or JSONL input, e.g. latin-1 or cp1252 (Parquet and DuckDB carry their own)."),
]


def given(**values: object) -> dict[str, object]:
    """The options a user gave (not None): what goes over the defaults."""
    return {name: value for name, value in values.items() if value is not None}


def refuse_overwriting(outputs: Iterable[str | Path | None], inputs: Iterable[str | Path | None]) -> None:
    """:func:`leadrank.data.io.refuse_overwriting_inputs` for a verb's optional paths (None: not given), before any work."""
    from leadrank.data.io import refuse_overwriting_inputs

    refuse_overwriting_inputs([o for o in outputs if o is not None], [i for i in inputs if i is not None])
