"""Delivery workers: one loop per processor, so a slow or failing one delays no other."""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import orjson
import structlog
from opentelemetry.trace import SpanKind

from consent_common import tracing
from propagator import health, metrics
from propagator.breaker import CircuitBreaker, RateLimiter
from propagator.processors import ProcessorAdapter
from propagator.processors.base import Outcome
from propagator.repositories.deliveries import ClaimedDelivery
from propagator.unit_of_work import UnitOfWork, unit_of_work

log = structlog.get_logger()
CLAIM_ROUNDS = 4  # a claim takes up to this many rounds of ``concurrency`` deliveries
HEALTH_EVERY_S = 2.0  # how often a worker re-reads whether its processor is disabled


def backoff_delay(attempt: int, initial: float, cap: float) -> float:
    """Exponential backoff with full jitter: uniform in [base/2, base], base = initial·2^(n-1)."""
    base = min(cap, initial * (2 ** max(0, attempt - 1)))
    return base / 2 + random.random() * base / 2


class ProcessorWorker:
    def __init__(
        self, adapter: ProcessorAdapter, pool: asyncpg.Pool, client: aiohttp.ClientSession
    ) -> None:
        self.adapter, self.pool, self.client = adapter, pool, client
        self.config = adapter.config
        self.wake = asyncio.Event()
        self.exhausted = True  # until a success proves otherwise (covers restarts)
        self.probe_every_s = adapter.config.recovery_probe_s
        c = adapter.config
        self.breaker = CircuitBreaker(c.breaker_failures, c.breaker_open_s, c.breaker_max_open_s)
        self.limiter = RateLimiter(c.rate_limit_per_s) if c.rate_limit_per_s else None
        self.disabled = False  # read from processor_health, shared by the replicas

    async def run_once(self) -> int:
        """Claim a batch, send it with at most ``concurrency`` requests in flight, record
        every outcome in one unit of work. A batch holds several rounds of requests: during a
        replay the claim and the record are paid once per ``CLAIM_ROUNDS`` rounds."""
        c = self.config
        permits = self.breaker.permits()
        metrics.CIRCUIT_OPEN.labels(c.name).set(0 if permits is None else 1)
        if permits == 0:  # open: nothing goes out until the next probe
            return 0
        limit = c.concurrency * CLAIM_ROUNDS if permits is None else permits
        async with unit_of_work(self.pool, atomic=False) as uow:  # one statement
            claimed = await uow.deliveries.claim(c.name, limit, c.timeout_s * CLAIM_ROUNDS + 30)
        if claimed:
            slots = asyncio.Semaphore(c.concurrency)
            outcomes = await asyncio.gather(*(self._send(r, slots) for r in claimed))
            # all delivered is one statement (atomic alone); anything else needs a transaction
            simple = all(o.ok for o in outcomes) and not self.exhausted
            async with unit_of_work(self.pool, atomic=not simple) as uow:
                recovered = await self._record(uow, list(zip(claimed, outcomes, strict=True)))
            if recovered:  # only once its redrive is committed: else it is tried again
                self.exhausted = False
        return len(claimed)

    async def _send(self, delivery: ClaimedDelivery, slots: asyncio.Semaphore) -> Outcome:
        body: dict[str, Any] = orjson.loads(delivery.payload)
        try:
            async with slots:
                if self.limiter is not None:
                    await self.limiter.acquire()
                with tracing.span(
                    "consent.webhook",
                    delivery.traceparent,
                    SpanKind.CLIENT,
                    {"consent.processor": self.config.name, "consent.attempt": delivery.attempts},
                ) as span:
                    outcome = await self.adapter.send(
                        self.client,
                        delivery.event_id,
                        delivery.event_type,
                        body,
                        tracing.current_traceparent() or delivery.traceparent,
                    )
                    if span is not None and outcome.status_code is not None:
                        span.set_attribute("http.response.status_code", outcome.status_code)
                    return outcome
        except Exception as exc:  # a bug or bad config must not kill this processor's loop
            return Outcome(False, True, None, f"send failed: {type(exc).__name__}", 0.0)

    async def _record(
        self, uow: UnitOfWork, results: list[tuple[ClaimedDelivery, Outcome]]
    ) -> bool:
        """Record a batch's outcomes. True when the processor, exhausted until now, answered
        and its exhausted deliveries were redriven (and nothing in the batch gave up again)."""
        name = self.config.name
        recovered = False
        delivered = [(r, o.status_code, o.latency_ms) for r, o in results if o.ok]
        await self._note_health(uow, [o for _, o in results])
        if delivered:
            await uow.deliveries.mark_delivered(delivered)
            if self.exhausted:  # it answers again: catch up on what died while it was down
                redriven = await uow.deliveries.redrive_exhausted(name)
                recovered = True
                if redriven:
                    await uow.outbox.audit(
                        "propagator",
                        "delivery.auto_redrive",
                        {"processor": name},
                        {"redriven": redriven},
                    )
                    log.info("deliveries_auto_redriven", processor=name, count=redriven)
            metrics.DELIVERIES.labels(name, "delivered").inc(len(delivered))
            now = datetime.now(UTC)
            for delivery, _, _ in delivered:
                lag = (now - delivery.occurred_at).total_seconds()
                metrics.E2E_LATENCY.labels(name).observe(max(lag, 0.0))
        for delivery, outcome in results:
            if not outcome.ok and await self._record_failure(uow, delivery, outcome):
                recovered = False  # gave up on one: still exhausted
        return recovered

    async def _note_health(self, uow: UnitOfWork, outcomes: list[Outcome]) -> None:
        """Feed the breaker (this replica) and the shared failing streak. Only failures that
        say the processor is unwell count (retryable ones); a 4xx about one body does not."""
        succeeded = any(o.ok for o in outcomes)
        unwell = [o for o in outcomes if not o.ok and o.retryable]
        if succeeded:
            self.breaker.success()
        for _ in unwell:
            self.breaker.failure()
        if succeeded or unwell:
            c = self.config
            error = unwell[0].error if unwell else None
            if await health.note(
                uow,
                c.name,
                succeeded=succeeded,
                failed=bool(unwell),
                error=error,
                disable_after_s=c.disable_after_s,
            ):
                self.disabled = True
                log.error("processor_disabled", processor=c.name, after_s=c.disable_after_s)

    async def _record_failure(
        self, uow: UnitOfWork, delivery: ClaimedDelivery, outcome: Outcome
    ) -> bool:
        """Retry, supersede or give up on one failed delivery. True when it gave up on a
        retryable failure (the processor's retry budget ran out: it is exhausted)."""
        name = self.config.name
        error = outcome.error or "failed"
        if outcome.retryable and delivery.attempts < delivery.max_attempts:
            if await uow.deliveries.newer_exists(delivery):
                await uow.deliveries.finish(
                    delivery,
                    "superseded",
                    outcome.status_code,
                    f"superseded after: {error}",
                    outcome.latency_ms,
                )
                metrics.DELIVERIES.labels(name, "superseded").inc()
                return False
            delay = backoff_delay(
                delivery.attempts, self.config.backoff_initial_s, self.config.backoff_max_s
            )
            await uow.deliveries.reschedule(
                delivery, delay, outcome.status_code, error, outcome.latency_ms
            )
            metrics.DELIVERIES.labels(name, "retry").inc()
            log.info(
                "delivery_retry",
                processor=name,
                attempt=delivery.attempts,
                retry_in_s=round(delay, 2),
                error=error[:80],
            )
            return False
        reason = (
            error
            if not outcome.retryable
            else f"gave up after {delivery.attempts} attempts: {error}"
        )
        if outcome.retryable:
            self.exhausted = True
        await uow.deliveries.finish(
            delivery, "dead", outcome.status_code, reason, outcome.latency_ms
        )
        await uow.outbox.queue(
            "deadletter",
            delivery.subject_id,
            "delivery.dead",
            delivery.dead_letter(reason, outcome.status_code),
            delivery.sequence,
        )
        metrics.DELIVERIES.labels(name, "dead").inc()
        metrics.DEAD_LETTERS.labels(name).inc()
        log.warning("delivery_dead", processor=name, event_id=delivery.event_id, error=reason[:120])
        return outcome.retryable

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_probe = loop.time() + self.probe_every_s
        next_health = 0.0
        while not stop.is_set():
            try:
                if loop.time() >= next_health or (self.disabled and self.wake.is_set()):
                    next_health = loop.time() + HEALTH_EVERY_S
                    async with unit_of_work(self.pool, atomic=False) as uow:
                        self.disabled = await uow.health.is_disabled(self.config.name)
                if self.disabled:  # an operator enables it (the enable NOTIFY wakes us)
                    self.wake.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), HEALTH_EVERY_S)
                    continue
                if self.exhausted and loop.time() >= next_probe:
                    next_probe = loop.time() + self.probe_every_s
                    async with unit_of_work(self.pool, atomic=False) as uow:  # one statement
                        await uow.deliveries.probe_exhausted(self.config.name)
                if await self.run_once():
                    continue
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                log.warning("worker_db_error", processor=self.config.name, error=type(exc).__name__)
                await asyncio.sleep(1)
            self.wake.clear()
            idle = max(0.2, min(self.breaker.seconds_until_probe(), HEALTH_EVERY_S))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), idle)
