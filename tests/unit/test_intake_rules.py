"""Intake's pure rules: what a record is (usable, skipped, parked), and who receives it."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from propagator.config import ProcessorConfig
from propagator.decode import Park, Skip, Usable, decode
from propagator.processors.base import WebhookAdapter

GOOD = {
    "subject_id": "u-1",
    "sequence": 3,
    "changes": [],
    "decisions": {"sale": False, "marketing_email": True},
    "changed_decisions": ["sale"],
}


def good(**over: object) -> bytes:
    return orjson.dumps({**GOOD, **over})


F = "missing or invalid field: "


def headers(type_: str = "consent.changed", **over: bytes | None) -> list[tuple[str, bytes | None]]:
    h = {"ce_id": b"e-1", "ce_type": type_.encode(), "ce_time": b"2026-11-29T10:00:00Z"}
    h.update(over)
    return [(k, v) for k, v in h.items() if v is not None]


def test_a_good_record_is_usable_and_unknown_fields_are_ignored():
    got = decode(headers(), orjson.dumps({**GOOD, "from_the_future": {"x": 1}}))
    assert isinstance(got, Usable)
    assert (got.event_id, got.event_type, got.data["subject_id"]) == (
        "e-1",
        "consent.changed",
        "u-1",
    )


@pytest.mark.parametrize(
    ("hdrs", "value", "reason"),
    [
        (headers(), b"[]", "value is not a JSON object"),
        (headers(), b"null", "value is not a JSON object"),
        (headers(), b"42", "value is not a JSON object"),
        (headers(), None, "no value"),
        (headers(), b"{not json", "value is not JSON"),
        (headers(ce_subject=b"\xff\xfe"), orjson.dumps(GOOD), "header is not UTF-8 text"),
        (headers(ce_id=None), orjson.dumps(GOOD), "no ce_id header"),
        (headers(ce_type=None), orjson.dumps(GOOD), "no ce_type header"),
        (headers(ce_time=b"yesterday"), orjson.dumps(GOOD), "ce_time is not an RFC 3339 time"),
        (headers(), good(subject_id=None), F + "subject_id"),
        (headers(), good(sequence="3"), F + "sequence"),
        (headers(), good(sequence=True), F + "sequence"),
        (headers(), good(decisions=[]), F + "decisions"),
        (headers(), good(decisions={"sale": "no"}), F + "decisions"),
        (headers(), good(changed_decisions="sale"), F + "changed_decisions"),
        (headers("subject.erasure_requested"), good(), F + "request_id"),
    ],
)  # fmt: skip
def test_records_that_cannot_be_used_are_parked_with_a_reason(hdrs, value, reason):
    assert decode(hdrs, value) == Park(reason)


def test_unknown_types_and_warmup_are_skipped_not_parked():
    assert decode(headers("consent.something_new"), b"[]") == Skip("unknown_type")
    assert decode(headers("dev.warmup"), None) == Skip("warmup")
    assert decode(headers("policy.published"), b"{}") == Skip("not_for_processors")


@given(st.binary(max_size=64), st.lists(st.tuples(st.text(max_size=8), st.binary(max_size=8))))
def test_decode_never_raises(value, extra_headers):
    """Whatever bytes arrive, the answer is usable, skipped or parked: never an exception."""
    assert isinstance(decode(headers() + extra_headers, value), Usable | Skip | Park)


def adapter(purposes: list[str], events: list[str]) -> WebhookAdapter:
    return WebhookAdapter(
        ProcessorConfig(name="p", url="http://x", secret_env="S", purposes=purposes, events=events)
    )


def test_routing_follows_changed_decisions_whatever_the_events_list():
    payment = adapter(["sale", "share"], ["consent.changed"])
    expiry = {**GOOD, "changes": [{"purpose": "sale", "from": "granted", "to": "unset"}]}
    assert payment.relevant("consent.expired", expiry)  # not listed, but sale changed
    assert payment.relevant("subject.age_status_changed", {**GOOD, "changes": []})
    # listed type, a status change of our purpose, answer unchanged: still sent (as before)
    same = {**GOOD, "changed_decisions": []}
    assert payment.relevant("consent.changed", {**same, "changes": expiry["changes"]})
    # a status change of someone else's purpose that moves none of ours: not sent
    other = {**same, "changes": [{"purpose": "analytics", "from": "unset", "to": "granted"}]}
    assert not payment.relevant("consent.changed", other)
    # unlisted type, nothing of ours changed: not sent
    assert not payment.relevant("consent.reconsent_required", {**same, "changes": other["changes"]})
    # erasure reaches every processor, listed or not
    assert adapter(["sale"], []).relevant("subject.erasure_requested", {"subject_id": "u"})
