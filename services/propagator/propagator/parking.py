"""Parked records: what intake could not use, kept whole (``repositories/parked.py``) so an
operator can retry them (after a fix) or drop them. Headers are stored as JSON, each value
hex-encoded, so a header that is not UTF-8 survives as is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

Headers = Sequence[tuple[str, bytes | None]]


@dataclass(frozen=True)
class ParkedRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    reason: str


def headers_json(headers: Headers) -> str:
    """Headers as JSON, each value hex-encoded: a header that is not UTF-8 survives as is."""
    return orjson.dumps([[k, v.hex() if v is not None else None] for k, v in headers]).decode()


def headers_from_json(raw: Any) -> list[tuple[str, bytes | None]]:
    items = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    return [(k, bytes.fromhex(v) if v is not None else None) for k, v in items]
