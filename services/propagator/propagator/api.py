"""The propagator's HTTP API, for operators and the consent service's admin endpoints
(which forward here): deliveries and redrive, parked records, processor health. Served
with ``/healthz`` and ``/readyz`` on ``consentctl serve propagator --health-port``.

Authenticated with a credential of its own, ``CONSENT_PROPAGATOR_API_KEY`` (header
``X-API-Key``), never open: without the setting every endpoint here answers 503.

Each request is one unit of work (``unit_of_work.py``): a transaction for a write of more
than one statement, none for reads and single statements."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.security import APIKeyHeader

from consent_common.db import KEEPALIVE_SETTINGS, plain_url
from consent_common.settings import CommonSettings
from consent_common.timefmt import rfc3339
from propagator import health
from propagator.db import SERVER_SETTINGS
from propagator.repositories.deliveries import DeliveryView
from propagator.repositories.parked import ParkedView
from propagator.unit_of_work import unit_of_work

router = APIRouter(prefix="/v1")
ParkedId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def _check_key(request: Request, key: str | None) -> None:
    setting = request.app.state.settings.propagator_api_key
    expected = setting.get_secret_value() if setting is not None else ""
    if not expected.strip():  # unset, or blank (a secret left empty): no key opens it
        raise HTTPException(503, "CONSENT_PROPAGATOR_API_KEY is not set: the API is closed")
    if not key or not hmac.compare_digest(key.encode(), expected.encode()):
        raise HTTPException(401, "a valid X-API-Key is required")


async def _pool(request: Request) -> asyncpg.Pool:
    app = request.app
    if app.state.pool is None:
        app.state.pool = await asyncpg.create_pool(
            plain_url(app.state.settings.database_url),
            min_size=0,
            max_size=4,
            server_settings={
                "application_name": "consent-propagator:api",
                **KEEPALIVE_SETTINGS,
                **SERVER_SETTINGS,
            },
        )
    pool: asyncpg.Pool = app.state.pool
    return pool


def _delivery(d: DeliveryView) -> dict[str, Any]:
    return {
        "id": str(d.id),
        "event_id": d.event_id,
        "event_type": d.event_type,
        "subject_id": d.subject_id,
        "sequence": d.sequence,
        "processor": d.processor,
        "status": d.status,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "response_code": d.response_code,
        "replay": d.replay,
        "created_at": rfc3339(d.created_at),
        "updated_at": rfc3339(d.updated_at),
        "delivered_at": rfc3339(d.delivered_at),
    }


def _parked(p: ParkedView) -> dict[str, Any]:
    return {
        "id": p.id,
        "topic": p.topic,
        "partition": p.partition,
        "offset": p.offset,
        "reason": p.reason,
        "parked_at": rfc3339(p.parked_at),
        "retry_requested_at": rfc3339(p.retry_requested_at),
        "attempts": p.attempts,
    }


class PropagatorKey(APIKeyHeader):
    """The credential as a security scheme: FastAPI declares it in the OpenAPI document on
    every operation that takes ``Key``, and resolving it is the check (401, or 503 unset)."""

    def __init__(self) -> None:
        description = "The propagator's own key, `CONSENT_PROPAGATOR_API_KEY`."
        super().__init__(name="X-API-Key", scheme_name="PropagatorKey", description=description)

    async def __call__(self, request: Request) -> str:  # type: ignore[override]
        key = request.headers.get("x-api-key")
        _check_key(request, key)
        return str(key)


Key = Annotated[str | None, Security(PropagatorKey())]


@router.get("/deliveries")
async def list_deliveries(
    request: Request,
    _: Key = None,
    status: Annotated[str | None, Query(pattern="^(pending|delivered|superseded|dead)$")] = None,
    processor: Annotated[str | None, Query(pattern=r"^[a-z0-9_-]{1,64}$")] = None,
    cursor: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    async with unit_of_work(await _pool(request), atomic=False) as uow:
        rows = await uow.deliveries.page(status, processor, cursor, limit + 1)
    items = [_delivery(r) for r in rows[:limit]]
    return {"items": items, "next_cursor": items[-1]["id"] if len(rows) > limit else None}


@router.post("/deliveries/{delivery_id}/redrive")
async def redrive(
    request: Request, delivery_id: Annotated[uuid.UUID, Path()], _: Key = None
) -> dict[str, Any]:
    async with unit_of_work(await _pool(request)) as uow:
        redriven = await uow.deliveries.redrive([delivery_id], None)
    if not redriven:
        raise HTTPException(409, "Only a dead delivery can be redriven (or it does not exist).")
    return {"id": str(delivery_id), "status": "pending"}


@router.get("/parked")
async def list_parked(
    request: Request,
    _: Key = None,
    cursor: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    async with unit_of_work(await _pool(request), atomic=False) as uow:
        rows = await uow.parked.page(cursor or 0, limit + 1)
        count = await uow.parked.count()
    items = [_parked(r) for r in rows[:limit]]
    return {
        "items": items,
        "next_cursor": items[-1]["id"] if len(rows) > limit else None,
        "count": count,
    }


@router.post("/parked/{parked_id}/retry", status_code=202)
async def retry_parked(request: Request, parked_id: ParkedId, _: Key = None) -> dict[str, Any]:
    async with unit_of_work(await _pool(request), atomic=False) as uow:  # one statement
        if not await uow.parked.request_retry(parked_id):
            raise HTTPException(404, "No such parked record.")
    return {"id": parked_id, "status": "retry_requested"}


@router.delete("/parked/{parked_id}")
async def drop_parked(request: Request, parked_id: ParkedId, _: Key = None) -> dict[str, Any]:
    async with unit_of_work(await _pool(request), atomic=False) as uow:  # one statement
        dropped = await uow.parked.drop(parked_id)
    if dropped is None:
        raise HTTPException(404, "No such parked record.")
    return asdict(dropped)


@router.get("/processors")
async def processor_health(request: Request, _: Key = None) -> dict[str, Any]:
    """Each processor that has had an outcome: failing since when, disabled or not."""
    async with unit_of_work(await _pool(request), atomic=False) as uow:
        return {"items": await health.report(uow)}


@router.post("/processors/{name}/enable")
async def enable_processor(
    request: Request,
    name: Annotated[str, Path(pattern=r"^[a-z0-9_-]{1,64}$")],
    _: Key = None,
) -> dict[str, Any]:
    """Enable a disabled processor; what died of exhausted retries meanwhile is redriven."""
    async with unit_of_work(await _pool(request)) as uow:
        redriven = await health.enable(uow, name, "api")
    if redriven is None:
        raise HTTPException(409, f"Processor {name!r} is not disabled.")
    return {"processor": name, "disabled": False, "redriven": redriven}


def create_api(settings: CommonSettings, app: FastAPI | None = None) -> FastAPI:
    """The API on ``app`` (a health app, say), or on a new one."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if api.state.pool is not None:
                await api.state.pool.close()

    api = app or FastAPI(title="Consent propagator API", lifespan=lifespan)
    api.state.settings = settings
    api.state.pool = None
    api.include_router(router)
    return api
