"""SQLModel tables. The ledger is append-only; ``consent_state`` is a projection of it.

The outbox follows Debezium's shape (id, aggregatetype, aggregateid, type, payload) so
change-data-capture could replace the relay later.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Identity, Index, LargeBinary, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.types import String
from sqlmodel import Field, SQLModel


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kw))


class Subject(SQLModel, table=True):
    __tablename__ = "subjects"
    subject_id: str = Field(primary_key=True, max_length=128)
    sequence: int = Field(default=0, sa_type=BigInteger)
    jurisdiction: str | None = Field(default=None, max_length=10)
    birth_date: date | None = None
    gpc_opted_out_at: datetime | None = _ts(nullable=True)
    erased_at: datetime | None = _ts(nullable=True)
    last_hash: str | None = None
    # the decisions the last event carried: the next event's ``changed_decisions`` diff
    decisions: dict[str, bool] | None = Field(default=None, sa_column=Column(JSONB))
    age_status: str | None = None  # recorded with the last event
    age_check_at: datetime | None = _ts(nullable=True)  # when it may next change
    created_at: datetime = _ts(nullable=False, server_default=text("now()"))
    updated_at: datetime = _ts(nullable=False, server_default=text("now()"))


class ConsentState(SQLModel, table=True):
    """Projection: the latest recorded status per (subject, purpose)."""

    __tablename__ = "consent_state"
    __table_args__ = (
        Index(
            "ix_consent_state_expiring",
            "expires_at",
            postgresql_where=text("status = 'granted' AND expires_at IS NOT NULL"),
        ),
    )
    subject_id: str = Field(primary_key=True, foreign_key="subjects.subject_id")
    purpose: str = Field(primary_key=True)
    status: str
    source: str
    sequence: int = Field(sa_type=BigInteger)
    policy_version: str | None = None
    actor_type: str
    actor_id: str | None = None
    updated_at: datetime = _ts(nullable=False)
    expires_at: datetime | None = _ts(nullable=True)
    ended_reason: str | None = None  # "expired" / "lapsed" when a grant ended by itself


class LedgerEntry(SQLModel, table=True):
    """One immutable row per subject sequence number, hash-chained per subject."""

    __tablename__ = "consent_ledger"
    __table_args__ = (Index("ix_ledger_recorded_at", "recorded_at"),)
    subject_id: str = Field(primary_key=True)
    sequence: int = Field(primary_key=True, sa_type=BigInteger)
    type: str
    changes: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSONB))
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB))
    policy_version: str | None = None
    jurisdiction: str | None = None
    channel: str
    actor_type: str
    actor_id: str | None = None
    occurred_at: datetime = _ts(nullable=False)
    recorded_at: datetime = _ts(nullable=False, server_default=text("now()"))
    evidence_hash: str
    prev_hash: str
    hash: str


class LedgerEvidence(SQLModel, table=True):
    """Evidence kept apart from the chain: the chain commits only to its hash."""

    __tablename__ = "consent_evidence"
    subject_id: str = Field(primary_key=True)
    sequence: int = Field(primary_key=True, sa_type=BigInteger)
    evidence: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB))
    recorded_at: datetime = _ts(nullable=False, server_default=text("now()"))


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unpublished", "position", postgresql_where=text("published_at IS NULL")),
    )
    id: uuid.UUID = Field(primary_key=True)
    position: int = Field(sa_column=Column(BigInteger, Identity(always=True), unique=True))
    aggregatetype: str
    aggregateid: str
    type: str
    payload: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    sequence: int | None = Field(default=None, sa_type=BigInteger)
    occurred_at: datetime = _ts(nullable=False)
    created_at: datetime = _ts(nullable=False, server_default=text("now()"))
    published_at: datetime | None = _ts(nullable=True)
    parked_at: datetime | None = _ts(nullable=True)  # the relay cannot publish it
    targets: str | None = None  # a replay's processors (aggregatetype "replay")
    last_error: str | None = None


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_keys"
    principal: str = Field(primary_key=True)
    key: str = Field(primary_key=True, max_length=255)
    request_hash: str
    status_code: int
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    headers: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSONB))
    created_at: datetime = _ts(nullable=False, server_default=text("now()"))


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"
    id: str = Field(primary_key=True)
    key_hash: str = Field(unique=True)
    name: str | None = None
    scopes: list[str] = Field(sa_column=Column(ARRAY(String), nullable=False))
    created_at: datetime = _ts(nullable=False, server_default=text("now()"))
    revoked_at: datetime | None = _ts(nullable=True)


class PolicyVersion(SQLModel, table=True):
    __tablename__ = "policy_versions"
    version: str = Field(primary_key=True, max_length=64)
    effective_at: datetime = _ts(nullable=False)
    material: bool = False
    affected_purposes: list[str] = Field(sa_column=Column(ARRAY(String), nullable=False))
    description: str | None = None
    published_at: datetime = _ts(nullable=False, server_default=text("now()"))
    reconsent_done_at: datetime | None = _ts(nullable=True)  # every affected subject told


class GuardianLink(SQLModel, table=True):
    """A verified guardian of a minor. Revocation ends the authority, never deletes the row."""

    __tablename__ = "guardian_links"
    __table_args__ = (
        Index(
            "ix_guardian_active",
            "subject_id",
            "guardian_id",
            unique=True,
            postgresql_where=text("revoked_at IS NULL"),
        ),
        Index("ix_guardian_by_guardian", "guardian_id"),
    )
    id: uuid.UUID = Field(primary_key=True)
    subject_id: str = Field(foreign_key="subjects.subject_id")
    guardian_id: str
    method: str
    reference: str
    verified_at: datetime = _ts(nullable=False)
    linked_at: datetime = _ts(nullable=False)
    revoked_at: datetime | None = _ts(nullable=True)


class ErasureRequest(SQLModel, table=True):
    __tablename__ = "erasure_requests"
    request_id: uuid.UUID = Field(primary_key=True)
    subject_id: str = Field(index=True)
    reason: str
    requested_at: datetime = _ts(nullable=False)
    due_at: datetime = _ts(nullable=False)
    sequence: int = Field(sa_type=BigInteger)
    event_id: str


class AuditEntry(SQLModel, table=True):
    """Every operator action: who, what, when, scope and counts. Append-only."""

    __tablename__ = "audit_log"
    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    at: datetime = _ts(nullable=False, server_default=text("now()"))
    actor: str
    action: str
    scope: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB))
    counts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB))
    reference: str | None = None  # e.g. the replay job id or delivery id


class ReplayJob(SQLModel, table=True):
    """A replay from the ledger; its cursor makes it resumable, its scope key exclusive."""

    __tablename__ = "replay_jobs"
    __table_args__ = (
        Index(
            "ux_replay_one_per_scope",
            "scope_key",
            unique=True,
            postgresql_where=text("status IN ('pending', 'running')"),
        ),
    )
    id: uuid.UUID = Field(primary_key=True)
    scope_key: str
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB))
    status: str = "pending"  # pending, running, interrupted, completed, failed
    dry_run: bool = False
    total: int = 0
    done: int = 0
    emitted: int = 0
    cursor: str = ""
    created_by: str
    created_at: datetime = _ts(nullable=False, server_default=text("now()"))
    heartbeat_at: datetime | None = _ts(nullable=True)
    finished_at: datetime | None = _ts(nullable=True)
    error: str | None = None


class SubjectAlias(SQLModel, table=True):
    """An anonymous (device) subject merged into a person. Undo ends the link; the row stays.
    ``replaced`` holds the person's records the merge replaced, for undo."""

    __tablename__ = "subject_aliases"
    __table_args__ = (
        Index(
            "ux_alias_active",
            "alias_id",
            unique=True,
            postgresql_where=text("unlinked_at IS NULL"),
        ),
        Index("ix_alias_person", "subject_id"),
    )
    id: uuid.UUID = Field(primary_key=True)
    alias_id: str = Field(max_length=128)
    subject_id: str = Field(max_length=128)
    linked_at: datetime = _ts(nullable=False)
    person_sequence: int = Field(sa_type=BigInteger)  # the person's merge entry
    alias_sequence: int = Field(sa_type=BigInteger)  # the alias's merge entry
    replaced: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB))
    unlinked_at: datetime | None = _ts(nullable=True)
