"""The service verb: serve a model over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from leadrank.cli._common import (
    DtypeOption,
    RankByOption,
    ThreadsOption,
    app,
    given,
    handle_errors,
    setting,
)
from leadrank.settings import ScoreConfig, ServeSettings


@app.command()
@handle_errors
def serve(
    model_dir: Annotated[
        Path,
        typer.Argument(
            help="Model directory from `leadrank train`, or a registry: its current version when the service starts "
            "(restart it after a publish or rollback)."
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on; 127.0.0.1 keeps the service on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    max_batch: Annotated[int | None, setting(ServeSettings, "max_batch")] = None,
    max_request_bytes: Annotated[int | None, setting(ServeSettings, "max_request_bytes")] = None,
    max_dialogue_chars: Annotated[int | None, setting(ServeSettings, "max_dialogue_chars")] = None,
    workers: Annotated[int, typer.Option(help="Server processes; each loads its own copy of the model.")] = 1,
    batch_wait_ms: Annotated[float | None, setting(ServeSettings, "batch_wait_ms")] = None,
    threads: ThreadsOption = None,
    rank_by: RankByOption = None,
    dtype: DtypeOption = None,
) -> None:
    """Serve the model over HTTP: POST /score and /explain, GET /health and /model (docs at /docs).

    Set LEADRANK_API_TOKEN to require 'Authorization: Bearer <token>' on every endpoint but /health.
    """
    from leadrank.registry import model_folder
    from leadrank.serve import run

    score = ScoreConfig(**given(threads=threads, rank_by=rank_by, dtype=dtype))
    limits = given(
        max_batch=max_batch, max_request_bytes=max_request_bytes, max_dialogue_chars=max_dialogue_chars, batch_wait_ms=batch_wait_ms
    )
    settings = ServeSettings(**limits, score=score)
    run(model_folder(model_dir), settings, host=host, port=port, workers=workers)
