"""Operators: replay, redrive, audit, topic rewind, without touching the database by hand."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from aiokafka import AIOKafkaConsumer

from consent.adapters.db import make_engine, make_sessionmaker
from consent.api.auth import hash_key, new_key
from consent.service import replay as replay_svc
from consent.service.processors import known_processors
from consent.settings import Settings
from consent_common.kafka import client_kwargs
from consentctl.maintenance import rewind
from propagator.config import load_processors
from tests.conftest import admin, eventually, user
from tests.support import (
    RecordingProcessor,
    create_replay_job,
    read_topic,
    running_stack,
    serving,
    write_changes,
)

FAST = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2}


@pytest.fixture
def procs(processor_secrets):  # type: ignore[no-untyped-def]
    return (
        RecordingProcessor("email", processor_secrets["email"]),
        RecordingProcessor("payment", processor_secrets["payment"]),
    )


@pytest.fixture
def ops_settings(topics: Settings, procs, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    email, payment = procs
    cfgs = [
        email.config("TEST_EMAIL_SECRET", ["marketing_email"], **FAST),
        payment.config("TEST_PAYMENT_SECRET", ["sale", "share"], **FAST),
    ]
    path = tmp_path / "processors.yaml"
    path.write_text(yaml.safe_dump({"processors": [c.model_dump() for c in cfgs]}))
    return topics.model_copy(update={"processors_file": path})


@pytest.fixture
async def ops_client(ops_settings: Settings):  # type: ignore[no-untyped-def]
    import httpx

    from consent.api.app import create_app

    app = create_app(ops_settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c,
    ):
        yield c


def since() -> str:
    return (datetime.now(UTC) - timedelta(hours=1)).isoformat()


@pytest.mark.timeout(120)
async def test_replay_one_subject_to_one_processor(ops_client, ops_settings, procs, db):
    email, payment = procs
    configs = load_processors(ops_settings.processors_file)  # the propagator's own loader
    async with serving(email, payment), running_stack(ops_settings, configs):
        for sid in ("s1", "s2"):
            r = await ops_client.patch(
                f"/v1/subjects/{sid}/preferences",
                headers=admin(),
                json={"purposes": {"marketing_email": "granted", "sale": "denied"}},
            )
            assert r.status_code == 200
        await eventually(
            lambda: len(email.requests) == 2 and len(payment.requests) == 2, timeout=30
        )
        before = len(await read_topic(ops_settings, ops_settings.events_topic, min_count=2))
        r = await ops_client.post(
            "/v1/admin/replays",
            headers=admin(),
            json={"since": since(), "subject_id": "s1", "processors": ["email"]},
        )
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        status = await eventually(lambda: _job_done(ops_client, job_id), timeout=20)
        assert status["done"] == 1 and status["emitted"] == 1
        replays = await eventually(
            lambda: [q for q in email.requests if q.body["replay"]], timeout=20
        )
        await asyncio.sleep(1.0)
    assert len(replays) == 1
    assert replays[0].body["subject_id"] == "s1" and replays[0].body["sequence"] == 1
    assert replays[0].body["decisions"] == {"marketing_email": True}
    assert not [q for q in payment.requests if q.body["replay"]]
    after = await read_topic(ops_settings, ops_settings.events_topic, min_count=before)
    assert len(after) == before  # nothing re-published to the shared topic
    audit = (await ops_client.get("/v1/admin/audit", headers=admin())).json()["items"]
    assert {"replay.started", "replay.completed"} <= {a["action"] for a in audit}
    assert all(a["reference"] == job_id for a in audit if a["action"].startswith("replay."))


async def _job_done(client, job_id):  # type: ignore[no-untyped-def]
    r = await client.get(f"/v1/admin/replays/{job_id}", headers=admin())
    return r.json() if r.json()["status"] == "completed" else None


@pytest.mark.timeout(120)
async def test_replay_interrupted_and_resumed_sends_each_subject_once(ops_settings, procs, db):
    subjects = [f"i{n:02d}" for n in range(30)]
    await write_changes(ops_settings, subjects, 1)
    known = known_processors(ops_settings.processors_file)
    engine = make_engine(ops_settings.database_url or "")
    sessions = make_sessionmaker(engine)
    try:
        job = await create_replay_job(sessions, known, processors=["email"])
        first = await replay_svc.run_batch(sessions, job.id, known, batch=10)
        assert first is not None and first.subjects == 10
        await replay_svc.interrupt(sessions, job.id)  # operator pressed Ctrl-C
        assert await replay_svc.run_batch(sessions, job.id, known) is None
        with pytest.raises(replay_svc.ReplayConflict):  # one job at a time per scope
            await replay_svc.resume(sessions, job.id)
            await create_replay_job(sessions, known, processors=["email"])
        while (
            batch := await replay_svc.run_batch(sessions, job.id, known, batch=7)
        ) and not batch.finished:
            pass
    finally:
        await engine.dispose()
    # what the consent service published for the propagator (consent.replays.v1)
    rows = await db.fetch(
        "SELECT aggregateid AS subject_id, targets AS processor FROM outbox "
        "WHERE aggregatetype = 'replay'"
    )
    assert sorted(r["subject_id"] for r in rows) == subjects  # every subject, none twice
    assert {r["processor"] for r in rows} == {"email"}
    status = await db.fetchrow(
        "SELECT status, done, emitted FROM replay_jobs WHERE id = $1", job.id
    )
    assert dict(status) == {"status": "completed", "done": 30, "emitted": 30}


@pytest.mark.timeout(120)
async def test_redrive_dead_delivery_after_recovery(ops_client, ops_settings, procs, db):
    email, payment = procs
    broken = {"v": True}
    email.responder = lambda _r: 400 if broken["v"] else 204
    configs = load_processors(ops_settings.processors_file)  # the propagator's own loader
    async with serving(email, payment), running_stack(ops_settings, configs):
        r = await ops_client.patch(
            "/v1/subjects/d1/preferences",
            headers=admin(),
            json={"purposes": {"marketing_email": "granted"}},
        )
        assert r.status_code == 200
        dead = await eventually(lambda: _dead(ops_client), timeout=30)
        assert dead["processor"] == "email" and "HTTP 400" in dead["last_error"]
        broken["v"] = False
        r = await ops_client.post(f"/v1/admin/deliveries/{dead['id']}/redrive", headers=admin())
        assert r.status_code == 200, r.text
        await eventually(lambda: [q for q in email.requests if q.status == 204], timeout=20)
        r = await ops_client.post(f"/v1/admin/deliveries/{dead['id']}/redrive", headers=admin())
        assert r.status_code == 409  # only a dead delivery can be redriven
    row = await db.fetchrow("SELECT status FROM deliveries WHERE id = $1", uuid.UUID(dead["id"]))
    assert row["status"] == "delivered"
    audit = (await ops_client.get("/v1/admin/audit", headers=admin())).json()["items"]
    entry = next(a for a in audit if a["action"] == "delivery.redrive")
    assert entry["reference"] == dead["id"] and entry["actor"] == "dev-admin"


async def _dead(client):  # type: ignore[no-untyped-def]
    r = await client.get("/v1/admin/deliveries?status=dead", headers=admin())
    items = r.json()["items"]
    return items[0] if items else None


@pytest.mark.timeout(120)
async def test_topic_rewind_rereads_from_the_chosen_time(client, topics: Settings):
    async with running_stack(topics):
        await write_changes(topics, ["t1"], 3)
        await eventually(lambda: _count(topics, 3), timeout=20)
        await asyncio.sleep(1.1)
        cut = datetime.now(UTC)
        await asyncio.sleep(0.1)
        await write_changes(topics, ["t2"], 2)
        await eventually(lambda: _count(topics, 5), timeout=20)
    group = "other-service"
    seen = await _consume(topics, group, 5)  # the other service reads everything, commits
    assert len(seen) == 5
    moves = await rewind(topics, group, int(cut.timestamp() * 1000), topics.events_topic)
    assert moves
    again = await _consume(topics, group, 2)
    assert sorted(again) == [("t2", 1), ("t2", 2)]


async def _count(settings: Settings, n: int) -> bool:
    return len(await read_topic(settings, settings.events_topic, min_count=n, timeout=2)) >= n


async def _consume(settings: Settings, group: str, n: int) -> list[tuple[str, int]]:
    consumer = AIOKafkaConsumer(
        settings.events_topic,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=20,
        **client_kwargs(settings),
    )
    await consumer.start()
    got: list[tuple[str, int]] = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline:
            for recs in (await consumer.getmany(timeout_ms=200)).values():
                got += [(r.key.decode(), int(dict(r.headers)["ce_subjectseq"])) for r in recs]
        await consumer.commit()
        await asyncio.sleep(0.5)
        got += [
            (r.key.decode(), 0)
            for recs in (await consumer.getmany(timeout_ms=500)).values()
            for r in recs
        ]
    finally:
        await consumer.stop()
    return got


@pytest.mark.parametrize(
    "path,method",
    [
        ("/v1/admin/replays", "POST"),
        ("/v1/admin/replays/" + str(uuid.uuid4()), "GET"),
        ("/v1/admin/deliveries", "GET"),
        (f"/v1/admin/deliveries/{uuid.uuid4()}/redrive", "POST"),
        ("/v1/admin/audit", "GET"),
        ("/v1/admin/subjects/x/collected-without-consent", "POST"),
    ],
)
async def test_admin_endpoints_refuse_non_admin_credentials(client, db, path, method):
    key_id, raw = new_key()
    await db.execute(
        "INSERT INTO api_keys (id, key_hash, scopes) VALUES ($1, $2, $3)",
        key_id,
        hash_key(raw),
        ["preferences:read", "preferences:write", "decisions:read"],
    )
    body = {"since": since()} if path.endswith("replays") else {}
    for headers in ({"X-API-Key": raw}, user("x")):
        r = await client.request(method, path, headers=headers, json=body)
        assert r.status_code == 403, (headers, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    r = await client.request(method, path, json=body)
    assert r.status_code == 401


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["replay", "--since", "2026-01-01T00:00:00Z", "--processor", "nosuch"],
            "unknown processor",
        ),
        (
            ["replay", "--since", "2026-02-01T00:00:00Z", "--until", "2026-01-01T00:00:00Z"],
            "--until must be after --since",
        ),
        (["replay", "--since", "yesterday"], "not an ISO 8601 time"),
        (
            ["replay", "--since", "2026-01-01T00:00:00Z", "--purpose", "telepathy"],
            "unknown purpose",
        ),
        (["deliveries", "redrive"], "give one delivery id"),
        (["deliveries", "list", "--status", "lost"], "unknown status"),
    ],
)
def test_cli_rejects_bad_arguments_clearly(ops_settings: Settings, args, message):
    env = {
        **os.environ,
        "CONSENT_DATABASE_URL": ops_settings.database_url or "",
        "CONSENT_PROCESSORS_FILE": str(ops_settings.processors_file),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "consentctl.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout, proc.stderr
