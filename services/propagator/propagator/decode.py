"""What intake can use from a Kafka record, and why it cannot.

A record is one of three things:
- **usable**: a CloudEvent of a type we know, with the fields deliveries are built from;
- **skipped and counted**: a type we do not know (a newer producer during a rolling deploy),
  or our own warm-up traffic. Unknown *fields* are simply ignored;
- **parked**: it cannot be decoded at all (headers that are not UTF-8, a value that is not a
  JSON object, no ``ce_id``) or lacks a field a known type requires. Parked records are kept
  whole for an operator to retry or drop; they never stop the records behind them.

Strict schema validation belongs to the producer side and the tests, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

WARMUP_TYPE = "dev.warmup"  # sent by `consentctl dev`, on its own topic, before it is ready

# types carrying ``decisions`` (a processor's body is built from them)
DECISION_TYPES = frozenset(
    {
        "consent.changed",
        "consent.expired",
        "consent.lapsed",
        "consent.reconsent_required",
        "subject.updated",
        "subject.age_status_changed",
        "subject.guardian_linked",
        "subject.guardian_revoked",
        "subject.merged",
        "subject.unmerged",
    }
)
ERASURE = "subject.erasure_requested"
KNOWN_TYPES = DECISION_TYPES | {ERASURE, "policy.published"}


@dataclass(frozen=True)
class Usable:
    event_id: str
    event_type: str
    data: dict[str, Any]
    occurred_at: datetime


@dataclass(frozen=True)
class Skip:
    reason: str  # "unknown_type", "warmup", "not_for_processors"


@dataclass(frozen=True)
class Park:
    reason: str


Decoded = Usable | Skip | Park


def headers_of(raw: Any) -> dict[str, str] | Park:
    out: dict[str, str] = {}
    for item in raw or ():
        try:
            key, value = item
            out[str(key)] = value.decode("utf-8") if value is not None else ""
        except (UnicodeDecodeError, ValueError, TypeError, AttributeError):
            return Park("header is not UTF-8 text")
    return out


def decode(headers_raw: Any, value: bytes | None) -> Decoded:
    headers = headers_of(headers_raw)
    if isinstance(headers, Park):
        return headers
    event_type = headers.get("ce_type")
    if event_type == WARMUP_TYPE:
        return Skip("warmup")
    if not event_type:
        return Park("no ce_type header")
    if event_type not in KNOWN_TYPES:
        return Skip("unknown_type")
    event_id = headers.get("ce_id")
    if not event_id:
        return Park("no ce_id header")
    try:
        occurred_at = datetime.fromisoformat(headers.get("ce_time", "").replace("Z", "+00:00"))
    except ValueError:
        return Park("ce_time is not an RFC 3339 time")
    if value is None:
        return Park("no value")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return Park("value is not JSON")
    if not isinstance(data, dict):
        return Park("value is not a JSON object")
    if event_type == "policy.published":
        return Skip("not_for_processors")
    missing = _missing(event_type, data)
    if missing:
        return Park(f"missing or invalid field: {missing}")
    return Usable(event_id, event_type, data, occurred_at)


def _missing(event_type: str, data: dict[str, Any]) -> str | None:
    if not isinstance(data.get("subject_id"), str) or not data["subject_id"]:
        return "subject_id"
    sequence = data.get("sequence")
    if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0:
        return "sequence"
    if event_type == ERASURE:
        return None if isinstance(data.get("request_id"), str) else "request_id"
    decisions = data.get("decisions")
    if not isinstance(decisions, dict) or not all(isinstance(v, bool) for v in decisions.values()):
        return "decisions"
    changed = data.get("changed_decisions")
    if changed is not None and not isinstance(changed, list):
        return "changed_decisions"
    changes = data.get("changes")
    if changes is not None and not isinstance(changes, list):
        return "changes"
    return None
