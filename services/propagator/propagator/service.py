"""Runs the propagator: Kafka intake plus one delivery worker per processor."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import asyncpg
import structlog

from consent_common import tracing
from consent_common.db import KEEPALIVE_SETTINGS, connect_durable, plain_url, tune_keepalive
from consent_common.settings import CommonSettings
from propagator.backlog import run_sampler
from propagator.config import ProcessorConfig
from propagator.db import SERVER_SETTINGS
from propagator.intake import Intake
from propagator.processors import adapter_for
from propagator.publisher import OutboxPublisher
from propagator.retention import run_retention
from propagator.worker import ProcessorWorker

log = structlog.get_logger()


class Propagator:
    def __init__(
        self, settings: CommonSettings, processors: list[ProcessorConfig], *, warmup: bool = False
    ) -> None:
        self.settings, self.warmup = settings, warmup
        for p in processors:
            p.secret()  # fail at start, not at the first delivery, when a secret is missing
        self.adapters = [adapter_for(p) for p in processors]
        self.intake: Intake | None = None
        self.ready = asyncio.Event()  # the intake consumer has its partitions
        self.consumed = asyncio.Event()  # the intake consumer has received a record
        self.workers: list[ProcessorWorker] = []
        self.publisher: OutboxPublisher | None = None

    async def run(self, stop: asyncio.Event) -> None:
        assert self.settings.database_url
        tracing.configure("consent-propagator")  # when OTEL_TRACES_EXPORTER is set
        pool = await asyncpg.create_pool(
            plain_url(self.settings.database_url),
            min_size=1,
            max_size=10,
            server_settings={
                "application_name": "consent-propagator",
                **KEEPALIVE_SETTINGS,
                **SERVER_SETTINGS,
            },
            init=_tune,
        )
        assert pool is not None
        self.publisher = publisher = OutboxPublisher(self.settings, pool)
        connector = aiohttp.TCPConnector(limit=200, limit_per_host=0)
        async with aiohttp.ClientSession(connector=connector) as client:
            self.workers = [ProcessorWorker(a, pool, client) for a in self.adapters]
            wake = _FanOut([w.wake for w in self.workers])
            self.intake = Intake(self.settings, pool, self.adapters, wake, warmup=self.warmup)
            log.info("propagator_started", processors=[a.config.name for a in self.adapters])
            self.intake.ready, self.intake.consumed = self.ready, self.consumed
            tasks = [asyncio.create_task(self.intake.run(stop), name="intake")]
            tasks.append(
                asyncio.create_task(self._listen(stop, wake, publisher.wake), name="listener")
            )
            tasks.append(asyncio.create_task(publisher.run(stop), name="publisher"))
            tasks.append(
                asyncio.create_task(run_retention(self.settings, pool, stop), name="retention")
            )
            tasks.append(
                asyncio.create_task(self.intake.run_parked_retries(stop), name="parked-retries")
            )
            names = [a.config.name for a in self.adapters]
            tasks.append(asyncio.create_task(run_sampler(pool, names, stop), name="backlog"))
            tasks += [
                asyncio.create_task(w.run(stop), name=f"worker-{w.config.name}")
                for w in self.workers
            ]
            stopper = asyncio.create_task(stop.wait())
            try:
                done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
                if not stop.is_set():  # a loop ended on its own: fail, so supervise() restarts
                    ended = next(t for t in done if t is not stopper)
                    raise RuntimeError(f"propagator task {ended.get_name()} ended") from (
                        ended.exception()
                    )
            finally:
                stopper.cancel()
                if not stop.is_set():
                    for t in tasks:
                        t.cancel()
                await asyncio.wait(tasks, timeout=8)
                await pool.close()

    async def _listen(
        self, stop: asyncio.Event, wake: _FanOut, published: asyncio.Event | None = None
    ) -> None:
        """Wake the workers on ``NOTIFY deliveries`` (replays and redrives committed by another
        process), the outbox publisher on ``NOTIFY propagator_outbox``. Polling stays the
        fallback: a lost connection only costs latency."""
        assert self.settings.database_url
        while not stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect_durable(
                    self.settings.database_url, "consent-propagator:listener"
                )
                await conn.add_listener("deliveries", lambda *_: wake.set())
                if published is not None:
                    await conn.add_listener("propagator_outbox", lambda *_: published.set())
                    published.set()
                wake.set()  # anything committed while not listening
                while not stop.is_set() and not conn.is_closed():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), 5)
            except Exception as exc:  # a wake-up aid only: never take the propagator down
                log.warning("delivery_listener_error", error=type(exc).__name__)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 2)


async def _tune(conn: asyncpg.Connection) -> None:
    tune_keepalive(conn)


class _FanOut:
    """An Event-like object waking every worker at once."""

    def __init__(self, events: list[asyncio.Event]) -> None:
        self.events = events

    def set(self) -> None:
        for e in self.events:
            e.set()
