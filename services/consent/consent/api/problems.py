"""RFC 9457 problem documents for every error the API returns."""

from __future__ import annotations

from typing import Any

import sqlalchemy.exc
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from consent.domain.authority import ChannelNotAllowed, NotPermitted
from consent.domain.model import DomainError
from consent.service.preferences import UnknownValue

log = structlog.get_logger()
PROBLEM = "application/problem+json"
TITLES = {
    400: "Malformed request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    412: "Precondition failed",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid request",
    428: "Precondition required",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


class Problem(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.code = status, detail, code
        self.errors, self.headers = errors, headers


def problem_response(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://consent.dev/problems/{code or status}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if code:
        body["code"] = code
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": e.get("msg", ""),
            "type": e.get("type", ""),
        }
        for e in exc.errors()
    ]


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status, exc.detail, code=exc.code, errors=exc.errors, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            return problem_response(400, "The body is not valid JSON.", errors=errors)
        return problem_response(422, "The request does not match the schema.", errors=errors)

    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return problem_response(409, exc.detail, code=exc.code)

    @app.exception_handler(NotPermitted)
    async def _not_permitted(_: Request, exc: NotPermitted) -> JSONResponse:
        return problem_response(403, exc.detail, code=exc.code)

    @app.exception_handler(ChannelNotAllowed)
    async def _channel(_: Request, exc: ChannelNotAllowed) -> JSONResponse:
        detail = str(exc)
        return problem_response(
            422,
            detail,
            code="channel_not_allowed",
            errors=[{"loc": ["body", "context", "channel"], "msg": detail, "type": "value_error"}],
        )

    @app.exception_handler(UnknownValue)
    async def _unknown(_: Request, exc: UnknownValue) -> JSONResponse:
        return problem_response(
            422,
            exc.detail,
            errors=[{"loc": ["body", exc.field], "msg": exc.detail, "type": "unknown_value"}],
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(
            exc.status_code, str(exc.detail), headers=dict(exc.headers or {}) or None
        )

    @app.exception_handler(sqlalchemy.exc.TimeoutError)
    async def _pool_exhausted(_: Request, exc: sqlalchemy.exc.TimeoutError) -> JSONResponse:
        """Every database connection stayed busy past the pool timeout: overloaded, not
        broken. Nothing was written (no connection, no transaction)."""
        return problem_response(
            429,
            "The service is at capacity (no database connection free); retry after the "
            "delay in Retry-After.",
            code="overloaded",
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled_error", error_type=type(exc).__name__)  # no message: may hold PII
        return problem_response(500, "An internal error occurred; it has been logged.")
