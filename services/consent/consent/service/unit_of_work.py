"""Unit of work: owns the transaction and turns collected domain events into outbox rows."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from consent.adapters.aliases import AliasRepository
from consent.adapters.due import DueRepository
from consent.adapters.repositories import (
    ErasureRepository,
    GuardianRepository,
    LedgerRepository,
    OutboxRepository,
    PolicyRepository,
    StateRepository,
    SubjectRepository,
)
from consent.domain.events import DomainEvent


class UnitOfWork:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.subjects = SubjectRepository(session)
        self.ledger = LedgerRepository(session)
        self.state = StateRepository(session)
        self.outbox = OutboxRepository(session)
        self.policies = PolicyRepository(session)
        self.guardians = GuardianRepository(session)
        self.erasures = ErasureRepository(session)
        self.due = DueRepository(session)
        self.aliases = AliasRepository(session)
        self.events: list[DomainEvent] = []
        self.committed = False
        # subject → the highest sequence this unit of work committed (the Consent-Token)
        self.committed_sequences: dict[str, int] = {}

    def emit(self, event: DomainEvent) -> None:
        self.events.append(event)

    async def flush_events(self) -> None:
        """Write collected events to the outbox inside the current transaction."""
        events, self.events = self.events, []
        await self.outbox.add(events)

    async def commit(self) -> None:
        written: dict[str, int] = {}
        for e in self.events:
            if e.sequence is not None and e.aggregatetype == "subject":
                written[e.subject_id] = max(e.sequence, written.get(e.subject_id, 0))
        await self.flush_events()
        await self.session.commit()
        self.committed = True
        for sid, seq in written.items():
            self.committed_sequences[sid] = max(seq, self.committed_sequences.get(sid, 0))

    async def rollback(self) -> None:
        self.events.clear()
        await self.session.rollback()
