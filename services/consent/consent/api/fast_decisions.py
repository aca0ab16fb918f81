"""The lean read path for ``GET /v1/subjects/{id}/decisions``.

A decision is the API's hottest read (every send, checkout, page view). Through FastAPI's
route it pays for routing, the dependency graph (a session, a unit of work, the GPC
dependency), parameter validation and response handling, several times the work of the
decision itself (docs/performance.md, py-spy). This ASGI layer, innermost in the middleware
stack (so load shedding, the body deadline and the request log still apply), answers the
well-formed common case directly: an API key known to the worker's key cache, or a user
token for its own subject; query parameters that are plainly valid; no ``Sec-GPC`` from a
user (that is a write). Anything else — bad input, unknown credentials, a guardian, a GPC
signal — falls through to the FastAPI route, which documents the endpoint in OpenAPI and
gives the same answers and problems.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from consent.api.auth import Principal, principal_from_jwt
from consent.api.freshness import not_reached
from consent.api.problems import problem_response
from consent.api.schemas import MAX_SEQUENCE, decision_doc
from consent.catalog import load_catalog
from consent.service.context import utcnow
from consent.service.decision_reads import SequenceNotReached

PREFIX, SUFFIX = "/v1/subjects/", "/decisions"
SUBJECT = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
PARAMS = frozenset({"purpose", "min_sequence", "consistency"})
JSON = [(b"content-type", b"application/json")]


@dataclass(frozen=True)
class RouteName:
    """What the request log prints for this path (never the subject id)."""

    path: str = "/v1/subjects/{subject_id}/decisions"


ROUTE = RouteName()


class FastDecisions:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.catalog = frozenset(load_catalog())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if not (scope.get("method") == "GET" and path.startswith(PREFIX) and path.endswith(SUFFIX)):
            return await self.app(scope, receive, send)
        subject_id = path[len(PREFIX) : -len(SUFFIX)]
        query = self._query(scope["query_string"])
        principal = await self._principal(scope, subject_id) if query is not None else None
        if principal is None or query is None or not SUBJECT.fullmatch(subject_id):
            return await self.app(scope, receive, send)  # the route answers, or says why not
        purpose, min_sequence, full = query
        scope["route"] = ROUTE
        app_state = scope["app"].state
        try:
            answers = await app_state.decisions.read(
                [(subject_id, purpose)],
                utcnow(),
                {subject_id: min_sequence} if min_sequence else None,
                full,
            )
        except SequenceNotReached as exc:
            problem = not_reached(exc)
            return await problem_response(problem.status, problem.detail, code=problem.code)(
                scope, receive, send
            )
        except Exception as exc:  # e.g. no pool connection free: the app's handlers answer
            return await self._handled(scope, receive, send, exc)
        [d] = answers.decisions
        body = orjson.dumps(
            decision_doc(subject_id, purpose, d.allowed, d.reason, answers.sequences[subject_id])
        )
        headers = [*JSON, (b"content-length", str(len(body)).encode())]  # never chunked
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _handled(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        """What the FastAPI route would answer for this exception (api/problems.py)."""
        handlers = scope["app"].exception_handlers
        for cls in type(exc).__mro__:
            if cls in handlers:
                response = await handlers[cls](Request(scope), exc)
                return await response(scope, receive, send)
        raise exc

    def _query(self, raw: bytes) -> tuple[str, int | None, bool] | None:
        """(purpose, min_sequence, full) when the query is plainly valid, else None."""
        try:
            pairs = parse_qsl(raw.decode("ascii"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            return None
        params = dict(pairs)
        if len(params) != len(pairs) or not params.keys() <= PARAMS:
            return None
        purpose = params.get("purpose")
        if purpose not in self.catalog:
            return None
        min_sequence = None
        if "min_sequence" in params:
            text = params["min_sequence"]
            if not (text.isascii() and text.isdigit() and len(text) <= 16):
                return None
            min_sequence = int(text)
            if min_sequence > MAX_SEQUENCE:
                return None
        consistency = params.get("consistency")
        if consistency not in (None, "full"):
            return None
        return purpose, min_sequence, consistency == "full"

    async def _principal(self, scope: Scope, subject_id: str) -> Principal | None:
        key = authorization = None
        gpc = False
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                key = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"sec-gpc":
                gpc = value.strip() == b"1"
        if gpc and not key:
            return None  # a user's GPC signal is recorded (a write): the route does it
        state = scope["app"].state
        principal: Principal | None = None
        if key:
            principal = state.keys.get(key)
        elif authorization and authorization[:7].lower() == "bearer ":
            try:
                principal = await principal_from_jwt(
                    authorization[7:].strip(), state.settings, getattr(state, "jwks", None)
                )
            except Exception:  # AuthError, or the identity provider's: the route reports them
                return None
            if principal.id != subject_id:
                return None  # a guardian for a minor: the route checks the link
        if principal is None or not principal.has("decisions:read"):
            return None
        return principal
