"""Erasure requests and propagation receipts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request

from consent.api.access import Granted, needs
from consent.api.deps import Caller, UoW
from consent.api.gpc import GpcSignal
from consent.api.problems import Problem
from consent.api.routes.minors import ErasureAccepted
from consent.api.routes.preferences import PROBLEMS, SubjectPath
from consent.api.views import ErasureStatus, Propagation
from consent.api.writes import write_context
from consent.domain.authority import default_channel
from consent.service import erasure as erasure_svc
from consent_common.timefmt import rfc3339

router = APIRouter(tags=["rights"])


@router.post(
    "/v1/subjects/{subject_id}/erasure",
    status_code=202,
    response_model=ErasureAccepted,
    responses=PROBLEMS,
)
async def request_erasure(
    subject_id: SubjectPath,
    request: Request,
    uow: UoW,
    principal: Caller,
    access: Annotated[Granted, needs("rights:erase")],
    _gpc: GpcSignal,
) -> ErasureAccepted:
    """Irreversible and pushed to every processor: ``rights:erase`` (a user token may erase
    its own subject, and a guardian a linked minor)."""
    guardian = access.guardian
    ctx = write_context(request, principal, default_channel(principal.kind), guardian=guardian)
    req, _new = await erasure_svc.request_erasure(uow, subject_id, ctx)
    out = ErasureAccepted.of(req)
    return out


def _status(receipts: list[dict[str, Any]]) -> str:
    if not receipts:
        return "in_progress"
    if all(r["status"] == "delivered" for r in receipts):
        return "completed"
    if any(r["status"] == "dead" for r in receipts):
        return "action_required"
    return "in_progress"


@router.get("/v1/subjects/{subject_id}/erasure", response_model=ErasureStatus, responses=PROBLEMS)
async def erasure_status(
    subject_id: SubjectPath,
    uow: UoW,
    principal: Caller,
    _access: Annotated[Granted, needs("preferences:read")],
    _gpc: GpcSignal,
) -> dict[str, Any]:
    req = await uow.erasures.latest(subject_id)
    if req is None:
        raise Problem(404, "No erasure was requested for this subject.")
    receipts = await uow.receipts.for_event(req.event_id)
    return {
        "request_id": str(req.request_id),
        "subject_id": subject_id,
        "reason": req.reason,
        "requested_at": rfc3339(req.requested_at),
        "due_at": rfc3339(req.due_at),
        "status": _status(receipts),
        "receipts": [
            {
                "processor": r["processor"],
                "status": r["status"],
                "attempts": r["attempts"],
                "last_error": r["last_error"],
                "response_code": r["response_code"],
                "acknowledged_at": rfc3339(r["delivered_at"]),
            }
            for r in receipts
        ],
    }


@router.get("/v1/subjects/{subject_id}/propagation", response_model=Propagation, responses=PROBLEMS)
async def propagation(
    subject_id: SubjectPath,
    uow: UoW,
    principal: Caller,
    _access: Annotated[Granted, needs("preferences:read")],
    _gpc: GpcSignal,
) -> dict[str, Any]:
    rows = await uow.receipts.per_processor(subject_id)
    return {
        "subject_id": subject_id,
        "processors": [
            {
                "processor": r["processor"],
                "last_delivered_sequence": r["last_delivered_sequence"],
                "delivered_at": rfc3339(r["delivered_at"]),
                "latest_sequence": r["sequence"],
                "latest_event_type": r["event_type"],
                "status": r["status"],
                "attempts": r["attempts"],
                "last_error": r["last_error"],
            }
            for r in rows
        ],
    }
