"""Bulk import over HTTP (API.md's additions): upload a CSV or JSON Lines file, get a job id,
follow its counts and rejected rows. ``admin`` only. The body may be up to
``CONSENT_IMPORT_MAX_BYTES`` (10 MiB by default; every other route takes 64 KiB); larger
files go through ``consentctl import``. The job runs in this process and, if it dies, is
finished by the scheduler of any replica (the upload is kept until the job completes)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Path, Query, Request

from consent.api.access import Admin
from consent.api.deps import UoW
from consent.api.problems import Problem
from consent.api.routes.preferences import PROBLEMS
from consent.api.views import ImportJobOut
from consent.service import imports as import_svc
from consent.service.unit_of_work import unit_of_work

log = structlog.get_logger()
router = APIRouter(prefix="/v1/admin/imports", tags=["admin"])
CONTENT_TYPES = {
    "text/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/json-lines": "jsonl",
}
UPLOAD_PROBLEMS = {
    **PROBLEMS,
    415: {"description": "Not CSV or JSON Lines", "content": {"application/problem+json": {}}},
}
# an empty file (only ASCII white space) is refused: the document says so
NOT_EMPTY = {"type": "string", "pattern": "[^\\t\\n\\r\\f\\v ]"}
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": NOT_EMPTY},
            "application/x-ndjson": {"schema": NOT_EMPTY},
        },
    }
}
MapEntry = Annotated[
    str, Query(pattern=r"^[^=\x00-\x20\x7f]{1,200}=[a-z0-9_]{1,64}$")
]  # no NUL: PostgreSQL


def _format(request: Request, fmt: str | None) -> str:
    if fmt is not None:
        return fmt
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in CONTENT_TYPES:
        raise Problem(
            415,
            "Send text/csv or application/x-ndjson (JSON Lines), or say format=csv|jsonl.",
        )
    return CONTENT_TYPES[ctype]


@router.post(
    "",
    status_code=202,
    response_model=ImportJobOut,
    responses=UPLOAD_PROBLEMS,
    openapi_extra=UPLOAD_BODY,
)
async def start_import(
    request: Request,
    access: Admin,
    format: Annotated[str | None, Query(pattern="^(csv|jsonl)$")] = None,
    mapping: Annotated[str | None, Query(pattern="^(onetrust|didomi|unsubscribe)$")] = None,
    map: Annotated[list[MapEntry] | None, Query()] = None,
) -> dict[str, Any]:
    """Rows as in API.md's "Import rows"; ``mapping`` reads another tool's export, with
    ``map=their_purpose_id=our_purpose`` (repeat it) naming their purposes."""
    fmt = _format(request, format)
    data = await request.body()
    if not data.strip():
        raise Problem(422, "The file is empty.")
    purpose_map = dict(entry.split("=", 1) for entry in map or [])
    sessions = request.app.state.sessions
    try:
        job_id, _ = await import_svc.start(
            sessions, data, fmt, actor=access.principal.id or "admin", mapping=mapping,
            purpose_map=purpose_map,
        )  # fmt: skip
    except import_svc.ImportRefused as exc:
        raise Problem(422, str(exc)) from exc
    task = asyncio.create_task(_run(sessions, job_id))
    request.app.state.background.add(task)
    task.add_done_callback(request.app.state.background.discard)
    async with unit_of_work(sessions) as uow:
        job = await uow.imports.get(job_id)
    assert job is not None
    return import_svc.job_view(job)


async def _run(sessions: Any, job_id: uuid.UUID) -> None:
    try:
        await import_svc.run(sessions, job_id)
    except Exception as exc:  # the scheduler resumes it (no heartbeat for a minute)
        log.warning("import_interrupted", job_id=str(job_id), error=type(exc).__name__)


@router.get("/{job_id}", response_model=ImportJobOut, responses=PROBLEMS)
async def import_status(
    job_id: Annotated[uuid.UUID, Path()], uow: UoW, access: Admin
) -> dict[str, Any]:
    """Counts so far and the rejected rows (line, column, reason; the first 1,000)."""
    job = await uow.imports.get(job_id)
    if job is None:
        raise Problem(404, "No such import job.")
    return import_svc.job_view(job)
