"""The propagator's unit of work: the one place a database transaction is opened.

**Who opens it**: each entry point, once: an API request (``api.py``), one intake batch
and one parked-records round (``intake.py``), one claim and one recorded batch of outcomes
(``worker.py``), one outbox batch (``publisher.py``), one retention lock or purge batch
(``retention.py``), one backlog sample (``backlog.py``), one ``consentctl`` command. It
commits when its block ends without an error and rolls back otherwise. Repositories
(``repositories/``, the only modules with SQL) and the rules they serve (``health.py``)
never open, commit or roll back a transaction: ``.transaction(`` appears in this module
only (tests/test_propagator_transactions.py).

``atomic=False`` opens no transaction: each statement commits on its own. It is for reads
and for units that are a single statement (atomic alone), where BEGIN/COMMIT would only
add round trips on the hot path (a claim, an all-delivered batch)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeAlias

import asyncpg

from propagator.repositories.backlog import BacklogRepository
from propagator.repositories.clock import DatabaseClock
from propagator.repositories.deliveries import DeliveryRepository
from propagator.repositories.health import ProcessorHealthRepository
from propagator.repositories.inbox import InboxRepository
from propagator.repositories.outbox import OutboxRepository
from propagator.repositories.parked import ParkedRepository
from propagator.repositories.retention import RetentionRepository


class UnitOfWork:
    """The one way to the propagator's tables: a repository of this unit of work, all on
    its one connection (and its one transaction, if atomic)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.inbox = InboxRepository(conn)
        self.deliveries = DeliveryRepository(conn)
        self.parked = ParkedRepository(conn)
        self.health = ProcessorHealthRepository(conn)
        self.outbox = OutboxRepository(conn)
        self.retention = RetentionRepository(conn)
        self.backlog = BacklogRepository(conn)
        self.clock = DatabaseClock(conn)


Database: TypeAlias = asyncpg.Pool | asyncpg.Connection  # a pool, or one connection (consentctl)


@asynccontextmanager
async def unit_of_work(db: Database, *, atomic: bool = True) -> AsyncIterator[UnitOfWork]:
    """A unit of work on a connection of ``db``: one transaction, committed when the block
    ends without an error, rolled back otherwise (``atomic=False``: no transaction)."""
    async with _connection(db) as conn:
        if not atomic:
            yield UnitOfWork(conn)
            return
        async with conn.transaction():
            yield UnitOfWork(conn)


@asynccontextmanager
async def _connection(db: Database) -> AsyncIterator[asyncpg.Connection]:
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db
