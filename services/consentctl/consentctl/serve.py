"""Single-service entry points (containers): each stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from consent.settings import Settings
from consentctl import dev_defaults
from consentctl.runtime import resolve_database, resolve_kafka
from consentctl.servers import Shutdown, http_server, run_service, serve_until, supervise

SHUTDOWN = Shutdown()


def _ready(settings: Settings) -> Settings:
    settings, _server = resolve_database(settings)
    return resolve_kafka(settings)


async def _until_signal(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run until the first SIGINT/SIGTERM, including one that came during start-up."""
    stop = asyncio.Event()
    SHUTDOWN.attach(stop)
    try:
        await run(stop)
    finally:
        SHUTDOWN.detach()


def api(settings: Settings, host: str, port: int, insecure: bool = False) -> None:
    """``CONSENT_API_WORKERS`` processes behind the port (consentctl/workers.py)."""
    SHUTDOWN.install()  # before anything starts: a signal during start-up is never lost
    from consentctl.worker_metrics import one_process_metrics
    from consentctl.workers import run_workers, worker_count

    count = worker_count(settings.api_workers)
    if count == 1:
        one_process_metrics()  # before anything imports prometheus_client
    dev_defaults.enforce(dev_defaults.api_problems(settings), insecure, "api")
    settings = _ready(settings)
    if count == 1:
        return api_worker(settings, host, port, reuse_port=False)
    run_workers(api_worker, (settings, host, port), count, SHUTDOWN)


def api_worker(settings: Settings, host: str, port: int, reuse_port: bool = True) -> None:
    """One API process (in a worker: its own signal handling, its own socket on the port)."""
    SHUTDOWN.install()
    from consent.api.app import create_app
    from consent_common.logs import configure_logging
    from consentctl.workers import reuseport_socket

    configure_logging(settings.log_level, settings.log_json)  # a spawned process starts bare

    sockets = [reuseport_socket(host, port)] if reuse_port else None
    server = http_server(create_app(settings), host, port)
    run_service(_until_signal(lambda stop: serve_until(server, stop, sockets)))


def health_app(settings: Settings) -> Any:
    """/healthz, /readyz (PostgreSQL and broker reachable) and /metrics for a worker process.
    Readiness does not depend on being the active relay: a standby is ready too."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, PlainTextResponse
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from consent.adapters.db import reachable
    from consent.api.routes.meta import broker_reachable

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        checks = {
            "database": await reachable(settings.database_url or ""),
            "broker": await broker_reachable(settings.kafka_bootstrap),
        }
        ok = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not_ready", "checks": checks},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


async def _with_health(
    settings: Settings,
    port: int | None,
    stop: asyncio.Event,
    run: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
    extend: Callable[[Settings, Any], Any] | None = None,
) -> None:
    tasks: list[asyncio.Task[None]] = [asyncio.create_task(run(stop))]
    if port is not None:
        app = health_app(settings)
        if extend is not None:
            app = extend(settings, app)
        server = http_server(app, "0.0.0.0", port)
        tasks.append(asyncio.create_task(serve_until(server, stop)))
    await asyncio.gather(*tasks)


def relay(settings: Settings, health_port: int | None = None, insecure: bool = False) -> None:
    SHUTDOWN.install()
    from consent.relay.relay import OutboxRelay

    dev_defaults.enforce(dev_defaults.relay_problems(settings), insecure, "relay")
    settings = _ready(settings)
    loop_fn = OutboxRelay(settings).run
    run_service(
        _until_signal(
            lambda stop: _with_health(
                settings, health_port, stop, lambda s: supervise("relay", loop_fn, s)
            )
        )
    )


def propagator(
    settings: Settings,
    processors_file: Path | None,
    health_port: int | None = None,
    insecure: bool = False,
) -> None:
    SHUTDOWN.install()
    from propagator.api import create_api
    from propagator.config import load_processors
    from propagator.service import Propagator

    path = processors_file or settings.processors_file
    if path is None:
        raise SystemExit("CONSENT_PROCESSORS_FILE is required for `serve propagator`.")
    processors = load_processors(path)
    problems = dev_defaults.relay_problems(settings)
    problems += dev_defaults.webhook_problems(p.secret_env for p in processors)
    dev_defaults.enforce(problems, insecure, "propagator")
    settings = _ready(settings)
    prop = Propagator(settings, processors)
    run_service(
        _until_signal(
            lambda stop: _with_health(
                settings,
                health_port,
                stop,
                lambda s: supervise("propagator", prop.run, s),
                extend=create_api,  # its own API, behind CONSENT_PROPAGATOR_API_KEY
            )
        )
    )


def demo_processor(
    settings: Settings, name: str, host: str, port: int, insecure: bool = False
) -> None:
    import os

    from propagator.demo import demo_processor_app

    SHUTDOWN.install()
    env = f"{name.upper()}_PROCESSOR_SECRET"
    secret = os.environ.get(env)
    if not secret:
        raise SystemExit(f"{env} must hold the processor's whsec_ secret")
    dev_defaults.enforce(dev_defaults.webhook_problems([env]), insecure, "demo-processor")
    server = http_server(demo_processor_app(name, secret), host, port)
    run_service(_until_signal(lambda stop: serve_until(server, stop)))
