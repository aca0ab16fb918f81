"""Consent receipts for the person: one signed document per accepted change.

Claims follow ISO/IEC TS 27560 and the Kantara Consent Receipt (v1.1) in shape: who the
PII principal and the controller are, each purpose with its status and legal basis, the
policy version and the notice shown, the channel, the time, and how to withdraw; plus the
ledger's own anchors (sequence, entry hash, leaf hash) so the receipt can be matched to an
inclusion proof. Signed as a compact JWS (EdDSA, ``kid`` in the header) with the key that
signs checkpoints."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from consent.catalog import load_catalog
from consent.domain.jurisdictions import regime
from consent.domain.ledger import ChainedEntry
from consent.transparency.keys import SigningKey, b64url
from consent_common.timefmt import rfc3339

RECEIPT_NAMESPACE = uuid.UUID("0c3d7a52-1b7e-4f0a-9f61-8d2b6c4e5a17")
SPEC = "ISO/IEC TS 27560:2023; Kantara Consent Receipt v1.1 (shape)"


def receipt_claims(
    row: dict[str, Any],
    evidence: dict[str, Any] | None,
    *,
    controller: dict[str, Any],
    withdraw_url: str,
    issued_at: datetime,
) -> dict[str, Any]:
    entry = ChainedEntry.of(row)
    catalog = load_catalog()
    basis = regime(row["jurisdiction"])
    purposes = []
    for change in row["changes"] or []:
        p = catalog.get(change["purpose"])
        expires = ((row["detail"] or {}).get("expires_at") or {}).get(change["purpose"])
        purposes.append(
            {
                "purpose": change["purpose"],
                "title": p.title if p else None,
                "category": p.category if p else None,
                "status": change["to"],
                "previous_status": change["from"],
                "legal_basis": {"regime": basis, "rule": p.basis(basis) if p else None},
                "expires_at": expires,
            }
        )
    return {
        "spec": SPEC,
        "receipt_id": str(uuid.uuid5(RECEIPT_NAMESPACE, f"{row['subject_id']}:{entry.hash()}")),
        "iat": int(issued_at.timestamp()),
        "consent_timestamp": rfc3339(row["occurred_at"]),
        "pii_principal_id": row["subject_id"],
        "pii_controller": controller,
        "jurisdiction": row["jurisdiction"],
        "event_type": row["type"],
        "purposes": purposes,
        "policy_version": row["policy_version"],
        "notice_id": (evidence or {}).get("notice_id"),
        "collection_method": row["channel"],
        "actor": {"type": row["actor_type"], "id": row["actor_id"]},
        "ledger": {
            "sequence": row["sequence"],
            "entry_hash": entry.hash(),
            "leaf_hash": entry.leaf_hash().hex(),
            "prev_hash": row["prev_hash"],
        },
        "withdrawal": {
            "how": "change the purpose to denied, at any time, as easily as it was given",
            "url": withdraw_url,
            "api": f"PATCH /v1/subjects/{row['subject_id']}/preferences",
        },
    }


def sign_receipt(key: SigningKey, claims: dict[str, Any]) -> str:
    header = {"alg": "EdDSA", "kid": key.key_id, "typ": "consent-receipt+jwt"}
    head = b64url(json.dumps(header, separators=(",", ":")).encode())
    body = b64url(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{head}.{body}.{b64url(key.sign(f'{head}.{body}'.encode()))}"
