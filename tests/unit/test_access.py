"""Who may call an operation is said once, by ``needs(...)``: the declaration refuses what
enforcement could not honour, and the document builder refuses a route that reads the
caller without one."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import FastAPI

from consent.api.access import Access, Admin, Granted, needs
from consent.api.deps import Caller
from consent.api.openapi import security_by_operation


def test_a_user_role_needs_a_scope_a_user_token_holds() -> None:
    with pytest.raises(ValueError, match="user token"):
        Access(("admin",), ("subject",))
    with pytest.raises(ValueError, match="unknown"):
        Access(("preferences:reed",), None)
    with pytest.raises(ValueError, match="unknown"):
        Access(("preferences:read",), ("owner",))  # type: ignore[arg-type]


def test_security_lists_each_alternative_and_admin() -> None:
    assert Access(("preferences:write", "minors:write"), ("subject",)).security() == [
        {"ApiKey": ["preferences:write"]},
        {"ApiKey": ["minors:write"]},
        {"ApiKey": ["admin"]},
        {"UserToken": ["subject"]},
    ]
    assert Access(("admin",), None).security() == [{"ApiKey": ["admin"]}]
    assert Access((), ()).security() == [{"ApiKey": []}, {"UserToken": []}]


def test_the_document_reads_needs_and_refuses_a_route_without() -> None:
    app = FastAPI()

    @app.get("/open")
    async def open_() -> None: ...

    @app.get("/admin")
    async def admin_only(_access: Admin) -> None: ...

    @app.get("/mine/{subject_id}")
    async def mine(subject_id: str, _a: Annotated[Granted, needs("decisions:read")]) -> None: ...

    security = security_by_operation(app)
    assert security[("GET", "/open")] == []
    assert security[("GET", "/admin")] == [{"ApiKey": ["admin"]}]
    assert {"UserToken": ["guardian"]} in security[("GET", "/mine/{subject_id}")]

    @app.get("/forgot")
    async def forgot(principal: Caller) -> None: ...

    with pytest.raises(TypeError, match="/forgot"):
        security_by_operation(app)
