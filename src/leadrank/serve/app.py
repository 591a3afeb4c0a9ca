"""The app: :func:`create_app` and its routes over one model directory, and running it with uvicorn.

``POST /score``    ``{"leads": [lead, ...]}`` -> ``{"scores": [{"lead_id", "probability", "rank_score",
                   "percentile", "grade", "model_version"}]}`` (one row per lead, in request order;
                   percentile and grade against the model's validation leads, as ``leadrank score --crm``)
``POST /explain``  ``{"lead": lead, "top": 5}`` -> an :class:`~leadrank.explain.Explanation`
                   (costs ``1 + n_features + n_turns`` prompts)
``GET /health``    liveness and counters; never needs the token
``GET /model``     versions, specs and metrics from the model's manifest
"""

import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict

from leadrank.artifact import read_manifest
from leadrank.config import ID_COLUMN, FeatureSpec, FunnelSpec
from leadrank.data.schema import LeadDataError, validate
from leadrank.serve.errors import _add_error_handlers, _BodyLimit, _LeadsRefused, _require_token
from leadrank.serve.schemas import _TOP, _explain_request, _lead_model, _public_manifest, _score_request
from leadrank.serve.worker import _Worker
from leadrank.settings import ServeSettings

__all__ = ["app_from_env", "create_app", "run"]

_CONFIG_ENV = "LEADRANK_SERVE_CONFIG"  # how `run` hands the model and settings to uvicorn's workers
#: What uvicorn imports in each worker process: :func:`app_from_env`, where it is defined.
_FACTORY = f"{__name__}:app_from_env"


class _Launch(BaseModel):
    """What :func:`run` hands each uvicorn worker in ``$LEADRANK_SERVE_CONFIG``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_dir: str
    settings: ServeSettings


def create_app(model_dir: str | Path, settings: ServeSettings | None = None) -> FastAPI:
    """The service for one model directory; the model loads when the app starts (lifespan).

    The manifest is read here, so a wrong directory fails at once with ``ArtifactError``.
    """
    settings = settings or ServeSettings()
    manifest = read_manifest(model_dir)
    features = FeatureSpec.model_validate(manifest["features"])
    funnel = FunnelSpec.model_validate(manifest["funnel"])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = _Worker(settings)
        await worker.start(model_dir)
        app.state.worker = worker
        yield
        await worker.stop()

    lead_model = _lead_model(features, funnel, settings.max_dialogue_chars)
    app = FastAPI(title="leadrank", summary="Score and explain sales leads.", lifespan=lifespan)
    app.state.settings = settings
    app.state.expected = {**{f.alias: f.description for f in lead_model.model_fields.values()}, "top": _TOP}
    app.add_middleware(_BodyLimit, max_bytes=settings.max_request_bytes)
    _add_error_handlers(app)
    app.include_router(_routes(lead_model, features, funnel, settings, _public_manifest(manifest)))
    return app


def _routes(lead_model: type[BaseModel], features: FeatureSpec, funnel: FunnelSpec, settings: ServeSettings, model_info: dict) -> APIRouter:
    # The request models are built at run time (create_model): mypy cannot use them as types or see their
    # fields, hence the type: ignore[valid-type] / [attr-defined] where they are used.
    score_request = _score_request(lead_model, settings.max_batch)
    explain_request = _explain_request(lead_model)

    def rows(leads: list[BaseModel]) -> list[dict[str, Any]]:
        """The leads as table rows, checked against the data contract (422 names lead and field)."""
        records = [lead.model_dump(by_alias=True, exclude={"label", "stage"}) for lead in leads]
        try:
            validate(pd.DataFrame.from_records(records), features, funnel, require_labels=False)
        except LeadDataError as exc:
            raise _LeadsRefused(exc, [record[ID_COLUMN] for record in records]) from exc
        return records

    router = APIRouter()

    @router.get("/health")
    async def health(request: Request) -> dict:
        worker: _Worker = request.app.state.worker
        return {"status": "ok" if worker.accepting else "stopping", **worker.counters()}

    guarded = APIRouter(dependencies=[Depends(_require_token)])

    @guarded.get("/model")
    async def model() -> dict:
        return model_info

    @guarded.post("/score")
    async def score(body: score_request, request: Request) -> dict:  # type: ignore[valid-type]
        scores = await request.app.state.worker.score(rows(body.leads))  # type: ignore[attr-defined]
        return {"scores": json.loads(scores.to_json(orient="records", double_precision=15))}

    @guarded.post("/explain")
    async def explain_lead(body: explain_request, request: Request) -> dict:  # type: ignore[valid-type]
        lead, top = body.lead, body.top  # type: ignore[attr-defined]
        [row] = rows([lead])
        return (await request.app.state.worker.explain(row, top)).model_dump()

    router.include_router(guarded)
    return router


def run(model_dir: str | Path, settings: ServeSettings, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Serve with uvicorn until SIGINT/SIGTERM; each worker process loads its own copy of the model."""
    import uvicorn

    read_manifest(model_dir)  # a wrong directory fails before the server starts
    launch = _Launch(model_dir=str(model_dir), settings=settings)
    # workers read the token from the environment, never from here
    os.environ[_CONFIG_ENV] = launch.model_dump_json(exclude={"settings": {"api_token"}})
    # uvicorn re-raises SIGTERM once its graceful shutdown is done; a no-op handler then lets
    # the process exit 0, the normal end of a service stopped by systemd or Kubernetes.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.run(_FACTORY, factory=True, host=host, port=port, workers=workers, timeout_graceful_shutdown=30)


def app_from_env() -> FastAPI:
    """The app that :func:`run` describes in the environment (uvicorn's factory for each worker)."""
    launch = _Launch.model_validate_json(os.environ[_CONFIG_ENV])
    return create_app(launch.model_dir, launch.settings)
