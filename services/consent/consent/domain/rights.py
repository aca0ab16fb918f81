"""Rights requests: the erasure request and its due date."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

ERASURE_BUSINESS_DAYS = 15  # product policy; stricter than the CCPA's 45 calendar days


def add_business_days(start: datetime, days: int) -> datetime:
    """``start`` plus ``days`` working days (Monday to Friday)."""
    current, left = start, days
    while left > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            left -= 1
    return current


@dataclass(frozen=True)
class ErasureRequest:
    """An erasure, as recorded: the ledger entry and event that announced it, and when
    it is due."""

    request_id: uuid.UUID
    subject_id: str
    reason: str
    requested_at: datetime
    due_at: datetime
    sequence: int
    event_id: str
