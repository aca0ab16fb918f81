"""The outbox relay.

One active relay at a time, elected with a PostgreSQL advisory lock held on its own
connection (the same connection reads and marks rows, so a relay that lost the lock
cannot mark anything). Woken by LISTEN/NOTIFY, with polling as a fallback. Each batch is
sent, every acknowledgement awaited, and only then marked published: a crash in between
republishes (consumers deduplicate by ``ce_id``), never loses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from typing import Any

import asyncpg
import orjson
import structlog
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)
from opentelemetry.trace import SpanKind

from consent.adapters.kafka import make_producer
from consent.adapters.outbox_relay import RelayOutbox
from consent.relay import metrics
from consent.settings import Settings
from consent_common import tracing
from consent_common.kafka import cloudevent_headers, encode

log = structlog.get_logger()
STATE_TYPES_TOMBSTONE = {"subject.erasure_requested"}

# errors about the row itself: publishing it again cannot succeed
UNPUBLISHABLE: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    InvalidTopicError,
    CorruptRecordException,
    UnsupportedForMessageFormatError,
    ValueError,
    TypeError,
    KeyError,
)


class OutboxRelay:
    def __init__(self, settings: Settings, *, name: str | None = None) -> None:
        self.settings = settings
        self.name = name or f"relay-{os.getpid()}"
        self.is_leader = False
        self._wake = asyncio.Event()
        self.published = 0

    def _route(self, row: asyncpg.Record) -> list[tuple[str, bytes | None]]:
        """Topics and values for one outbox row."""
        if row["aggregatetype"] == "delivery":  # dead letters queued before issue 16
            return [(self.settings.deadletter_topic, row["payload"].encode())]
        if row["aggregatetype"] == "replay":  # restricted to processors: never the shared topic
            return [(self.settings.replays_topic, row["payload"].encode())]
        if row["aggregatetype"] == "checkpoint":  # the transparency log's signed tree heads
            return [(self.settings.checkpoints_topic, row["payload"].encode())]
        out: list[tuple[str, bytes | None]] = [
            (self.settings.events_topic, row["payload"].encode())
        ]
        if row["aggregatetype"] == "subject":
            if row["type"] in STATE_TYPES_TOMBSTONE:
                out.append((self.settings.state_topic, None))
            else:
                data = orjson.loads(row["payload"])
                if "decisions" in data and not data.get("replay"):
                    out.append(
                        (
                            self.settings.state_topic,
                            encode(
                                {
                                    "subject_id": data["subject_id"],
                                    "sequence": data["sequence"],
                                    "decisions": data["decisions"],
                                    "jurisdiction": data.get("jurisdiction"),
                                    "updated_at": data.get("occurred_at"),
                                }
                            ),
                        )
                    )
        return out

    async def publish_batch(self, outbox: RelayOutbox, producer: Any) -> int:
        """Publish the next rows in outbox order; return how many rows were read. A row the
        broker or the encoder refuses is parked (kept, with its error) and holds back only
        its own subject; an error of the broker itself fails the batch, to be retried."""
        rows = await outbox.next_rows(self.settings.relay_batch_size)
        if not rows:
            return 0
        blocked: set[str] = set()  # subjects with a row parked in this batch
        parked: list[tuple[Any, str]] = []
        sent: list[tuple[asyncpg.Record, list[asyncio.Future[Any]]]] = []
        for row in rows:
            if row["aggregateid"] in blocked:
                continue  # stays unpublished, behind its parked predecessor
            try:
                sent.append((row, await self._send(producer, row)))
            except UNPUBLISHABLE as exc:
                parked.append((row["id"], _describe(exc)))
                blocked.add(row["aggregateid"])
        await asyncio.gather(*(f for _, fs in sent for f in fs), return_exceptions=True)
        published, transient = [], None
        for row, futures in sent:
            errors = [e for f in futures if (e := f.exception()) is not None]
            if not errors:
                published.append(row["id"])
            elif all(isinstance(e, UNPUBLISHABLE) for e in errors):
                parked.append((row["id"], _describe(errors[0])))
            else:
                transient = transient or errors[0]
        if published:
            await outbox.mark_published(published)
        for row_id, error in parked:
            await outbox.park(row_id, error)
            metrics.PARKED.inc()
            log.error("relay_row_parked", outbox_id=str(row_id), error=error)
        self.published += len(published)
        metrics.PUBLISHED.inc(len(published))
        if transient is not None:
            raise transient
        return len(rows)

    async def _send(self, producer: Any, row: asyncpg.Record) -> list[asyncio.Future[Any]]:
        extra = {"consent_processors": row["targets"]} if row["targets"] else {}
        with tracing.span(
            "consent.relay publish",
            row["traceparent"],
            SpanKind.PRODUCER,
            {"messaging.system": "kafka", "cloudevents.event_type": row["type"]},
        ):
            traceparent = tracing.current_traceparent() or row["traceparent"]
            if traceparent:  # the CloudEvents distributed-tracing extension
                extra[tracing.CE_HEADER] = traceparent
            headers = cloudevent_headers(
                event_id=str(row["id"]),
                source=self.settings.event_source,
                type_=row["type"],
                time=row["occurred_at"],
                subject=row["aggregateid"],
                sequence=row["sequence"],
                extra=extra or None,
            )
            key = row["aggregateid"].encode()
            return [
                await producer.send(topic, key=key, value=value, headers=headers)
                for topic, value in self._route(row)
            ]

    async def run(self, stop: asyncio.Event) -> None:
        tracing.configure("consent-relay")  # when OTEL_TRACES_EXPORTER is set
        backoff = 0.5
        while not stop.is_set():
            try:
                await self._lead(stop)
                backoff = 0.5
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                log.warning("relay_db_error", error=type(exc).__name__)
            if not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, 10)

    async def _lead(self, stop: asyncio.Event) -> None:
        assert self.settings.database_url
        outbox = await RelayOutbox.connect(self.settings.database_url, self.name)
        try:
            while not stop.is_set():
                if await outbox.try_lead():
                    break
                self.is_leader = False
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
            if stop.is_set():
                return
            self.is_leader = True
            metrics.LEADER.set(1)
            log.info("relay_leader", relay=self.name)
            await outbox.on_commit(self._wake.set)
            await self._publish_loop(outbox, stop)
        finally:
            self.is_leader = False
            metrics.LEADER.set(0)
            with contextlib.suppress(Exception):
                await outbox.close()

    async def _publish_loop(self, outbox: RelayOutbox, stop: asyncio.Event) -> None:
        producer = make_producer(self.settings)
        await producer.start()
        backoff, failures = 0.2, 0
        last_cleanup = last_backlog = 0.0
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    # a short batch means the outbox is drained: a commit since the wake-up was
                    # cleared has set it again, so no second query to find it empty
                    full = self.settings.relay_batch_size
                    while not stop.is_set() and await self.publish_batch(outbox, producer) >= full:
                        pass
                    backoff, failures = 0.2, 0
                except (asyncpg.PostgresError, OSError):
                    raise
                except Exception as exc:  # broker errors: keep the rows, retry with backoff
                    metrics.ERRORS.inc()
                    failures += 1
                    log.warning(
                        "relay_publish_failed",
                        error=type(exc).__name__,
                        retry_in_s=round(backoff, 2),
                        failures=failures,
                    )
                    await asyncio.sleep(backoff * (0.5 + random.random()))
                    backoff = min(backoff * 2, 10.0)
                    if failures % 3 == 0:  # start afresh: new connections, new metadata
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(producer.stop(), 5)
                        producer = make_producer(self.settings)
                        with contextlib.suppress(Exception):
                            await producer.start()
                    continue
                if loop.time() - last_backlog >= 1:  # a gauge: once a second is enough
                    last_backlog = loop.time()
                    metrics.set_backlog(*await outbox.backlog())
                if loop.time() - last_cleanup > 60:
                    last_cleanup = loop.time()
                    await outbox.clean_up(self.settings.outbox_retention_hours)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.relay_poll_interval_s)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 5)


def _describe(exc: BaseException) -> str:
    """The error's kind, never its text: it may quote the payload."""
    return type(exc).__name__
