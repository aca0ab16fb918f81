"""Delivery intents: what intake decides an event needs (one delivery per processor), before
it becomes a ``deliveries`` row. Shaped by ``intake.plan`` only, written by
``repositories/inbox.py``'s ``record_intake`` only."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class DeliveryIntent:
    """One delivery an event needs: this processor, this body. Shaped by intake's ``plan``
    only, written by ``record_intake`` only (a ``deliveries`` row, pending or superseded)."""

    event_id: str
    event_type: str
    subject_id: str
    sequence: int
    processor: str
    max_attempts: int
    payload: dict[str, Any]
    occurred_at: datetime | None
    replay: bool = False
    traceparent: str | None = None  # W3C trace context: each webhook attempt continues it
    id: uuid.UUID = field(default_factory=uuid.uuid4)


def superseded_in_batch(deliveries: Sequence[DeliveryIntent]) -> set[int]:
    """Indexes of live deliveries a newer one in the same batch makes pointless. An erasure
    supersedes older ones like any newer event, but is never superseded itself."""
    newest: dict[tuple[str, str], int] = {}
    for d in deliveries:
        if not d.replay:
            key = (d.processor, d.subject_id)
            newest[key] = max(newest.get(key, d.sequence), d.sequence)
    return {
        i
        for i, d in enumerate(deliveries)
        if not d.replay
        and d.event_type != "subject.erasure_requested"
        and d.sequence < newest[(d.processor, d.subject_id)]
    }
