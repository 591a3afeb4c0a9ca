"""The scoring service: a FastAPI app over one model directory.

Endpoints
---------
``POST /score``    ``{"leads": [lead, ...]}`` -> ``{"scores": [{"lead_id", "probability", "rank_score", ...}]}``
                   (one row per lead, in request order; every column the Scorer returns)
``POST /explain``  ``{"lead": lead, "top": 5}`` -> an :class:`~leadrank.explain.Explanation`
                   (costs ``1 + n_features + n_turns`` prompts)
``GET /health``    liveness and counters; never needs the token
``GET /model``     versions, specs and metrics from the model's manifest

A lead is a JSON object with ``lead_id``, ``as_of``, every FeatureSpec field (``null`` when
unknown) and the dialogue text. The request model is built from the model's FeatureSpec when
the app is created, so ``/docs`` shows the exact fields. ``label`` and the stage column may be
sent and are checked, never used; other fields are ignored. Every error is a JSON body
``{"error": ..., "problems": [{"lead_index", "lead_id", "field", "message", "fix"}]}``: 401
(token), 413 (request body over ``max_request_bytes``), 422 (contract, or a dialogue over
``max_dialogue_chars`` characters: names the lead's index and id, the field and the fix), 503
(shutting down); never a traceback. Fields take JSON values as they are: ``"42"`` or ``true``
in a numeric field is refused, not converted, and a ``lead_id`` must not be blank.

One worker thread owns the Scorer (it is not thread-safe). Score requests that arrive within
``batch_wait_ms`` of each other are scored together, up to ``max_batch`` leads, and the
results are routed back per request. On shutdown the service stops taking requests and
finishes the queued and in-flight batches.
"""

import asyncio
import json
import os
import secrets
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException

from leadrank.artifact import load, read_manifest
from leadrank.config import ID_COLUMN, TIME_COLUMN, FeatureSpec, FunnelSpec
from leadrank.data.schema import LeadDataError, validate
from leadrank.errors import ConfigurationError, DataContractError
from leadrank.explain import explain
from leadrank.inference import ScoreConfig, Scorer

__all__ = ["TOKEN_ENV", "ServeSettings", "app_from_env", "create_app", "run"]

#: Environment variable holding the bearer token; unset or empty means no token is needed.
TOKEN_ENV = "LEADRANK_API_TOKEN"
_CONFIG_ENV = "LEADRANK_SERVE_CONFIG"  # how `run` hands the model and settings to uvicorn's workers


def _is_unicode(text: str) -> bool:
    """False for text with lone surrogates, which JSON escapes such as "\\ud800" give."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _encodable(text: str) -> str:
    if not _is_unicode(text):
        raise ValueError("holds a lone UTF-16 surrogate (e.g. an unpaired \\ud800 escape); send valid Unicode text")
    return text


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("is empty or only whitespace")
    return text


def _at_most(max_chars: int) -> Callable[[str], str]:
    """A validator refusing text over ``max_chars`` characters.

    Not ``Field(max_length=...)``: with it pydantic refuses lone surrogates first, in words that hide why.
    """

    def check(text: str) -> str:
        if len(text) > max_chars:
            raise ValueError(f"has {len(text):,} characters, over this server's limit of {max_chars:,}")
        return text

    return check


_Text = Annotated[StrictStr, AfterValidator(_encodable)]
_Id = Annotated[_Text, AfterValidator(_not_blank)]
_Int64 = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]
_Scalar = _Text | _Int64 | StrictFloat | StrictBool
_KINDS = {
    "numeric": (StrictFloat | None, 'a finite number, or null when unknown (not text such as "42", not true/false)'),
    "bool": (bool | None, "true/false (or 'yes'/'no', 1/0), or null when unknown"),
    "categorical": (_Scalar | None, "text (or a number or true/false), or null when unknown"),
}
#: What /explain's ``top`` takes.
_TOP = "a whole number from 1 to 100: how many positive and negative factors and turns to return"


@dataclass(frozen=True)
class ServeSettings:
    """How the service runs; ``leadrank serve`` sets these from its options.

    Parameters
    ----------
    max_batch : int, default=256
        Most leads in one request, and in one micro-batch of merged requests.
    max_request_bytes : int, default=8 MiB
        Larger request bodies get 413.
    max_dialogue_chars : int, default=100,000
        Most characters in one lead's dialogue; a longer one gets 422 naming the lead. The
        model reads only the newest turns that fit its token budget, so clients can send those.
    batch_wait_ms : float, default=5.0
        How long the worker waits for more requests to merge into a batch.
    api_token : str or None, default=$LEADRANK_API_TOKEN
        Bearer token required on every endpoint but ``/health``; None: no token.
    score : ScoreConfig
        How the Scorer runs (threads, bf16, rank_by).
    """

    max_batch: int = 256
    max_request_bytes: int = 8 * 2**20
    max_dialogue_chars: int = 100_000
    batch_wait_ms: float = 5.0
    api_token: str | None = field(default_factory=lambda: os.environ.get(TOKEN_ENV) or None, repr=False)
    score: ScoreConfig = ScoreConfig()

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_request_bytes", "max_dialogue_chars"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.batch_wait_ms < 0:
            raise ConfigurationError(f"batch_wait_ms must be >= 0; got {self.batch_wait_ms}")


# --------------------------------------------------------------------------- app


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
    lead_list = list[lead_model]  # type: ignore[valid-type]
    score_request = create_model(
        "ScoreRequest",
        leads=(lead_list, Field(min_length=1, max_length=settings.max_batch, description="The leads to score.")),
    )
    explain_request = create_model(
        "ExplainRequest",
        lead=(lead_model, Field(description="The lead to explain.")),
        top=(StrictInt, Field(5, ge=1, le=100, description=_TOP)),
    )

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


def _lead_model(features: FeatureSpec, funnel: FunnelSpec, max_dialogue_chars: int) -> type[BaseModel]:
    """The JSON form of one lead, from the FeatureSpec (fields aliased: any column name works)."""
    fields: dict[str, Any] = {
        "id_": (_Id | _Int64, Field(alias=ID_COLUMN, description="a unique text (not blank) or integer id")),
        "as_of": (_Text, Field(alias=TIME_COLUMN, description="an ISO-8601 timestamp such as '2024-03-01T09:30:00'")),
    }
    for i, feature in enumerate(features.features):
        kind, expected = _KINDS[feature.kind]
        fields[f"feature_{i}"] = (kind, Field(alias=feature.name, description=expected))
    if features.dialogue_column:
        fields["dialogue"] = (
            Annotated[_Text, AfterValidator(_at_most(max_dialogue_chars))],
            Field(
                alias=features.dialogue_column,
                description=f"text of at most {max_dialogue_chars:,} characters, "
                "one 'Speaker: text' turn per line, oldest first ('' for none)",
            ),
        )
    stages = Literal[tuple(funnel.stages)]  # type: ignore[valid-type]
    fields["label"] = (
        StrictBool | Annotated[StrictInt, Field(ge=0, le=1)] | None,
        Field(None, alias=funnel.label_column, description="0 or 1 (optional, not used)"),
    )
    fields["stage"] = (stages | None, Field(None, alias=funnel.stage_column, description=f"one of {funnel.stages} (optional, not used)"))
    config = ConfigDict(extra="ignore", allow_inf_nan=False, populate_by_name=False)
    return create_model("Lead", __config__=config, **fields)


def _public_manifest(manifest: dict) -> dict:
    keys = (
        "format_version",
        "leadrank_version",
        "model_version",
        "backbone",
        "rank_by",
        "features",
        "funnel",
        "model_config",
        "calibration",
        "metrics",
    )
    shown = {key: manifest.get(key) for key in keys}
    return json.loads(json.dumps(shown), parse_constant=lambda _: None)  # NaN metrics become null


# --------------------------------------------------------------------------- the worker


@dataclass
class _Job:
    kind: Literal["score", "explain", "stop"]
    leads: list[dict[str, Any]]
    future: asyncio.Future | None = None
    top: int | None = None


class _Worker:
    """Owns the Scorer on one thread; merges score requests that arrive together."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.accepting = False
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leadrank-scorer")
        self._batches = self._leads = self._pending = 0

    async def start(self, model_dir: str | Path) -> None:
        self._scorer = await self._in_thread(lambda: Scorer(load(model_dir), self.settings.score))
        self._task = asyncio.create_task(self._run())
        self.accepting = True

    async def stop(self) -> None:
        """Take no more requests; finish every queued and in-flight one; release the thread."""
        self.accepting = False
        self._queue.put_nowait(_Job("stop", []))
        await self._task
        self._thread.shutdown(wait=True)

    async def score(self, leads: list[dict[str, Any]]) -> pd.DataFrame:
        return await self._submit(_Job("score", leads))

    async def explain(self, lead: dict[str, Any], top: int) -> Any:
        return await self._submit(_Job("explain", [lead], top=top))

    def counters(self) -> dict[str, int]:
        """Requests waiting or being scored, micro-batches scored, leads scored."""
        return {"pending": self._pending, "batches": self._batches, "leads_scored": self._leads}

    async def _submit(self, job: _Job) -> Any:
        if not self.accepting:
            raise HTTPException(503, "the service is shutting down; retry in a moment or on another instance")
        job.future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(job)
        self._pending += 1
        try:
            return await job.future
        finally:
            self._pending -= 1

    async def _run(self) -> None:
        carry: _Job | None = None
        while True:
            job = carry or await self._queue.get()
            carry = None
            if job.kind == "stop":
                return
            if job.kind == "explain":
                await self._settle([job], lambda: [explain(self._scorer, job.leads[0], top=job.top)])
                continue
            await asyncio.sleep(self.settings.batch_wait_ms / 1000)
            batch, size = [job], len(job.leads)
            while not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt.kind != "score" or size + len(nxt.leads) > self.settings.max_batch:
                    carry = nxt
                    break
                batch.append(nxt)
                size += len(nxt.leads)
            await self._settle(batch, lambda: self._score_together(batch))

    def _score_together(self, batch: list[_Job]) -> list[pd.DataFrame]:
        """Runs on the worker thread: one Scorer call for all jobs, split back per job."""
        records = [lead for job in batch for lead in job.leads]
        table = pd.DataFrame.from_records(records)
        table[ID_COLUMN] = [str(i) for i in range(len(table))]  # ids may repeat across requests
        # each job's leads were validated on their own when the request arrived; the merged
        # table is not judged again (two valid requests may differ, e.g. in how as_of is written)
        point, pair = self._scorer.raw_scores(table)
        scores = self._scorer.to_scores(table[ID_COLUMN], point, pair)
        parts, start = [], 0
        for job in batch:
            part = scores.iloc[start : start + len(job.leads)].reset_index(drop=True)
            part[ID_COLUMN] = [lead[ID_COLUMN] for lead in job.leads]
            parts.append(part)
            start += len(job.leads)
        self._batches += 1
        self._leads += len(records)
        return parts

    async def _settle(self, jobs: list[_Job], work: Callable[[], list[Any]]) -> None:
        """Run ``work`` on the worker thread; hand each job its result (or the error)."""
        try:
            results = await self._in_thread(work)
        except Exception as exc:  # every waiting request gets the error; the worker goes on
            results = [exc] * len(jobs)
        for job, result in zip(jobs, results, strict=True):
            if job.future is not None and not job.future.done():  # the client may have gone
                if isinstance(result, Exception):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)

    def _in_thread(self, work: Callable[[], Any]) -> Awaitable[Any]:
        return asyncio.get_running_loop().run_in_executor(self._thread, work)


# --------------------------------------------------------------------------- guards and errors

_bearer = HTTPBearer(auto_error=False, description=f"The value of {TOKEN_ENV} on the server, when it is set.")


async def _require_token(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    expected = request.app.state.settings.api_token
    if expected is None:
        return
    given = credentials.credentials if credentials else ""
    if not secrets.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            401,
            f"missing or wrong bearer token; send the header 'Authorization: Bearer <token>' with the server's {TOKEN_ENV}",
            headers={"WWW-Authenticate": "Bearer"},
        )


class _BodyLimit:
    """ASGI middleware: 413 for request bodies over ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: Callable, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await JSONResponse(self._error(), status_code=413)(scope, receive, send)
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, self._error()["error"])
            return message

        await self.app(scope, limited_receive, send)

    def _error(self) -> dict:
        return {
            "error": f"request body over the limit of {self.max_bytes:,} bytes (--max-request-bytes); "
            "send fewer or shorter leads per request"
        }


class _LeadsRefused(DataContractError):
    """Leads of one request that break the data contract: ``.problems`` is the 422 body's list."""

    def __init__(self, error: LeadDataError, lead_ids: list[str | int]) -> None:
        super().__init__(str(error))
        self.problems = [
            {
                "lead_index": row,
                "lead_id": None if row is None else lead_ids[row],
                "field": p.column,
                "message": p.message,
                "fix": p.fix,
            }
            for p in error.problems
            for row in (p.rows or (None,))
        ]


def _add_error_handlers(app: FastAPI) -> None:
    async def contract(request: Request, exc: _LeadsRefused) -> JSONResponse:
        return _error(422, f"{len(exc.problems)} problem(s) with the leads (lead_index counts from 0)", exc.problems)

    async def request_shape(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = _request_problems(exc.errors(), exc.body, request.app.state.settings, request.app.state.expected)
        return _error(422, f"{len(problems)} problem(s) with the request (lead_index counts from 0)", problems)

    async def http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, "internal error while scoring; the server log has the details")

    # Starlette types a handler as taking any Exception, though it is called only with the class it is registered for.
    app.add_exception_handler(_LeadsRefused, contract)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, request_shape)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected)


def _error(status: int, message: str, problems: list[dict] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, **({"problems": problems} if problems else {})}, status_code=status)


def _request_problems(errors: Sequence[dict], body: Any, settings: ServeSettings, expected: dict[str, str]) -> list[dict]:
    """Pydantic's errors as one problem per (lead, field); union members are folded into one.

    ``body`` is the request as parsed JSON: each problem names the ``lead_id`` the lead was sent with.
    """
    grouped: dict[tuple[int | None, str | None], list[dict]] = {}
    for error in errors:
        grouped.setdefault(_where(error["loc"]), []).append(error)
    problems = []
    for (index, name), group in grouped.items():
        first = group[0]
        own = [error["msg"] for error in group if error["type"] == "value_error"]  # our validators say what is wrong
        message = first["msg"] if len(group) == 1 else own[0] if own else "not a valid value for this field"
        if first["type"] == "json_invalid":
            message = f"the body is not valid JSON: {first.get('ctx', {}).get('error', '')}"
        problems.append(
            {
                "lead_index": index,
                "lead_id": _sent_id(body, index),
                "field": name,
                "message": message,
                "fix": _fix(name, first, settings, expected),
            }
        )
    return problems


def _sent_id(body: Any, index: int | None) -> str | int | None:
    """The ``lead_id`` that lead ``index`` of a parsed request body has, if it is valid text or an integer."""
    leads = body.get("leads", [body.get("lead")]) if isinstance(body, dict) else None
    if index is None or not isinstance(leads, list) or index >= len(leads) or not isinstance(leads[index], dict):
        return None
    value = leads[index].get(ID_COLUMN)
    if isinstance(value, str):
        return value if _is_unicode(value) else None  # a lone surrogate cannot go back out as JSON text
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _where(loc: tuple) -> tuple[int | None, str | None]:
    """(lead index, field) from a pydantic location such as ('body', 'leads', 3, 'customer_age', 'str')."""
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    if parts[:1] == ["leads"] and len(parts) >= 2 and isinstance(parts[1], int):
        return parts[1], (str(parts[2]) if len(parts) > 2 else None)
    if parts[:1] == ["lead"]:
        return 0, (str(parts[1]) if len(parts) > 1 else None)
    return None, (str(parts[0]) if parts and isinstance(parts[0], str) else None)


def _fix(name: str | None, error: dict, settings: ServeSettings, expected: dict[str, str]) -> str:
    if name == "leads" and error["type"] == "too_long":
        return f"send at most {settings.max_batch} leads per request (this server's --max-batch); split the batch"
    if name in (None, "leads", "lead"):
        return 'send a JSON object: {"leads": [lead, ...]} for /score, {"lead": lead, "top": 5} for /explain; GET /model lists the fields'
    if name in expected:
        return f"send {name!r} as {expected[name]}" + (" (the field is required)" if error["type"] == "missing" else "")
    return f"check {name!r}: GET /model lists the fields and /docs the type each one takes"


# --------------------------------------------------------------------------- running


def run(model_dir: str | Path, settings: ServeSettings, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Serve with uvicorn until SIGINT/SIGTERM; each worker process loads its own copy of the model."""
    import uvicorn

    read_manifest(model_dir)  # a wrong directory fails before the server starts
    config = asdict(settings)
    config.pop("api_token")  # workers read the token from the environment, never from here
    os.environ[_CONFIG_ENV] = json.dumps({"model_dir": str(model_dir), "settings": config})
    # uvicorn re-raises SIGTERM once its graceful shutdown is done; a no-op handler then lets
    # the process exit 0, the normal end of a service stopped by systemd or Kubernetes.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.run("leadrank.serve:app_from_env", factory=True, host=host, port=port, workers=workers, timeout_graceful_shutdown=30)


def app_from_env() -> FastAPI:
    """The app that :func:`run` describes in the environment (uvicorn's factory for each worker)."""
    config = json.loads(os.environ[_CONFIG_ENV])
    settings = config["settings"]
    settings["score"] = ScoreConfig(**settings["score"])
    return create_app(config["model_dir"], ServeSettings(**settings))
