"""Operator endpoints for records the propagator's intake parked (API.md's additions):
list them, feed one to intake again, or drop it. All need ``admin``; actions are audited.
The records are the propagator's: these endpoints forward to its API."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from consent.api.access import Admin
from consent.api.deps import UoW
from consent.api.problems import Problem
from consent.api.routes.admin import forward
from consent.api.routes.preferences import PROBLEMS
from consent.api.views import Audited, ParkedPage

router = APIRouter(prefix="/v1/admin/parked", tags=["admin"])
ParkedId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get("", response_model=ParkedPage, responses=PROBLEMS)
async def list_parked(
    request: Request,
    access: Admin,
    cursor: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    r = await forward(request, "GET", "/v1/parked", {"cursor": cursor, "limit": limit})
    body: dict[str, Any] = r.json()
    return {"items": body["items"], "next_cursor": body["next_cursor"]}


@router.post("/{parked_id}/retry", status_code=202, response_model=Audited, responses=PROBLEMS)
async def retry_parked(
    request: Request, parked_id: ParkedId, uow: UoW, access: Admin
) -> dict[str, Any]:
    """Intake takes it again within about a second: a record now usable is delivered and
    leaves the list; one still unusable stays, with its new reason and one more attempt."""
    r = await forward(request, "POST", f"/v1/parked/{parked_id}/retry")
    if r.status_code == 404:
        raise Problem(404, "No such parked record.")
    audit_id = await uow.operations.audit(
        access.principal.id, "parked.retry", {"parked_id": parked_id}, {}, reference=str(parked_id)
    )
    return {"id": parked_id, "status": "retry_requested", "audit_id": audit_id}


@router.delete("/{parked_id}", status_code=204, responses=PROBLEMS)
async def drop_parked(request: Request, parked_id: ParkedId, uow: UoW, access: Admin) -> Response:
    r = await forward(request, "DELETE", f"/v1/parked/{parked_id}")
    if r.status_code == 404:
        raise Problem(404, "No such parked record.")
    dropped = r.json()
    await uow.operations.audit(
        access.principal.id,
        "parked.drop",
        {"parked_id": parked_id, **dropped},
        {"dropped": 1},
        reference=str(parked_id),
    )
    return Response(status_code=204)
