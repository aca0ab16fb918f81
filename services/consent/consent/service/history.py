"""History (cursor-paginated ledger) and the portable export of everything held."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from consent.adapters.repositories import LedgerEntryView
from consent.catalog import catalog_version
from consent.domain.authority import Reader, visible_evidence
from consent.service.preferences import get_preferences
from consent.service.unit_of_work import UnitOfWork
from consent_common.timefmt import rfc3339


class BadCursor(ValueError):
    pass


def encode_cursor(sequence: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{sequence}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        if kind != "seq" or not value.isdigit() or int(value) >= 2**63:
            raise ValueError
        return int(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadCursor("malformed cursor") from exc


OPERATOR = Reader("operator", "")


def entry_dict(entry: LedgerEntryView, reader: Reader = OPERATOR) -> dict[str, Any]:
    """One ledger entry as its reader may see it: evidence filtered by who reads (the
    hashes are untouched, so the chain still verifies)."""
    evidence = visible_evidence(entry.evidence, reader, entry.actor_type, entry.actor_id)
    return {
        "sequence": entry.sequence,
        "type": entry.type,
        "changes": entry.changes,
        "detail": entry.detail,
        "policy_version": entry.policy_version,
        "jurisdiction": entry.jurisdiction,
        "channel": entry.channel,
        "actor": {"type": entry.actor_type, "id": entry.actor_id},
        "occurred_at": rfc3339(entry.occurred_at),
        "recorded_at": rfc3339(entry.recorded_at),
        "evidence": evidence,
        "evidence_hash": entry.evidence_hash,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


async def history_page(
    uow: UnitOfWork, subject_id: str, cursor: str | None, limit: int, reader: Reader = OPERATOR
) -> dict[str, Any]:
    before = decode_cursor(cursor) if cursor else None
    rows = await uow.ledger.history(subject_id, before=before, limit=limit + 1)
    items = [entry_dict(e, reader) for e in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1].sequence) if len(rows) > limit else None
    return {"subject_id": subject_id, "items": items, "next_cursor": next_cursor}


async def export(
    uow: UnitOfWork, subject_id: str, now: datetime, reader: Reader = OPERATOR
) -> dict[str, Any]:
    """Everything held about the subject, as portable JSON (GDPR Art. 15 and 20); other
    people's evidence (a guardian's device, a verification reference) is not included."""
    subject = await uow.subjects.get(subject_id)
    view = await get_preferences(uow, subject_id, now)
    entries = await uow.ledger.history(subject_id, before=None, limit=1_000_000)
    history = [entry_dict(e, reader) for e in reversed(entries)]
    accepted = sorted({e["policy_version"] for e in history if e["policy_version"]})
    policies = {p.version: p for p in await uow.policies.all()}
    return {
        "format": "consent-export/v1",
        "exported_at": rfc3339(now),
        "catalog_version": catalog_version(),
        "subject": {
            "subject_id": subject_id,
            "jurisdiction": subject.jurisdiction if subject else None,
            "birth_date": subject.birth_date.isoformat()
            if subject and subject.birth_date
            else None,
            "created_at": rfc3339(subject.created_at) if subject else None,
            "erased_at": rfc3339(subject.erased_at) if subject else None,
        },
        "preferences": view.as_dict(),
        "policy_versions_accepted": [
            {
                "version": v,
                "effective_at": rfc3339(policies[v].effective_at) if v in policies else None,
                "material": policies[v].material if v in policies else None,
                "affected_purposes": sorted(policies[v].affected_purposes)
                if v in policies
                else None,
            }
            for v in accepted
        ],
        "history": history,
    }
