"""Operator endpoints: replays, deliveries and redrive, audit log. All need ``admin``."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, BackgroundTasks, Path, Query, Request
from pydantic import Field, StringConstraints

from consent.adapters.operations import ReplayJobView
from consent.adapters.propagator_api import PropagatorUnavailable
from consent.api.access import Admin
from consent.api.deps import UoW
from consent.api.problems import Problem
from consent.api.routes.preferences import PROBLEMS
from consent.api.schemas import BIGINT_MAX, Strict, SubjectId, Timestamp
from consent.api.views import Audited, AuditPage, DeliveryPage, ReplayJobOut
from consent.api.vocabulary import PurposeKey
from consent.service import replay as replay_svc
from consent.service.processors import known_processors
from consent.service.unit_of_work import unit_of_work
from consent_common.timefmt import rfc3339

router = APIRouter(prefix="/v1/admin", tags=["admin"])
Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,64}$")]


class ReplayIn(Strict):
    since: Timestamp
    until: Timestamp | None = Field(default=None, description="After ``since``; default: now")
    subject_id: SubjectId | None = None
    purposes: list[PurposeKey] = Field(default_factory=list, max_length=64)
    processors: list[Name] = Field(default_factory=list, max_length=32)
    dry_run: bool = False
    rate: float | None = Field(default=None, gt=0, le=100_000)


def job_view(job: ReplayJobView) -> dict[str, Any]:
    return {
        "job_id": str(job.id),
        "status": job.status,
        "dry_run": job.dry_run,
        "scope": job.scope_key,
        "params": job.params,
        "total": job.total,
        "done": job.done,
        "emitted": job.emitted,
        "progress": round(job.done / job.total, 4) if job.total else 1.0,
        "created_by": job.created_by,
        "created_at": rfc3339(job.created_at),
        "finished_at": rfc3339(job.finished_at),
        "error": job.error,
    }


async def run_job(request: Request, job_id: uuid.UUID) -> None:
    """Drive a replay job to completion in this process (resumed elsewhere if we die)."""
    app = request.app
    known = known_processors(app.state.settings.processors_file)
    rate = None
    while True:
        result = await replay_svc.run_batch(app.state.sessions, job_id, known)
        if result is None or result.finished:
            return
        async with unit_of_work(app.state.sessions) as uow:
            job = await uow.operations.job(job_id)
            rate = job.params.get("rate") if job else None
        if rate:
            await asyncio.sleep(result.subjects / float(rate))


@router.post("/replays", status_code=202, response_model=ReplayJobOut, responses=PROBLEMS)
async def start_replay(
    body: ReplayIn, request: Request, uow: UoW, access: Admin, after: BackgroundTasks
) -> dict[str, Any]:
    req = replay_svc.ReplayRequest(
        since=body.since,
        until=body.until or datetime.now(UTC),
        actor=access.principal.id,
        subject_id=body.subject_id,
        purposes=body.purposes,
        processors=body.processors,
        dry_run=body.dry_run,
        rate=body.rate,
    )
    try:
        job = await replay_svc.create_job(
            uow, req, known_processors(request.app.state.settings.processors_file)
        )
    except replay_svc.ReplayError as exc:
        raise Problem(
            422, str(exc), errors=[{"loc": ["body"], "msg": str(exc), "type": "value_error"}]
        ) from exc
    except replay_svc.ReplayConflict as exc:
        raise Problem(409, str(exc), code="replay_in_progress") from exc
    after.add_task(_start_job, request, job.id)  # once the job is committed
    return job_view(job)


async def _start_job(request: Request, job_id: uuid.UUID) -> None:
    task = asyncio.create_task(run_job(request, job_id))
    request.app.state.background.add(task)
    task.add_done_callback(request.app.state.background.discard)


@router.get("/replays/{job_id}", response_model=ReplayJobOut, responses=PROBLEMS)
async def replay_status(
    job_id: Annotated[uuid.UUID, Path()], uow: UoW, access: Admin
) -> dict[str, Any]:
    job = await uow.operations.job(job_id)
    if job is None:
        raise Problem(404, "No such replay job.")
    return job_view(job)


@router.get("/deliveries", response_model=DeliveryPage, responses=PROBLEMS)
async def list_deliveries(
    request: Request,
    access: Admin,
    status: Annotated[str | None, Query(pattern="^(pending|delivered|superseded|dead)$")] = None,
    processor: Annotated[str | None, Query(pattern=r"^[a-z0-9_-]{1,64}$")] = None,
    cursor: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Answered by the propagator, which owns deliveries (forwarded to its API)."""
    params = {"status": status, "processor": processor, "limit": limit}
    params["cursor"] = str(cursor) if cursor else None
    r = await forward(request, "GET", "/v1/deliveries", params)
    body: dict[str, Any] = r.json()
    return {"items": body["items"], "next_cursor": body["next_cursor"]}


@router.post("/deliveries/{delivery_id}/redrive", response_model=Audited, responses=PROBLEMS)
async def redrive(
    request: Request, delivery_id: Annotated[uuid.UUID, Path()], uow: UoW, access: Admin
) -> dict[str, Any]:
    """Redriven by the propagator (forwarded to its API); audited here, by whom it was asked."""
    r = await forward(request, "POST", f"/v1/deliveries/{delivery_id}/redrive")
    if r.status_code != 200:
        raise Problem(
            409, "Only a dead delivery can be redriven (or it does not exist).", code="not_dead"
        )
    audit_id = await uow.operations.audit(
        access.principal.id,
        "delivery.redrive",
        {"delivery_id": str(delivery_id)},
        {"redriven": 1},
        reference=str(delivery_id),
    )
    return {"id": str(delivery_id), "status": "pending", "audit_id": audit_id}


async def forward(
    request: Request, method: str, path: str, params: dict[str, Any] | None = None
) -> httpx.Response:
    """The propagator's answer, or a 503 problem when its API cannot answer."""
    try:
        return await request.app.state.propagator.call(method, path, params)
    except PropagatorUnavailable as exc:
        raise Problem(
            503,
            f"The propagator's API cannot answer now ({exc}); try again shortly.",
            code="propagator_unavailable",
            headers={"Retry-After": "5"},
        ) from exc


@router.get("/audit", response_model=AuditPage, responses=PROBLEMS)
async def audit(
    uow: UoW,
    access: Admin,
    before: Annotated[int | None, Query(ge=1, le=BIGINT_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    rows = await uow.operations.audit_entries(before, limit)
    return {
        "items": [
            {
                "id": r.id,
                "at": rfc3339(r.at),
                "actor": r.actor,
                "action": r.action,
                "scope": r.scope,
                "counts": r.counts,
                "reference": r.reference,
            }
            for r in rows
        ],
        "next_before": rows[-1].id if len(rows) == limit else None,
    }
