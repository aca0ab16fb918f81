"""What the generated OpenAPI document adds to FastAPI's: the two credentials, the closed list
of scopes a service key may carry (``consent.api.auth.SCOPES``), and each operation's
``security``, read from the ``needs(...)`` dependency that enforces it (consent.api.access),
so a generated client knows which credential each operation takes."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi

from consent.api.access import ROLES, Access
from consent.api.auth import SCOPES, USER_SCOPES
from consent.api.deps import get_principal


def _access_of(dependant: Dependant) -> tuple[Access | None, bool]:
    """The route's ``needs(...)``, and whether it reads credentials at all."""
    found, credentials = None, False
    for dep in dependant.dependencies:
        if isinstance(dep.call, Access):
            found = dep.call
        inner, reads = _access_of(dep)
        found, credentials = found or inner, credentials or reads or dep.call is get_principal
    return found, credentials


def security_by_operation(app: FastAPI) -> dict[tuple[str, str], list[dict[str, list[str]]]]:
    """(METHOD, path) → its security requirements; ``[]``: no credentials. A route that
    reads the caller without saying who may call it is a mistake, refused here."""
    out: dict[tuple[str, str], list[dict[str, list[str]]]] = {}
    for ctx in routing.iter_route_contexts(app.routes):
        if not isinstance(ctx.original_route, routing.APIRoute):
            continue
        access, credentials = _access_of(ctx.dependant)
        if credentials and access is None:
            raise TypeError(f"{ctx.path_format} reads credentials but has no needs(...)")
        for method in ctx.methods or ():
            out[(method, str(ctx.path_format))] = access.security() if access else []
    return out


def _declare_security(app: FastAPI, doc: dict[str, Any]) -> None:
    security = security_by_operation(app)
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            operation["security"] = security[(method.upper(), path)]


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = doc.setdefault("components", {})
            components.setdefault("schemas", {})["Scope"] = {
                "type": "string",
                "enum": list(SCOPES),
                "description": "A service key's scope; `admin` implies every other.",
            }
            components["securitySchemes"] = {
                "ApiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Key",
                    "description": "A service key (`consentctl keys create --scope S`), "
                    f"with scopes from `Scope`: {', '.join(SCOPES)}. An operation's "
                    "security lists the scopes it accepts, any one being enough; `admin` "
                    "implies every other; no scope: any valid key.",
                },
                "UserToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An end user's token (`sub` = the subject), for its own "
                    f"subject with {', '.join(sorted(USER_SCOPES))}. An operation's security "
                    "lists the roles it accepts; no role: any valid token. "
                    + " ".join(f"`{role}`: {what}." for role, what in ROLES.items()),
                },
            }
            _declare_security(app, doc)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
