"""Concurrent writers on one subject: one sequence, no gaps, no duplicates, an intact chain,
and an outbox in sequence order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from consentctl.ledger import verify_all
from tests.conftest import admin, user

N = 50
# marketing_email first, so it alternates granted/denied from one request to the next
PURPOSES = [
    "marketing_email",
    "marketing_sms",
    "marketing_push",
    "third_party_sharing",
    "sale",
    "share",
    "analytics",
    "personalization",
    "cookies_functional",
    "cookies_analytics",
    "cookies_advertising",
]


def full_assignment(i: int) -> dict[str, str]:
    """Request ``i`` sets every purpose, bit ``k`` of ``i`` choosing purpose ``k``'s status.

    All 50 assignments differ and each sets every purpose, so after any interleaving the
    state equals the previous request's assignment and each request is a real change."""
    return {p: "granted" if (i >> k) & 1 else "denied" for k, p in enumerate(PURPOSES)}


async def _check(db: Any, settings: Any, sid: str, responses: list[Any]) -> None:
    assert [r.status_code for r in responses] == [200] * N, [r.text for r in responses][:3]
    seqs = sorted(r.json()["sequence"] for r in responses)
    first = await db.fetchval(
        "SELECT min(sequence) FROM consent_ledger WHERE subject_id=$1 AND type='consent.changed'",
        sid,
    )
    assert seqs == list(range(first, first + N)), seqs  # every request got its own number
    final = await db.fetchval("SELECT sequence FROM subjects WHERE subject_id=$1", sid)
    ledger = [
        r["sequence"]
        for r in await db.fetch(
            "SELECT sequence FROM consent_ledger WHERE subject_id=$1 ORDER BY sequence", sid
        )
    ]
    assert ledger == list(range(1, final + 1))
    assert final == first + N - 1
    outbox = [
        r["sequence"]
        for r in await db.fetch(
            "SELECT sequence FROM outbox WHERE aggregateid=$1 ORDER BY position", sid
        )
    ]
    assert outbox == list(range(1, final + 1))
    checked, problems = await verify_all(settings.database_url, show_progress=False)
    assert checked >= 1 and problems == []
    # the state is the assignment of the request that committed last
    last = next(r for r in responses if r.json()["sequence"] == final)
    body = await db.fetch("SELECT purpose, status FROM consent_state WHERE subject_id=$1", sid)
    assert {r["purpose"]: r["status"] for r in body} == {
        p: v["status"] for p, v in last.json()["purposes"].items()
    }


@pytest.mark.parametrize("existing", [True, False], ids=["existing_subject", "new_subject"])
async def test_parallel_patches_get_consecutive_sequences(client, db, settings, existing):
    sid = "conc"
    if existing:
        r = await client.put(f"/v1/subjects/{sid}", json={"jurisdiction": "US-CA"}, headers=admin())
        assert r.status_code == 200 and r.json()["sequence"] == 1
    responses = await asyncio.gather(
        *(
            client.patch(
                f"/v1/subjects/{sid}/preferences",
                json={"purposes": full_assignment(i)},
                headers=user(sid),
            )
            for i in range(N)
        )
    )
    await _check(db, settings, sid, list(responses))
    expected_first = 2 if existing else 1
    assert sorted(r.json()["sequence"] for r in responses)[0] == expected_first
    emails = {r.json()["purposes"]["marketing_email"]["status"] for r in responses}
    assert emails == {"granted", "denied"}


async def test_parallel_patches_and_reads_with_gpc(client, db, settings):
    """Writers, GPC-carrying reads and a profile update racing on one subject."""
    sid = "race"
    writes = [
        client.patch(
            f"/v1/subjects/{sid}/preferences",
            json={"purposes": {"analytics": "granted" if i % 2 else "denied"}},
            headers=user(sid),
        )
        for i in range(20)
    ]
    reads = [
        client.get(f"/v1/subjects/{sid}/preferences", headers={**user(sid), "Sec-GPC": "1"})
        for _ in range(10)
    ]
    profile = [client.put(f"/v1/subjects/{sid}", json={"jurisdiction": "DE"}, headers=admin())]
    responses = await asyncio.gather(*writes, *reads, *profile)
    assert [r.status_code for r in responses] == [200] * len(responses), [
        r.text for r in responses if r.status_code != 200
    ][:3]
    final = await db.fetchval("SELECT sequence FROM subjects WHERE subject_id=$1", sid)
    ledger = [
        r["sequence"]
        for r in await db.fetch(
            "SELECT sequence FROM consent_ledger WHERE subject_id=$1 ORDER BY sequence", sid
        )
    ]
    assert ledger == list(range(1, final + 1))
    gpc_rows = await db.fetchval(
        "SELECT count(*) FROM consent_ledger WHERE subject_id=$1 AND channel='gpc'", sid
    )
    assert gpc_rows == 1  # the opt-out is recorded once however many reads carry it
    outbox = [
        r["sequence"]
        for r in await db.fetch(
            "SELECT sequence FROM outbox WHERE aggregateid=$1 ORDER BY position", sid
        )
    ]
    assert outbox == ledger
    checked, problems = await verify_all(settings.database_url, show_progress=False)
    assert checked == 1 and problems == []


async def test_parallel_requests_with_one_idempotency_key_apply_once(client, db):
    sid, n = "idem-race", 3
    headers = {**user(sid), "Idempotency-Key": "same-key"}
    responses = await asyncio.gather(
        *(
            client.patch(
                f"/v1/subjects/{sid}/preferences",
                json={"purposes": {"marketing_email": "granted"}},
                headers=headers,
            )
            for _ in range(n)
        ),
        return_exceptions=True,  # let every request finish before judging any
    )
    assert [getattr(r, "status_code", r) for r in responses] == [200] * n
    assert len({r.content for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == n - 1
    assert await db.fetchval("SELECT count(*) FROM consent_ledger WHERE subject_id=$1", sid) == 1
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE aggregateid=$1", sid) == 1
