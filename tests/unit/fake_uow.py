"""An in-memory unit of work: the repositories the services use, over dicts, so service
functions get fast tests without PostgreSQL. It keeps what the real adapters promise
(a snapshot per subject, the ledger head moving with each entry, events held until commit)
and nothing else; the integration tests keep the real thing honest."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from consent.adapters.ledger_append import ChangeRow
from consent.adapters.subject_store import TellState
from consent.domain.events import DomainEvent
from consent.domain.model import Policy, PurposeRecord, SubjectSnapshot


class FakeSubjects:
    def __init__(self) -> None:
        self.rows: dict[str, SubjectSnapshot] = {}

    async def snapshot(self, subject_id: str, *, for_update: bool = False) -> SubjectSnapshot:
        found = self.rows.get(subject_id) or SubjectSnapshot(subject_id=subject_id)
        return replace(found, records=dict(found.records))

    async def snapshots(
        self, subject_ids: Sequence[str], purposes: Sequence[str] | None = None
    ) -> dict[str, SubjectSnapshot]:
        return {s: await self.snapshot(s) for s in subject_ids if s in self.rows}

    async def try_lock(self, subject_id: str) -> bool:
        return subject_id in self.rows

    async def get(self, subject_id: str) -> Any:
        return self.rows.get(subject_id)


@dataclass
class FakeLedger:
    subjects: FakeSubjects
    entries: list[dict[str, Any]] = field(default_factory=list)

    async def append_changes(self, changes: Sequence[ChangeRow]) -> None:
        assert len({c.entry["subject_id"] for c in changes}) == len(changes), "one per subject"
        for c in changes:
            await self._append(c.entry, c.evidence, c.records, c.profile, c.told)

    async def _append(
        self,
        entry: Mapping[str, Any],
        evidence: Mapping[str, Any],
        records: Iterable[PurposeRecord],
        profile: Mapping[str, Any],
        told: TellState,
    ) -> None:
        sid = entry["subject_id"]
        before = await self.subjects.snapshot(sid)
        assert entry["sequence"] == before.sequence + 1, "one sequence number per entry"
        after = replace(
            before,
            sequence=entry["sequence"],
            last_hash=entry["hash"],
            published_decisions=told.decisions,
            recorded_age_status=told.age_status,
            **profile,
        )
        after.records.update({r.purpose: r for r in records})
        self.subjects.rows[sid] = after
        self.entries.append({**entry, "evidence": dict(evidence)})


class FakePolicies:
    def __init__(self) -> None:
        self.rows: dict[str, Policy] = {}

    async def all(self) -> list[Policy]:
        return sorted(self.rows.values(), key=lambda p: p.effective_at)

    async def get(self, version: str) -> Policy | None:
        return self.rows.get(version)

    async def add_policy(self, policy: Policy) -> None:
        self.rows[policy.version] = policy


class FakeGuardians:
    def __init__(self) -> None:
        self.links: dict[str, set[str]] = {}

    async def active_for(self, subject_ids: Sequence[str]) -> dict[str, set[str]]:
        return {s: self.links[s] for s in subject_ids if s in self.links}

    async def is_active_guardian(self, subject_id: str, guardian_id: str) -> bool:
        return guardian_id in self.links.get(subject_id, set())


class FakeAliases:
    async def aliases_of(self, subject_id: str) -> list[Any]:
        return []

    async def active(self, alias_id: str) -> None:
        return None


class FakeDue:
    def __init__(self) -> None:
        self.age: dict[str, tuple[str, datetime | None]] = {}

    async def track_age(self, subject_id: str, status: str, at: datetime | None) -> None:
        self.age[subject_id] = (status, at)

    async def announced(self, subject_id: str, version: str) -> bool:
        return False


class FakeUnitOfWork:
    """Stands in for ``UnitOfWork``: ``outbox`` is what a commit would have written."""

    def __init__(self) -> None:
        self.database = "fake"  # load_policies keys its cache on it
        self.subjects = FakeSubjects()
        self.ledger = FakeLedger(self.subjects)
        self.policies = FakePolicies()
        self.guardians = FakeGuardians()
        self.aliases = FakeAliases()
        self.due = FakeDue()
        self.events: list[DomainEvent] = []
        self.outbox: list[DomainEvent] = []
        self.commits = 0

    def emit(self, event: DomainEvent) -> None:
        self.events.append(event)

    async def flush_events(self) -> None:
        self.outbox.extend(self.events)
        self.events = []

    async def commit(self) -> None:
        await self.flush_events()
        self.commits += 1

    async def rollback(self) -> None:
        self.events.clear()
