"""The reference preference center: static HTML/CSS/JS served under ``/preference-center/``.

No inline script or style: a strict Content-Security-Policy, with ``frame-ancestors`` from
``CONSENT_PREFERENCE_CENTER_FRAME_ANCESTORS``. The page takes its user token from the host
page (postMessage, or a same-origin sessionStorage handoff), never from a URL.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Annotated

import jwt
from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from consent.api.deps import get_settings
from consent.api.problems import Problem
from consent.api.schemas import SubjectId
from consent.settings import Settings

router = APIRouter(tags=["preference center"])
PREFIX = "/preference-center"
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "embed.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "strings.en.json": "application/json",
}
DEV_ASSETS = {"dev.html": "text/html; charset=utf-8", "dev.js": "text/javascript; charset=utf-8"}
DEV_TOKEN_TTL_S = 3600


def _asset(name: str) -> bytes:
    return resources.files("consent.web").joinpath("preference_center", name).read_bytes()


def frame_ancestors(settings: Settings) -> list[str]:
    return ["'self'", *settings.preference_center_frame_ancestors]


def security_headers(settings: Settings) -> dict[str, str]:
    csp = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "img-src 'self' data:",
            "form-action 'none'",
            "base-uri 'none'",
            "frame-ancestors " + " ".join(frame_ancestors(settings)),
        ]
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


def _serve(request: Request, name: str, media_type: str) -> Response:
    return Response(
        _asset(name), media_type=media_type, headers=security_headers(get_settings(request))
    )


@router.get(PREFIX, include_in_schema=False)
async def preference_center_redirect() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/", status_code=308)


@router.get(
    f"{PREFIX}/",
    response_class=Response,
    responses={
        200: {
            "content": {"text/html": {"schema": {"type": "string"}}},
            "description": "The preference center",
        }
    },
)
async def preference_center(request: Request) -> Response:
    """The reference preference center page (HTML; its script and strings are siblings)."""
    return _serve(request, "index.html", "text/html; charset=utf-8")


@router.get(f"{PREFIX}/config.json", include_in_schema=False)
async def preference_center_config(request: Request) -> JSONResponse:
    """Origins the page accepts a token from (postMessage), and the dev helper's presence."""
    settings = get_settings(request)
    return JSONResponse(
        {
            "allowed_origins": list(settings.preference_center_frame_ancestors),
            "dev": settings.preference_center_dev,
        },
        headers=security_headers(settings),
    )


@router.post(f"{PREFIX}/dev/token", include_in_schema=False)
async def dev_token(
    request: Request, subject_id: Annotated[SubjectId, Body(embed=True)]
) -> JSONResponse:
    """Dev only (``consentctl dev``): mint a user token for the helper page."""
    settings = get_settings(request)
    # a token for anyone: only in a dev stack, whatever the environment says (issue 14)
    if not (settings.preference_center_dev and settings.dev_stack) or settings.jwt_secret is None:
        raise Problem(404, "Not found.")
    token = jwt.encode(
        {"sub": subject_id, "exp": int(time.time()) + DEV_TOKEN_TTL_S},
        settings.jwt_secret.get_secret_value(),
        "HS256",
    )
    return JSONResponse({"token": token, "expires_in": DEV_TOKEN_TTL_S})


@router.get(f"{PREFIX}/{{name}}", include_in_schema=False)
async def preference_center_asset(request: Request, name: str) -> Response:
    if name in ASSETS:
        return _serve(request, name, ASSETS[name])
    if name in DEV_ASSETS and get_settings(request).preference_center_dev:
        return _serve(request, name, DEV_ASSETS[name])
    raise Problem(404, "Not found.")
