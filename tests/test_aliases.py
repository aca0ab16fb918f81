"""Anonymous visitors who become customers (issue 21): merge, reads, edge cases, undo."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from consent.settings import Settings
from consentctl.ledger import verify_all
from tests.conftest import admin, user
from tests.test_minors_guardians import make_key, verification

ANON = "anon:01JDX4R9Q2V7K3M8"
PERSON = "u-alias-1"


async def decision(client: httpx.AsyncClient, subject: str, purpose: str) -> dict[str, Any]:
    r = await client.get(f"/v1/subjects/{subject}/decisions?purpose={purpose}", headers=admin())
    assert r.status_code == 200, r.text
    return r.json()


async def patch(client: httpx.AsyncClient, subject: str, purposes: dict[str, str], **kw: Any):
    headers = kw.pop("headers", None) or admin()
    return await client.patch(
        f"/v1/subjects/{subject}/preferences",
        json={"purposes": purposes, "context": {"channel": "web"}},
        headers=headers,
        **kw,
    )


async def history(client: httpx.AsyncClient, subject: str) -> list[dict[str, Any]]:
    r = await client.get(f"/v1/subjects/{subject}/history", headers=admin())
    return r.json()["items"]


async def anonymous_then_person(client: httpx.AsyncClient) -> None:
    """The anonymous visitor (its own minted token, GPC on) opts out of e-mail, grants
    personalisation and analytics cookies; later the person grants e-mail and sale."""
    anon = user(ANON)
    r = await client.get(f"/v1/subjects/{ANON}/preferences", headers={**anon, "Sec-GPC": "1"})
    assert r.headers.get("sec-gpc-honored") == "1"
    r = await patch(
        client,
        ANON,
        {"marketing_email": "denied", "personalization": "granted", "cookies_analytics": "granted"},
        headers=anon,
    )
    assert r.status_code == 200, r.text
    await client.put(f"/v1/subjects/{PERSON}", json={"jurisdiction": "US-CA"}, headers=admin())
    r = await patch(client, PERSON, {"marketing_email": "granted", "sale": "granted"})
    assert r.status_code == 200, r.text


async def test_merge_keeps_every_opt_out_and_the_alias_answers_for_the_person(
    client: httpx.AsyncClient, settings: Settings
):
    await anonymous_then_person(client)
    r = await client.post(
        f"/v1/subjects/{PERSON}/aliases", json={"anonymous_id": ANON}, headers=admin()
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["sequence"] == 3 and body["anonymous_sequence"] == 3
    assert {c["purpose"]: c["to"] for c in body["changes"]} == {
        "marketing_email": "denied",  # the older opt-out beats the newer grant
        "personalization": "granted",
        "sale": "denied",  # GPC on the device beats the person's newer grant
        "share": "denied",
    }
    for subject in (PERSON, ANON):
        assert await decision(client, subject, "marketing_email") == {
            **(await decision(client, subject, "marketing_email")),
            "allowed": False,
            "reason": "explicit_denial",
        }
        assert (await decision(client, subject, "sale"))["reason"] == "gpc_opt_out"
        assert (await decision(client, subject, "personalization"))["allowed"] is True
    # cookie purposes stay with the device
    assert (await decision(client, ANON, "cookies_analytics"))["reason"] == "explicit_grant"
    assert (await decision(client, PERSON, "cookies_analytics"))["reason"] == "regime_default"
    r = await client.get(f"/v1/subjects/{ANON}/preferences", headers=user(ANON))
    assert r.json()["merged_into"] == PERSON and r.headers["etag"] == '"3"'
    assert (
        "merged_into"
        not in (await client.get(f"/v1/subjects/{PERSON}/preferences", headers=admin())).json()
    )
    r = await client.post(
        "/v1/decisions:batch",
        json={"items": [{"subject_id": ANON, "purpose": "personalization"}]},
        headers=admin(),
    )
    assert r.json()["items"][0]["allowed"] is True

    # both ledgers record the merge, each naming the other and binding its chain
    p_entry, a_entry = (await history(client, PERSON))[0], (await history(client, ANON))[0]
    assert p_entry["type"] == a_entry["type"] == "subject.merged"
    assert p_entry["detail"]["anonymous_id"] == ANON and a_entry["detail"]["person_id"] == PERSON
    assert p_entry["detail"]["other_hash"] == a_entry["hash"]
    assert a_entry["detail"]["other_hash"] == p_entry["prev_hash"]
    assert a_entry["detail"]["other_sequence"] == p_entry["sequence"]
    checked, problems = await verify_all(settings.database_url, show_progress=False)
    assert checked == 2 and problems == []

    # linked twice to the same person: nothing new
    r = await client.post(
        f"/v1/subjects/{PERSON}/aliases", json={"anonymous_id": ANON}, headers=admin()
    )
    assert r.status_code == 200 and r.json()["sequence"] == 3
    # already merged into someone else
    r = await client.post(
        "/v1/subjects/u-other/aliases", json={"anonymous_id": ANON}, headers=admin()
    )
    assert r.status_code == 409 and r.json()["code"] == "already_merged"
    # a chain: the person cannot become an alias, nor can an alias take aliases
    r = await client.post(f"/v1/subjects/{ANON}/aliases", json={"anonymous_id": "anon:x"},
                          headers=admin())  # fmt: skip
    assert r.json()["code"] == "subject_is_alias"
    r = await client.post("/v1/subjects/u-top/aliases", json={"anonymous_id": PERSON},
                          headers=admin())  # fmt: skip
    assert r.json()["code"] == "alias_has_aliases"

    # writes to the alias: its device purposes only; anything else is the person's
    r = await patch(client, ANON, {"marketing_sms": "granted"}, headers=user(ANON))
    assert r.status_code == 409 and r.json()["code"] == "subject_merged"
    r = await patch(client, ANON, {"cookies_analytics": "denied"}, headers=user(ANON))
    assert r.status_code == 200 and r.json()["merged_into"] == PERSON
    r = await client.put(f"/v1/subjects/{ANON}", json={"jurisdiction": "DE"}, headers=admin())
    assert r.status_code == 409 and r.json()["code"] == "subject_merged"


async def test_merge_needs_a_service_key_with_preferences_write(client, db):
    body = {"anonymous_id": ANON}
    r = await client.post(f"/v1/subjects/{PERSON}/aliases", json=body, headers=user(PERSON))
    assert r.status_code == 403
    reader = await make_key(db, ["preferences:read", "decisions:read"])
    r = await client.post(f"/v1/subjects/{PERSON}/aliases", json=body, headers=reader)
    assert r.status_code == 403
    r = await client.post(f"/v1/subjects/{PERSON}/aliases", json=body)
    assert r.status_code == 401
    writer = await make_key(db, ["preferences:write"])
    r = await client.post(f"/v1/subjects/{PERSON}/aliases", json=body, headers=writer)
    assert r.status_code == 201, r.text
    r = await client.post(f"/v1/subjects/{PERSON}/aliases", json={"anonymous_id": PERSON},
                          headers=writer)  # fmt: skip
    assert r.status_code == 409 and r.json()["code"] == "alias_is_subject"
    for headers in (user(ANON), reader):
        r = await client.delete(f"/v1/subjects/{PERSON}/aliases/{ANON}", headers=headers)
        assert r.status_code == 403


async def test_a_childs_choices_never_become_an_adults(client):
    child = {"jurisdiction": "DE", "birth_date": "2016-03-01"}
    await client.put(f"/v1/subjects/{ANON}", json=child, headers=admin())
    await client.put(f"/v1/subjects/{PERSON}", json={"jurisdiction": "DE"}, headers=admin())
    r = await client.post(
        f"/v1/subjects/{PERSON}/aliases", json={"anonymous_id": ANON}, headers=admin()
    )
    assert r.status_code == 409 and r.json()["code"] == "minor_merge_refused"
    assert (await history(client, PERSON))[0]["type"] == "subject.updated"  # nothing recorded


async def test_undo_returns_carried_grants_and_keeps_opt_outs(client, settings: Settings):
    await anonymous_then_person(client)
    await client.post(f"/v1/subjects/{PERSON}/aliases", json={"anonymous_id": ANON},
                      headers=admin())  # fmt: skip
    r = await client.delete(f"/v1/subjects/{PERSON}/aliases/{ANON}", headers=user(PERSON))
    assert r.status_code == 200, r.text
    assert r.json()["changes"] == [{"purpose": "personalization", "from": "granted", "to": "unset"}]
    assert (await decision(client, PERSON, "marketing_email"))["allowed"] is False
    assert (await decision(client, PERSON, "sale"))["reason"] == "gpc_opt_out"
    assert (await decision(client, PERSON, "personalization"))["reason"] == "regime_default"
    # the device answers for itself again
    own = (await client.get(f"/v1/subjects/{ANON}/preferences", headers=user(ANON))).json()
    assert "merged_into" not in own
    assert own["purposes"]["personalization"]["reason"] == "explicit_grant"
    p_entry, a_entry = (await history(client, PERSON))[0], (await history(client, ANON))[0]
    assert p_entry["type"] == a_entry["type"] == "subject.unmerged"
    assert p_entry["detail"]["other_hash"] == a_entry["hash"]
    r = await client.delete(f"/v1/subjects/{PERSON}/aliases/{ANON}", headers=admin())
    assert r.status_code == 404
    checked, problems = await verify_all(settings.database_url, show_progress=False)
    assert checked == 2 and problems == []
    links = (await client.get(f"/v1/subjects/{PERSON}/aliases", headers=admin())).json()
    assert links["items"][0]["unlinked_at"] is not None
    # and it may be linked again
    r = await client.post(f"/v1/subjects/{PERSON}/aliases", json={"anonymous_id": ANON},
                          headers=admin())  # fmt: skip
    assert r.status_code == 201


async def test_erasing_the_person_erases_the_anonymous_id(client):
    await anonymous_then_person(client)
    await client.post(f"/v1/subjects/{PERSON}/aliases", json={"anonymous_id": ANON},
                      headers=admin())  # fmt: skip
    r = await client.post(f"/v1/subjects/{ANON}/erasure", headers=user(ANON))
    assert r.status_code == 409 and r.json()["code"] == "subject_merged"
    r = await client.post(f"/v1/subjects/{PERSON}/erasure", headers=user(PERSON))
    assert r.status_code == 202, r.text
    assert (await decision(client, ANON, "cookies_analytics"))["reason"] == "erased"
    r = await client.get(f"/v1/subjects/{ANON}/erasure", headers=admin())
    assert r.json()["reason"] == "merged_person_erased"
    assert (await history(client, ANON))[0]["type"] == "subject.erasure_requested"


async def test_gpc_from_the_merged_devices_token_is_the_persons(client):
    await patch(client, ANON, {"cookies_functional": "granted"}, headers=user(ANON))
    await client.put(f"/v1/subjects/{PERSON}", json={"jurisdiction": "US-CA"}, headers=admin())
    r = await client.post(
        f"/v1/subjects/{PERSON}/aliases", json={"anonymous_id": ANON}, headers=admin()
    )
    assert r.status_code == 201 and r.json()["changes"] == []
    assert (await decision(client, PERSON, "sale"))["reason"] == "regime_default"
    r = await client.get(f"/v1/subjects/{ANON}/preferences", headers={**user(ANON), "Sec-GPC": "1"})
    assert r.headers.get("sec-gpc-honored") == "1"
    assert r.json()["purposes"]["sale"]["reason"] == "gpc_opt_out"
    assert (await decision(client, PERSON, "sale"))["reason"] == "gpc_opt_out"
    [entry] = [e for e in await history(client, PERSON) if e["channel"] == "gpc"]
    assert entry["actor"] == {"type": "subject", "id": ANON}


async def test_a_minor_devices_guardian_applies_to_the_minor_person(client):
    child = {"jurisdiction": "DE", "birth_date": "2016-03-01"}
    await client.put(f"/v1/subjects/{ANON}", json=child, headers=admin())
    r = await client.post(
        f"/v1/subjects/{ANON}/guardians",
        json={"guardian_id": "parent-1", "verification": verification()},
        headers=admin(),
    )
    assert r.status_code == 201, r.text
    r = await patch(client, ANON, {"marketing_email": "granted"}, headers=user("parent-1"))
    assert r.status_code == 200, r.text
    await client.put(f"/v1/subjects/{PERSON}", json=child, headers=admin())
    r = await client.post(
        f"/v1/subjects/{PERSON}/aliases", json={"anonymous_id": ANON}, headers=admin()
    )
    assert r.status_code == 201, r.text
    assert r.json()["changes"] == [{"purpose": "marketing_email", "from": "unset", "to": "granted"}]
    links = (await client.get(f"/v1/subjects/{PERSON}/guardians", headers=admin())).json()
    assert [g["guardian_id"] for g in links["items"]] == ["parent-1"]
    assert (await decision(client, PERSON, "marketing_email"))["reason"] == "explicit_grant"
    assert (await decision(client, PERSON, "sale"))["reason"] == "child_data_never_sold"


async def test_two_people_racing_for_one_anonymous_id(client):
    async def merge(person: str) -> int:
        r = await client.post(
            f"/v1/subjects/{person}/aliases", json={"anonymous_id": ANON}, headers=admin()
        )
        return r.status_code

    assert sorted(await asyncio.gather(merge("u-a"), merge("u-b"))) == [201, 409]
