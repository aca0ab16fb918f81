"""Each API worker's in-process view of decision inputs: subject snapshots, not decisions.

``decide()`` is pure and cheap, and decisions change with time alone (an expiry, a birthday,
a policy taking effect), so they are recomputed at read time from the cached snapshot and
``now``; what is cached is only what a commit can change, and every commit says so
(``adapters/change_feed.py``: a NOTIFY from the write transaction).

Correctness rests on three rules:

- the view is used only while its change feed is live (``live``); losing the feed's
  connection clears it, and a reconnection starts from empty;
- a notification for (subject, n) raises that subject's *floor* to n; a cached snapshot
  older than its floor is gone, and a snapshot read from the database is kept only when it
  is at least its floor and nothing was invalidated without a known sequence (or a floor
  evicted, or the view cleared) while it was being read (``Ticket``);
- a maximum age is the backstop for anything else (each entry's lifetime is drawn between
  half of it and all of it, so a view filled at once is not read again all at once).

Bounded: an LRU of ``size`` snapshots and as many floors.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from consent.domain.model import SubjectSnapshot

HITS = Counter("consent_view_hits_total", "Decision reads answered from the in-process view")
MISSES = Counter("consent_view_misses_total", "Subjects the view did not hold (read from the DB)")
READ_THROUGHS = Counter(
    "consent_view_read_throughs_total",
    "Reads sent to the database by a token the view had not reached, or consistency=full",
)
INVALIDATIONS = Counter(
    "consent_view_invalidations_total", "Cached snapshots dropped by a commit notification"
)
NOTIFICATIONS = Counter("consent_view_notifications_total", "Change notifications received")
LAG = Histogram(
    "consent_view_lag_seconds",
    "Write statement → this worker's view applying its notification",
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0),
)
# With several API workers (consent/api/metrics_exposition.py): the snapshots all the live
# workers hold, and 1 only while every live worker's feed is connected
SIZE = Gauge(
    "consent_view_snapshots", "Snapshots held by this worker's view", multiprocess_mode="livesum"
)
LIVE = Gauge(
    "consent_view_live",
    "1 while this worker's change feed is connected",
    multiprocess_mode="livemin",
)


@dataclass(frozen=True)
class Ticket:
    """Taken before a database read; says whether its result may still enter the view."""

    generation: int


class SubjectView:
    def __init__(self, size: int, max_age_s: float) -> None:
        self.size, self.max_age_s = max(0, size), max_age_s
        # subject → (monotonic expiry, snapshot)
        self._snapshots: OrderedDict[str, tuple[float, SubjectSnapshot]] = OrderedDict()
        self._floors: OrderedDict[str, int] = OrderedDict()
        self.generation = 0  # bumped by anything a floor cannot express
        self.live = False
        self.applied = 0  # notifications applied (tests wait on it)

    # -- reads -------------------------------------------------------------------------------

    def get(self, subject_id: str) -> SubjectSnapshot | None:
        if not self.live:
            return None
        hit = self._snapshots.get(subject_id)
        if hit is None:
            return None
        expires_at, snapshot = hit
        if time.monotonic() > expires_at:
            del self._snapshots[subject_id]
            return None
        self._snapshots.move_to_end(subject_id)
        return snapshot

    def floor(self, subject_id: str) -> int:
        """The highest sequence a notification announced for the subject (-1: none kept)."""
        return self._floors.get(subject_id, -1)

    def ticket(self) -> Ticket:
        return Ticket(self.generation)

    def put(self, ticket: Ticket, snapshot: SubjectSnapshot) -> None:
        """Keep a snapshot read from the database, unless a commit it may not include was
        announced while it was read."""
        if not self.live or self.size == 0 or ticket.generation != self.generation:
            return
        sid = snapshot.subject_id
        if snapshot.sequence < self.floor(sid):
            return
        current = self._snapshots.get(sid)
        if current is not None and current[1].sequence > snapshot.sequence:
            return
        # each its own lifetime in [max_age / 2, max_age]: a view filled at once (a restart,
        # a burst) is not read again all at once
        life = self.max_age_s * (0.5 + 0.5 * random.random())
        self._snapshots[sid] = (time.monotonic() + life, snapshot)
        self._snapshots.move_to_end(sid)
        while len(self._snapshots) > self.size:
            self._snapshots.popitem(last=False)
        SIZE.set(len(self._snapshots))

    # -- the change feed ---------------------------------------------------------------------

    def changed(self, subject_id: str, sequence: int, written_us: int | None = None) -> None:
        """A commit touched the subject; ``sequence`` -1 when the notification cannot say
        which (then nothing being read right now may enter the view)."""
        NOTIFICATIONS.inc()
        self.applied += 1
        if written_us:
            LAG.observe(max(0.0, time.time() - written_us / 1e6))
        if sequence < 0:
            self.generation += 1
            if self._snapshots.pop(subject_id, None) is not None:
                INVALIDATIONS.inc()
            return
        self.reached(subject_id, sequence)

    def reached(self, subject_id: str, sequence: int) -> None:
        """The subject's sequence is at least ``sequence``: raise its floor and drop an older
        snapshot. From a notification, or at once from this worker's own commit (so a
        client's read after its write on this worker never sees the state before it)."""
        if sequence > self.floor(subject_id):
            self._floors[subject_id] = sequence
        self._floors.move_to_end(subject_id)
        while len(self._floors) > max(self.size, 1):
            self._floors.popitem(last=False)
            self.generation += 1  # a read in flight may have needed that floor
        current = self._snapshots.get(subject_id)
        if current is not None and current[1].sequence < sequence:
            del self._snapshots[subject_id]
            INVALIDATIONS.inc()

    def clear(self, live: bool) -> None:
        """The feed (re)connected or was lost: nothing held before can be trusted."""
        self._snapshots.clear()
        self._floors.clear()
        self.generation += 1
        self.live = live
        LIVE.set(1 if live else 0)
        SIZE.set(0)

    def __len__(self) -> int:
        return len(self._snapshots)
