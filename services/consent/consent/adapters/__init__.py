"""Adapters: everything that does I/O (PostgreSQL, Kafka, HTTP). The only home of SQL and
of the ORM tables (``tables.py``) in the consent service and consentctl
(tests/test_layering.py).

**How the rest of the code reaches the database** (one way per kind of access):

- A request, a scheduled job, a projector batch or an operator command: the repositories of
  a unit of work (``uow.policies``, ``uow.receipts``, …; service/unit_of_work.py), all on its
  one session and transaction. A repository takes and returns domain objects
  (``domain/model.py``: ``Policy``, ``GuardianLink``, ``SubjectSnapshot``; ``domain/rights.py``:
  ``ErasureRequest``) or small frozen view dataclasses defined next to it (``AliasLink``,
  ``ReplayJobView``, ``StoredResponse``, ``LedgerEntryView``, ``Checkpoint``, …); rows are
  mapped inside the adapter and never leave it.
- A long-lived connection that holds a session-level lock or LISTENs (the relay,
  ``outbox_relay.py``; the leases, ``lease.py``; the change feed, ``change_feed.py``):
  ``consent_common.db.connect_durable``, which sets keepalives on both ends so a vanished
  peer frees its lock. The sequencer takes a transaction-scoped lock inside its unit of work
  instead (``transparency.py``).
- consentctl's bulk scans (``ledger verify``, ``state rebuild``/``republish``, ``outbox
  status``): one plain asyncpg connection the command opens, handed to an adapter
  (``ledger_audit.py``, ``state_republish.py``, ``outbox_relay.outbox_status``): a
  million-subject scan wants neither a pool nor ORM rows. Creating roles and grants
  (``consentctl db-roles``) is the one place outside adapters that runs SQL: DDL on the
  database itself, before any migration.

**Which idiom inside an adapter, and why**:

- SQLModel/SQLAlchemy ORM statements (``select(Table)``, ``session.add``) for the cold
  reads and writes of small tables (policies, guardians, erasures, aliases, keys, jobs):
  typed against ``tables.py``, which the migrations are checked against.
- ``text()`` on the session for hand-written reporting queries whose shape the ORM would
  obscure (``due.py``, ``operations.py``, ``drift.py``, ``imports.py``, ``parked.py``,
  ``retention.py``, ``receipts.py``' reads).
- Raw SQL on the session's own asyncpg connection (``db.driver``), still inside the unit of
  work's transaction, for the hot path and the bulk statements (the subject snapshot and
  the ledger append, ``subject_store.py`` and ``ledger_append.py``; outbox inserts; the
  receipts projection; the transparency log; the audit log): about 0.1 ms of CPU less per
  statement, and arrays in one round trip.
"""
