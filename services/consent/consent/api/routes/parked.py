"""Operator endpoints for records the propagator's intake parked (API.md's additions):
list them, feed one to intake again, or drop it. All need ``admin``; actions are audited."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from consent.adapters.operations import OperationsRepository
from consent.adapters.parked import ParkedRepository
from consent.api.deps import Caller, UoW, require_scope
from consent.api.problems import Problem
from consent.api.routes.preferences import PROBLEMS
from consent.service.context import utcnow
from consent_common.timefmt import rfc3339

router = APIRouter(prefix="/v1/admin/parked", tags=["admin"])
ParkedId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "topic": row["topic"],
        "partition": row["partition"],
        "offset": row["offset"],
        "reason": row["reason"],
        "parked_at": rfc3339(row["parked_at"]),
        "retry_requested_at": rfc3339(row["retry_requested_at"]),
        "attempts": row["attempts"],
    }


@router.get("", responses=PROBLEMS)
async def list_parked(
    uow: UoW,
    principal: Caller,
    cursor: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    require_scope(principal, "admin")
    rows = await ParkedRepository(uow.session).records(cursor or 0, limit + 1)
    items = [_view(r) for r in rows[:limit]]
    return {"items": items, "next_cursor": items[-1]["id"] if len(rows) > limit else None}


@router.post("/{parked_id}/retry", status_code=202, responses=PROBLEMS)
async def retry_parked(parked_id: ParkedId, uow: UoW, principal: Caller) -> dict[str, Any]:
    """Intake takes it again within about a second: a record now usable is delivered and
    leaves the list; one still unusable stays, with its new reason and one more attempt."""
    require_scope(principal, "admin")
    if not await ParkedRepository(uow.session).request_retry(parked_id, utcnow()):
        raise Problem(404, "No such parked record.")
    audit_id = await OperationsRepository(uow.session).audit(
        principal.id, "parked.retry", {"parked_id": parked_id}, {}, reference=str(parked_id)
    )
    await uow.commit()
    return {"id": parked_id, "status": "retry_requested", "audit_id": audit_id}


@router.delete("/{parked_id}", status_code=204, responses=PROBLEMS)
async def drop_parked(parked_id: ParkedId, uow: UoW, principal: Caller) -> Response:
    require_scope(principal, "admin")
    dropped = await ParkedRepository(uow.session).drop(parked_id)
    if dropped is None:
        raise Problem(404, "No such parked record.")
    await OperationsRepository(uow.session).audit(
        principal.id,
        "parked.drop",
        {"parked_id": parked_id, **dropped},
        {"dropped": 1},
        reference=str(parked_id),
    )
    await uow.commit()
    return Response(status_code=204)
