"""The drift report and its repair (API.md's additions). Both need ``admin``.

``GET /v1/admin/drift`` examines up to ``limit`` subjects after ``cursor`` (in subject-id
order) and lists every purpose where a processor's last acknowledged decision differs from
the decision API's answer now; follow ``next_cursor`` until it is null (a page may list
nothing while it is set). ``POST /v1/admin/drift/repair`` starts a repair job."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request
from pydantic import Field

from consent.api.access import Admin
from consent.api.deps import UoW
from consent.api.problems import Problem
from consent.api.routes.admin import Name, _start_job, job_view
from consent.api.routes.preferences import PROBLEMS
from consent.api.schemas import Strict, SubjectId
from consent.api.views import DriftPage, ReplayJobOut
from consent.domain.drift import Difference
from consent.service import drift as drift_svc
from consent.service import replay as replay_svc
from consent.service.drift_repair import create_repair_job
from consent.service.processors import KnownProcessor, known_processors
from consent_common.timefmt import rfc3339

router = APIRouter(prefix="/v1/admin/drift", tags=["admin"])
SUBJECT_PATTERN = r"^[A-Za-z0-9._:@-]{1,128}$"


class RepairIn(Strict):
    processor: Name | None = Field(
        default=None, description="A processor of CONSENT_PROCESSORS_FILE (else 422)"
    )
    subject_id: SubjectId | None = None


def _known(request: Request, processor: str | None) -> dict[str, KnownProcessor]:
    known = known_processors(request.app.state.settings.processors_file)
    if processor is None:
        return known
    if processor not in known:
        msg = f"unknown processor {processor!r}; known: {', '.join(sorted(known)) or 'none'}"
        raise Problem(422, msg, errors=[{"loc": ["query", "processor"], "msg": msg,
                                         "type": "value_error"}])  # fmt: skip
    return {processor: known[processor]}


def item(d: Difference, now: datetime) -> dict[str, Any]:
    since = d.since or now
    return {
        "subject_id": d.subject_id,
        "processor": d.processor,
        "purpose": d.purpose,
        "delivered": d.delivered,
        "current": d.current,
        "since": rfc3339(since),
        "age_seconds": round(max((now - since).total_seconds(), 0.0), 3),
    }


@router.get("", response_model=DriftPage, responses=PROBLEMS)
async def drift_report(
    request: Request,
    uow: UoW,
    access: Admin,
    processor: Annotated[
        str | None,
        Query(
            pattern=r"^[a-z0-9_-]{1,64}$",
            description="A processor of CONSENT_PROCESSORS_FILE (else 422)",
        ),
    ] = None,
    subject_id: Annotated[str | None, Query(pattern=SUBJECT_PATTERN)] = None,
    cursor: Annotated[str | None, Query(pattern=SUBJECT_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="subjects examined")] = 500,
) -> dict[str, Any]:
    known = _known(request, processor)
    now = datetime.now(UTC)
    page = await drift_svc.report_page(
        uow, known, now, cursor=cursor or "", subject_id=subject_id, scan=limit
    )
    return {
        "items": [item(d, now) for d in page.items],
        "next_cursor": page.next_cursor,
        "scanned": page.scanned,
        "unknown": page.unknown,
    }


@router.post("/repair", status_code=202, response_model=ReplayJobOut, responses=PROBLEMS)
async def start_repair(
    body: RepairIn, request: Request, uow: UoW, access: Admin, after: BackgroundTasks
) -> dict[str, Any]:
    """Current decisions to every drifted processor (or only ``processor``; only
    ``subject_id``): a job, audited; its progress at ``GET /v1/admin/replays/{job_id}``."""
    known = known_processors(request.app.state.settings.processors_file)
    try:
        job = await create_repair_job(
            uow, access.principal.id, known, body.processor, body.subject_id
        )
    except replay_svc.ReplayError as exc:
        raise Problem(
            422,
            str(exc),
            errors=[{"loc": ["body", "processor"], "msg": str(exc), "type": "value_error"}],
        ) from exc
    except replay_svc.ReplayConflict as exc:
        raise Problem(409, str(exc), code="repair_in_progress") from exc
    after.add_task(_start_job, request, job.id)  # once the job is committed
    return job_view(job)
