"""Signals for ad tech (API.md: GET /v1/subjects/{id}/signals): an IAB GPP string with usnat
and usca sections, and Google Consent Mode v2 values, derived from decisions.

Every field of our GPP strings is decoded by the IAB Tech Lab's own library
(``@iabgpp/cmpapi``, pinned in tests/gpp) and compared with the value the README's mapping
gives; the IAB library also re-encodes the decoded fields, and must produce our string.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from consent.domain import gpp
from consent.domain.signals import GppNotices, signals
from tests.conftest import admin, user
from tests.gpp import iab_decode
from tests.test_minors_guardians import make_key

N, YES_OPTED_OUT, NO = 0, 1, 2  # IAB two-bit values: n/a, yes/opted out/no consent, no/consent

ALL_ADS = {
    "sale": "granted",
    "share": "granted",
    "cookies_advertising": "granted",
    "cookies_analytics": "granted",
    "personalization": "granted",
}


def years_ago(n: int) -> str:
    today = date.today()
    return (today.replace(year=today.year - n) - timedelta(days=30)).isoformat()


def expected_sections(
    *,
    sale_out: int,
    share_out: int,
    usnat_child: list[int],
    usca_child: list[int],
    gpc: bool,
    notices: GppNotices | None = None,
) -> dict[str, dict[str, Any]]:
    n = notices or GppNotices()
    mspa = {
        "PersonalDataConsents": 0,
        "MspaCoveredTransaction": n.mspa_covered_transaction,
        "MspaOptOutOptionMode": n.mspa_opt_out_option_mode,
        "MspaServiceProviderMode": n.mspa_service_provider_mode,
        "GpcSegmentType": 1,
        "Gpc": gpc,
    }
    return {
        "usnat": {
            "Version": 2,
            "SharingNotice": n.sharing_notice,
            "SaleOptOutNotice": n.sale_opt_out_notice,
            "SharingOptOutNotice": n.sharing_opt_out_notice,
            "TargetedAdvertisingOptOutNotice": n.targeted_advertising_opt_out_notice,
            "SensitiveDataProcessingOptOutNotice": n.sensitive_data_processing_opt_out_notice,
            "SensitiveDataLimitUseNotice": n.sensitive_data_limit_use_notice,
            "SaleOptOut": sale_out,
            "SharingOptOut": share_out,
            "TargetedAdvertisingOptOut": share_out,
            "SensitiveDataProcessing": [0] * 16,
            "KnownChildSensitiveDataConsents": usnat_child,
            **mspa,
        },
        "usca": {
            "Version": 1,
            "SaleOptOutNotice": n.sale_opt_out_notice,
            "SharingOptOutNotice": n.sharing_opt_out_notice,
            "SensitiveDataLimitUseNotice": n.sensitive_data_limit_use_notice,
            "SaleOptOut": sale_out,
            "SharingOptOut": share_out,
            "SensitiveDataProcessing": [0] * 9,
            "KnownChildSensitiveDataConsents": usca_child,
            **mspa,
        },
    }


def assert_round_trip(ours: str, expected: dict[str, dict[str, Any]]) -> None:
    [decoded] = iab_decode([ours])
    assert "error" not in decoded, decoded
    assert decoded["header"]["section_ids"] == [7, 8]
    for section, fields in expected.items():
        got = decoded["sections"][section]
        for field, value in fields.items():
            assert got[field] == value, (section, field, got[field], value, ours)
        assert set(got) == set(fields), (section, set(got) ^ set(fields))
    assert decoded["reencoded"] == ours, "the IAB library encodes these fields differently"


async def link_guardian(client, db, child: str, guardian: str) -> None:
    at = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    body = {
        "guardian_id": guardian,
        "verification": {"method": "signed_form", "reference": "case-1", "verified_at": at},
    }
    r = await client.post(f"/v1/subjects/{child}/guardians", json=body, headers=admin())
    assert r.status_code in (200, 201), r.text


async def put(client, sid: str, **profile: Any) -> None:
    r = await client.put(f"/v1/subjects/{sid}", json=profile, headers=admin())
    assert r.status_code == 200, r.text


async def patch(client, sid: str, purposes: dict[str, str], headers: dict[str, str]) -> None:
    r = await client.patch(
        f"/v1/subjects/{sid}/preferences", json={"purposes": purposes}, headers=headers
    )
    assert r.status_code == 200, r.text


async def test_gpp_round_trips_through_the_iab_decoder_for_every_kind_of_subject(client, db):
    denied = {"ad_storage", "analytics_storage", "ad_user_data", "ad_personalization"}
    table: list[tuple[str, dict[str, dict[str, Any]], set[str]]] = []

    # opted out: a Californian adult who opted out of sale and share
    await put(client, "opted-out", jurisdiction="US-CA", birth_date=years_ago(30))
    await patch(client, "opted-out", {"sale": "denied", "share": "denied"}, user("opted-out"))
    table.append(
        (
            "opted-out",
            expected_sections(
                sale_out=YES_OPTED_OUT,
                share_out=YES_OPTED_OUT,
                usnat_child=[0, 0, 0],
                usca_child=[0, 0],
                gpc=False,
            ),
            {"ad_storage", "analytics_storage"},  # cookies stay on (US opt-out default)
        )
    )
    # opted in: granted everything ad tech reads
    await put(client, "opted-in", jurisdiction="US-CA")
    await patch(client, "opted-in", ALL_ADS, user("opted-in"))
    table.append(
        (
            "opted-in",
            expected_sections(
                sale_out=NO, share_out=NO, usnat_child=[0, 0, 0], usca_child=[0, 0], gpc=False
            ),
            denied,
        )
    )
    # GPC: the browser's signal, honoured on the subject's own read
    await put(client, "gpc", jurisdiction="US-CA")
    r = await client.get("/v1/subjects/gpc/preferences", headers={**user("gpc"), "Sec-GPC": "1"})
    assert r.headers.get("sec-gpc-honored") == "1"
    table.append(
        (
            "gpc",
            expected_sections(
                sale_out=YES_OPTED_OUT,
                share_out=YES_OPTED_OUT,
                usnat_child=[0, 0, 0],
                usca_child=[0, 0],
                gpc=True,
            ),
            {"ad_storage", "analytics_storage"},
        )
    )
    # child (10, California) with a guardian who granted analytics cookies
    await put(client, "child", jurisdiction="US-CA", birth_date=years_ago(10))
    await link_guardian(client, db, "child", "mum")
    await patch(client, "child", {"cookies_analytics": "granted"}, user("mum"))
    table.append(
        (
            "child",
            expected_sections(
                sale_out=YES_OPTED_OUT,
                share_out=YES_OPTED_OUT,
                usnat_child=[1, 1, 0],
                usca_child=[1, 1],
                gpc=False,
            ),
            {"analytics_storage"},
        )
    )
    # teen (14, California) who opted in to sale and share themselves
    await put(client, "teen", jurisdiction="US-CA", birth_date=years_ago(14))
    await patch(client, "teen", ALL_ADS, user("teen"))
    table.append(
        (
            "teen",
            expected_sections(
                sale_out=NO, share_out=NO, usnat_child=[2, 0, 0], usca_child=[2, 2], gpc=False
            ),
            denied,
        )
    )
    # a teen who did not opt in: never sold or shared
    await put(client, "teen-default", jurisdiction="US-CA", birth_date=years_ago(14))
    table.append(
        (
            "teen-default",
            expected_sections(
                sale_out=YES_OPTED_OUT,
                share_out=YES_OPTED_OUT,
                usnat_child=[1, 0, 0],
                usca_child=[1, 1],
                gpc=False,
            ),
            {"ad_storage", "analytics_storage"},
        )
    )
    # unknown jurisdiction: never written, opt-in defaults → nothing allowed
    table.append(
        (
            "nobody-knows",
            expected_sections(
                sale_out=YES_OPTED_OUT,
                share_out=YES_OPTED_OUT,
                usnat_child=[0, 0, 0],
                usca_child=[0, 0],
                gpc=False,
            ),
            set(),
        )
    )

    strings = []
    for sid, expected, granted in table:
        r = await client.get(f"/v1/subjects/{sid}/signals", headers=admin())
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["gpp_sid"] == [7, 8]
        modes = body["consent_mode"]
        assert {k for k, v in modes.items() if v == "granted"} == granted, (sid, modes)
        assert set(modes.values()) <= {"granted", "denied"}
        strings.append((sid, body["gpp"], expected))
    decoded = iab_decode([s for _, s, _ in strings])
    assert len(decoded) == len(strings)
    for sid, ours, expected in strings:
        try:
            assert_round_trip(ours, expected)
        except AssertionError as exc:
            raise AssertionError(f"subject {sid}: {exc}") from exc


@pytest.mark.parametrize(
    "notices",
    [
        GppNotices(),
        GppNotices(
            sharing_notice=2,
            sale_opt_out_notice=0,
            sharing_opt_out_notice=2,
            targeted_advertising_opt_out_notice=0,
            sensitive_data_processing_opt_out_notice=1,
            sensitive_data_limit_use_notice=2,
            mspa_covered_transaction=1,
            mspa_opt_out_option_mode=1,
            mspa_service_provider_mode=2,
        ),
        GppNotices(
            mspa_covered_transaction=1, mspa_opt_out_option_mode=2, mspa_service_provider_mode=1
        ),
    ],
    ids=["defaults", "no-notice-mspa-opt-out-mode", "mspa-service-provider-mode"],
)
def test_operator_notice_settings_round_trip(notices: GppNotices):
    from consent.domain.model import Decision

    decisions = {"sale": Decision(False, "explicit_denial"), "share": Decision(True, "x")}
    out = signals(decisions, "adult", False, notices)

    def opt_out(notice: int, allowed: bool) -> int:
        return 0 if notice != 1 else (NO if allowed else YES_OPTED_OUT)

    expected = expected_sections(
        sale_out=opt_out(notices.sale_opt_out_notice, False),
        share_out=opt_out(notices.sharing_opt_out_notice, True),
        usnat_child=[0, 0, 0],
        usca_child=[0, 0],
        gpc=False,
        notices=notices,
    )
    # TargetedAdvertisingOptOut follows its own notice
    expected["usnat"]["TargetedAdvertisingOptOut"] = opt_out(
        notices.targeted_advertising_opt_out_notice, True
    )
    assert_round_trip(out["gpp"], expected)


def test_encoder_primitives_match_the_spec_examples():
    assert gpp.fibonacci(1) == "11" and gpp.fibonacci(2) == "011" and gpp.fibonacci(7) == "01011"
    assert gpp.header([7, 8]) == "DBABrw"  # header for sections 7 and 8 (usnat, usca)
    assert gpp.base64url("000011") == "DA"  # padded to a byte, then to a character
    with pytest.raises(ValueError):
        gpp.UsNat(sale_opt_out=3).encode()
    with pytest.raises(ValueError):
        gpp.UsCa(mspa_covered_transaction=0).encode()


async def test_signals_follow_the_read_rules_of_preferences(client, db):
    await put(client, "kid", jurisdiction="US-CA", birth_date=years_ago(9))
    await link_guardian(client, db, "kid", "dad")
    path = "/v1/subjects/kid/signals"
    assert (await client.get(path, headers=user("kid"))).status_code == 200
    assert (await client.get(path, headers=user("dad"))).status_code == 200  # guardian of a minor
    r = await client.get(path, headers=user("stranger"))
    assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem")
    assert (await client.get(path)).status_code == 401
    assert (
        await client.get(path, headers=await make_key(db, ["preferences:read"]))
    ).status_code == 200
    assert (
        await client.get(path, headers=await make_key(db, ["decisions:read"]))
    ).status_code == 403
    # a guardian's reach ends when the child is an adult
    await put(client, "grown", jurisdiction="US-CA", birth_date=years_ago(30))
    assert (await client.get("/v1/subjects/grown/signals", headers=user("dad"))).status_code == 403


async def test_signals_are_derived_not_stored(client, db):
    """A change is reflected at once, and nothing signal-shaped is written anywhere."""
    await put(client, "s1", jurisdiction="US-CA")
    before = (await client.get("/v1/subjects/s1/signals", headers=user("s1"))).json()
    assert before["consent_mode"]["ad_user_data"] == "granted"  # US opt-out defaults
    ledger_rows = await db.fetchval("SELECT count(*) FROM consent_ledger")
    await patch(client, "s1", {"sale": "denied"}, user("s1"))
    after = (await client.get("/v1/subjects/s1/signals", headers=user("s1"))).json()
    assert after["consent_mode"]["ad_user_data"] == "denied"
    assert after["gpp"] != before["gpp"]
    assert after["sequence"] == before["sequence"] + 1
    # reading signals wrote nothing: only the PATCH added a ledger row
    assert await db.fetchval("SELECT count(*) FROM consent_ledger") == ledger_rows + 1
    tables = await db.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    assert not [t for t in tables if "signal" in t["table_name"] or "gpp" in t["table_name"]]


async def test_gpc_header_on_a_signals_read_is_recorded_and_reported(client):
    r = await client.get("/v1/subjects/g2/signals", headers={**user("g2"), "Sec-GPC": "1"})
    assert r.status_code == 200 and r.headers.get("sec-gpc-honored") == "1"
    [decoded] = iab_decode([r.json()["gpp"]])
    assert decoded["sections"]["usnat"]["Gpc"] is True
    assert decoded["sections"]["usca"]["Gpc"] is True
    assert decoded["sections"]["usca"]["SaleOptOut"] == YES_OPTED_OUT
