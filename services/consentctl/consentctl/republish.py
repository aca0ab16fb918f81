"""``consentctl state republish``: rebuild ``consent.state.v1`` from the projection.

For a new cluster, a state topic lost or truncated, or a view that must start from scratch.
Every subject with a sequence gets one record: the decisions its last event carried (kept on
its ``subjects`` row; computed from the projection now for a row written before that column
existed), or a tombstone when it was erased. Records keep the subject's sequence, so a
``ConsentView`` already holding the subject ignores nothing newer.

Safe while the relay runs: after each page is acknowledged the page's sequences are read
again, and a subject that changed meanwhile is published again at its new state. Its new
state's record from the relay may have landed before ours; republishing the latest once more
makes the last record on the topic the latest state either way (a relay that publishes after
our re-read publishes after our record too, since it publishes only what is committed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from consent.adapters.kafka import ensure_topics, make_producer
from consent.adapters.state_republish import SubjectStates
from consent.domain.model import Policy
from consent.service.decisions import decisions_for
from consent.settings import Settings
from consent_common.db import plain_url
from consent_common.timefmt import rfc3339

MAX_ROUNDS = 10


def _value(row: Any, decisions: dict[str, bool]) -> bytes:
    return orjson.dumps(
        {
            "subject_id": row["subject_id"],
            "sequence": row["sequence"],
            "decisions": decisions,
            "jurisdiction": row["jurisdiction"],
            "updated_at": rfc3339(row["updated_at"]),
        }
    )


async def _records(
    states: SubjectStates, rows: list[Any], policies: list[Policy]
) -> list[tuple[str, int, bytes | None]]:
    """(subject, sequence, value or None for a tombstone) for each row."""
    missing = [r["subject_id"] for r in rows if r["erased_at"] is None and not r["decisions"]]
    computed: dict[str, dict[str, bool]] = {}
    if missing:
        now = datetime.now(UTC)
        for snap in await states.snapshots(missing):
            computed[snap.subject_id] = {
                p: d.allowed for p, d in decisions_for(snap, policies, now).items()
            }
    out: list[tuple[str, int, bytes | None]] = []
    for r in rows:
        if r["erased_at"] is not None:
            out.append((r["subject_id"], r["sequence"], None))
            continue
        decisions = orjson.loads(r["decisions"]) if r["decisions"] else computed[r["subject_id"]]
        out.append((r["subject_id"], r["sequence"], _value(r, decisions)))
    return out


async def republish(
    settings: Settings,
    *,
    page_size: int = 1000,
    on_total: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Publish every subject's state; returns counts (subjects, tombstones, again)."""
    assert settings.database_url
    await ensure_topics(settings)
    conn = await asyncpg.connect(plain_url(settings.database_url))
    producer = make_producer(settings)
    await producer.start()
    states = SubjectStates(conn)
    counts = {"subjects": 0, "tombstones": 0, "again": 0}
    try:
        total = await states.count()
        if on_total:
            on_total(total)
        policies = await states.policies()
        after = ""
        while True:
            rows = await states.page(after, page_size)
            if not rows:
                break
            after = rows[-1]["subject_id"]
            sent = await _send(settings, producer, await _records(states, rows, policies))
            counts["subjects"] += len(rows)
            counts["tombstones"] += sum(1 for r in rows if r["erased_at"] is not None)
            for _ in range(MAX_ROUNDS):  # subjects that changed while we published
                now_rows = await states.rows(list(sent))
                changed = [r for r in now_rows if r["sequence"] != sent[r["subject_id"]]]
                if not changed:
                    break
                counts["again"] += len(changed)
                sent = await _send(settings, producer, await _records(states, changed, policies))
            if on_progress:
                on_progress(len(rows))
    finally:
        await producer.stop()
        await conn.close()
    return counts


async def _send(
    settings: Settings, producer: Any, records: list[tuple[str, int, bytes | None]]
) -> dict[str, int]:
    futures = []
    for subject_id, sequence, value in records:
        headers = [
            ("ce_subject", subject_id.encode()),
            ("ce_subjectseq", f"{sequence:020d}".encode()),
            ("content-type", b"application/json"),
        ]
        futures.append(
            await producer.send(
                settings.state_topic, key=subject_id.encode(), value=value, headers=headers
            )
        )
    await asyncio.gather(*futures)
    return {s: seq for s, seq, _ in records}
