"""The service's refusals: the token and body-size guards, and every error as a JSON body.

Every error is ``{"error": ..., "problems": [{"lead_index", "lead_id", "field", "message", "fix"}]}``:
401 (token), 413 (request body over ``max_request_bytes``), 422 (contract, or a dialogue over
``max_dialogue_chars`` characters: names the lead's index and id, the field and the fix), 503
(shutting down), 500 (anything else); never a traceback.
"""

import secrets
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from leadrank.config import ID_COLUMN
from leadrank.data.schema import LeadDataError
from leadrank.errors import DataContractError
from leadrank.serve.schemas import _is_unicode
from leadrank.settings import TOKEN_ENV, ServeSettings

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
