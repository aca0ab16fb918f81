"""What the generated OpenAPI document adds to FastAPI's: the two credentials and the closed
list of scopes a service key may carry (``consent.api.auth.SCOPES``), so a generated client
knows them; which scope each route needs is in its description and tests/test_authz_matrix.py."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from consent.api.auth import SCOPES, USER_SCOPES


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
                    f"with scopes from `Scope`: {', '.join(SCOPES)}.",
                },
                "UserToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An end user's token (`sub` = the subject); it acts "
                    f"for its own subject with {', '.join(sorted(USER_SCOPES))}.",
                },
            }
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
