"""Issue 21 end to end: a merge through the API reaches real processors as the merged
person's decisions, and the anonymous id's state on consent.state.v1 answers for the person."""

from __future__ import annotations

import orjson

from consent.settings import Settings
from tests.conftest import admin, eventually, user
from tests.support import RecordingProcessor, read_topic, running_stack, serving

ANON, PERSON = "anon:e2e-7Q3K9M2X", "u-merge-e2e"


async def test_processors_receive_the_merged_persons_decisions(
    client, topics: Settings, processor_secrets
):
    settings = topics
    email = RecordingProcessor("email", processor_secrets["email"])
    payment = RecordingProcessor("payment", processor_secrets["payment"])
    configs = [
        email.config("TEST_EMAIL_SECRET", ["marketing_email"]),
        payment.config("TEST_PAYMENT_SECRET", ["sale", "share"]),
    ]
    async with serving(email, payment), running_stack(settings, configs):
        # anonymous: GPC from the browser, e-mail opted out on the banner
        r = await client.get(
            f"/v1/subjects/{ANON}/preferences", headers={**user(ANON), "Sec-GPC": "1"}
        )
        assert r.status_code == 200
        r = await client.patch(
            f"/v1/subjects/{ANON}/preferences",
            json={"purposes": {"marketing_email": "denied"}},
            headers=admin(),
        )
        assert r.status_code == 200, r.text
        # the person, later: California, grants e-mail (sale allowed by the regime default)
        await client.put(f"/v1/subjects/{PERSON}", json={"jurisdiction": "US-CA"}, headers=admin())
        r = await client.patch(
            f"/v1/subjects/{PERSON}/preferences",
            json={"purposes": {"marketing_email": "granted"}},
            headers=admin(),
        )
        assert r.status_code == 200, r.text
        await eventually(
            lambda: [q for q in email.requests if q.body["subject_id"] == PERSON], timeout=20
        )
        r = await client.post(
            f"/v1/subjects/{PERSON}/aliases", json={"anonymous_id": ANON}, headers=admin()
        )
        assert r.status_code == 201, r.text

        def merged(p: RecordingProcessor) -> list:
            return [
                q
                for q in p.applied()
                if q.body["subject_id"] == PERSON
                and q.headers["x-consent-event-type"] == "subject.merged"
            ]

        [to_email] = await eventually(lambda: merged(email), timeout=20)
        [to_payment] = await eventually(lambda: merged(payment), timeout=20)
        assert to_email.signature_ok and to_payment.signature_ok
        assert to_email.body["decisions"] == {"marketing_email": False}
        assert to_payment.body["decisions"] == {"sale": False, "share": False}
        assert to_email.body["sequence"] == r.json()["sequence"]

    state = [
        rec
        for rec in await read_topic(settings, settings.state_topic, min_count=5)
        if rec.key == ANON.encode()
    ]
    last = orjson.loads(state[-1].value)
    assert last["decisions"]["marketing_email"] is False and last["decisions"]["sale"] is False
    assert last["jurisdiction"] == "US-CA"  # it answers for the person now
