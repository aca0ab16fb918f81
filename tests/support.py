"""Test helpers: real HTTP processors on loopback, an in-process stack, Kafka readers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI, Request, Response
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from consent.relay.relay import OutboxRelay
from consent.settings import Settings
from consent_common.kafka import client_kwargs
from consentctl.embedded import free_port
from consentctl.servers import http_server, serve_until
from propagator.config import ProcessorConfig
from propagator.service import Propagator


@dataclass
class Received:
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes
    signature_ok: bool
    status: int = 0


@dataclass
class RecordingProcessor:
    """A real HTTP server that verifies signatures and records every request.

    ``responder`` returns the status code for each request (default 204)."""

    name: str
    secret: str
    port: int = field(default_factory=free_port)
    requests: list[Received] = field(default_factory=list)
    responder: Callable[[Received], int] = lambda _r: 204
    delay_s: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/consent"

    def app(self) -> FastAPI:
        app = FastAPI()
        verifier = Webhook(self.secret)

        @app.post("/consent")
        async def consent(request: Request) -> Response:
            raw = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            try:
                verifier.verify(raw, headers)
                ok = True
            except WebhookVerificationError:
                ok = False
            rec = Received(headers, orjson.loads(raw), raw, ok)
            rec.status = self.responder(rec)
            self.requests.append(rec)
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            return Response(status_code=rec.status)

        return app

    def applied(self) -> list[Received]:
        """Requests answered 2xx, once per webhook-id (as a deduplicating processor would)."""
        seen: dict[str, Received] = {}
        for r in self.requests:
            if 200 <= r.status < 300:
                seen.setdefault(r.headers["webhook-id"], r)
        return list(seen.values())

    def config(self, env: str, purposes: list[str], **kw: Any) -> ProcessorConfig:
        return ProcessorConfig(
            name=self.name, url=self.url, secret_env=env, purposes=purposes, **kw
        )


@contextlib.asynccontextmanager
async def serving(*processors: RecordingProcessor) -> AsyncIterator[None]:
    stop = asyncio.Event()
    servers = [http_server(p.app(), "127.0.0.1", p.port) for p in processors]
    tasks = [asyncio.create_task(serve_until(s, stop)) for s in servers]
    while not all(s.started for s in servers):
        await asyncio.sleep(0.02)
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class Stack:
    relay: OutboxRelay
    propagator: Propagator | None
    stop: asyncio.Event
    tasks: list[asyncio.Task[None]]


@contextlib.asynccontextmanager
async def running_stack(
    settings: Settings,
    processors: list[ProcessorConfig] | None = None,
    relay: bool = True,
    receipts: bool = False,
) -> AsyncIterator[Stack]:
    """Relay and (optionally) propagator as tasks in this event loop; with ``receipts``, the
    consent service's projection of the propagator's receipts too (as the API runs it)."""
    from consent.adapters.db import make_engine, make_sessionmaker
    from consent.service.receipts import ReceiptProjector

    stop = asyncio.Event()
    r = OutboxRelay(settings, name="test-relay")
    tasks = [asyncio.create_task(r.run(stop))] if relay else []
    prop = None
    if processors is not None:
        prop = Propagator(settings, processors)
        tasks.append(asyncio.create_task(prop.run(stop)))
    engine = make_engine(settings.database_url or "", pool_size=2) if receipts else None
    if engine is not None:
        projector = ReceiptProjector(
            settings, make_sessionmaker(engine), settings.database_url or ""
        )
        tasks.append(asyncio.create_task(projector.run(stop)))
    try:
        yield Stack(r, prop, stop, tasks)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
        if engine is not None:
            await engine.dispose()


def processors_file(path: Path, configs: list[ProcessorConfig]) -> Path:
    """A ``CONSENT_PROCESSORS_FILE`` naming these processors (what the consent service reads
    of it: names and purposes)."""
    doc = {
        "processors": [
            {"name": c.name, "url": c.url, "secret_env": c.secret_env,
             "purposes": list(c.purposes), "events": list(c.events)}
            for c in configs
        ]
    }  # fmt: skip
    path.write_text(yaml.safe_dump(doc))
    return path


RECEIPTS_BEHIND = """
SELECT count(*) FROM propagator.processor_receipts r
LEFT JOIN public.processor_acks a ON a.processor = r.processor AND a.subject_id = r.subject_id
WHERE a.processor IS NULL OR a.last_delivered_sequence < r.last_delivered_sequence
   OR a.delivered_at < r.delivered_at
"""
UNSETTLED = """
SELECT (SELECT count(*) FROM public.outbox WHERE published_at IS NULL)
     + (SELECT count(*) FROM public.outbox o WHERE NOT EXISTS (
           SELECT 1 FROM propagator.propagator_inbox i WHERE i.event_id = o.id::text)
        AND o.aggregatetype IN ('subject', 'replay'))
     + (SELECT count(*) FROM propagator.deliveries WHERE status = 'pending'
        AND NOT processor = ANY($1::text[]))
     + (SELECT count(*) FROM propagator.propagator_outbox WHERE published_at IS NULL)
"""


async def settled(db: Any, failing: Iterable[str] = ()) -> bool:
    """Every event published and taken in by the propagator, every delivery to a processor
    not in ``failing`` finished, and every acknowledgement projected into the consent
    service's read model (what the drift report reads)."""
    if await db.fetchval(UNSETTLED, sorted(failing)):
        return False
    return not await db.fetchval(RECEIPTS_BEHIND)


async def settle(db: Any, failing: Iterable[str] = (), timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await settled(db, failing):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the stack did not settle in time")
        await asyncio.sleep(0.05)


async def read_topic(
    settings: Settings, topic: str, *, min_count: int = 1, timeout: float = 15.0
) -> list[Any]:
    """Read a topic from the beginning with manual assignment (no consumer group)."""
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=20,
        **client_kwargs(settings),
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        while not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic)
            await asyncio.sleep(0.05)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        ends = await consumer.end_offsets(tps)
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=100)
            for recs in batch.values():
                out.extend(recs)
            positions = {tp: await consumer.position(tp) for tp in tps}
            if len(out) >= min_count and all(positions[tp] >= ends[tp] for tp in tps):
                break
            if len(out) < min_count:
                ends = await consumer.end_offsets(tps)
        return out
    finally:
        await consumer.stop()


def headers_of(record: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in (record.headers or ())}


async def write_changes(
    settings: Settings, subjects: list[str], per_subject: int, concurrency: int = 8
) -> int:
    """Real writes through the service layer: each flips marketing_email, one sequence each."""
    from consent.adapters.db import make_engine, make_sessionmaker
    from consent.domain.model import Actor
    from consent.service.context import WriteContext
    from consent.service.preferences import change_preferences
    from consent.service.unit_of_work import UnitOfWork

    engine = make_engine(settings.database_url or "", pool_size=concurrency)
    sessions = make_sessionmaker(engine)
    sem = asyncio.Semaphore(concurrency)

    async def one_subject(sid: str) -> int:
        done = 0
        for i in range(per_subject):
            async with sem, sessions() as session:
                uow = UnitOfWork(session)
                status = "granted" if i % 2 == 0 else "denied"
                ctx = WriteContext(channel="api", actor=Actor("service", "test"))
                await change_preferences(uow, sid, {"marketing_email": status}, ctx)
                await uow.commit()
                done += 1
        return done

    try:
        return sum(await asyncio.gather(*(one_subject(s) for s in subjects)))
    finally:
        await engine.dispose()


def dedupe_in_order(records: list[Any]) -> dict[str, list[int]]:
    """Per subject key: sequences in topic order, duplicates (same ce_id) dropped."""
    seen: set[str] = set()
    out: dict[str, list[int]] = {}
    for r in records:
        h = headers_of(r)
        if h["ce_id"] in seen:
            continue
        seen.add(h["ce_id"])
        out.setdefault(r.key.decode(), []).append(int(h["ce_subjectseq"]))
    return out


# --- shared set-up of the API tests ------------------------------------------------------

# What a refused request must leave untouched (API.md § Errors: "nothing changes").
TABLES = ("consent_ledger", "consent_state", "outbox", "subjects", "policy_versions")


async def counts(db: Any, tables: tuple[str, ...] = TABLES) -> dict[str, int]:
    return {t: await db.fetchval(f"SELECT count(*) FROM {t}") for t in tables}


def assert_problem(r: Any, status: int, *, field_errors: bool = False) -> dict[str, Any]:
    """A problem document (RFC 9457) with this status; with ``field_errors``, a non-empty
    ``errors`` list naming the fields."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    assert {"type", "title", "status", "detail"} <= set(body), body
    assert body["status"] == status
    if field_errors:
        assert isinstance(body.get("errors"), list) and body["errors"], body
    return body


async def create_replay_job(sessions: Any, known: dict[str, Any], **request: Any) -> Any:
    """A replay job over the last hour, created and committed as the API would."""
    from datetime import UTC, datetime, timedelta

    from consent.service import replay as replay_svc
    from consent.service.unit_of_work import unit_of_work

    now = datetime.now(UTC)
    async with unit_of_work(sessions) as uow:
        return await replay_svc.create_job(
            uow,
            replay_svc.ReplayRequest(
                since=now - timedelta(hours=1), until=now, actor="test", **request
            ),
            known,
        )


# --- domain records for the unit tests ---------------------------------------------------


def rec(
    purpose: str,
    status: str = "granted",
    *,
    at: Any = None,
    source: str = "web",
    expires_at: Any = None,
    ended_reason: str | None = None,
    policy_version: str | None = None,
    actor: Any = None,
) -> Any:
    """One purpose's ``PurposeRecord`` at sequence 1 (``at`` defaults to 2026-01-01 12:00Z)."""
    from datetime import UTC, datetime

    from consent.domain.model import Actor, PurposeRecord

    return PurposeRecord(
        purpose=purpose,
        status=status,  # type: ignore[arg-type]
        source=source,
        updated_at=at or datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
        sequence=1,
        policy_version=policy_version,
        expires_at=expires_at,
        actor=actor or Actor("subject"),
        ended_reason=ended_reason,
    )
