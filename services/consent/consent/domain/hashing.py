"""The per-subject SHA-256 hash chain of the ledger.

Each entry's hash covers a canonical JSON of the chained fields, the previous hash and
the hash of its evidence; evidence itself lives apart and may be deleted after its
retention period without breaking verification.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64


def canonical(value: Any) -> bytes:
    def default(o: Any) -> str:
        if isinstance(o, datetime):
            return o.astimezone(UTC).isoformat()
        raise TypeError(f"not serialisable: {type(o).__name__}")

    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=default).encode()


def evidence_hash(evidence: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(dict(evidence))).hexdigest()


def entry_hash(fields: Mapping[str, Any], prev_hash: str, evidence_digest: str) -> str:
    body = {"entry": dict(fields), "prev_hash": prev_hash, "evidence_hash": evidence_digest}
    return hashlib.sha256(canonical(body)).hexdigest()
