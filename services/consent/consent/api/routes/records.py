"""History, export, batch decisions and policy versions."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, BackgroundTasks, Query, Request, Response

from consent.api.access import Admin, Granted, needs
from consent.api.deps import Caller, UoW, reader_of
from consent.api.freshness import Consistency, read_decisions
from consent.api.gpc import GpcSignal
from consent.api.problems import Problem
from consent.api.routes.preferences import PROBLEMS, SubjectPath
from consent.api.schemas import (
    BatchIn,
    BatchOut,
    HistoryPage,
    PolicyIn,
    PolicyList,
    PolicyOut,
    decision_doc,
)
from consent.api.views import Export
from consent.domain.model import Policy
from consent.service import history as history_svc
from consent.service import policies as policy_svc
from consent.service.context import utcnow
from consent_common.timefmt import rfc3339

router = APIRouter()


@router.get(
    "/v1/subjects/{subject_id}/history",
    response_model=HistoryPage,
    responses=PROBLEMS,
    tags=["records"],
)
async def history(
    subject_id: SubjectPath,
    uow: UoW,
    principal: Caller,
    access: Annotated[Granted, needs("preferences:read")],
    _gpc: GpcSignal,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    guardian = access.guardian
    reader = reader_of(principal, guardian)
    try:
        return await history_svc.history_page(uow, subject_id, cursor, limit, reader)
    except history_svc.BadCursor as exc:
        raise Problem(
            422,
            "The cursor is malformed.",
            errors=[{"loc": ["query", "cursor"], "msg": str(exc), "type": "value_error"}],
        ) from exc


@router.get(
    "/v1/subjects/{subject_id}/export", response_model=Export, responses=PROBLEMS, tags=["records"]
)
async def export(
    subject_id: SubjectPath,
    uow: UoW,
    principal: Caller,
    access: Annotated[Granted, needs("preferences:read")],
    _gpc: GpcSignal,
) -> Response:
    guardian = access.guardian
    reader = reader_of(principal, guardian)
    body = orjson.dumps(
        await history_svc.export(uow, subject_id, utcnow(), reader), option=orjson.OPT_INDENT_2
    )
    return Response(
        body,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="consent-export-{subject_id}.json"'},
    )


@router.post("/v1/decisions:batch", response_model=BatchOut, responses=PROBLEMS, tags=["decisions"])
async def batch_decisions(
    body: BatchIn,
    request: Request,
    uow: UoW,
    access: Annotated[Granted, needs("decisions:read")],
    consistency: Consistency = None,
) -> Response:
    for sid in sorted({q.subject_id for q in body.items}):
        await access.for_subject(sid, uow)  # a user token: each subject its own (or a minor's)
    pairs = [(q.subject_id, q.purpose) for q in body.items]
    wanted: dict[str, int] = {}
    for q in body.items:
        if q.min_sequence:
            wanted[q.subject_id] = max(q.min_sequence, wanted.get(q.subject_id, 0))
    answers = await read_decisions(request, pairs, utcnow(), wanted, consistency == "full")
    seqs = answers.sequences
    out = [
        decision_doc(s, p, d.allowed, d.reason, seqs[s])
        for (s, p), d in zip(pairs, answers.decisions, strict=True)
    ]
    return Response(orjson.dumps({"items": out}), media_type="application/json")


def _policy_out(p: Policy) -> PolicyOut:
    return PolicyOut(
        version=p.version,
        effective_at=rfc3339(p.effective_at),
        material=p.material,
        affected_purposes=sorted(p.affected_purposes),
        description=p.description,
        published_at=rfc3339(p.published_at),
    )


@router.get("/v1/policies", response_model=PolicyList, responses=PROBLEMS, tags=["policies"])
async def list_policies(uow: UoW, _access: Annotated[Granted, needs(users=())]) -> PolicyList:
    return PolicyList(items=[_policy_out(p) for p in await uow.policies.all()])


@router.post(
    "/v1/policies", response_model=PolicyOut, status_code=201, responses=PROBLEMS, tags=["policies"]
)
async def publish_policy(
    body: PolicyIn, uow: UoW, _access: Admin, request: Request, after: BackgroundTasks
) -> PolicyOut:
    now = utcnow()
    row = await policy_svc.publish(
        uow,
        version=body.version,
        effective_at=body.effective_at,
        material=body.material,
        affected_purposes=body.affected_purposes,
        description=body.description,
        now=now,
    )
    if row.material and row.effective_at <= now:  # already in effect: announce it now,
        after.add_task(request.app.state.scheduler_wake.set)  # once committed
    return _policy_out(row)
