"""Rights requests: due dates."""

from __future__ import annotations

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
