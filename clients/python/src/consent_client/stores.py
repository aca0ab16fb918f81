"""What a consumer or a processor must remember to be idempotent: the event (or webhook)
ids it applied, the last sequence it applied per subject, and the records it parked.

:class:`MemoryStore` forgets on restart (fine when redelivery after a restart is harmless);
:class:`SqliteStore` keeps it in one SQLite file (stdlib ``sqlite3``), committed before the
Kafka offset or the 2xx answer. Any object with these methods will do (a table in your own
database is best: then the store and your own write commit together).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ParkedRecord:
    """A record set aside: it could not be decoded, or the handler rejected it for good."""

    reason: str
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    value: bytes | None = None
    event_id: str | None = None
    parked_at: float = field(default_factory=time.time)


class IdempotencyStore(Protocol):
    def seen(self, event_id: str) -> bool: ...

    def last_sequence(self, subject_id: str) -> int: ...

    def applied(self, event_id: str, subject_id: str | None, sequence: int | None) -> None: ...

    def park(self, record: ParkedRecord) -> None: ...


class MemoryStore:
    """In-process store. Event ids are kept for the last ``max_ids`` events (a redelivery
    comes soon after the original); sequences for every subject seen."""

    def __init__(self, max_ids: int = 100_000) -> None:
        self.max_ids = max_ids
        self._ids: OrderedDict[str, None] = OrderedDict()
        self.sequences: dict[str, int] = {}
        self.parked: list[ParkedRecord] = []

    def seen(self, event_id: str) -> bool:
        return event_id in self._ids

    def last_sequence(self, subject_id: str) -> int:
        return self.sequences.get(subject_id, 0)

    def applied(self, event_id: str, subject_id: str | None, sequence: int | None) -> None:
        self._ids[event_id] = None
        if len(self._ids) > self.max_ids:
            self._ids.popitem(last=False)
        if (
            subject_id is not None
            and sequence is not None
            and sequence > self.sequences.get(subject_id, 0)
        ):
            self.sequences[subject_id] = sequence

    def park(self, record: ParkedRecord) -> None:
        self.parked.append(record)


class SqliteStore:
    """The same in one SQLite file; every call commits (WAL mode, ``synchronous=NORMAL``)."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS applied_ids (event_id TEXT PRIMARY KEY, at REAL NOT NULL);
    CREATE TABLE IF NOT EXISTS subject_sequences (
        subject_id TEXT PRIMARY KEY, sequence INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS parked (
        id INTEGER PRIMARY KEY AUTOINCREMENT, reason TEXT NOT NULL, topic TEXT,
        partition INTEGER, "offset" INTEGER, key TEXT, headers TEXT, value BLOB,
        event_id TEXT, parked_at REAL NOT NULL);
    """

    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(self.SCHEMA)

    def seen(self, event_id: str) -> bool:
        with self._lock:
            row = self.db.execute(
                "SELECT 1 FROM applied_ids WHERE event_id = ?", (event_id,)
            ).fetchone()
        return row is not None

    def last_sequence(self, subject_id: str) -> int:
        with self._lock:
            row = self.db.execute(
                "SELECT sequence FROM subject_sequences WHERE subject_id = ?", (subject_id,)
            ).fetchone()
        return int(row[0]) if row else 0

    def applied(self, event_id: str, subject_id: str | None, sequence: int | None) -> None:
        with self._lock:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT OR IGNORE INTO applied_ids (event_id, at) VALUES (?, ?)",
                (event_id, time.time()),
            )
            if subject_id is not None and sequence is not None:
                self.db.execute(
                    "INSERT INTO subject_sequences (subject_id, sequence) VALUES (?, ?) "
                    "ON CONFLICT (subject_id) DO UPDATE SET sequence = excluded.sequence "
                    "WHERE excluded.sequence > subject_sequences.sequence",
                    (subject_id, sequence),
                )
            self.db.execute("COMMIT")

    def park(self, record: ParkedRecord) -> None:
        with self._lock:
            self.db.execute(
                'INSERT INTO parked (reason, topic, partition, "offset", key, headers, value, '
                "event_id, parked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.reason,
                    record.topic,
                    record.partition,
                    record.offset,
                    record.key,
                    json.dumps(record.headers),
                    record.value,
                    record.event_id,
                    record.parked_at,
                ),
            )

    def parked(self) -> list[ParkedRecord]:
        with self._lock:
            rows = self.db.execute(
                'SELECT reason, topic, partition, "offset", key, headers, value, event_id, '
                "parked_at FROM parked ORDER BY id"
            ).fetchall()
        return [
            ParkedRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5] or "{}"), r[6], r[7], r[8])
            for r in rows
        ]

    def prune_ids(self, older_than_s: float) -> int:
        """Forget event ids applied more than ``older_than_s`` ago (sequences are kept)."""
        with self._lock:
            cur = self.db.execute(
                "DELETE FROM applied_ids WHERE at < ?", (time.time() - older_than_s,)
            )
        return cur.rowcount

    def close(self) -> None:
        self.db.close()
