"""Pure tests of the ledger hash chain and of jurisdiction codes and regimes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consent.domain import jurisdictions
from consent.domain.hashing import GENESIS, canonical, entry_hash, evidence_hash

AT = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
FIELDS: dict[str, Any] = {
    "subject_id": "u-1",
    "sequence": 3,
    "purpose": "sale",
    "status": "denied",
    "previous_status": "granted",
    "channel": "gpc",
    "policy_version": "2025-09-15",
    "jurisdiction": "US-CA",
    "recorded_at": AT,
    "expires_at": None,
}
EVIDENCE = {"notice_id": "banner-v3", "ip_hash": "ab" * 32, "gpc": True}
PREV = "1" * 64


def base_hash() -> str:
    return entry_hash(FIELDS, PREV, evidence_hash(EVIDENCE))


ALTERED = {
    "subject_id": "u-2",
    "sequence": 4,
    "purpose": "share",
    "status": "granted",
    "previous_status": "unset",
    "channel": "web",
    "policy_version": "2026-03-01",
    "jurisdiction": "US-NY",
    "recorded_at": AT + timedelta(microseconds=1),
    "expires_at": AT,
}


def test_entry_hash_is_a_stable_sha256_hex() -> None:
    h = base_hash()
    assert len(h) == 64
    assert int(h, 16) >= 0
    assert h == base_hash()
    assert len(GENESIS) == 64 and set(GENESIS) == {"0"}


@pytest.mark.parametrize("key", sorted(FIELDS))
def test_entry_hash_changes_when_any_field_changes(key: str) -> None:
    assert ALTERED[key] != FIELDS[key]
    changed = {**FIELDS, key: ALTERED[key]}
    assert entry_hash(changed, PREV, evidence_hash(EVIDENCE)) != base_hash()


@pytest.mark.parametrize("key", sorted(FIELDS))
def test_entry_hash_changes_when_a_field_is_removed(key: str) -> None:
    fewer = {k: v for k, v in FIELDS.items() if k != key}
    assert entry_hash(fewer, PREV, evidence_hash(EVIDENCE)) != base_hash()


def test_entry_hash_changes_when_a_field_is_added() -> None:
    more = {**FIELDS, "actor": "subject"}
    assert entry_hash(more, PREV, evidence_hash(EVIDENCE)) != base_hash()


def test_entry_hash_changes_with_the_previous_hash() -> None:
    assert entry_hash(FIELDS, GENESIS, evidence_hash(EVIDENCE)) != base_hash()
    assert entry_hash(FIELDS, "2" * 64, evidence_hash(EVIDENCE)) != base_hash()


@pytest.mark.parametrize("key", sorted(EVIDENCE))
def test_entry_hash_changes_with_the_evidence(key: str) -> None:
    evidence = {**EVIDENCE, key: "something else"}
    assert evidence_hash(evidence) != evidence_hash(EVIDENCE)
    assert entry_hash(FIELDS, PREV, evidence_hash(evidence)) != base_hash()


def test_entry_hash_ignores_key_order() -> None:
    reversed_fields = dict(reversed(list(FIELDS.items())))
    reversed_evidence = dict(reversed(list(EVIDENCE.items())))
    assert entry_hash(reversed_fields, PREV, evidence_hash(reversed_evidence)) == base_hash()


@pytest.mark.parametrize("hours", [-8, -5, 1, 2, 5.5, 14])
def test_datetimes_hash_the_same_in_any_timezone(hours: float) -> None:
    tz = timezone(timedelta(hours=hours))
    local = AT.astimezone(tz)
    assert local.utcoffset() != timedelta(0)
    assert local == AT
    assert canonical({"t": local}) == canonical({"t": AT})
    assert entry_hash({**FIELDS, "recorded_at": local}, PREV, GENESIS) == entry_hash(
        FIELDS, PREV, GENESIS
    )
    assert evidence_hash({"seen_at": local}) == evidence_hash({"seen_at": AT})


@given(
    instant=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    minutes=st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
)
def test_datetime_canonicalisation_is_timezone_independent(instant: datetime, minutes: int) -> None:
    local = instant.astimezone(timezone(timedelta(minutes=minutes)))
    assert entry_hash({"at": local}, GENESIS, GENESIS) == entry_hash(
        {"at": instant}, GENESIS, GENESIS
    )


def test_different_instants_hash_differently() -> None:
    assert canonical({"t": AT}) != canonical({"t": AT + timedelta(seconds=1)})


def test_canonical_rejects_unserialisable_values() -> None:
    with pytest.raises(TypeError):
        canonical({"x": object()})


# --- jurisdictions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("de", "DE"),
        ("DE", "DE"),
        ("US-CA", "US-CA"),
        ("us-ca", "US-CA"),
        ("GB", "GB"),
        (" fr ", "FR"),
        ("GB-ENG", "GB-ENG"),
        ("US-DC", "US-DC"),
    ],
)
def test_normalize_accepts_iso_3166_codes(raw: str, expected: str) -> None:
    assert jurisdictions.normalize(raw) == expected


@pytest.mark.parametrize(
    "raw", ["XX", "US-ZZ", "", "D E", "USA", "UK", "EU", "D", "US-", "US_CA", "DE-", "US-CAL"]
)
def test_normalize_rejects_unknown_or_malformed_codes(raw: str) -> None:
    assert jurisdictions.normalize(raw) is None


@pytest.mark.parametrize(
    ("jurisdiction", "expected"),
    [
        ("DE", "gdpr"),
        ("DE-BY", "gdpr"),
        ("FR", "gdpr"),
        ("IE", "gdpr"),
        ("NO", "gdpr"),
        ("IS", "gdpr"),
        ("LI", "gdpr"),
        ("GB", "gdpr"),
        ("CH", "gdpr"),
        ("US", "us"),
        ("US-CA", "us"),
        ("US-NY", "us"),
        ("CA", "other"),
        ("BR", "other"),
        ("JP", "other"),
        ("", "other"),
        (None, "other"),
    ],
)
def test_regime(jurisdiction: str | None, expected: str) -> None:
    assert jurisdictions.regime(jurisdiction) == expected


def test_every_eu_eea_country_is_a_known_code_under_gdpr() -> None:
    for code in jurisdictions.EU_EEA | jurisdictions.GDPR_LIKE:
        assert jurisdictions.normalize(code) == code
        assert jurisdictions.regime(code) == "gdpr"


def test_country() -> None:
    assert jurisdictions.country("US-CA") == "US"
    assert jurisdictions.country("DE") == "DE"
    assert jurisdictions.country(None) is None
