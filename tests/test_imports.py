"""Bulk import on real PostgreSQL: the same file twice leaves one copy; a file with bad rows
imports the good ones and reports each bad one; one event per subject; an interrupted
import resumes where it stopped; the HTTP upload is admin-only and size-limited."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.service import imports as import_svc
from consent.settings import Settings
from tests.conftest import admin, eventually, user


@pytest.fixture
def sessions(
    engines: list[async_sessionmaker[AsyncSession]],
) -> async_sessionmaker[AsyncSession]:
    return engines[0]


def jsonl(rows: list[dict[str, str]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def choice(subject: str, purpose: str, status: str, at: str, **kw: str) -> dict[str, str]:
    return {"subject_id": subject, "purpose": purpose, "status": status, "occurred_at": at, **kw}


FILE = [
    choice("imp-1", "marketing_email", "granted", "2026-01-05T10:00:00Z", notice_id="n-7"),
    choice("imp-1", "sale", "denied", "2026-01-06T10:00:00Z", jurisdiction="US-CA"),
    choice("imp-2", "analytics", "granted", "2026-02-01T00:00:00Z", channel="web"),
    {
        "subject_id": "imp-3",
        "purpose": "telepathy",
        "status": "granted",
        "occurred_at": "2026-02-01T00:00:00Z",
    },
    choice("imp-3", "analytics", "maybe", "2026-02-01T00:00:00Z"),
    choice("imp-3", "analytics", "denied", "2026-02-02T00:00:00Z"),
]


async def _counts(db) -> dict[str, int]:  # type: ignore[no-untyped-def]
    ledger = await db.fetchval("SELECT count(*) FROM consent_ledger WHERE subject_id LIKE 'imp-%'")
    outbox = await db.fetch(
        "SELECT aggregateid AS key, count(*) AS n FROM outbox WHERE aggregateid LIKE 'imp-%' "
        "GROUP BY aggregateid"
    )
    return {"ledger": ledger, **{r["key"]: r["n"] for r in outbox}}


async def test_the_same_file_twice_leaves_one_copy_and_bad_rows_are_reported(
    sessions: async_sessionmaker[AsyncSession], client: httpx.AsyncClient, db
) -> None:
    data = jsonl(FILE)
    job_id, source = await import_svc.start(sessions, data, "jsonl", actor="test")
    assert [(e.line, e.column, e.reason) for e in source.rejected] == [
        (4, "purpose", "not a purpose of the catalog"),
        (5, "status", "granted or denied"),
    ]
    job = await import_svc.run(sessions, job_id, data)
    assert job is not None and job.status == "completed"
    assert (job.counts["applied"], job.counts["rejected"], job.counts["subjects_changed"]) == (
        4,
        2,
        3,
    )
    # each subject's rows are one accepted change: one ledger entry, one event
    assert await _counts(db) == {"ledger": 3, "imp-1": 1, "imp-2": 1, "imp-3": 1}
    prefs = (await client.get("/v1/subjects/imp-1/preferences", headers=admin())).json()
    assert prefs["jurisdiction"] == "US-CA" and prefs["sequence"] == 1
    email = prefs["purposes"]["marketing_email"]
    assert (email["status"], email["source"], email["updated_at"]) == (
        "granted",
        "import",
        "2026-01-05T10:00:00Z",
    )
    event = json.loads(
        await db.fetchval("SELECT payload::text FROM outbox WHERE aggregateid = 'imp-1'")
    )
    assert event["channel"] == "import"
    assert "marketing_email" in event["changed_decisions"]

    again_id, _ = await import_svc.start(sessions, data, "jsonl", actor="test")
    again = await import_svc.run(sessions, again_id, data)
    assert again is not None
    assert again.counts.get("applied", 0) == 0 and again.counts["already_imported"] == 4
    assert await _counts(db) == {"ledger": 3, "imp-1": 1, "imp-2": 1, "imp-3": 1}


async def test_older_rows_erased_subjects_and_minors(
    sessions: async_sessionmaker[AsyncSession], client: httpx.AsyncClient, db
) -> None:
    r = await client.patch(
        "/v1/subjects/imp-new/preferences", headers=admin(),
        json={"purposes": {"marketing_email": "denied"}},
    )  # fmt: skip
    assert r.status_code == 200
    r = await client.put(
        "/v1/subjects/imp-kid", headers=admin(),
        json={"jurisdiction": "DE", "birth_date": "2019-05-05"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    r = await client.patch(
        "/v1/subjects/imp-gone/preferences", headers=admin(),
        json={"purposes": {"analytics": "denied"}},
    )  # fmt: skip
    assert r.status_code == 200
    r = await client.post("/v1/subjects/imp-gone/erasure", headers=admin())
    assert r.status_code == 202
    data = jsonl(
        [
            choice("imp-new", "marketing_email", "granted", "2025-01-01T00:00:00Z"),  # older
            choice("imp-kid", "analytics", "granted", "2026-01-01T00:00:00Z"),
            choice("imp-kid", "marketing_email", "denied", "2026-01-01T00:00:00Z"),
            choice("imp-gone", "analytics", "granted", "2026-01-01T00:00:00Z"),
        ]
    )
    job_id, _ = await import_svc.start(sessions, data, "jsonl", actor="test")
    job = await import_svc.run(sessions, job_id, data)
    assert job is not None
    assert sorted((e["line"], e["reason"]) for e in job.rejected) == [
        (2, "guardian_required"),
        (4, "subject_erased"),
    ]
    prefs = (await client.get("/v1/subjects/imp-new/preferences", headers=admin())).json()
    assert prefs["purposes"]["marketing_email"]["status"] == "denied"  # the newer one stays
    kid = (await client.get("/v1/subjects/imp-kid/preferences", headers=admin())).json()
    assert kid["purposes"]["marketing_email"]["status"] == "denied"


async def test_an_interrupted_import_resumes_where_it_stopped(
    sessions: async_sessionmaker[AsyncSession], db
) -> None:
    rows = [choice(f"imp-r{i:03d}", "analytics", "granted", "2026-03-01T00:00:00Z")
            for i in range(25)]  # fmt: skip
    data = jsonl(rows)
    job_id, _ = await import_svc.start(sessions, data, "jsonl", actor="test")

    class Stop(Exception):
        pass

    def stop_after_first(done: int, total: int, counts: dict[str, int]) -> None:
        raise Stop

    with pytest.raises(Stop):
        await import_svc.run(sessions, job_id, data, chunk=10, on_progress=stop_after_first)
    assert (
        await db.fetchval("SELECT count(*) FROM consent_ledger WHERE subject_id LIKE 'imp-r%'")
        == 10
    )
    with pytest.raises(import_svc.ImportRefused):
        await import_svc.run(sessions, job_id, data + b"\n{}")  # not the same file
    job = await import_svc.run(sessions, job_id, data, chunk=10)
    assert job is not None and job.status == "completed" and job.counts["applied"] == 25
    assert (
        await db.fetchval("SELECT count(*) FROM consent_ledger WHERE subject_id LIKE 'imp-r%'")
        == 25
    )


async def test_upload_over_http(client: httpx.AsyncClient, settings: Settings) -> None:
    csv = (
        b"subject_id,purpose,status,occurred_at,channel\n"
        b"imp-h1,marketing_email,granted,2026-01-01T00:00:00Z,web\n"
        b"imp-h2,sale,nope,2026-01-01T00:00:00Z,\n"
    )
    r = await client.post(
        "/v1/admin/imports", content=csv, headers={**admin(), "Content-Type": "text/csv"}
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]

    async def done() -> dict[str, object] | None:
        s = (await client.get(f"/v1/admin/imports/{job_id}", headers=admin())).json()
        return s if s["status"] == "completed" else None

    status = await eventually(done, timeout=20)
    assert status["counts"]["applied"] == 1  # type: ignore[index]
    assert status["rejected"] == [{"line": 3, "column": "status", "reason": "granted or denied"}]

    plain = {**admin(), "Content-Type": "text/plain"}
    assert (await client.post("/v1/admin/imports", content=csv, headers=plain)).status_code == 415
    user_h = {**user("imp-h1"), "Content-Type": "text/csv"}
    assert (await client.post("/v1/admin/imports", content=csv, headers=user_h)).status_code == 403
    big = b"subject_id,purpose,status,occurred_at\n" + b"x" * (settings.import_max_bytes + 1)
    r = await client.post(
        "/v1/admin/imports", content=big, headers={**admin(), "Content-Type": "text/csv"}
    )
    assert r.status_code == 413
    # every other route keeps its 64 KiB limit, even with a key
    r = await client.patch(
        "/v1/subjects/imp-h1/preferences", content=b"{" + b" " * 70_000 + b"}",
        headers={**admin(), "Content-Type": "application/json"},
    )  # fmt: skip
    assert r.status_code == 413
    missing = await client.get(f"/v1/admin/imports/{uuid.uuid4()}", headers=admin())
    assert missing.status_code == 404


async def test_an_import_passes_ledger_verify(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """What an import projects is what its ledger entry replays to: ``ledger verify`` finds
    nothing (a row's own time, channel, notice version and expiry included)."""
    from consentctl.ledger import verify_all

    rows = [
        choice("impv-1", "marketing_email", "granted", "2026-01-05T10:00:00Z", notice_id="n-7"),
        choice("impv-1", "sale", "denied", "2026-01-06T10:00:00Z", channel="web"),
        choice("impv-2", "analytics", "granted", "2020-02-01T00:00:00Z"),  # expired since
    ]
    job_id, _ = await import_svc.start(sessions, jsonl(rows), "jsonl", actor="test")
    await import_svc.run(sessions, job_id)
    _, problems = await verify_all(settings.database_url or "", show_progress=False)
    assert [p for p in problems if p.subject_id.startswith("impv-")] == []


async def test_only_an_admin_key_opens_the_upload_limit(client: httpx.AsyncClient, db) -> None:
    """The upload path's larger body limit is granted after the key is checked, before the
    body is read: a made-up key, or a key without ``admin``, gets the ordinary 64 KiB limit
    (413), so forged keys cannot make the service hold megabytes per in-flight request."""
    from tests.test_api_auth import make_key

    rows = b"".join(
        b"imp-big-%d,marketing_email,granted,2026-01-01T00:00:00Z\n" % i for i in range(3000)
    )
    body = b"subject_id,purpose,status,occurred_at\n" + rows
    assert len(body) > 64 * 1024
    csv = {"Content-Type": "text/csv"}
    writer = await make_key(db, ["preferences:write"])
    for key in ("ck_forged_" + "x" * 32, writer):
        r = await client.post("/v1/admin/imports", content=body, headers={**csv, "X-API-Key": key})
        assert r.status_code == 413, r.text
    r = await client.post("/v1/admin/imports", content=body, headers={**admin(), **csv})
    assert r.status_code == 202, r.text
    # within the ordinary limit, a non-admin key is refused by the route, as before
    small = b"subject_id,purpose,status,occurred_at\n" + rows[:2000]
    r = await client.post("/v1/admin/imports", content=small, headers={**csv, "X-API-Key": writer})
    assert r.status_code == 403, r.text
