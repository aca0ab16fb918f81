"""Bulk import of existing consents: the row format (API.md, "Import rows") and the rules
that turn one subject's rows into one accepted change. Pure: parsing and planning have no
I/O, so every rule has a fast unit test.

The rules:
- A row is applied whole or reported (line, column, reason), never half.
- Per subject and purpose the newest row of the file is the candidate; an older imported
  choice never overrides a newer recorded one (it is skipped, not an error).
- Rows of an erased subject, or of an anonymous id merged into a person, are rejected.
- The rules for minors apply to each row as to any write (a child's grant needs a guardian,
  a child's data is never sold): such a row is rejected with the rule's code.
- An imported grant keeps its original time; its purpose's validity runs from that time, so
  a grant older than its validity is recorded as given and reads as expired (it needs
  re-consent); it never becomes a current grant by being imported.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from consent.domain import jurisdictions, preferences
from consent.domain.entries import grant_expiry
from consent.domain.model import (
    Actor,
    AgeStatus,
    Change,
    DomainError,
    Policy,
    PurposeRecord,
    SubjectSnapshot,
)

REQUIRED = ("subject_id", "purpose", "status", "occurred_at")
OPTIONAL = (
    "jurisdiction",
    "policy_version",
    "notice_id",
    "channel",
    "evidence_ref",
    "idempotency_key",
)
COLUMNS = REQUIRED + OPTIONAL
IMPORT_CHANNELS = ("import", "web", "ios", "android", "api")
MAX_TEXT = 200
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class ImportRow:
    line: int
    subject_id: str
    purpose: str
    status: str  # "granted" | "denied"
    occurred_at: datetime
    idempotency_key: str
    jurisdiction: str | None = None
    policy_version: str | None = None
    notice_id: str | None = None
    channel: str = "import"
    evidence_ref: str | None = None

    def evidence(self) -> dict[str, Any]:
        """What the ledger's evidence keeps of the row (no personal data: ids and refs)."""
        out = {
            "line": self.line,
            "purpose": self.purpose,
            "status": self.status,
            "occurred_at": self.occurred_at.isoformat(),
            "channel": self.channel,
            "idempotency_key": self.idempotency_key,
        }
        for name in ("policy_version", "notice_id", "evidence_ref"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


@dataclass(frozen=True)
class RowError:
    line: int
    column: str | None
    reason: str
    subject_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "reason": self.reason}


def read_rows(data: bytes, fmt: str) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """(line, raw row) for JSON Lines (``jsonl``) or CSV (``csv``, a header line first).
    Blank lines are skipped; a line that is not a JSON object is a ``RowError``."""
    text = data.decode("utf-8-sig", errors="replace")
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            header = list(reader.fieldnames or [])
        except csv.Error as exc:
            yield 1, RowError(1, None, f"not CSV: {exc}")
            return
        twice = sorted({name for name in header if header.count(name) > 1})
        if twice:  # which value would count? none: the file is refused at its header
            yield 1, RowError(1, twice[0], "the header names this column twice")
            return
        while True:
            try:
                raw = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # a NUL, a stray carriage return: that line only
                yield reader.line_num, RowError(reader.line_num, None, f"not CSV: {exc}")
                continue
            line = reader.line_num
            if None in raw:  # more cells than header columns
                yield line, RowError(line, None, "more cells than the header has columns")
                continue
            yield line, {k: v for k, v in raw.items() if v not in (None, "")}
    for line, chunk in enumerate(text.splitlines(), start=1):
        if not chunk.strip():
            continue
        try:
            raw = json.loads(chunk)
        except (ValueError, RecursionError):  # RecursionError: nested thousands deep
            yield line, RowError(line, None, "not valid JSON")
            continue
        if not isinstance(raw, dict):
            yield line, RowError(line, None, "a row must be a JSON object")
            continue
        yield line, raw


def default_key(raw: Mapping[str, Any]) -> str:
    """The idempotency key of a row that brings none: a hash of its canonical form."""
    canonical = json.dumps(
        {k: raw.get(k) for k in COLUMNS if k != "idempotency_key"}, sort_keys=True, default=str
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def validate(
    line: int,
    raw: Mapping[str, Any],
    *,
    purposes: Iterable[str],
    policy_versions: Iterable[str],
    now: datetime,
) -> ImportRow | RowError:
    """One raw row → an ``ImportRow``, or the first thing wrong with it."""
    subject = raw.get("subject_id") if isinstance(raw.get("subject_id"), str) else None

    def bad(column: str | None, reason: str) -> RowError:
        return RowError(line, column, reason, subject)

    unknown = sorted(set(raw) - set(COLUMNS))
    if unknown:
        return bad(unknown[0], "unknown column")
    for name in COLUMNS:
        value = raw.get(name)
        if value is None:
            if name in REQUIRED:
                return bad(name, "required")
            continue
        if not isinstance(value, str) or not value.strip():
            return bad(name, "must be a non-empty string")
        if len(value) > MAX_TEXT:
            return bad(name, f"at most {MAX_TEXT} characters")
    if not _subject_id_ok(raw["subject_id"]):
        return bad("subject_id", "1-128 characters of A-Z a-z 0-9 . _ : @ -")
    if raw["purpose"] not in set(purposes):
        return bad("purpose", "not a purpose of the catalog")
    if raw["status"] not in ("granted", "denied"):
        return bad("status", "granted or denied")
    try:
        occurred = datetime.fromisoformat(raw["occurred_at"].replace("Z", "+00:00"))
    except ValueError:
        return bad("occurred_at", "an RFC 3339 time with a UTC offset")
    if occurred.tzinfo is None:
        return bad("occurred_at", "an RFC 3339 time with a UTC offset")
    if occurred > now + CLOCK_SKEW:
        return bad("occurred_at", "in the future")
    jurisdiction = raw.get("jurisdiction")
    if jurisdiction is not None:
        jurisdiction = jurisdictions.normalize(jurisdiction)
        if jurisdiction is None:
            return bad("jurisdiction", "an ISO 3166 code (US-CA, DE, ...)")
    version = raw.get("policy_version")
    if version is not None and version not in set(policy_versions):
        return bad("policy_version", "not a published policy version")
    channel = raw.get("channel", "import")
    if channel not in IMPORT_CHANNELS:
        return bad("channel", f"one of {', '.join(IMPORT_CHANNELS)}")
    return ImportRow(
        line=line,
        subject_id=raw["subject_id"],
        purpose=raw["purpose"],
        status=raw["status"],
        occurred_at=occurred.astimezone(UTC),
        idempotency_key=raw.get("idempotency_key") or default_key(raw),
        jurisdiction=jurisdiction,
        policy_version=version,
        notice_id=raw.get("notice_id"),
        channel=channel,
        evidence_ref=raw.get("evidence_ref"),
    )


def _subject_id_ok(value: str) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:@-")
    return 1 <= len(value) <= 128 and set(value) <= allowed


@dataclass
class SubjectPlan:
    """What one subject's rows do: one change (``changes`` + ``records``), or nothing."""

    changes: list[Change] = field(default_factory=list)
    records: list[PurposeRecord] = field(default_factory=list)
    applied: list[ImportRow] = field(default_factory=list)
    skipped: list[tuple[ImportRow, str]] = field(default_factory=list)  # not errors
    rejected: list[RowError] = field(default_factory=list)
    jurisdiction: str | None = None  # set on a subject that has none yet


def plan_subject(
    snapshot: SubjectSnapshot,
    rows: list[ImportRow],
    *,
    now: datetime,
    policies: Iterable[Policy],
    age_status: AgeStatus,
    validity_days: Mapping[str, int | None],
    sequence: int,
    actor: Actor,
) -> SubjectPlan:
    plan = SubjectPlan()

    def reject(row: ImportRow, column: str | None, reason: str) -> None:
        plan.rejected.append(RowError(row.line, column, reason, row.subject_id))

    if snapshot.erased_at is not None or snapshot.merged_into is not None:
        why = "subject_erased" if snapshot.erased_at else "subject_merged: import for the person"
        for row in rows:
            reject(row, "subject_id", why)
        return plan
    jurisdiction = snapshot.jurisdiction
    newest: dict[str, ImportRow] = {}
    for row in sorted(rows, key=lambda r: (r.occurred_at, r.line)):
        if row.jurisdiction and jurisdiction and row.jurisdiction != jurisdiction:
            reject(row, "jurisdiction", f"the subject's jurisdiction is {jurisdiction}")
            continue
        if row.jurisdiction and not jurisdiction:
            jurisdiction = plan.jurisdiction = row.jurisdiction
        if row.purpose in newest:
            plan.skipped.append((newest[row.purpose], "a newer row of the file wins"))
        newest[row.purpose] = row
    policies = tuple(policies)
    for purpose, row in sorted(newest.items()):
        recorded = snapshot.records.get(purpose)
        if recorded is not None and recorded.updated_at >= row.occurred_at:
            plan.skipped.append((row, "older than the choice already recorded"))
            continue
        try:
            changes = preferences.plan_changes(
                snapshot, {purpose: row.status}, now=now, policies=policies,  # type: ignore[dict-item]
                age_status=age_status,
            )  # fmt: skip
        except DomainError as exc:
            reject(row, "status", exc.code)
            continue
        if not changes:
            plan.skipped.append((row, "the same as the choice already recorded"))
            continue
        plan.changes += changes
        plan.records.append(_record(row, sequence, validity_days.get(purpose), now, actor))
        plan.applied.append(row)
    return plan


def _record(
    row: ImportRow, sequence: int, days: int | None, now: datetime, actor: Actor
) -> PurposeRecord:
    record = PurposeRecord(
        purpose=row.purpose,
        status=row.status,  # type: ignore[arg-type]
        source=row.channel,
        updated_at=row.occurred_at,
        sequence=sequence,
        policy_version=row.policy_version,
        expires_at=grant_expiry(row.status, row.occurred_at, days),
        actor=actor,
    )
    if record.expires_at is not None and record.expires_at <= now:
        record = replace(record, ended_reason="expired")  # given then, expired since
    return record
