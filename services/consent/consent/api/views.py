"""Response bodies of the operator, rights and record routes (API.md). Declared so that the
OpenAPI document tells a generated client what each answer holds; a field added by a route
but not yet here still reaches the caller (``extra="allow"``), and a test keeps every JSON
answer declared (tests/test_contracts.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from consent.api.schemas import HistoryEntry, PreferencesOut


class View(BaseModel):
    model_config = ConfigDict(extra="allow")


class GpcWellKnown(View):
    gpc: bool
    lastUpdate: str


class Health(View):
    status: Literal["ok"]


class ReadinessChecks(View):
    database: bool
    broker: bool


class Readiness(View):
    status: Literal["ready", "not_ready"]
    checks: ReadinessChecks


class ReplayJobOut(View):
    job_id: str
    status: str
    dry_run: bool
    scope: str
    params: dict[str, Any]
    total: int
    done: int
    emitted: int
    progress: float
    created_by: str
    created_at: str | None
    finished_at: str | None
    error: str | None


class DriftItem(View):
    subject_id: str
    processor: str
    purpose: str
    delivered: bool = Field(description="What the processor last acknowledged")
    current: bool = Field(description="What the decision API answers now")
    since: str = Field(description="When the difference began, as far as the platform knows")
    age_seconds: float


class DriftPage(View):
    items: list[DriftItem]
    next_cursor: str | None = Field(description="Follow until null; a page may list none")
    scanned: int = Field(description="Subjects examined for this page")
    unknown: int = Field(description="Processors whose receipts do not tell what they hold")


class DeliveryPage(View):
    items: list[dict[str, Any]] = Field(description="Deliveries, as the propagator reports them")
    next_cursor: str | None


class Audited(View):
    id: str | int
    status: str
    audit_id: int


class AuditEntry(View):
    id: int
    at: str | None
    actor: str
    action: str
    scope: dict[str, Any]
    counts: dict[str, Any]
    reference: str | None


class AuditPage(View):
    items: list[AuditEntry]
    next_before: int | None


class ParkedPage(View):
    items: list[dict[str, Any]] = Field(description="Parked records, as the propagator reports")
    next_cursor: int | None


class AliasLink(View):
    subject_id: str
    anonymous_id: str
    linked_at: str | None
    sequence: int
    anonymous_sequence: int
    unlinked_at: str | None


class AliasList(View):
    items: list[AliasLink]


class GuardianLink(View):
    guardian_id: str
    verification_method: str
    verified_at: str | None
    linked_at: str | None
    revoked_at: str | None


class GuardianList(View):
    items: list[GuardianLink]


class ErasureReceipt(View):
    processor: str
    status: str
    attempts: int
    last_error: str | None
    response_code: int | None
    acknowledged_at: str | None


class ErasureStatus(View):
    request_id: str
    subject_id: str
    reason: str
    requested_at: str | None
    due_at: str | None
    status: Literal["in_progress", "completed", "action_required"]
    receipts: list[ErasureReceipt]


class ProcessorPropagation(View):
    processor: str
    last_delivered_sequence: int | None
    delivered_at: str | None
    latest_sequence: int | None
    latest_event_type: str | None
    status: str | None
    attempts: int | None
    last_error: str | None


class Propagation(View):
    subject_id: str
    processors: list[ProcessorPropagation]


class ExportSubject(View):
    subject_id: str
    jurisdiction: str | None
    birth_date: str | None
    created_at: str | None
    erased_at: str | None


class AcceptedPolicy(View):
    version: str
    effective_at: str | None
    material: bool | None
    affected_purposes: list[str] | None


class Export(View):
    format: Literal["consent-export/v1"]
    exported_at: str
    catalog_version: str
    subject: ExportSubject
    preferences: PreferencesOut
    policy_versions_accepted: list[AcceptedPolicy]
    history: list[HistoryEntry]


class ImportJobOut(View):
    job_id: str
    status: str
    format: str
    mapping: str | None
    counts: dict[str, Any]
    rejected: list[dict[str, Any]] = Field(description="Rejected rows (the first 1,000)")
    created_by: str
    created_at: str | None
    finished_at: str | None
    error: str | None
