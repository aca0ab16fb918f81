"""What a ledger entry says, and the records it sets.

A service decides a change as a ``PendingEntry``; the recorder (service/recorder.py) numbers
and chains it, and projects it with ``records_of`` — the same function ``ledger verify``
replays the ledger with (``project``). A record is built from an entry here and nowhere
else, so the projection and its proof cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from consent.domain.model import Actor, Change, PurposeRecord, Status

ENDED_BY_TYPE = {"consent.expired": "expired", "consent.lapsed": "lapsed"}
# entries that restate statuses without changing the records (re-consent announcements:
# the grant keeps its time, which is what makes it need re-consent)
RESTATES = frozenset({"consent.reconsent_required"})


def grant_expiry(status: Status | str, granted_at: datetime, days: int | None) -> datetime | None:
    """When a grant stops counting: its purpose's validity after it was given (none for
    other statuses, or a purpose without a validity)."""
    return granted_at + timedelta(days=days) if days and status == "granted" else None


@dataclass(frozen=True)
class PendingEntry:
    """One change to a subject as a service decides it, before it has a sequence or a hash.

    Every change is recorded with the entry's own provenance (the write's time, channel,
    actor and policy version) unless ``carried`` holds a record for its purpose that keeps
    its own (a merge's, an import row's). ``validity_days`` gives grants an expiry.
    ``profile`` sets subject columns and may hold personal data: it never reaches the
    ledger or the event (``detail`` says only what changed). The event is the
    consent-shaped one plus ``event_extra``, or ``event_body`` for an event of its own
    shape (an erasure request)."""

    type: str
    changes: tuple[Change, ...] = ()
    detail: Mapping[str, Any] = field(default_factory=dict)
    validity_days: Mapping[str, int | None] = field(default_factory=dict)
    carried: tuple[PurposeRecord, ...] = ()
    profile: Mapping[str, Any] = field(default_factory=dict)
    event_extra: Mapping[str, Any] = field(default_factory=dict)
    event_body: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        changed = {c.purpose for c in self.changes}
        if any(r.purpose not in changed for r in self.carried):
            raise ValueError("a carried record must be for one of the entry's changes")

    def entry_detail(self, at: datetime) -> dict[str, Any]:
        """The detail as chained: the service's, plus each grant's expiry and the carried
        records' own provenance (what ``records_of`` needs to rebuild them)."""
        detail = dict(self.detail)
        carried = {r.purpose: r for r in self.carried}
        expiries = {}
        for c in self.changes:
            own = carried.get(c.purpose)
            expires = (
                own.expires_at
                if own is not None
                else grant_expiry(c.to_status, at, self.validity_days.get(c.purpose))
            )
            if expires is not None:
                expiries[c.purpose] = expires.isoformat()
        if expiries:
            detail["expires_at"] = expiries
        if carried:
            detail["records"] = {p: record_to_dict(r) for p, r in sorted(carried.items())}
        return detail


def records_of(entry: Mapping[str, Any]) -> dict[str, PurposeRecord]:
    """The records one ledger entry (its chained fields) sets, by purpose."""
    if entry["type"] in RESTATES:
        return {}
    detail = entry.get("detail") or {}
    expiries = detail.get("expires_at") or {}
    kept = detail.get("records") or {}
    sequence = int(entry["sequence"])
    occurred = _dt(entry["occurred_at"])
    assert occurred is not None
    out = {}
    for change in entry.get("changes") or []:
        purpose = change["purpose"]
        if purpose in kept:
            out[purpose] = record_from_dict(kept[purpose], sequence)
            continue
        out[purpose] = PurposeRecord(
            purpose=purpose,
            status=change["to"],
            source=entry["channel"],
            updated_at=occurred,
            sequence=sequence,
            policy_version=entry.get("policy_version"),
            expires_at=_dt(expiries.get(purpose)),
            actor=Actor(entry["actor_type"], entry.get("actor_id")),
            ended_reason=ENDED_BY_TYPE.get(entry["type"]),
        )
    return out


def project(entries: Iterable[Mapping[str, Any]]) -> dict[str, PurposeRecord]:
    """Replay ledger entries (oldest first) into the current record per purpose."""
    records: dict[str, PurposeRecord] = {}
    for e in entries:
        records.update(records_of(e))
    return records


def record_to_dict(r: PurposeRecord) -> dict[str, Any]:
    """A record's provenance as JSON (carried records in an entry's detail, alias links)."""
    out = {
        "purpose": r.purpose,
        "status": r.status,
        "source": r.source,
        "updated_at": r.updated_at.isoformat(),
        "policy_version": r.policy_version,
        "expires_at": r.expires_at.isoformat() if r.expires_at else None,
        "actor": {"type": r.actor.type, "id": r.actor.id},
    }
    if r.ended_reason is not None:  # an imported grant that had expired before its import
        out["ended_reason"] = r.ended_reason
    return out


def record_from_dict(d: Mapping[str, Any], sequence: int = 0) -> PurposeRecord:
    updated = _dt(d["updated_at"])
    assert updated is not None
    return PurposeRecord(
        purpose=d["purpose"],
        status=d["status"],
        source=d["source"],
        updated_at=updated,
        sequence=sequence,
        policy_version=d.get("policy_version"),
        expires_at=_dt(d.get("expires_at")),
        actor=Actor(d["actor"]["type"], d["actor"].get("id")),
        ended_reason=d.get("ended_reason"),
    )


def _dt(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
