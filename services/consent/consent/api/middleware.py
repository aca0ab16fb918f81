"""ASGI middleware: request id + access log, and the body read (64 KiB, under a deadline)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consent.api import request_metrics
from consent.api.admission import SHED
from consent.api.freshness import TOKEN_HEADER, consent_token
from consent.api.problems import problem_response

MAX_BODY = 64 * 1024
log = structlog.get_logger()
BODY_TIMEOUTS = Counter(
    "consent_api_body_timeouts_total", "Requests answered 408: the body did not arrive in time"
)


class BodyLimit:
    """Read the whole body (at most 64 KiB, else 413; more on the ``uploads`` paths) within
    ``timeout_s``, then replay it.

    This runs *before* admission (api/admission.py): a request counts as in flight only once
    its body is here, so clients trickling bodies cannot hold the in-flight slots. One whose
    body is late gets 408 with ``Connection: close`` and the connection is dropped.

    The larger limit of an upload path is granted only once ``may_upload`` has accepted the
    request's ``X-API-Key`` (checked before a byte of the body is read): a made-up key
    cannot make the service hold megabytes per in-flight slot. The check is a database read
    made before admission, so it is asked only for a body larger than the ordinary limit, and
    at most ``max_checks`` at a time (past that: 429), or forged keys would be a way around
    load shedding to the database."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int = MAX_BODY,
        timeout_s: float = 10.0,
        uploads: dict[str, int] | None = None,
        may_upload: Callable[[str], Awaitable[bool]] | None = None,
        max_checks: int = 4,
    ) -> None:
        self.app, self.default_limit, self.timeout_s = app, limit, timeout_s
        self.uploads = uploads or {}  # POST paths with a larger limit, for accepted keys
        self.may_upload = may_upload
        self.max_checks, self.checking = max_checks, 0

    async def _may_upload(self, key: str) -> bool:
        if self.may_upload is None:
            return False
        self.checking += 1
        try:
            return await self.may_upload(key)
        finally:
            self.checking -= 1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        limit = self.default_limit
        length = headers.get(b"content-length")
        if length is None and b"transfer-encoding" not in headers:
            return await self.app(scope, receive, send)  # HTTP/1.1: no body follows
        if length is not None and not length.isdigit():
            resp = problem_response(400, "Content-Length must be a whole number of bytes.")
            return await resp(scope, receive, send)
        upload = self.uploads.get(scope["path"]) if scope["method"] == "POST" else None
        key = headers.get(b"x-api-key")
        if upload is not None and key and (length is None or int(length) > limit):
            if self.checking >= self.max_checks:  # not admitted yet: bounded here
                SHED.inc()
                resp = problem_response(
                    429,
                    "Too many uploads are being authorised; retry after the delay.",
                    code="overloaded",
                    headers={"Retry-After": "1"},
                )
                return await resp(scope, receive, send)
            if await self._may_upload(key.decode("latin-1")):
                limit = upload
        if length is not None and int(length) > limit:
            return await self._too_large(scope, receive, send, limit)
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunks.append(message.get("body", b""))
                    size += len(chunks[-1])
                    if size > limit:
                        return await self._too_large(scope, receive, send, limit)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            BODY_TIMEOUTS.inc()
            resp = problem_response(
                408,
                f"The request body did not arrive within {self.timeout_s:g} s.",
                code="body_timeout",
                headers={"Connection": "close"},
            )
            return await resp(scope, receive, send)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        resp = problem_response(413, f"The body must be at most {limit} bytes.")
        await resp(scope, receive, send)


def _etag_token(scope: Scope, headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """A write that changed nothing (or an idempotent replay): the sequence it answers at."""
    if scope["method"] not in ("PUT", "PATCH", "POST", "DELETE"):
        return None
    for k, v in headers:
        if k.lower() == b"etag":
            return v.strip(b'"') or None
    return None


class RequestContext:
    """Binds a request id to every log line of the request; logs one line per request.
    Paths are logged without query strings, which may carry identifiers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=rid)
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                extra = [(b"x-request-id", rid.encode())]
                state = scope.get("state") or {}
                if state.get("gpc_honored") and not any(
                    k.lower() == b"sec-gpc-honored" for k, _ in message["headers"]
                ):
                    extra.append((b"sec-gpc-honored", b"1"))
                token = consent_token(scope) or _etag_token(scope, message["headers"])
                if token is not None:
                    extra.append((TOKEN_HEADER, token))
                message["headers"] = [*message["headers"], *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = request_metrics.route_label(scope.get("route"))
            elapsed = time.perf_counter() - start
            request_metrics.observe(route, scope["method"], status, elapsed)
            log.info(
                "request",
                method=scope["method"],
                route=route,  # the template: paths carry subject ids
                status=status,
                ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.unbind_contextvars("request_id")
