"""``consentctl dev``: the whole stack in one terminal, on embedded defaults."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import structlog
import yaml
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from consent.adapters.db import migrate
from consent.adapters.kafka import ensure_topics
from consent.api.app import create_app
from consent.relay.relay import OutboxRelay
from consent.settings import Settings
from consentctl.dev_demo import demo_processors, dev_secrets
from consentctl.embedded import TansuBroker, free_port, start_postgres, stop_postgres
from consentctl.runtime import stack_file
from consentctl.servers import (
    Interrupted,
    Shutdown,
    http_server,
    run_service,
    serve_until,
    supervise,
)
from propagator.api import create_api
from propagator.config import ProcessorConfig, load_processors
from propagator.db import migrate as migrate_propagator
from propagator.demo import demo_processor_app
from propagator.service import Propagator

log = structlog.get_logger()
console = Console(stderr=True)


class AlreadyRunning(SystemExit):
    pass


def acquire_lock(data_dir: Path) -> Any:
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / "dev.lock", "a+")  # noqa: SIM115 (held for the process lifetime)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "?"
        raise AlreadyRunning(
            f"consentctl dev is already running (pid {pid}) with data in {data_dir}. "
            "Stop it first, or use another CONSENT_DATA_DIR."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def run_dev(settings: Settings, host: str, port: int) -> None:
    """Start the stack; the first SIGINT/SIGTERM stops it at any moment, start-up included,
    and what was started (PostgreSQL, the broker) is stopped with it."""
    shutdown = Shutdown().install()
    started = time.monotonic()
    lock = acquire_lock(settings.data_dir)
    saved = dev_secrets(settings.data_dir)
    pg_server = None
    broker: TansuBroker | None = None
    stack = stack_file(settings)
    try:
        if not settings.database_url:
            url, pg_server = start_postgres(settings.data_dir / "pg")
            settings = settings.model_copy(update={"database_url": url})
        shutdown.check()
        if not settings.kafka_bootstrap:
            broker = TansuBroker(log_path=settings.data_dir / "tansu.log").start()
            settings = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap})
        shutdown.check()
        updates: dict[str, Any] = {}
        if settings.dev_admin_key is None:
            updates["dev_admin_key"] = SecretStr(saved["admin_key"])
        if settings.jwt_secret is None and not settings.jwt_jwks_url:
            updates["jwt_secret"] = SecretStr(saved["jwt_secret"])
        if settings.jwt_secret is not None or "jwt_secret" in updates:
            updates["preference_center_dev"] = True  # the dev sign-in helper page
        settings = (settings.model_copy(update=updates) if updates else settings).as_dev_stack()
        for key in ("dev_admin_key", "jwt_secret"):  # so child CLI calls see the same values
            value = getattr(settings, key)
            if value is not None:
                os.environ[f"CONSENT_{key.upper()}"] = value.get_secret_value()
        run_service(_run(settings, host, port, saved, started, stack, shutdown))
    except Interrupted:
        pass
    finally:
        shutdown.install()  # a second signal must not cut the clean-up short
        stack.unlink(missing_ok=True)
        if broker:
            broker.stop()
        if pg_server is not None:
            stop_postgres(pg_server)
        lock.close()
        console.print("[bold]consentctl dev stopped.[/bold]")


async def _run(
    settings: Settings,
    host: str,
    port: int,
    saved: dict[str, str],
    started: float,
    stack: Path,
    shutdown: Shutdown,
) -> None:
    """Start everything under the stop event: a signal during start-up cancels the start-up
    and stops what already runs."""
    stop = asyncio.Event()
    shutdown.attach(stop)
    tasks: list[asyncio.Task[None]] = []
    starting = asyncio.create_task(_start(settings, host, port, saved, started, stack, stop, tasks))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # a start-up failure is raised here
            await stop.wait()
    finally:
        stop.set()
        console.print("[bold]Stopping…[/bold]")
        for task in (starting, stopping):
            task.cancel()
        await asyncio.wait([starting, stopping])
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=6)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1)
        shutdown.detach()


async def _start(
    settings: Settings,
    host: str,
    port: int,
    saved: dict[str, str],
    started: float,
    stack: Path,
    stop: asyncio.Event,
    tasks: list[asyncio.Task[None]],
) -> None:
    assert settings.database_url and settings.kafka_bootstrap
    await migrate(settings.database_url)
    await migrate_propagator(settings.database_url)
    await ensure_topics(settings, warmup=True)
    if settings.processors_file:
        processors = load_processors(settings.processors_file)
        demo: list[tuple[ProcessorConfig, int]] = []
    else:
        demo = demo_processors(saved)
        processors = [cfg for cfg, _ in demo]
        path = settings.data_dir / "processors.yaml"
        path.write_text(yaml.safe_dump({"processors": [c.model_dump() for c in processors]}))
        settings = settings.model_copy(update={"processors_file": path})
        os.environ["CONSENT_PROCESSORS_FILE"] = str(path)
    # the propagator's own API (deliveries, parked records), which the consent API's admin
    # endpoints forward to; a fresh credential for each dev stack unless one is set
    if settings.propagator_api_key is None or not settings.propagator_url:
        api_port = free_port()
        settings = settings.model_copy(
            update={
                "propagator_api_key": settings.propagator_api_key
                or SecretStr(secrets.token_urlsafe(24)),
                "propagator_url": f"http://127.0.0.1:{api_port}",
            }
        )
        tasks.append(
            asyncio.create_task(
                serve_until(http_server(create_api(settings), "127.0.0.1", api_port), stop),
                name="propagator-api",
            )
        )
    api = http_server(create_app(settings), host, port)
    tasks.insert(0, asyncio.create_task(serve_until(api, stop), name="api"))
    for cfg, p in demo:
        app = demo_processor_app(cfg.name, os.environ[cfg.secret_env])
        tasks.append(
            asyncio.create_task(
                serve_until(http_server(app, "127.0.0.1", p), stop), name=f"demo-{cfg.name}"
            )
        )
    relay = OutboxRelay(settings, name="dev-relay")
    propagator = Propagator(settings, processors, warmup=True)
    tasks.append(asyncio.create_task(supervise("relay", relay.run, stop)))
    tasks.append(asyncio.create_task(supervise("propagator", propagator.run, stop)))
    await _warm_up(settings, propagator)
    while not api.started:
        await asyncio.sleep(0.05)
        if tasks[0].done():
            raise SystemExit(f"the API could not start on {host}:{port}")
    stack.write_text(  # noqa: ASYNC240 (a few bytes, once)
        json.dumps(
            {
                "pid": os.getpid(),
                "database_url": settings.database_url,
                "kafka_bootstrap": settings.kafka_bootstrap,
                "api": f"http://{host}:{port}",
                "processors_file": str(settings.processors_file or ""),
            }
        )
    )
    _print_banner(settings, host, port, processors, demo, started)


async def _warm_up(settings: Settings, propagator: Propagator) -> None:
    """A fresh consumer group is slow to hand over its first record on the embedded broker;
    pay that once here, so the user's first change reaches the processors in milliseconds.
    The record goes to a private topic in the propagator's subscription, never to the
    public events topic: subscribers only ever see documented CloudEvents there."""
    from consent.adapters.kafka import make_producer
    from propagator.decode import WARMUP_TYPE

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(propagator.ready.wait(), 30)
        producer = make_producer(settings)
        await producer.start()
        try:
            while not propagator.consumed.is_set():
                await producer.send_and_wait(
                    settings.warmup_topic,
                    key=b"consentctl-dev",
                    value=b"{}",
                    headers=[("ce_type", WARMUP_TYPE.encode())],
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(propagator.consumed.wait(), 2)
        finally:
            await producer.stop()


def _print_banner(
    settings: Settings,
    host: str,
    port: int,
    processors: list[ProcessorConfig],
    demo: list[tuple[ProcessorConfig, int]],
    started: float,
) -> None:
    table = Table(
        title=f"consentctl dev — ready in {time.monotonic() - started:.1f}s", show_header=True
    )
    table.add_column("part")
    table.add_column("where")
    table.add_row("consent API", f"http://{host}:{port}  (docs: /docs, metrics: /metrics)")
    table.add_row("PostgreSQL", str(settings.database_url))
    table.add_row(
        "Kafka broker",
        f"{settings.kafka_bootstrap}  topics: {settings.events_topic}, "
        f"{settings.state_topic}, {settings.deadletter_topic}",
    )
    table.add_row("outbox relay", "running (advisory-lock leader)")
    for cfg in processors:
        kind = "demo processor" if demo else "processor"
        table.add_row(f"{kind} {cfg.name}", f"{cfg.url}  purposes: {', '.join(cfg.purposes)}")
    table.add_row("data dir", str(settings.data_dir.resolve()))
    assert settings.dev_admin_key
    table.add_row("dev admin key", settings.dev_admin_key.get_secret_value())
    console.print(table)
    console.print(
        "Mint a user token: [bold]uv run consentctl token SUBJECT_ID[/bold]   Stop: Ctrl-C"
    )
    if settings.preference_center_dev:
        console.print(
            f"Preference center (dev sign-in): http://{host}:{port}/preference-center/dev.html",
            soft_wrap=True,
        )
