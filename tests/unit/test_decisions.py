"""Pure tests of ``consent.domain.decisions``: DESIGN.md §3's precedence, one rule at a time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consent.catalog import load_catalog
from consent.domain import jurisdictions
from consent.domain.decisions import DecisionContext, decide, decide_all, needs_reconsent
from consent.domain.model import (
    CHANNELS,
    SALE_SHARE,
    STATUSES,
    Actor,
    Decision,
    Policy,
    Purpose,
    PurposeRecord,
)
from tests import support

CATALOG = load_catalog()
KEYS = sorted(CATALOG)
SALE = CATALOG["sale"]
SHARE = CATALOG["share"]
EMAIL = CATALOG["marketing_email"]
SMS = CATALOG["marketing_sms"]
PARTNERS = CATALOG["third_party_sharing"]

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
REGIMES = ("gdpr", "us", "other")
AGE_STATUSES = ("adult", "unknown", "child", "teen_opt_in")


def rec(purpose: str, status: str = "granted", **kw: Any) -> PurposeRecord:
    """A record written under the policy version these tests publish."""
    return support.rec(purpose, status, **{"policy_version": "2025-09-15", **kw})


def policy(
    effective_at: datetime,
    purposes: tuple[str, ...] = ("marketing_email",),
    *,
    material: bool = True,
    version: str = "2026-03-01",
) -> Policy:
    return Policy(version, effective_at, material, frozenset(purposes))


def default_allowed(purpose: Purpose, regime: str) -> bool:
    return purpose.basis(regime) == "opt_out"


# --- 1. erased ---------------------------------------------------------------------------


@pytest.mark.parametrize("regime", REGIMES)
def test_erased_subject_is_denied_even_with_a_grant(regime: str) -> None:
    ctx = DecisionContext(regime=regime, erased=True)
    assert decide(ctx, EMAIL, rec("marketing_email"), NOW) == Decision(False, "erased")
    assert decide(ctx, CATALOG["analytics"], None, NOW) == Decision(False, "erased")


def test_erased_takes_precedence_over_child_rules() -> None:
    ctx = DecisionContext(regime="us", erased=True, age_status="child")
    assert decide(ctx, SALE, None, NOW) == Decision(False, "erased")


# --- 2. child without guardian -------------------------------------------------------------


@pytest.mark.parametrize("key", ["marketing_email", "analytics", "sale"])
def test_child_without_guardian_is_denied(key: str) -> None:
    ctx = DecisionContext(regime="us", age_status="child", has_guardian=False)
    assert decide(ctx, CATALOG[key], rec(key, source="guardian"), NOW) == Decision(
        False, "minor_without_guardian"
    )


def test_child_with_guardian_follows_the_guardian_grant_for_other_purposes() -> None:
    ctx = DecisionContext(regime="gdpr", age_status="child", has_guardian=True)
    assert decide(ctx, EMAIL, rec("marketing_email", source="guardian"), NOW) == Decision(
        True, "explicit_grant"
    )


GUARDIAN = Actor("guardian", "g-1")


@pytest.mark.parametrize("key", ["analytics", "marketing_email", "personalization"])
def test_child_with_guardian_but_no_record_is_opt_in_even_in_the_us(key: str) -> None:
    """COPPA: nothing is allowed for a child until the guardian grants it."""
    ctx = DecisionContext(regime="us", age_status="child", has_guardian=True)
    assert decide(ctx, CATALOG[key], None, NOW) == Decision(False, "regime_default")


def test_guardian_grant_speaks_for_a_child_with_guardian() -> None:
    ctx = DecisionContext(regime="gdpr", age_status="child", has_guardian=True)
    grant = rec("marketing_email", source="guardian", actor=GUARDIAN)
    assert decide(ctx, EMAIL, grant, NOW) == Decision(True, "explicit_grant")


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("age_status", ["adult", "teen_opt_in"])
def test_guardian_grant_lapses_when_the_minor_comes_of_age(regime: str, age_status: str) -> None:
    ctx = DecisionContext(regime=regime, age_status=age_status, has_guardian=True)  # type: ignore[arg-type]
    grant = rec("marketing_email", source="guardian", actor=GUARDIAN)
    assert decide(ctx, EMAIL, grant, NOW) == Decision(
        default_allowed(EMAIL, regime), "needs_reconsent"
    )


def test_guardian_denial_still_stands_after_coming_of_age() -> None:
    ctx = DecisionContext(regime="us", age_status="adult")
    denial = rec("marketing_email", "denied", source="guardian", actor=GUARDIAN)
    assert decide(ctx, EMAIL, denial, NOW) == Decision(False, "explicit_denial")


# --- 3. children's data never sold; teen opt-in --------------------------------------------


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("key", sorted(SALE_SHARE))
def test_child_data_is_never_sold_even_with_guardian_and_grant(regime: str, key: str) -> None:
    ctx = DecisionContext(regime=regime, age_status="child", has_guardian=True)
    grant = rec(key, source="guardian", at=NOW - timedelta(days=1))
    assert decide(ctx, CATALOG[key], grant, NOW) == Decision(False, "child_data_never_sold")
    assert decide(ctx, CATALOG[key], None, NOW) == Decision(False, "child_data_never_sold")


@pytest.mark.parametrize("key", sorted(SALE_SHARE))
def test_teen_sale_share_is_denied_by_default_even_in_opt_out_regime(key: str) -> None:
    ctx = DecisionContext(regime="us", age_status="teen_opt_in")
    assert decide(ctx, CATALOG[key], None, NOW) == Decision(False, "regime_default")


@pytest.mark.parametrize("key", sorted(SALE_SHARE))
def test_teen_explicit_grant_of_sale_share_allows(key: str) -> None:
    ctx = DecisionContext(regime="us", age_status="teen_opt_in")
    assert decide(ctx, CATALOG[key], rec(key), NOW) == Decision(True, "explicit_grant")


def test_teen_other_purposes_keep_the_regime_default() -> None:
    ctx = DecisionContext(regime="us", age_status="teen_opt_in")
    assert decide(ctx, CATALOG["analytics"], None, NOW) == Decision(True, "regime_default")


def test_teen_grant_needing_reconsent_falls_back_to_teen_default_deny() -> None:
    ctx = DecisionContext(
        regime="us", age_status="teen_opt_in", policies=(policy(T0 + timedelta(days=1), ("sale",)),)
    )
    assert decide(ctx, SALE, rec("sale", at=T0), NOW) == Decision(False, "needs_reconsent")


# --- 4. GPC --------------------------------------------------------------------------------


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("key", sorted(SALE_SHARE))
def test_gpc_record_denies_sale_and_share(regime: str, key: str) -> None:
    ctx = DecisionContext(regime=regime)
    gpc = rec(key, "denied", source="gpc")
    assert decide(ctx, CATALOG[key], gpc, NOW) == Decision(False, "gpc_opt_out")


@pytest.mark.parametrize("key", sorted(SALE_SHARE))
def test_grant_older_than_gpc_opt_out_is_overridden(key: str) -> None:
    ctx = DecisionContext(regime="us", gpc_opted_out_at=T0 + timedelta(days=1))
    assert decide(ctx, CATALOG[key], rec(key, at=T0), NOW) == Decision(False, "gpc_opt_out")


def test_grant_at_the_same_instant_as_gpc_opt_out_is_overridden() -> None:
    ctx = DecisionContext(regime="us", gpc_opted_out_at=T0)
    assert decide(ctx, SALE, rec("sale", at=T0), NOW) == Decision(False, "gpc_opt_out")


def test_gpc_opt_out_without_any_record_denies_in_opt_out_regime() -> None:
    ctx = DecisionContext(regime="us", gpc_opted_out_at=T0)
    assert decide(ctx, SHARE, None, NOW) == Decision(False, "gpc_opt_out")


@pytest.mark.parametrize("key", sorted(SALE_SHARE))
def test_grant_newer_than_gpc_opt_out_is_respected(key: str) -> None:
    ctx = DecisionContext(regime="us", gpc_opted_out_at=T0)
    grant = rec(key, at=T0 + timedelta(seconds=1))
    assert decide(ctx, CATALOG[key], grant, NOW) == Decision(True, "explicit_grant")


def test_gpc_opt_out_does_not_touch_other_purposes() -> None:
    ctx = DecisionContext(regime="us", gpc_opted_out_at=T0 + timedelta(days=1))
    assert decide(ctx, EMAIL, rec("marketing_email", at=T0), NOW) == Decision(
        True, "explicit_grant"
    )
    assert decide(ctx, CATALOG["analytics"], None, NOW) == Decision(True, "regime_default")


@pytest.mark.parametrize("invalidation", ["needs_reconsent", "expired"])
def test_gpc_opt_out_applies_again_once_the_newer_grant_stops_being_effective(
    invalidation: str,
) -> None:
    gpc_at = T0
    grant_at = T0 + timedelta(days=1)
    if invalidation == "needs_reconsent":
        grant = rec("sale", at=grant_at)
        policies: tuple[Policy, ...] = (policy(grant_at + timedelta(days=1), ("sale",)),)
    else:
        grant = rec("sale", at=grant_at, expires_at=grant_at + timedelta(days=1))
        policies = ()
    ctx = DecisionContext(regime="us", gpc_opted_out_at=gpc_at, policies=policies)
    # DESIGN.md §3: GPC → deny sale/share; only a newer *effective* explicit grant beats it.
    assert decide(ctx, SALE, grant, NOW) == Decision(False, "gpc_opt_out")


# --- 5. explicit records, expiry, re-consent ------------------------------------------------


@pytest.mark.parametrize("regime", REGIMES)
def test_explicit_grant_allows(regime: str) -> None:
    ctx = DecisionContext(regime=regime)
    assert decide(ctx, EMAIL, rec("marketing_email"), NOW) == Decision(True, "explicit_grant")


@pytest.mark.parametrize("regime", REGIMES)
def test_explicit_denial_denies(regime: str) -> None:
    ctx = DecisionContext(regime=regime)
    assert decide(ctx, EMAIL, rec("marketing_email", "denied"), NOW) == Decision(
        False, "explicit_denial"
    )


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("delta", [timedelta(0), timedelta(days=1)])
def test_expired_grant_falls_back_to_regime_default(regime: str, delta: timedelta) -> None:
    ctx = DecisionContext(regime=regime)
    grant = rec("third_party_sharing", expires_at=NOW - delta)
    assert decide(ctx, PARTNERS, grant, NOW) == Decision(
        default_allowed(PARTNERS, regime), "expired"
    )


def test_grant_not_yet_expired_still_allows() -> None:
    ctx = DecisionContext(regime="gdpr")
    grant = rec("third_party_sharing", expires_at=NOW + timedelta(seconds=1))
    assert decide(ctx, PARTNERS, grant, NOW) == Decision(True, "explicit_grant")


@pytest.mark.parametrize("regime", REGIMES)
def test_material_policy_after_grant_needs_reconsent(regime: str) -> None:
    p = policy(T0 + timedelta(days=30), ("marketing_email",))
    ctx = DecisionContext(regime=regime, policies=(p,))
    assert decide(ctx, EMAIL, rec("marketing_email", at=T0), NOW) == Decision(
        default_allowed(EMAIL, regime), "needs_reconsent"
    )


def test_material_policy_effective_exactly_now_needs_reconsent() -> None:
    ctx = DecisionContext(regime="gdpr", policies=(policy(NOW),))
    assert decide(ctx, EMAIL, rec("marketing_email"), NOW) == Decision(False, "needs_reconsent")


@pytest.mark.parametrize(
    "p",
    [
        pytest.param(policy(T0 + timedelta(days=30), material=False), id="non-material"),
        pytest.param(policy(T0 + timedelta(days=30), ("analytics",)), id="purpose-not-listed"),
        pytest.param(policy(NOW + timedelta(days=1)), id="future-effective"),
        pytest.param(policy(T0 - timedelta(days=1)), id="effective-before-grant"),
        pytest.param(policy(T0), id="effective-at-grant"),
    ],
)
def test_policy_versions_that_do_not_invalidate_a_grant(p: Policy) -> None:
    ctx = DecisionContext(regime="gdpr", policies=(p,))
    assert decide(ctx, EMAIL, rec("marketing_email", at=T0), NOW) == Decision(
        True, "explicit_grant"
    )
    assert not needs_reconsent(rec("marketing_email", at=T0), (p,), NOW)


def test_material_policy_never_affects_a_denial() -> None:
    ctx = DecisionContext(regime="us", policies=(policy(T0 + timedelta(days=1)),))
    assert decide(ctx, EMAIL, rec("marketing_email", "denied", at=T0), NOW) == Decision(
        False, "explicit_denial"
    )


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize(
    ("ended_reason", "reason"),
    [("expired", "expired"), ("lapsed", "needs_reconsent"), (None, "regime_default")],
)
def test_unset_record_reports_why_it_ended(
    regime: str, ended_reason: str | None, reason: str
) -> None:
    ctx = DecisionContext(regime=regime)
    unset = rec("marketing_email", "unset", source="system", ended_reason=ended_reason)
    assert decide(ctx, EMAIL, unset, NOW) == Decision(default_allowed(EMAIL, regime), reason)


# --- 6. regime defaults ---------------------------------------------------------------------


@pytest.mark.parametrize("jurisdiction", ["DE", "GB", None, "BR", "FR", "CH", "CA"])
@pytest.mark.parametrize("key", KEYS)
def test_opt_in_regimes_deny_by_default(jurisdiction: str | None, key: str) -> None:
    ctx = DecisionContext(regime=jurisdictions.regime(jurisdiction))
    assert decide(ctx, CATALOG[key], None, NOW) == Decision(False, "regime_default")


@pytest.mark.parametrize("jurisdiction", ["US-CA", "US", "US-NY"])
@pytest.mark.parametrize("key", KEYS)
def test_us_opt_out_allows_by_default_except_sms(jurisdiction: str, key: str) -> None:
    ctx = DecisionContext(regime=jurisdictions.regime(jurisdiction))
    expected = key != "marketing_sms"
    assert decide(ctx, CATALOG[key], None, NOW) == Decision(expected, "regime_default")


def test_us_sms_needs_an_explicit_grant() -> None:
    ctx = DecisionContext(regime="us")
    assert decide(ctx, SMS, rec("marketing_sms"), NOW) == Decision(True, "explicit_grant")


def test_unknown_regime_name_falls_back_to_other() -> None:
    assert decide(DecisionContext(regime="mars"), CATALOG["analytics"], None, NOW) == Decision(
        False, "regime_default"
    )


# --- properties -----------------------------------------------------------------------------

datetimes = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
)
optional_datetimes = st.none() | datetimes
purposes = st.sampled_from(KEYS).map(CATALOG.__getitem__)
sale_or_share = st.sampled_from(sorted(SALE_SHARE)).map(CATALOG.__getitem__)

policies_st = st.lists(
    st.builds(
        Policy,
        version=st.text("0123456789-", min_size=1, max_size=10),
        effective_at=datetimes,
        material=st.booleans(),
        affected_purposes=st.frozensets(st.sampled_from(KEYS)),
    ),
    max_size=4,
).map(tuple)


@st.composite
def records_for(
    draw: st.DrawFn,
    purpose: Purpose,
    status: st.SearchStrategy[str] = st.sampled_from(STATUSES),
    updated_at: st.SearchStrategy[datetime] = datetimes,
) -> PurposeRecord:
    return PurposeRecord(
        purpose=purpose.key,
        status=draw(status),  # type: ignore[arg-type]
        source=draw(st.sampled_from(CHANNELS)),
        updated_at=draw(updated_at),
        sequence=draw(st.integers(min_value=1, max_value=10_000)),
        policy_version=draw(st.none() | st.just("2025-09-15")),
        expires_at=draw(optional_datetimes),
        actor=draw(st.sampled_from([Actor("subject"), Actor("guardian", "g-1")])),
        ended_reason=draw(st.sampled_from([None, "expired", "lapsed"])),
    )


def contexts(
    *,
    age_status: st.SearchStrategy[str] = st.sampled_from(AGE_STATUSES),
    erased: st.SearchStrategy[bool] = st.booleans(),
    gpc: st.SearchStrategy[datetime | None] = optional_datetimes,
) -> st.SearchStrategy[DecisionContext]:
    return st.builds(
        DecisionContext,
        regime=st.sampled_from(REGIMES),
        age_status=age_status,
        has_guardian=st.booleans(),
        erased=erased,
        gpc_opted_out_at=gpc,
        policies=policies_st,
    )


@given(data=st.data(), purpose=sale_or_share, ctx=contexts(gpc=datetimes), now=datetimes)
def test_gpc_opt_out_is_never_overridden_by_an_older_grant(
    data: st.DataObject, purpose: Purpose, ctx: DecisionContext, now: datetime
) -> None:
    gpc_at = ctx.gpc_opted_out_at
    assert gpc_at is not None
    older = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3650)).map(
        lambda d: gpc_at - d
    )
    record = data.draw(records_for(purpose, status=st.just("granted"), updated_at=older))
    assert decide(ctx, purpose, record, now).allowed is False


@given(data=st.data(), purpose=purposes, ctx=contexts(), now=datetimes)
def test_a_denial_is_never_turned_into_an_allow_by_policy_versions(
    data: st.DataObject, purpose: Purpose, ctx: DecisionContext, now: datetime
) -> None:
    denial = data.draw(records_for(purpose, status=st.just("denied")))
    decision = decide(ctx, purpose, denial, now)
    assert decision.reason != "explicit_grant"
    if not default_allowed(purpose, ctx.regime):
        assert decision.allowed is False
    # policy versions play no part at all in a denial's decision
    without = replace(ctx, policies=())
    assert decision == decide(without, purpose, denial, now)


@given(data=st.data(), purpose=purposes, ctx=contexts(erased=st.just(True)), now=datetimes)
def test_an_erased_subject_is_never_allowed_anything(
    data: st.DataObject, purpose: Purpose, ctx: DecisionContext, now: datetime
) -> None:
    record = data.draw(st.none() | records_for(purpose))
    assert decide(ctx, purpose, record, now) == Decision(False, "erased")


@given(
    data=st.data(),
    purpose=sale_or_share,
    ctx=contexts(age_status=st.just("child")),
    now=datetimes,
)
def test_a_child_is_never_allowed_sale_or_share(
    data: st.DataObject, purpose: Purpose, ctx: DecisionContext, now: datetime
) -> None:
    record = data.draw(st.none() | records_for(purpose))
    assert decide(ctx, purpose, record, now).allowed is False


@given(data=st.data(), ctx=contexts(), now=datetimes)
def test_decide_is_deterministic_and_decide_all_covers_the_catalog(
    data: st.DataObject, ctx: DecisionContext, now: datetime
) -> None:
    chosen = data.draw(st.lists(st.sampled_from(KEYS), unique=True))
    records = {k: data.draw(records_for(CATALOG[k])) for k in chosen}
    decisions = decide_all(ctx, CATALOG, records, now)
    assert list(decisions) == list(CATALOG)
    for key, decision in decisions.items():
        assert decision == decide(ctx, CATALOG[key], records.get(key), now)
        assert decision == decide(ctx, CATALOG[key], records.get(key), now)
    assert decide_all(ctx, CATALOG, records, now) == decisions
