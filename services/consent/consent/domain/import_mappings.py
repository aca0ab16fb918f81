"""Export shapes of other consent tools, turned into our import rows (domain/imports.py).

Written from the vendors' public documentation; an operator names each of their purpose
ids with one of ours (``purpose_map``), since no two tools share a catalog. A record that
carries no choice for a purpose (pending, never asked) yields no row; a shape we cannot
read yields an error row with the reason, never a guess.

- ``onetrust``: OneTrust data subject profiles as exported from Universal Consent &
  Preference Management (one JSON object per line): ``Identifier``, and ``Purposes``, each
  with ``Id`` (or ``Name``), ``Status`` (``ACTIVE``/``CONFIRMED`` = granted;
  ``WITHDRAWN``/``OPT_OUT``/``NOT_GIVEN`` = denied; ``NO_CONSENT``, ``PENDING``,
  ``EXPIRED``: no choice to import) and ``ConsentDate`` / ``LastTransactionDate``.
- ``didomi``: Didomi consent users (Consents API v2, ``GET /consents/users``, one per
  line): ``organization_user_id`` (else ``id``), ``consents.purposes[]`` with ``id`` and
  ``enabled`` (true/false; null = no choice), the user's ``updated_at``.
- ``unsubscribe``: a CRM's unsubscribe list (CSV or JSON Lines): ``subject_id``,
  ``unsubscribed_at``, optional ``purpose`` (default ``marketing_email``): each row is a
  denial at that time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Rows = list[dict[str, Any]]
Mapper = Callable[[Mapping[str, Any], Mapping[str, str]], Rows]

ONETRUST_GRANTED = {"ACTIVE", "CONFIRMED"}
ONETRUST_DENIED = {"WITHDRAWN", "OPT_OUT", "NOT_GIVEN"}
ONETRUST_NO_CHOICE = {"NO_CONSENT", "PENDING", "EXPIRED"}


class MappingError(ValueError):
    """A source record we cannot read (reported for its line, nothing imported from it)."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column, self.reason = column, reason


def _ours(purpose_map: Mapping[str, str], theirs: Any, column: str) -> str:
    if not isinstance(theirs, str) or theirs not in purpose_map:
        raise MappingError(column, f"purpose {theirs!r} is not in the purpose map")
    return purpose_map[theirs]


def onetrust(record: Mapping[str, Any], purpose_map: Mapping[str, str]) -> Rows:
    subject = record.get("Identifier")
    purposes = record.get("Purposes")
    if not isinstance(subject, str):
        raise MappingError("Identifier", "required")
    if not isinstance(purposes, list):
        raise MappingError("Purposes", "a list of purposes")
    rows: Rows = []
    for i, p in enumerate(purposes):
        if not isinstance(p, dict):
            raise MappingError(f"Purposes[{i}]", "an object")
        status = str(p.get("Status", "")).upper()
        if status in ONETRUST_NO_CHOICE:
            continue
        if status not in ONETRUST_GRANTED | ONETRUST_DENIED:
            raise MappingError(f"Purposes[{i}].Status", f"unknown status {status!r}")
        theirs = p.get("Id") if p.get("Id") in purpose_map else p.get("Name")
        at = p.get("LastTransactionDate") or p.get("ConsentDate")
        if not isinstance(at, str):
            raise MappingError(f"Purposes[{i}].ConsentDate", "required")
        rows.append(
            {
                "subject_id": subject,
                "purpose": _ours(purpose_map, theirs, f"Purposes[{i}].Id"),
                "status": "granted" if status in ONETRUST_GRANTED else "denied",
                "occurred_at": at,
                "evidence_ref": f"onetrust:{p.get('Id') or p.get('Name')}",
            }
        )
    return rows


def didomi(record: Mapping[str, Any], purpose_map: Mapping[str, str]) -> Rows:
    subject = record.get("organization_user_id") or record.get("id")
    if not isinstance(subject, str):
        raise MappingError("organization_user_id", "required")
    at = record.get("updated_at") or record.get("created_at")
    if not isinstance(at, str):
        raise MappingError("updated_at", "required")
    purposes = (record.get("consents") or {}).get("purposes")
    if not isinstance(purposes, list):
        raise MappingError("consents.purposes", "a list of purposes")
    rows: Rows = []
    for i, p in enumerate(purposes):
        if not isinstance(p, dict):
            raise MappingError(f"consents.purposes[{i}]", "an object")
        if p.get("enabled") is None:
            continue
        if not isinstance(p["enabled"], bool):
            raise MappingError(f"consents.purposes[{i}].enabled", "true, false or null")
        rows.append(
            {
                "subject_id": subject,
                "purpose": _ours(purpose_map, p.get("id"), f"consents.purposes[{i}].id"),
                "status": "granted" if p["enabled"] else "denied",
                "occurred_at": at,
                "evidence_ref": f"didomi:{record.get('id') or subject}",
            }
        )
    return rows


def unsubscribe(record: Mapping[str, Any], purpose_map: Mapping[str, str]) -> Rows:
    subject, at = record.get("subject_id"), record.get("unsubscribed_at")
    if not isinstance(subject, str):
        raise MappingError("subject_id", "required")
    if not isinstance(at, str):
        raise MappingError("unsubscribed_at", "required")
    purpose = record.get("purpose") or "marketing_email"
    return [
        {
            "subject_id": subject,
            "purpose": purpose_map.get(purpose, purpose),
            "status": "denied",
            "occurred_at": at,
        }
    ]


MAPPERS: dict[str, Mapper] = {"onetrust": onetrust, "didomi": didomi, "unsubscribe": unsubscribe}
