"""Projects ``consent.receipts.v1`` (published by the propagator) into the consent service's
own read model: ``propagation_receipts``, ``processor_acks`` and, for the propagator's
actions, ``audit_log``.

One API replica projects at a time (an advisory lease, like the scheduler). It reads the
topic by manual assignment, without a consumer group, and stores its position per partition
in ``receipt_offsets`` in the same transaction as what it projected: each record is
applied once, and a replica that takes over resumes exactly there. Upserts keep the newest
state per delivery (by the propagator's ``updated_at``) and the highest sequence each
processor acknowledged, with the decisions it was sent (what it holds: the drift report,
``service/drift.py``), so records read twice or out of order change nothing.

Staleness: a receipt is visible in ``GET /v1/subjects/{id}/propagation`` and the erasure
receipts a few tens of milliseconds after the propagator recorded it (measured by
``tests/test_service_boundaries.py``; see docs/operations.md, "Propagation receipts")."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.adapters.audit import AuditRecord
from consent.adapters.lease import AdvisoryLease
from consent.service.unit_of_work import unit_of_work
from consent_common.kafka import client_kwargs
from consent_common.settings import CommonSettings

log = structlog.get_logger()
RECEIPTS_LEASE_KEY = 0x636F6E73656E7402  # "consent" + 2
LEASE_CHECK_S = 5.0


def _ts(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _newer_or_equal(seq: int, at: datetime | None, held_seq: int, held_at: datetime | None) -> bool:
    if seq != held_seq:
        return seq > held_seq
    return at is None or held_at is None or held_at <= at


def _header(record: Any, name: str) -> str | None:
    for k, v in record.headers or ():
        if k == name:
            return bytes(v).decode(errors="replace")
    return None


class ReceiptProjector:
    def __init__(
        self,
        settings: CommonSettings,
        sessions: async_sessionmaker[AsyncSession],
        database_url: str,
    ) -> None:
        self.settings, self.sessions = settings, sessions
        self.lease = AdvisoryLease(database_url, RECEIPTS_LEASE_KEY, "receipts")
        self.projected = 0
        self.skipped = 0

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    if await self.lease.held():
                        await self._consume(stop)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # broker or database away: try again, never die
                    log.warning("receipts_projection_error", error=type(exc).__name__)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1)
        finally:
            await self.lease.release()

    async def _consume(self, stop: asyncio.Event) -> None:
        topic = self.settings.receipts_topic
        consumer = AIOKafkaConsumer(
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=20,
            **client_kwargs(self.settings),
        )
        await consumer.start()
        try:
            parts = consumer.partitions_for_topic(topic)
            while not parts:  # not created yet
                if stop.is_set():
                    return
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic)
                if not parts:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), 1)
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            async with unit_of_work(self.sessions) as uow:
                saved = await uow.receipts.saved_offsets(topic)
            for tp in tps:
                if tp.partition in saved:
                    consumer.seek(tp, saved[tp.partition])
                else:
                    await consumer.seek_to_beginning(tp)
            loop = asyncio.get_running_loop()
            check_at = loop.time() + LEASE_CHECK_S
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=1000)
                if batch:
                    await self.project(batch)
                if loop.time() >= check_at:
                    check_at = loop.time() + LEASE_CHECK_S
                    if not await self.lease.held():
                        return
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), 5)

    async def project(self, batch: dict[TopicPartition, list[Any]]) -> None:
        receipts: list[tuple[Any, ...]] = []
        acks: dict[tuple[str, str], tuple[Any, ...]] = {}
        audits: list[AuditRecord] = []
        offsets: list[tuple[str, int, int]] = []
        for tp, records in batch.items():
            for rec in records:
                kind = _header(rec, "ce_type")
                try:
                    data = orjson.loads(rec.value) if rec.value is not None else None
                    if kind == "delivery.receipt" and isinstance(data, dict):
                        self._receipt(data, receipts, acks)
                    elif kind == "audit.recorded" and isinstance(data, dict):
                        audits.append(
                            AuditRecord(
                                data["actor"],
                                data["action"],
                                data.get("scope") or {},
                                data.get("counts") or {},
                                data.get("reference"),
                                at=_ts(data["at"]),
                                source_id=data["id"],
                            )
                        )
                    else:
                        self.skipped += 1  # a type this version does not know: skip it
                except (ValueError, KeyError, TypeError) as exc:
                    self.skipped += 1
                    log.warning("receipt_skipped", offset=rec.offset, error=type(exc).__name__)
            if records:
                offsets.append((tp.topic, tp.partition, records[-1].offset + 1))
        async with unit_of_work(self.sessions) as uow:
            await uow.receipts.project(receipts, list(acks.values()), audits, offsets)
        self.projected += len(receipts) + len(audits)

    @staticmethod
    def _receipt(
        d: dict[str, Any],
        receipts: list[tuple[Any, ...]],
        acks: dict[tuple[str, str], tuple[Any, ...]],
    ) -> None:
        if not d.get("replay"):
            receipts.append(
                (
                    UUID(d["delivery_id"]),
                    d["event_id"],
                    d["event_type"],
                    d["subject_id"],
                    int(d["sequence"]),
                    d["processor"],
                    d["status"],
                    int(d["attempts"]),
                    d.get("last_error"),
                    d.get("response_code"),
                    _ts(d["created_at"]),
                    _ts(d["updated_at"]),
                    _ts(d.get("delivered_at")),
                )
            )
        if d["status"] == "delivered":
            # what the processor holds now: the decisions of the newest sequence it applied
            # (at an equal sequence, the later delivery: a replay or a repair)
            key = (d["processor"], d["subject_id"])
            seq = int(d["sequence"])
            at = _ts(d.get("delivered_at"))
            known = acks.get(key)
            if known is None or _newer_or_equal(seq, at, known[2], known[4]):
                decisions = d.get("decisions")
                acks[key] = (
                    d["processor"],
                    d["subject_id"],
                    seq,
                    d["event_id"],
                    at,
                    orjson.dumps(decisions).decode() if isinstance(decisions, dict) else None,
                    d["event_type"],
                )
