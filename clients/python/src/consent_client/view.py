"""``ConsentView``: a local, stream-fed copy of ``consent.state.v1``.

The state topic is compacted and keyed by subject: its latest record per subject is that
subject's full effective decisions (after every rule of the platform) with the sequence they
come from; a tombstone (null value) means the subject was erased. The view reads every
partition from the beginning (no consumer group: each instance holds the whole topic),
reports ready once it has reached the high watermark it saw at start, then keeps following.

Answers are local and fail closed: a subject the view has never seen, a purpose its record
does not list, an erased subject and a view not yet caught up all answer "not allowed", each
with its own ``reason``.

Stores: :class:`MemoryViewStore` (default; packs a subject into one integer, about 200 bytes
a subject) or :class:`SqliteViewStore` (one SQLite file, for millions of subjects or a view
that must restart without re-reading the topic: it keeps its offsets with the data).

Aliases: ``aliases`` (anonymous id → person id) is consulted before every lookup. The
platform does not publish alias merges yet (issue 21); when it does, the view will fill
this map from that stream. Until then you may pass your own mapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from consent_client.events import MalformedEvent, StateRecord
from consent_client.parsing import Parser

log = logging.getLogger("consent_client.view")

STATE_TOPIC = "consent.state.v1"

REASON_STATE = "state"
"""Answered from the subject's record on the state topic (the platform's decision)."""
REASON_UNKNOWN_SUBJECT = "unknown_subject"
REASON_UNKNOWN_PURPOSE = "unknown_purpose"
REASON_ERASED = "erased"
REASON_NOT_READY = "not_ready"


@dataclass(slots=True)
class Answer:  # not frozen: a frozen dataclass costs a third of allowed()'s time to build
    subject_id: str
    purpose: str
    allowed: bool
    reason: str
    sequence: int
    """The subject's sequence the answer comes from (0: nothing known)."""

    def __bool__(self) -> bool:  # ``if view.allowed(s, p):`` means what it says
        return self.allowed


@dataclass(frozen=True, slots=True)
class SubjectDecisions:
    subject_id: str
    sequence: int
    decisions: Mapping[str, bool]
    jurisdiction: str | None
    reason: str = REASON_STATE

    @property
    def known(self) -> bool:
        return self.reason == REASON_STATE


class ViewStore(Protocol):
    """Where a view keeps subjects. ``apply`` takes one batch (``None`` = tombstone) and the
    next offset per partition reached with it; a store that persists may return them from
    ``offsets`` so that a restarted view resumes there."""

    def lookup(self, subject_id: str, purpose: str) -> tuple[int, bool | None] | None: ...

    def get(self, subject_id: str) -> SubjectDecisions | None: ...

    def sequence(self, subject_id: str) -> int | None: ...

    def is_erased(self, subject_id: str) -> bool: ...

    def apply(
        self, items: list[tuple[str, StateRecord | None]], offsets: Mapping[int, int]
    ) -> None: ...

    def offsets(self, topic: str) -> dict[int, int]: ...

    def __len__(self) -> int: ...

    def close(self) -> None: ...


class MemoryViewStore:
    """Each subject is one int: ``sequence | jurisdiction | known purposes | allowed``, the
    purposes as bit positions in a catalog learnt from the records (up to 64 purposes)."""

    W = 64  # bits for purposes
    JUR_SHIFT = 2 * W
    SEQ_SHIFT = 2 * W + 16

    def __init__(self) -> None:
        self._subjects: dict[str, int] = {}
        self._erased: set[str] = set()
        self._purposes: dict[str, int] = {}
        self._purpose_names: list[str] = []
        self._jurisdictions: dict[str | None, int] = {None: 0}
        self._jurisdiction_names: list[str | None] = [None]

    def _bit(self, purpose: str) -> int:
        bit = self._purposes.get(purpose)
        if bit is None:
            bit = len(self._purpose_names)
            if bit >= self.W:
                raise ValueError(f"more than {self.W} purposes: use SqliteViewStore")
            self._purposes[purpose] = bit
            self._purpose_names.append(purpose)
        return bit

    def _pack(self, rec: StateRecord) -> int:
        allowed = known = 0
        bits = self._purposes
        for purpose, value in rec.decisions.items():
            index = bits.get(purpose)
            bit = 1 << (self._bit(purpose) if index is None else index)
            known |= bit
            if value:
                allowed |= bit
        jur = self._jurisdictions.get(rec.jurisdiction)
        if jur is None:
            jur = len(self._jurisdiction_names)
            self._jurisdictions[rec.jurisdiction] = jur
            self._jurisdiction_names.append(rec.jurisdiction)
        return (
            (rec.sequence << self.SEQ_SHIFT) | (jur << self.JUR_SHIFT) | (known << self.W) | allowed
        )

    def lookup(self, subject_id: str, purpose: str) -> tuple[int, bool | None] | None:
        v = self._subjects.get(subject_id)
        if v is None:
            return None
        bit = self._purposes.get(purpose)
        seq = v >> self.SEQ_SHIFT
        if bit is None or not (v >> (self.W + bit)) & 1:
            return seq, None
        return seq, bool((v >> bit) & 1)

    def get(self, subject_id: str) -> SubjectDecisions | None:
        v = self._subjects.get(subject_id)
        if v is None:
            return None
        decisions = {
            name: bool((v >> bit) & 1)
            for bit, name in enumerate(self._purpose_names)
            if (v >> (self.W + bit)) & 1
        }
        jur = self._jurisdiction_names[(v >> self.JUR_SHIFT) & 0xFFFF]
        return SubjectDecisions(subject_id, v >> self.SEQ_SHIFT, decisions, jur)

    def sequence(self, subject_id: str) -> int | None:
        v = self._subjects.get(subject_id)
        return None if v is None else v >> self.SEQ_SHIFT

    def is_erased(self, subject_id: str) -> bool:
        return subject_id in self._erased

    def apply(
        self, items: list[tuple[str, StateRecord | None]], offsets: Mapping[int, int]
    ) -> None:
        subjects = self._subjects
        for subject_id, rec in items:
            if rec is None:
                subjects.pop(subject_id, None)
                self._erased.add(subject_id)
                continue
            old = subjects.get(subject_id)
            if old is None or rec.sequence >= old >> self.SEQ_SHIFT:
                subjects[subject_id] = self._pack(rec)
                if old is None:
                    self._erased.discard(subject_id)

    def offsets(self, topic: str) -> dict[int, int]:
        return {}

    def __len__(self) -> int:
        return len(self._subjects)

    def close(self) -> None:
        pass


class SqliteViewStore:
    """Subjects in one SQLite file, with the offsets reached: a restarted view resumes
    where it stopped instead of re-reading the topic."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS subjects (subject_id TEXT PRIMARY KEY, sequence INTEGER NOT NULL,
        decisions TEXT NOT NULL, jurisdiction TEXT) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS erased (subject_id TEXT PRIMARY KEY) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS offsets (topic TEXT NOT NULL, partition INTEGER NOT NULL,
        next_offset INTEGER NOT NULL, PRIMARY KEY (topic, partition));
    """

    def __init__(self, path: str | Path, topic: str = STATE_TOPIC) -> None:
        self.topic = topic
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(self.SCHEMA)
        self._count = int(self.db.execute("SELECT count(*) FROM subjects").fetchone()[0])

    def _row(self, subject_id: str) -> tuple[int, str, str | None] | None:
        row = self.db.execute(
            "SELECT sequence, decisions, jurisdiction FROM subjects WHERE subject_id = ?",
            (subject_id,),
        ).fetchone()
        return None if row is None else (int(row[0]), row[1], row[2])

    def lookup(self, subject_id: str, purpose: str) -> tuple[int, bool | None] | None:
        row = self._row(subject_id)
        if row is None:
            return None
        value = json.loads(row[1]).get(purpose)
        return row[0], None if value is None else bool(value)

    def get(self, subject_id: str) -> SubjectDecisions | None:
        row = self._row(subject_id)
        if row is None:
            return None
        return SubjectDecisions(subject_id, row[0], json.loads(row[1]), row[2])

    def sequence(self, subject_id: str) -> int | None:
        row = self.db.execute(
            "SELECT sequence FROM subjects WHERE subject_id = ?", (subject_id,)
        ).fetchone()
        return None if row is None else int(row[0])

    def is_erased(self, subject_id: str) -> bool:
        q = "SELECT 1 FROM erased WHERE subject_id = ?"
        return self.db.execute(q, (subject_id,)).fetchone() is not None

    def apply(
        self, items: list[tuple[str, StateRecord | None]], offsets: Mapping[int, int]
    ) -> None:
        db = self.db
        db.execute("BEGIN")
        try:
            for subject_id, rec in items:
                if rec is None:
                    db.execute("DELETE FROM subjects WHERE subject_id = ?", (subject_id,))
                    db.execute("INSERT OR IGNORE INTO erased VALUES (?)", (subject_id,))
                    continue
                db.execute(
                    "INSERT INTO subjects VALUES (?, ?, ?, ?) ON CONFLICT (subject_id) DO UPDATE "
                    "SET sequence = excluded.sequence, decisions = excluded.decisions, "
                    "jurisdiction = excluded.jurisdiction "
                    "WHERE excluded.sequence >= subjects.sequence",
                    (
                        subject_id,
                        rec.sequence,
                        json.dumps(dict(rec.decisions), separators=(",", ":")),
                        rec.jurisdiction,
                    ),
                )
                db.execute("DELETE FROM erased WHERE subject_id = ?", (subject_id,))
            db.executemany(
                "INSERT INTO offsets VALUES (?, ?, ?) ON CONFLICT (topic, partition) "
                "DO UPDATE SET next_offset = excluded.next_offset",
                [(self.topic, p, o) for p, o in offsets.items()],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._count = int(db.execute("SELECT count(*) FROM subjects").fetchone()[0])

    def offsets(self, topic: str) -> dict[int, int]:
        if topic != self.topic:
            raise ValueError(f"this store holds topic {self.topic!r}, not {topic!r}")
        rows = self.db.execute(
            "SELECT partition, next_offset FROM offsets WHERE topic = ?", (topic,)
        ).fetchall()
        return {int(p): int(o) for p, o in rows}

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        self.db.close()


@dataclass(frozen=True, slots=True)
class ViewMetrics:
    ready: bool
    size: int
    """Subjects held."""
    lag: int
    """Records behind the high watermark, summed over partitions."""
    records: int
    tombstones: int
    malformed: int
    ready_after_s: float | None
    """Seconds from start to ready (catch-up time)."""


class ConsentView:
    """``async with ConsentView(bootstrap) as view: await view.wait_ready(); view.allowed(s, p)``.

    ``consumer_kwargs`` go to ``aiokafka.AIOKafkaConsumer`` (SASL, TLS, ...).
    ``path`` is a shortcut for ``store=SqliteViewStore(path, topic)``."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic: str = STATE_TOPIC,
        store: ViewStore | None = None,
        path: str | Path | None = None,
        aliases: Mapping[str, str] | None = None,
        consumer_kwargs: Mapping[str, Any] | None = None,
        max_records: int = 10_000,
    ) -> None:
        if store is not None and path is not None:
            raise ValueError("pass store or path, not both")
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.store: ViewStore = (
            store
            if store is not None
            else (SqliteViewStore(path, topic) if path is not None else MemoryViewStore())
        )
        self.aliases: Mapping[str, str] = aliases if aliases is not None else {}
        self.consumer_kwargs = dict(consumer_kwargs or {})
        self.max_records = max_records
        self.parser = Parser()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._consumer: Any = None
        self._waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self._records = 0
        self._tombstones = 0
        self._lag = 0
        self._started_at = 0.0
        self._ready_after: float | None = None
        self._error: BaseException | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        self._started_at = time.monotonic()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            **self.consumer_kwargs,
        )
        await self._consumer.start()
        try:
            tps = await self._assign()
        except BaseException:
            await self._consumer.stop()
            raise
        self._task = asyncio.create_task(self._run(tps), name=f"consent-view:{self.topic}")

    async def _assign(self) -> list[Any]:
        from aiokafka import TopicPartition

        c = self._consumer
        parts = c.partitions_for_topic(self.topic)
        for _ in range(100):
            if parts:
                break
            await c._client.force_metadata_update()
            parts = c.partitions_for_topic(self.topic)
            await asyncio.sleep(0.05)
        if not parts:
            raise RuntimeError(f"topic {self.topic!r} not found")
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        c.assign(tps)
        stored = self.store.offsets(self.topic)
        for tp in tps:
            if tp.partition in stored:
                c.seek(tp, stored[tp.partition])
            else:
                await c.seek_to_beginning(tp)
        return tps

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        for waiters in self._waiters.values():
            for _, fut in waiters:
                if not fut.done():
                    fut.cancel()

    def close(self) -> None:
        """Close the store (after :meth:`stop`)."""
        self.store.close()

    async def __aenter__(self) -> ConsentView:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Until the view has reached the high watermark seen at start; raises
        ``TimeoutError``, or the error that stopped the view."""
        waiter = asyncio.ensure_future(self._ready.wait())
        done, _ = await asyncio.wait(
            [waiter, *([self._task] if self._task else [])],
            timeout=timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if waiter not in done:
            waiter.cancel()
            if self._error is not None:
                raise self._error
            raise TimeoutError(f"view of {self.topic} not ready within {timeout}s")

    # --- the loop -------------------------------------------------------------------------

    async def _run(self, tps: list[Any]) -> None:
        c = self._consumer
        try:
            targets = await c.end_offsets(tps)
            await self._check_ready(tps, targets)
            while True:
                batch = await c.getmany(timeout_ms=200, max_records=self.max_records)
                items: list[tuple[str, StateRecord | None]] = []
                offsets: dict[int, int] = {}
                for tp, records in batch.items():
                    for r in records:
                        self._records += 1
                        key = r.key.decode() if isinstance(r.key, bytes) else r.key
                        try:
                            rec = self.parser.state(key, r.value)
                        except MalformedEvent as exc:
                            log.warning("state record skipped at %s/%s: %s", tp, r.offset, exc)
                            continue
                        if rec is None:
                            self._tombstones += 1
                        items.append((key, rec))
                    if records:
                        offsets[tp.partition] = records[-1].offset + 1
                if offsets:
                    self.store.apply(items, offsets)
                    if self._waiters:
                        self._wake(s for s, _ in items)
                lag = 0
                for tp in tps:
                    high = c.highwater(tp) or targets.get(tp, 0)
                    lag += max(0, high - await c.position(tp))
                self._lag = lag
                if not self._ready.is_set():
                    await self._check_ready(tps, targets)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._error = exc
            log.exception("consent view stopped")
            raise

    async def _check_ready(self, tps: list[Any], targets: Mapping[Any, int]) -> None:
        for tp in tps:
            if await self._consumer.position(tp) < targets[tp]:
                return
        self._ready_after = time.monotonic() - self._started_at
        self._ready.set()
        if self._waiters:
            self._wake(list(self._waiters))

    def _wake(self, subjects: Iterable[str]) -> None:
        if not self._ready.is_set():
            return
        for s in set(subjects):
            waiters = self._waiters.get(s)
            if not waiters:
                continue
            for seq, fut in waiters:
                if not fut.done() and self._reached(s, seq):
                    fut.set_result(None)

    def _reached(self, subject_id: str, sequence: int) -> bool:
        have = self.store.sequence(subject_id)
        return (have is not None and have >= sequence) or self.store.is_erased(subject_id)

    # --- answers --------------------------------------------------------------------------

    def resolve(self, subject_id: str) -> str:
        """The subject the view answers for (an anonymous id merged into a person: the
        person)."""
        return self.aliases.get(subject_id, subject_id)

    def allowed(self, subject_id: str, purpose: str) -> Answer:
        subject = self.aliases.get(subject_id, subject_id)  # resolve(), inlined: hot path
        if not self._ready.is_set():
            return Answer(subject_id, purpose, False, REASON_NOT_READY, 0)
        found = self.store.lookup(subject, purpose)
        if found is None:
            reason = REASON_ERASED if self.store.is_erased(subject) else REASON_UNKNOWN_SUBJECT
            return Answer(subject_id, purpose, False, reason, 0)
        seq, value = found
        if value is None:
            return Answer(subject_id, purpose, False, REASON_UNKNOWN_PURPOSE, seq)
        return Answer(subject_id, purpose, value, REASON_STATE, seq)

    def decisions(self, subject_id: str) -> SubjectDecisions:
        subject = self.resolve(subject_id)
        if not self._ready.is_set():
            return SubjectDecisions(subject_id, 0, {}, None, REASON_NOT_READY)
        got = self.store.get(subject)
        if got is None:
            reason = REASON_ERASED if self.store.is_erased(subject) else REASON_UNKNOWN_SUBJECT
            return SubjectDecisions(subject_id, 0, {}, None, reason)
        return got

    async def wait_for(
        self,
        subject_id: str,
        sequence: int,
        timeout: float,  # noqa: ASYNC109
    ) -> bool:
        """Until the view is ready and holds ``subject_id`` at ``sequence`` or later (the
        ``Consent-Token`` of a write), or the subject's erasure; False on timeout."""
        subject = self.resolve(subject_id)
        if self._ready.is_set() and self._reached(subject, sequence):
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (sequence, fut)
        self._waiters.setdefault(subject, []).append(entry)
        try:
            if self._ready.is_set() and self._reached(subject, sequence):
                return True
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            waiters = self._waiters.get(subject, [])
            if entry in waiters:
                waiters.remove(entry)
            if not waiters:
                self._waiters.pop(subject, None)

    def metrics(self) -> ViewMetrics:
        return ViewMetrics(
            ready=self._ready.is_set(),
            size=len(self.store),
            lag=self._lag,
            records=self._records,
            tombstones=self._tombstones,
            malformed=self.parser.stats.malformed,
            ready_after_s=self._ready_after,
        )
