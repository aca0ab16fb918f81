"""Single-service entry points (containers): each stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from consent.cli.runtime import resolve_database, resolve_kafka
from consent.cli.servers import http_server, serve_until, supervise
from consent.settings import Settings


def _ready(settings: Settings) -> Settings:
    settings, _server = resolve_database(settings)
    return resolve_kafka(settings)


async def _until_signal(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run(stop)


def api(settings: Settings, host: str, port: int) -> None:
    from consent.api.app import create_app

    settings = _ready(settings)
    server = http_server(create_app(settings), host, port)
    asyncio.run(_until_signal(lambda stop: serve_until(server, stop)))


def relay(settings: Settings) -> None:
    from consent.relay.relay import OutboxRelay

    settings = _ready(settings)
    asyncio.run(_until_signal(lambda stop: supervise("relay", OutboxRelay(settings).run, stop)))


def propagator(settings: Settings, processors_file: Path | None) -> None:
    from propagator.config import load_processors
    from propagator.service import Propagator

    settings = _ready(settings)
    path = processors_file or settings.processors_file
    if path is None:
        raise SystemExit("CONSENT_PROCESSORS_FILE is required for `serve propagator`.")
    prop = Propagator(settings, load_processors(path))
    asyncio.run(_until_signal(lambda stop: supervise("propagator", prop.run, stop)))


def demo_processor(settings: Settings, name: str, host: str, port: int) -> None:
    import os

    from propagator.demo import demo_processor_app

    env = f"{name.upper()}_PROCESSOR_SECRET"
    secret = os.environ.get(env)
    if not secret:
        raise SystemExit(f"{env} must hold the processor's whsec_ secret")
    server = http_server(demo_processor_app(name, secret), host, port)
    asyncio.run(_until_signal(lambda stop: serve_until(server, stop)))
