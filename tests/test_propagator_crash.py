"""The propagator killed mid-batch (SIGKILL) and restarted: nothing lost, nothing applied twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from consent.settings import Settings
from tests.conftest import eventually
from tests.support import RecordingProcessor, running_stack, serving, write_changes


def propagator_process(settings: Settings, processors_file: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CONSENT_DATABASE_URL": settings.database_url or "",
        "CONSENT_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
        "CONSENT_TOPIC_PREFIX": settings.topic_prefix,
        "CONSENT_PROCESSORS_FILE": str(processors_file),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "consentctl.main", "serve", "propagator"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _settled(db) -> bool:  # type: ignore[no-untyped-def]
    pending = await db.fetchval("SELECT count(*) FROM deliveries WHERE status = 'pending'")
    total = await db.fetchval("SELECT count(*) FROM deliveries")
    return total > 0 and pending == 0


@pytest.mark.timeout(240)
async def test_killed_mid_batch_then_restarted(topics: Settings, processor_secrets, db, tmp_path):
    email = RecordingProcessor("email", processor_secrets["email"], delay_s=0.05)
    cfg = email.config("TEST_EMAIL_SECRET", ["marketing_email"], concurrency=4)
    path = tmp_path / "processors.yaml"
    path.write_text(yaml.safe_dump({"processors": [cfg.model_dump()]}))
    subjects = [f"k{i:02d}" for i in range(40)]
    async with serving(email), running_stack(topics):
        first = propagator_process(topics, path)
        await write_changes(topics, subjects, 3)
        await eventually(lambda: len(email.requests) >= 10, timeout=60)
        first.send_signal(signal.SIGKILL)  # mid-batch: requests in flight, offsets uncommitted
        await asyncio.to_thread(first.wait, 10)
        in_flight = await db.fetchval(
            "SELECT count(*) FROM deliveries WHERE status = 'pending' AND lease_until > now()"
        )
        second = propagator_process(topics, path)
        try:
            await eventually(lambda: _settled(db), timeout=120)
            await eventually(lambda: _all_latest(db, subjects), timeout=60)
        finally:
            second.send_signal(signal.SIGTERM)
            await asyncio.to_thread(second.wait, 20)
    # every subject's latest state reached the processor ...
    latest = {
        s: max(r.body["sequence"] for r in email.applied() if r.body["subject_id"] == s)
        for s in subjects
    }
    assert latest == dict.fromkeys(subjects, 3)
    # ... each event id applied once by a processor deduplicating on webhook-id
    ids = [r.headers["webhook-id"] for r in email.applied()]
    assert len(ids) == len(set(ids))
    statuses = {r["status"] for r in await db.fetch("SELECT DISTINCT status FROM deliveries")}
    assert statuses <= {"delivered", "superseded"}
    assert await db.fetchval("SELECT count(*) FROM propagator_inbox") == 120  # no event lost
    print(f"in flight when killed: {in_flight}; requests seen: {len(email.requests)}")


async def _all_latest(db, subjects) -> bool:  # type: ignore[no-untyped-def]
    n = await db.fetchval(
        "SELECT count(*) FROM processor_receipts WHERE processor = 'email' "
        "AND last_delivered_sequence = 3"
    )
    return n == len(subjects)
