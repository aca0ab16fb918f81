"""Unit of work: one transaction, and the domain events collected in it turned into outbox
rows when it commits.

**Who commits**: whoever opened the unit of work, when its block ends without an error:
``unit_of_work()`` below, which the API's request dependency (api/deps.py), the GPC signal
(api/gpc.py), the scheduler's jobs and the operator commands all use. Services and routes
never commit; an error anywhere rolls everything back. tests/test_transaction_owner.py
keeps it so (``.commit(`` appears in this module only)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.adapters.aliases import AliasRepository
from consent.adapters.api_keys import ApiKeyRepository
from consent.adapters.drift import DriftRepository
from consent.adapters.due import DueRepository
from consent.adapters.erasures import ErasureRepository
from consent.adapters.guardians import GuardianRepository
from consent.adapters.idempotency import IdempotencyRepository
from consent.adapters.imports import ImportRepository
from consent.adapters.operations import OperationsRepository
from consent.adapters.parked import ParkedRepository
from consent.adapters.policies import PolicyRepository
from consent.adapters.receipts import ReceiptRepository
from consent.adapters.repositories import (
    LedgerRepository,
    OutboxRepository,
    StateRepository,
    SubjectRepository,
)
from consent.adapters.retention import RetentionRepository
from consent.adapters.transparency import TransparencyRepository
from consent.domain.events import DomainEvent


class UnitOfWork:
    """The one way a service, route or job reaches the consent service's tables: a
    repository of this unit of work (adapters/), all on its one session."""

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
        self.operations = OperationsRepository(session)
        self.parked = ParkedRepository(session)
        self.idempotency = IdempotencyRepository(session)
        self.receipts = ReceiptRepository(session)
        self.retention = RetentionRepository(session)
        self.drift = DriftRepository(session)
        self.imports = ImportRepository(session)
        self.api_keys = ApiKeyRepository(session)
        self.transparency = TransparencyRepository(session)
        self.events: list[DomainEvent] = []
        # subject → the highest sequence this unit of work committed (the Consent-Token)
        self.committed_sequences: dict[str, int] = {}

    @property
    def database(self) -> str:
        """Which database this unit of work is on (a key for per-database caches)."""
        bind = self.session.bind
        return str(bind.engine.url) if bind is not None else ""

    def emit(self, event: DomainEvent) -> None:
        self.events.append(event)

    async def flush_events(self) -> None:
        """Write collected events to the outbox inside the current transaction."""
        events, self.events = self.events, []
        await self.outbox.add(events)

    async def commit(self) -> None:
        """Only ``unit_of_work`` calls this."""
        written: dict[str, int] = {}
        for e in self.events:
            if e.sequence is not None and e.aggregatetype == "subject":
                written[e.subject_id] = max(e.sequence, written.get(e.subject_id, 0))
        await self.flush_events()
        await self.session.commit()
        for sid, seq in written.items():
            self.committed_sequences[sid] = max(seq, self.committed_sequences.get(sid, 0))

    async def rollback(self) -> None:
        self.events.clear()
        await self.session.rollback()


@asynccontextmanager
async def unit_of_work(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[UnitOfWork]:
    """One transaction: committed when the block ends normally, rolled back when it raises.
    The only place anything in the consent service commits."""
    async with sessions() as session:
        uow = UnitOfWork(session)
        try:
            yield uow
        except BaseException:
            await uow.rollback()
            raise
        await uow.commit()
