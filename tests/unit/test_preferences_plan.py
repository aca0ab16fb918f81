"""Pure tests of ``consent.domain.preferences``: which purposes a request changes, and may it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consent.domain.model import Change, DomainError, Policy, PurposeRecord, SubjectSnapshot
from consent.domain.preferences import is_effective, plan_changes, plan_gpc_opt_out
from tests.support import rec

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def snap(*records: PurposeRecord, **kw: object) -> SubjectSnapshot:
    return SubjectSnapshot(
        subject_id="u-1",
        sequence=len(records) or 1,
        records={r.purpose: r for r in records},
        **kw,  # type: ignore[arg-type]
    )


def material(effective_at: datetime, *purposes: str) -> Policy:
    return Policy("2026-03-01", effective_at, True, frozenset(purposes))


# --- plan_changes -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["granted", "denied"])
def test_same_status_again_is_a_no_op(status: str) -> None:
    s = snap(rec("marketing_email", status))
    assert plan_changes(s, {"marketing_email": status}, now=NOW) == []  # type: ignore[dict-item]


def test_unset_on_a_never_written_purpose_is_a_no_op() -> None:
    assert plan_changes(snap(), {"analytics": "unset"}, now=NOW) == []


def test_new_status_is_a_change_from_unset() -> None:
    assert plan_changes(snap(), {"marketing_email": "granted"}, now=NOW) == [
        Change("marketing_email", "unset", "granted")
    ]


def test_switching_status_is_a_change() -> None:
    s = snap(rec("marketing_email", "granted"))
    assert plan_changes(s, {"marketing_email": "denied"}, now=NOW) == [
        Change("marketing_email", "granted", "denied")
    ]


@pytest.mark.parametrize("delta", [timedelta(0), timedelta(days=3)])
def test_regrant_of_an_expired_grant_is_a_change(delta: timedelta) -> None:
    s = snap(rec("third_party_sharing", expires_at=NOW - delta))
    assert plan_changes(s, {"third_party_sharing": "granted"}, now=NOW) == [
        Change("third_party_sharing", "granted", "granted")
    ]


def test_regrant_of_an_unexpired_grant_is_a_no_op() -> None:
    s = snap(rec("third_party_sharing", expires_at=NOW + timedelta(days=1)))
    assert plan_changes(s, {"third_party_sharing": "granted"}, now=NOW) == []


def test_regrant_of_a_grant_needing_reconsent_is_a_change() -> None:
    s = snap(rec("marketing_email", at=T0))
    policies = [material(T0 + timedelta(days=1), "marketing_email")]
    assert not is_effective(s.records["marketing_email"], policies, NOW)
    assert plan_changes(s, {"marketing_email": "granted"}, now=NOW, policies=policies) == [
        Change("marketing_email", "granted", "granted")
    ]


def test_regrant_after_a_policy_that_is_not_yet_effective_is_a_no_op() -> None:
    s = snap(rec("marketing_email", at=T0))
    policies = [material(NOW + timedelta(days=1), "marketing_email")]
    assert plan_changes(s, {"marketing_email": "granted"}, now=NOW, policies=policies) == []


@pytest.mark.parametrize("ended_reason", ["expired", "lapsed"])
def test_regrant_of_a_record_with_ended_reason_is_a_change(ended_reason: str) -> None:
    s = snap(rec("marketing_email", ended_reason=ended_reason))
    assert plan_changes(s, {"marketing_email": "granted"}, now=NOW) == [
        Change("marketing_email", "granted", "granted")
    ]


def test_unset_again_on_an_ended_record_is_a_no_op() -> None:
    s = snap(rec("marketing_email", "unset", source="system", ended_reason="expired"))
    assert plan_changes(s, {"marketing_email": "unset"}, now=NOW) == []


def test_erased_subject_cannot_change_anything() -> None:
    s = snap(rec("marketing_email"), erased_at=T0)
    for requested in ({"marketing_email": "denied"}, {"analytics": "granted"}, {}):
        with pytest.raises(DomainError) as err:
            plan_changes(s, requested, now=NOW)  # type: ignore[arg-type]
        assert err.value.code == "subject_erased"


@pytest.mark.parametrize(
    ("acting_guardian", "guardian_ids"),
    [(None, frozenset()), (None, frozenset({"g-1"})), ("g-2", frozenset({"g-1"}))],
)
def test_child_grant_needs_a_linked_acting_guardian(
    acting_guardian: str | None, guardian_ids: frozenset[str]
) -> None:
    s = snap(guardian_ids=guardian_ids)
    with pytest.raises(DomainError) as err:
        plan_changes(
            s,
            {"marketing_email": "granted"},
            now=NOW,
            age_status="child",
            acting_guardian=acting_guardian,
        )
    assert err.value.code == "guardian_required"


def test_child_grant_by_linked_guardian_is_accepted() -> None:
    s = snap(guardian_ids=frozenset({"g-1"}))
    assert plan_changes(
        s, {"marketing_email": "granted"}, now=NOW, age_status="child", acting_guardian="g-1"
    ) == [Change("marketing_email", "unset", "granted")]


def test_child_denial_needs_no_guardian() -> None:
    assert plan_changes(snap(), {"analytics": "denied"}, now=NOW, age_status="child") == [
        Change("analytics", "unset", "denied")
    ]


@pytest.mark.parametrize("key", ["sale", "share"])
def test_child_sale_or_share_grant_is_refused_even_by_a_linked_guardian(key: str) -> None:
    s = snap(guardian_ids=frozenset({"g-1"}))
    with pytest.raises(DomainError) as err:
        plan_changes(
            s,
            {"marketing_email": "granted", key: "granted"},
            now=NOW,
            age_status="child",
            acting_guardian="g-1",
        )
    assert err.value.code == "child_data_never_sold"


@pytest.mark.parametrize("age_status", ["adult", "unknown", "teen_opt_in"])
def test_non_child_may_grant_sale(age_status: str) -> None:
    assert plan_changes(
        snap(),
        {"sale": "granted"},
        now=NOW,
        age_status=age_status,  # type: ignore[arg-type]
    ) == [Change("sale", "unset", "granted")]


def test_changes_are_sorted_by_purpose() -> None:
    s = snap(rec("analytics", "denied"))
    requested = {
        "share": "denied",
        "marketing_email": "granted",
        "analytics": "granted",
        "cookies_functional": "denied",
    }
    changes = plan_changes(s, requested, now=NOW)  # type: ignore[arg-type]
    assert [c.purpose for c in changes] == sorted(requested)
    assert changes[0] == Change("analytics", "denied", "granted")
    assert changes[0].as_dict() == {"purpose": "analytics", "from": "denied", "to": "granted"}


# --- plan_gpc_opt_out -------------------------------------------------------------------------


def test_first_gpc_signal_denies_sale_and_share() -> None:
    assert plan_gpc_opt_out(snap()) == [
        Change("sale", "unset", "denied"),
        Change("share", "unset", "denied"),
    ]


def test_first_gpc_signal_overrides_earlier_grants() -> None:
    s = snap(rec("sale"), rec("share"), rec("marketing_email"))
    assert plan_gpc_opt_out(s) == [
        Change("sale", "granted", "denied"),
        Change("share", "granted", "denied"),
    ]


def test_gpc_signal_when_already_denied_changes_nothing() -> None:
    s = snap(rec("sale", "denied", source="gpc"), rec("share", "denied", source="web"))
    assert plan_gpc_opt_out(s) == []
    s.gpc_opted_out_at = T0
    assert plan_gpc_opt_out(s) == []


def test_gpc_signal_only_denies_what_is_not_denied_yet() -> None:
    s = snap(rec("sale", "denied", source="gpc"), rec("share", "unset", source="system"))
    assert plan_gpc_opt_out(s) == [Change("share", "unset", "denied")]


def test_grant_made_after_gpc_opt_out_is_respected() -> None:
    gpc_at = T0
    s = snap(
        rec("sale", at=gpc_at + timedelta(days=1)),
        rec("share", "denied", source="gpc", at=gpc_at),
        gpc_opted_out_at=gpc_at,
    )
    assert plan_gpc_opt_out(s) == []


@pytest.mark.parametrize("delta", [timedelta(0), timedelta(days=1)])
def test_grant_made_before_gpc_opt_out_is_overridden(delta: timedelta) -> None:
    gpc_at = T0
    s = snap(
        rec("sale", at=gpc_at - delta),
        rec("share", at=gpc_at + timedelta(days=1)),
        gpc_opted_out_at=gpc_at,
    )
    assert plan_gpc_opt_out(s) == [Change("sale", "granted", "denied")]
