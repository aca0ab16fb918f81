"""The drift report: where a processor's last acknowledged decisions differ from what the
decision API answers now, on that processor's purposes.

What each processor holds comes from the consent service's own receipts read model
(``processor_acks``, projected from ``consent.receipts.v1``), never from the propagator's
tables; the current answers are ``decisions_for`` (the decision API's rules), so a change of
configuration that moves a decision (an age floor, a purpose's validity) shows up too.

``since``: when the difference began, as far as the platform can tell: when the scheduled
check first saw it; else the subject's first change after what the processor acknowledged;
else now. The scheduled check (``check_drift``, one replica at a time under the scheduler
lease) walks every subject in id order a slice per round and keeps its findings in
``drift_findings``, which ``consent_drift{processor}`` in /metrics counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.adapters.drift import DriftRepository
from consent.domain.drift import Difference, Held, differences
from consent.domain.events import decisions_map
from consent.domain.model import SubjectSnapshot
from consent.service.decisions import decisions_for
from consent.service.processors import KnownProcessor, known_processors
from consent.service.recorder import as_answered, load_policies
from consent.service.unit_of_work import UnitOfWork, unit_of_work

SCAN_BATCH = 500
ROUND_BUDGET_S = 2.0  # one scheduler round spends at most about this long on the check


@dataclass
class Comparison:
    differences: list[Difference] = field(default_factory=list)
    unknown: int = 0  # (subject, processor) pairs whose receipts do not carry decisions
    snapshots: dict[str, SubjectSnapshot] = field(default_factory=dict)


async def compare(
    uow: UnitOfWork,
    subject_ids: Sequence[str],
    processors: Mapping[str, KnownProcessor],
    now: datetime,
    *,
    snapshots: dict[str, SubjectSnapshot] | None = None,
) -> Comparison:
    """The differences of these subjects, each with its ``since``."""
    out = Comparison()
    if not subject_ids or not processors:
        return out
    repo = uow.drift
    if snapshots is None:
        snapshots = await uow.subjects.snapshots(list(subject_ids))
    out.snapshots = snapshots
    policies = await load_policies(uow)
    held = await repo.held(subject_ids)
    unwritten = decisions_map(decisions_for(SubjectSnapshot(subject_id="-"), policies, now))
    purposes = {n: p.purposes for n, p in processors.items()}
    for sid in subject_ids:
        snap = snapshots.get(sid)
        if snap is None:
            continue
        current = decisions_map(decisions_for(await as_answered(uow, snap), policies, now))
        found, unknown = differences(sid, purposes, held.get(sid, {}), current, unwritten)
        out.differences += found
        out.unknown += len(unknown)
    if out.differences:
        await _fill_since(repo, out.differences, held, now)
    return out


async def _fill_since(
    repo: DriftRepository,
    found: list[Difference],
    held: Mapping[str, Mapping[str, Held]],
    now: datetime,
) -> None:
    acked: dict[tuple[str, str], int] = {}
    for s, p in sorted({(d.subject_id, d.processor) for d in found}):
        h = held.get(s, {}).get(p)
        acked[(s, p)] = h.sequence if h is not None else 0
    first = await repo.first_unacknowledged((s, p, n) for (s, p), n in acked.items())
    seen = await repo.findings(sorted({d.subject_id for d in found}))
    for i, d in enumerate(found):
        before = seen.get((d.subject_id, d.processor, d.purpose))
        if before is not None and (before["delivered"], before["current"]) == (
            d.delivered,
            d.current,
        ):
            since = before["since"]
        else:
            since = first.get((d.subject_id, d.processor), now)
        found[i] = Difference(d.subject_id, d.processor, d.purpose, d.delivered, d.current, since)


@dataclass
class Page:
    items: list[Difference]
    next_cursor: str | None
    scanned: int
    unknown: int


async def report_page(
    uow: UnitOfWork,
    processors: Mapping[str, KnownProcessor],
    now: datetime,
    *,
    cursor: str = "",
    subject_id: str | None = None,
    scan: int = SCAN_BATCH,
) -> Page:
    """One page of the report: the differences among the next ``scan`` subjects after
    ``cursor`` (a page may hold none while ``next_cursor`` is set)."""
    ids = await uow.drift.subjects(cursor, subject_id, scan)
    result = await compare(uow, ids, processors, now)
    return Page(
        items=result.differences,
        next_cursor=ids[-1] if len(ids) == scan else None,
        scanned=len(ids),
        unknown=result.unknown,
    )


async def full_report(
    sessions: async_sessionmaker[AsyncSession],
    processors: Mapping[str, KnownProcessor],
    now: datetime,
    *,
    subject_id: str | None = None,
    scan: int = SCAN_BATCH,
) -> Page:
    """Every difference (tests, small installs; the CLI pages with progress instead)."""
    items: list[Difference] = []
    cursor: str | None = ""
    scanned = unknown = 0
    while cursor is not None:
        async with unit_of_work(sessions) as uow:
            page = await report_page(
                uow, processors, now, cursor=cursor, subject_id=subject_id, scan=scan
            )
        items += page.items
        scanned += page.scanned
        unknown += page.unknown
        cursor = page.next_cursor
    return Page(items, None, scanned, unknown)


def pass_interval() -> timedelta:
    from consent.settings import get_settings

    return timedelta(seconds=get_settings().drift_check_interval_s)


async def check_drift(sessions: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """The scheduled check: the next slice of subjects (a couple of seconds' work), its
    findings replacing the old ones; a new pass starts at most every
    ``CONSENT_DRIFT_CHECK_INTERVAL_S``. Returns the differences found in this round."""
    from consent.settings import get_settings

    processors = known_processors(get_settings().processors_file)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ROUND_BUDGET_S
    found = 0
    async with unit_of_work(sessions) as uow:
        repo = uow.drift
        state = await repo.scan_state()
        if state is None:  # another replica's check holds it
            return 0
        cursor, started, last = state["cursor"], state["pass_started_at"], state["last_pass_at"]
        if not cursor and last is not None and now - last < pass_interval():
            return 0
        started = started or now
        while True:
            ids = await repo.subjects(cursor, None, SCAN_BATCH)
            result = await compare(uow, ids, processors, now)
            upto = ids[-1] if len(ids) == SCAN_BATCH else None
            await repo.replace_findings(cursor, upto, result.differences, now)
            found += len(result.differences)
            if upto is None:
                await repo.save_scan("", None, now, 0)
                break
            cursor = upto
            if loop.time() >= deadline:
                await repo.save_scan(cursor, started, last, 0)
                break
    return found


async def drift_counts(session: AsyncSession) -> dict[str, int]:
    """Differences per processor found by the scheduled check (``consent_drift``): a read
    of /metrics on its own session (like the outbox backlog)."""
    return await DriftRepository(session).counts()
