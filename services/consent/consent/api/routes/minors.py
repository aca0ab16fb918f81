"""Guardians of minors, and the operator's "collected without guardian consent" action."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request, Response
from pydantic import Field, StringConstraints, field_validator

from consent.api.access import Admin, Granted, needs
from consent.api.deps import Caller, UoW
from consent.api.gpc import GpcSignal
from consent.api.problems import Problem
from consent.api.routes.preferences import PROBLEMS, SubjectPath
from consent.api.schemas import Strict, StrictPart, SubjectId, Timestamp
from consent.api.views import GuardianList
from consent.api.writes import write_context
from consent.domain.authority import default_channel
from consent.domain.rights import ErasureRequest
from consent.service import erasure as erasure_svc
from consent.service import guardians as guardian_svc
from consent_common.timefmt import rfc3339

router = APIRouter(tags=["minors"])
Method = Literal[
    "signed_form",
    "card_transaction",
    "government_id",
    "video_call",
    "knowledge_based",
    "email_plus",
]


class Verification(StrictPart):
    method: Method
    reference: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    verified_at: Timestamp

    @field_validator("verified_at")
    @classmethod
    def _not_future(cls, v: datetime) -> datetime:
        if v > datetime.now(UTC):
            raise ValueError("verified_at cannot be in the future")
        return v


class GuardianIn(Strict):
    guardian_id: SubjectId
    verification: Verification


class GuardianOut(Strict):
    subject_id: str
    guardian_id: str
    verification_method: str
    verified_at: str
    linked_at: str
    sequence: int


class DiscoveryIn(Strict):
    note: Annotated[str, StringConstraints(max_length=500)] | None = None


class ErasureAccepted(Strict):
    request_id: str
    subject_id: str
    status: str
    due_at: str
    sequence: int
    reason: str = Field(default="subject_request")

    @classmethod
    def of(cls, request: ErasureRequest) -> ErasureAccepted:
        return cls(
            request_id=str(request.request_id),
            subject_id=request.subject_id,
            status="in_progress",
            due_at=rfc3339(request.due_at),
            sequence=request.sequence,
            reason=request.reason,
        )


@router.post(
    "/v1/subjects/{subject_id}/guardians",
    status_code=201,
    response_model=GuardianOut,
    responses=PROBLEMS,
)
async def link_guardian(
    subject_id: SubjectPath,
    body: GuardianIn,
    request: Request,
    uow: UoW,
    principal: Caller,
    _access: Annotated[Granted, needs("minors:write", users=None)],
) -> GuardianOut:
    """Verification happens in a trusted service, so linking takes an API key with
    ``minors:write``: a link makes someone able to act for a child."""
    ctx = write_context(request, principal, default_channel("key", admin=principal.has("admin")))
    v = body.verification
    link = await guardian_svc.link(
        uow,
        subject_id,
        body.guardian_id,
        method=v.method,
        reference=v.reference,
        verified_at=v.verified_at,
        ctx=ctx,
    )
    subject = await uow.subjects.get(subject_id)
    out = GuardianOut(
        subject_id=subject_id,
        guardian_id=link.guardian_id,
        verification_method=link.method,
        verified_at=rfc3339(link.verified_at),
        linked_at=rfc3339(link.linked_at),
        sequence=subject.sequence if subject else 0,
    )
    return out


@router.delete(
    "/v1/subjects/{subject_id}/guardians/{guardian_id}", status_code=204, responses=PROBLEMS
)
async def revoke_guardian(
    subject_id: SubjectPath,
    guardian_id: Annotated[SubjectId, Path()],
    request: Request,
    uow: UoW,
    principal: Caller,
    _access: Annotated[Granted, needs("minors:write", users=["named-guardian"])],
) -> Response:
    """A guardian may revoke their own link; services need ``minors:write``."""
    ctx = write_context(
        request,
        principal,
        "guardian" if principal.kind == "user" else "api",
        guardian=guardian_id if principal.kind == "user" else None,
    )
    try:
        await guardian_svc.revoke(uow, subject_id, guardian_id, ctx)
    except LookupError as exc:
        raise Problem(404, "No active link between this subject and guardian.") from exc
    return Response(status_code=204)


@router.get("/v1/subjects/{subject_id}/guardians", response_model=GuardianList, responses=PROBLEMS)
async def list_guardians(
    subject_id: SubjectPath,
    uow: UoW,
    _access: Annotated[Granted, needs("preferences:read")],
    _gpc: GpcSignal,
) -> dict[str, Any]:
    links = await uow.guardians.all_for(subject_id)
    return {
        "items": [
            {
                "guardian_id": g.guardian_id,
                "verification_method": g.method,
                "verified_at": rfc3339(g.verified_at),
                "linked_at": rfc3339(g.linked_at),
                "revoked_at": rfc3339(g.revoked_at) if g.revoked_at else None,
            }
            for g in links
        ]
    }


@router.post(
    "/v1/admin/subjects/{subject_id}/collected-without-consent",
    status_code=202,
    response_model=ErasureAccepted,
    responses=PROBLEMS,
    tags=["admin"],
)
async def collected_without_consent(
    subject_id: SubjectPath, body: DiscoveryIn, request: Request, uow: UoW, access: Admin
) -> ErasureAccepted:
    """A child's data turned out to be collected without guardian consent: erase it."""
    if await uow.subjects.get(subject_id) is None:
        raise Problem(404, "No such subject.")
    ctx = write_context(request, access.principal, "operator", note=body.note)
    req, _new = await erasure_svc.request_erasure(
        uow, subject_id, ctx, reason="collected_without_guardian_consent"
    )
    out = ErasureAccepted.of(req)
    return out
