"""FastAPI application factory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from consent.adapters.change_feed import ChangeFeed
from consent.adapters.db import make_engine, make_sessionmaker
from consent.adapters.propagator_api import PropagatorAPI
from consent.api import openapi, problems
from consent.api.admission import AdmissionLimit
from consent.api.client_limit import ClientLimit, parse_networks
from consent.api.deps import admin_key
from consent.api.fast_decisions import FastDecisions
from consent.api.jwks import JwksCache
from consent.api.key_cache import KeyCache
from consent.api.middleware import BodyLimit, RequestContext
from consent.api.routes import (
    admin,
    aliases,
    drift,
    imports,
    meta,
    minors,
    parked,
    preference_center,
    preferences,
    records,
    rights,
    signals,
    transparency,
)
from consent.service.decision_reads import DecisionReader
from consent.service.receipts import ReceiptProjector
from consent.service.recorder import invalidate_policies, policies_followed
from consent.service.scheduler import run_scheduler
from consent.service.subject_view import SubjectView
from consent.settings import Settings, get_settings
from consent.transparency.sequencer import run_sequencer
from consent_common import tracing


def _follow(app: FastAPI, live: bool, max_age_s: float) -> None:
    """The change feed is (no longer) live: the key and policy caches follow it."""
    app.state.keys.set_live(live)
    policies_followed(live, max_age_s)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        assert settings.database_url, "CONSENT_DATABASE_URL must be resolved before start"
        engine = make_engine(
            settings.database_url, settings.db_pool_size, settings.db_pool_timeout_s
        )
        app.state.engine = engine
        app.state.sessions = make_sessionmaker(engine)
        app.state.read_sessions = make_sessionmaker(
            engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        stop = asyncio.Event()
        app.state.scheduler_wake = asyncio.Event()
        app.state.decisions = DecisionReader(
            app.state.view, app.state.read_sessions, str(engine.url)
        )
        feed = ChangeFeed(
            settings.database_url,
            app.state.view,
            on_keys=app.state.keys.clear,
            on_policies=invalidate_policies,
            on_state=lambda live: _follow(app, live, settings.view_max_age_s),
        )
        app.state.change_feed = feed
        jobs = (
            [
                asyncio.create_task(
                    run_scheduler(
                        app.state.sessions,
                        settings.scheduler_interval_s,
                        stop,
                        app.state.scheduler_wake,
                    )
                )
            ]
            if settings.scheduler_enabled
            else []
        )
        if settings.scheduler_enabled:  # the transparency log's sequencer and checkpoints
            jobs.append(asyncio.create_task(run_sequencer(app.state.sessions, settings, stop)))
        if settings.view_size > 0:
            jobs.append(asyncio.create_task(feed.run(stop)))
            with contextlib.suppress(TimeoutError):  # until it is, reads go to the database
                await asyncio.wait_for(feed.connected.wait(), 5)
        if settings.kafka_bootstrap and settings.receipts_projection:
            app.state.receipts = ReceiptProjector(
                settings, app.state.sessions, settings.database_url
            )
            jobs.append(asyncio.create_task(app.state.receipts.run(stop)))
        try:
            yield
        finally:
            stop.set()
            for task in list(app.state.background):
                task.cancel()
            await asyncio.gather(*jobs, *app.state.background, return_exceptions=True)
            await app.state.propagator.close()
            await engine.dispose()

    app = FastAPI(
        title="Consent & preferences API",
        version="1.0.0",
        description="Records per-purpose consent, proves it, and publishes every change.",
        lifespan=lifespan,
        responses={
            429: {
                "description": "At capacity: retry after the delay in Retry-After",
                "content": {"application/problem+json": {}},
            }
        },
    )
    app.state.settings = settings
    app.state.jwks = (
        JwksCache(
            settings.jwt_jwks_url,
            timeout_s=settings.jwt_jwks_timeout_s,
            refresh_s=settings.jwt_jwks_refresh_s,
            max_stale_s=settings.jwt_jwks_max_stale_s,
        )
        if settings.jwt_jwks_url
        else None
    )
    app.state.background = set()
    app.state.view = SubjectView(settings.view_size, settings.view_max_age_s)
    app.state.keys = KeyCache(settings.view_max_age_s)
    app.state.propagator = PropagatorAPI(settings)
    problems.install(app)
    app.include_router(meta.router)
    app.include_router(preferences.router)
    app.include_router(records.router)
    app.include_router(minors.router)
    app.include_router(rights.router)
    app.include_router(admin.router)
    app.include_router(parked.router)
    app.include_router(drift.router)
    app.include_router(imports.router)
    app.include_router(signals.router)
    app.include_router(preference_center.router)
    app.include_router(aliases.router)
    app.include_router(transparency.router)
    openapi.install(app)
    # innermost first: load shedding, then the body read under its deadline (so a request is
    # admitted only once its body is here), then CORS (so a 429, 408 or 413 carries its
    # headers and preflights are never shed)
    app.add_middleware(FastDecisions)  # innermost: shed, body-checked, logged like the rest
    app.add_middleware(AdmissionLimit, limit=settings.max_in_flight)
    app.add_middleware(
        BodyLimit,
        timeout_s=settings.body_timeout_s,
        uploads={"/v1/admin/imports": settings.import_max_bytes},
        may_upload=partial(admin_key, app, settings),
    )
    # per-client cap, body upload included: only when the trusted-proxy setting (issue 14)
    # tells who the client is; without it, every caller behind an ingress shares one address
    trusted = parse_networks(getattr(settings, "trusted_proxies", None))
    if trusted and settings.max_per_client > 0:
        app.add_middleware(ClientLimit, limit=settings.max_per_client, trusted=trusted)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "PUT", "PATCH", "POST", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "If-Match",
                "Idempotency-Key",
                "X-API-Key",
                "Sec-GPC",
            ],
            expose_headers=[
                "ETag",
                "Consent-Token",
                "Sec-GPC-Honored",
                "X-Request-Id",
                "Retry-After",
            ],
        )
    app.add_middleware(RequestContext)
    if tracing.configure("consent-api"):  # OTEL_TRACES_EXPORTER set
        from consent.api.tracing import instrument

        instrument(app)
    return app
