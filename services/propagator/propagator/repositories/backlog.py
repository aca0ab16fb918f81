"""The work the propagator still owes, read from ``deliveries`` for the backlog gauges
(``backlog.py``): open deliveries per processor and the oldest of them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from propagator.repositories.rows import build

SAMPLE = """
SELECT processor,
       count(*) FILTER (WHERE status = 'pending' AND attempts = 0) AS pending,
       count(*) FILTER (WHERE status = 'pending' AND attempts > 0) AS retrying,
       count(*) FILTER (WHERE status = 'dead') AS dead,
       min(created_at) FILTER (WHERE status = 'pending') AS oldest,
       count(*) FILTER (WHERE event_type = 'subject.erasure_requested'
                        AND status IN ('pending', 'dead')) AS erasures,
       min((payload->>'due_at')::timestamptz) FILTER (
           WHERE event_type = 'subject.erasure_requested' AND status IN ('pending', 'dead')
       ) AS erasure_due
FROM deliveries
WHERE status IN ('pending', 'dead')
GROUP BY processor
"""


@dataclass(frozen=True, slots=True)
class OpenWork:
    """One processor's deliveries not acknowledged yet."""

    processor: str
    pending: int  # never tried
    retrying: int  # failed, will retry
    dead: int  # attempts exhausted, waits for a redrive
    oldest: datetime | None  # the oldest pending one's creation
    erasures: int  # erasure deliveries pending or dead
    erasure_due: datetime | None  # the nearest due date among them


class BacklogRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def open_work(self) -> dict[str, OpenWork]:
        """Per processor with anything open (processors with nothing open are absent)."""
        return {r["processor"]: build(OpenWork, r) for r in await self.conn.fetch(SAMPLE)}
