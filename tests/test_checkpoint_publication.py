"""Checkpoints leave the database (issue 19): the relay publishes each signed checkpoint
on ``consent.checkpoints.v1`` keyed by its tree size, and ``consentctl ledger verify
--checkpoints-topic`` (or ``--checkpoints-file``) checks the ledger against what was
published there, not against the database's own copy."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from consent.settings import Settings
from consent.transparency.keys import signing_key
from consentctl.log_audit import read_file, read_topic
from tests.conftest import eventually, user
from tests.support import read_topic as read_records
from tests.test_relay import _zero, relay_process
from tests.test_tampering import api, checkpoint, history, logged, superuser  # noqa: F401


def verify_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    key = signing_key(settings.checkpoint_key_file, settings.data_dir)
    assert key  # made in the data dir: the CLI signs nothing here, it verifies with it
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CONSENT_")},
        "CONSENT_DATABASE_URL": settings.database_url or "",
        "CONSENT_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
        "CONSENT_TOPIC_PREFIX": settings.topic_prefix,
        "CONSENT_CHECKPOINT_KEY_FILE": str(Path(settings.data_dir) / "checkpoint-key.pem"),
        "CONSENT_LOG_JSON": "false",
    }
    return subprocess.run(
        [sys.executable, "-m", "consentctl.main", "ledger", "verify", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.timeout(180)
async def test_published_checkpoints_are_the_reference(api, logged, topics, db):  # noqa: F811
    await history(api)
    await checkpoint(logged)
    await api.patch(
        "/v1/subjects/ann/preferences",
        json={"purposes": {"analytics": "denied"}},
        headers=user("ann"),
    )
    await checkpoint(logged)  # a second checkpoint, after one more entry
    relay = relay_process(logged)
    try:
        await eventually(lambda: _zero(db), timeout=60)
    finally:
        relay.terminate()
        await asyncio.to_thread(relay.wait, 10)

    published = await read_topic(logged)
    in_file = read_file(logged.checkpoint_file or "")
    assert published == in_file and len(published) >= 1
    records = await read_records(logged, logged.checkpoints_topic, min_count=len(published))
    assert [r.key for r in records] == [str(cp["tree_size"]).encode() for cp in published]

    proc = verify_cli(logged, "--checkpoints-topic")
    assert proc.returncode == 0, proc.stderr
    assert f"{len(published)} published checkpoint" in proc.stderr

    # the database's copy of the checkpoint is rewritten to match a rewritten entry: the
    # published one still catches it
    await superuser(
        db,
        "UPDATE consent_ledger SET channel = 'api' WHERE subject_id = 'bob' AND sequence = 3",
        "UPDATE log_checkpoints SET root_hash = repeat('0', 64)",
    )
    proc = verify_cli(logged, "--checkpoints-file", logged.checkpoint_file or "")
    assert proc.returncode == 1
    assert "subject=bob sequence=3 field=hash" in proc.stderr, proc.stderr
    assert "field=root_hash" in proc.stderr and "log_checkpoints differs" in proc.stderr
