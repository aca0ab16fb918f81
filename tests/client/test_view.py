"""ConsentView against the real broker and the real stack: catch-up, answers, tombstones,
read-your-writes with the write's sequence, malformed records; the on-disk store resuming
after a restart from a topic rebuilt by ``consentctl state republish``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from consent.settings import Settings
from consent_client import ConsentView, consent_token
from consent_common.kafka import client_kwargs
from consentctl.republish import republish
from tests.conftest import admin, eventually
from tests.support import running_stack


async def write(client, sid: str, purposes: dict[str, str]) -> int:  # type: ignore[no-untyped-def]
    r = await client.patch(
        f"/v1/subjects/{sid}/preferences", headers=admin(), json={"purposes": purposes}
    )
    assert r.status_code == 200, r.text
    token = consent_token(r.headers)  # Consent-Token, or the ETag until that ships
    assert token == r.json()["sequence"]
    return token


async def erase(client, sid: str) -> None:  # type: ignore[no-untyped-def]
    r = await client.post(f"/v1/subjects/{sid}/erasure", headers=admin())
    assert r.status_code == 202, r.text


@pytest.mark.timeout(120)
async def test_view_follows_the_state_topic(client, topics: Settings) -> None:  # type: ignore[no-untyped-def]
    async with running_stack(topics):
        await write(client, "va", {"analytics": "granted"})
        await write(client, "vb", {"sale": "denied"})
        await write(client, "vc", {"analytics": "granted"})
        await erase(client, "vc")
        producer = AIOKafkaProducer(**client_kwargs(topics))
        await producer.start()
        try:  # a record no view can read: skipped and counted, never fatal
            await producer.send_and_wait(topics.state_topic, key=b"vz", value=b"{oops")
        finally:
            await producer.stop()
        view = ConsentView(topics.kafka_bootstrap or "", topic=topics.state_topic)
        assert view.allowed("va", "analytics").reason == "not_ready"
        async with view:
            await view.wait_ready(timeout=20)
            assert await view.wait_for("vc", 2, timeout=10)  # the tombstone came
            assert await view.wait_for("vb", 1, timeout=10)
            a = view.allowed("va", "analytics")
            assert (a.allowed, a.reason, a.sequence) == (True, "state", 1)
            b = view.allowed("vb", "sale")
            assert (b.allowed, b.reason, b.sequence) == (False, "state", 1)
            assert view.allowed("vb", "analytics").allowed is False  # never granted: the default
            unknown = view.allowed("nobody", "analytics")
            assert (unknown.allowed, unknown.reason, unknown.sequence) == (
                False,
                "unknown_subject",
                0,
            )
            assert view.allowed("vc", "analytics").reason == "erased"
            assert view.allowed("va", "no_such_purpose").reason == "unknown_purpose"
            d = view.decisions("va")
            assert d.known and d.sequence == 1 and d.decisions["analytics"] is True
            assert view.decisions("nobody").reason == "unknown_subject"

            # read-your-writes: the write's sequence is the token to wait for
            seq = await write(client, "va", {"analytics": "denied"})
            assert await view.wait_for("va", seq, timeout=10)
            assert view.allowed("va", "analytics").allowed is False
            assert view.allowed("va", "analytics").sequence == seq
            assert not await view.wait_for("va", seq + 5, timeout=0.3)

            m = view.metrics()
            assert m.ready and m.size == 2 and m.malformed == 1 and m.tombstones == 1
            assert m.ready_after_s is not None
            await eventually(lambda: view.metrics().lag == 0)
        # an alias map (anonymous id → person), consulted before each lookup
        aliased = ConsentView(
            topics.kafka_bootstrap or "", topic=topics.state_topic, aliases={"anon-1": "vb"}
        )
        async with aliased:
            await aliased.wait_ready(timeout=20)
            assert aliased.allowed("anon-1", "sale").sequence == 1


@pytest.mark.timeout(120)
async def test_republish_rebuilds_the_topic_and_the_disk_view_resumes(
    client, topics: Settings, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    # no relay runs: the state topic stays empty until republished
    await write(client, "ra", {"analytics": "granted"})
    await write(client, "rb", {"sale": "denied"})
    await write(client, "rc", {"analytics": "granted"})
    await erase(client, "rc")
    env = {
        **os.environ,
        "CONSENT_DATABASE_URL": topics.database_url or "",
        "CONSENT_KAFKA_BOOTSTRAP": topics.kafka_bootstrap or "",
        "CONSENT_TOPIC_PREFIX": topics.topic_prefix,
    }
    consentctl = Path(sys.executable).parent / "consentctl"
    proc = await asyncio.to_thread(
        subprocess.run,
        [str(consentctl), "state", "republish"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"republished 3 subject(s)" in proc.stdout and b"1 tombstone(s)" in proc.stdout

    path = tmp_path / "view.db"
    view = ConsentView(topics.kafka_bootstrap or "", topic=topics.state_topic, path=path)
    async with view:
        await view.wait_ready(timeout=20)
        assert view.allowed("ra", "analytics").allowed is True
        assert view.allowed("rb", "sale").allowed is False
        assert view.allowed("rc", "analytics").reason == "erased"
        first = view.metrics().records
    assert first == 3

    seq = await write(client, "ra", {"analytics": "denied"})
    counts = await republish(topics)  # in-process this time
    assert counts["subjects"] == 3
    again = ConsentView(topics.kafka_bootstrap or "", topic=topics.state_topic, path=path)
    async with again:
        await again.wait_ready(timeout=20)
        assert again.metrics().records == 3  # resumed after the first 3, read only the new
        assert again.allowed("ra", "analytics").allowed is False
        assert again.allowed("ra", "analytics").sequence == seq
        assert again.allowed("rc", "analytics").reason == "erased"
        assert again.metrics().size == 2
    again.close()
    view.close()
