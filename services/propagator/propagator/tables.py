"""Delivery ledger tables: one row per (event, processor), an inbox for dedupe, receipts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Index, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kw))


class InboxEntry(SQLModel, table=True):
    """An event id seen by the propagator; a unique violation means "already processed"."""

    __tablename__ = "propagator_inbox"
    event_id: str = Field(primary_key=True)
    topic: str
    partition: int
    offset: int = Field(sa_type=BigInteger)
    received_at: datetime = _ts(nullable=False, server_default=text("now()"))


class Delivery(SQLModel, table=True):
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "processor", name="uq_delivery_event_processor"),
        Index(
            "ix_deliveries_due",
            "processor",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_deliveries_subject", "processor", "subject_id", "sequence"),
        Index("ix_deliveries_status", "status", "processor", "created_at"),
    )
    id: uuid.UUID = Field(primary_key=True)
    event_id: str
    event_type: str
    subject_id: str
    sequence: int = Field(sa_type=BigInteger)
    processor: str
    status: str = "pending"
    attempts: int = 0
    max_attempts: int = 8
    payload: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    occurred_at: datetime = _ts(nullable=False)
    next_attempt_at: datetime = _ts(nullable=False, server_default=text("now()"))
    lease_until: datetime | None = _ts(nullable=True)
    last_error: str | None = None
    response_code: int | None = None
    latency_ms: float | None = None
    replay: bool = False
    created_at: datetime = _ts(nullable=False, server_default=text("now()"))
    updated_at: datetime = _ts(nullable=False, server_default=text("now()"))
    delivered_at: datetime | None = _ts(nullable=True)


class ProcessorReceipt(SQLModel, table=True):
    """Per (processor, subject): the newest sequence a processor acknowledged."""

    __tablename__ = "processor_receipts"
    processor: str = Field(primary_key=True)
    subject_id: str = Field(primary_key=True)
    last_delivered_sequence: int = Field(sa_type=BigInteger)
    last_event_id: str
    delivered_at: datetime = _ts(nullable=False)


class ParkedRecord(SQLModel, table=True):
    """A Kafka record intake could not use: kept whole (for a retry), its offset committed,
    so one bad record never stops the others."""

    __tablename__ = "parked_records"
    __table_args__ = (UniqueConstraint("topic", "partition", "offset", name="uq_parked_position"),)
    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    topic: str
    partition: int
    offset: int = Field(sa_type=BigInteger)
    key: bytes | None = None
    value: bytes | None = None
    headers: list[Any] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False))
    reason: str
    parked_at: datetime = _ts(nullable=False, server_default=text("now()"))
    retry_requested_at: datetime | None = _ts(nullable=True)
    attempts: int = 0
