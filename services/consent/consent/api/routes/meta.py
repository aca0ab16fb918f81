"""Catalog, GPC well-known resource, health, readiness and metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, Gauge

from consent.adapters.db import ping
from consent.adapters.parked import ParkedRepository
from consent.adapters.repositories import OutboxRepository
from consent.api.metrics_exposition import exposition
from consent.api.schemas import PurposeInfo, PurposeList
from consent.api.views import GpcWellKnown, Health, Readiness
from consent.catalog import catalog_version, load_catalog
from consent.relay import metrics as relay_metrics
from consent.service.drift import drift_counts
from consent.service.processors import known_processors

router = APIRouter()
GPC_LAST_UPDATE = "2026-11-01"


@router.get("/v1/purposes", response_model=PurposeList, tags=["catalog"])
async def purposes() -> PurposeList:
    items = [
        PurposeInfo(
            key=p.key,
            title=p.title,
            description=p.description,
            category=p.category,
            legal_basis=p.legal_basis,
            validity_days=p.validity_days,
        )
        for p in load_catalog().values()
    ]
    return PurposeList(items=items, catalog_version=catalog_version())


@router.get("/.well-known/gpc.json", tags=["gpc"], response_model=GpcWellKnown)
async def gpc_json() -> dict[str, object]:
    return {"gpc": True, "lastUpdate": GPC_LAST_UPDATE}


@router.get("/healthz", tags=["ops"], response_model=Health)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


BROKER_REACHABLE = Gauge(
    "consent_api_broker_reachable",
    "1 if a Kafka bootstrap server accepted a connection at the last /readyz, else 0",
    multiprocess_mode="mostrecent",  # several API workers: the last /readyz any answered
)


DRIFT = Gauge(
    "consent_drift",
    "Purposes where the processor's last acknowledged decision differs from the decision "
    "API's answer, as the scheduled drift check last found them (read at scrape time)",
    ["processor"],
    multiprocess_mode="mostrecent",  # several API workers: what the last scrape read
)


async def broker_reachable(bootstrap: str | None, timeout_s: float = 1.0) -> bool:
    """Whether any bootstrap server accepts a TCP connection (all tried at once)."""
    if not bootstrap:
        return False

    async def one(server: str) -> bool:
        host, _, port = server.strip().rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout_s)
            writer.close()
            return True
        except (OSError, ValueError, TimeoutError):
            return False

    return any(await asyncio.gather(*(one(s) for s in bootstrap.split(","))))


@router.get(
    "/readyz",
    tags=["ops"],
    response_model=Readiness,
    responses={503: {"description": "Not ready", "model": Readiness}},
)
async def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers. The broker is reported, not required: writes go to
    the outbox and wait there while Kafka is down, so the API keeps serving."""
    database, broker = await asyncio.gather(
        ping(request.app.state.engine),
        broker_reachable(request.app.state.settings.kafka_bootstrap),
    )
    BROKER_REACHABLE.set(1 if broker else 0)
    return JSONResponse(
        {
            "status": "ready" if database else "not_ready",
            "checks": {"database": database, "broker": broker},
        },
        status_code=200 if database else 503,
    )


@router.get(
    "/metrics",
    tags=["ops"],
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics; the outbox backlog is read from the database at scrape time, so
    it is right whichever process runs the relay."""
    try:
        async with request.app.state.read_sessions() as session:
            count, age = await asyncio.wait_for(OutboxRepository(session).backlog(), 2.0)
            outbox = await asyncio.wait_for(ParkedRepository(session).outbox_count(), 2.0)
        relay_metrics.set_backlog(count, age)
        relay_metrics.PARKED_NOW.labels("outbox").set(outbox)
        async with request.app.state.read_sessions() as session:
            drift = await asyncio.wait_for(drift_counts(session), 2.0)
        for name in set(known_processors(request.app.state.settings.processors_file)) | set(drift):
            DRIFT.labels(name).set(drift.get(name, 0))
    except Exception:  # metrics never fail the scrape
        pass
    try:  # the propagator's parked records: its API tells
        r = await asyncio.wait_for(
            request.app.state.propagator.call("GET", "/v1/parked", {"limit": 1}), 2.0
        )
        if r.status_code == 200:
            relay_metrics.PARKED_NOW.labels("intake").set(r.json()["count"])
    except Exception:
        pass
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
