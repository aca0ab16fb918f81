"""Property tests of the merge rules (consent/domain/merge.py): any two histories."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consent.catalog import load_catalog
from consent.domain import jurisdictions
from consent.domain.decisions import DecisionContext, decide_all
from consent.domain.merge import apply_merge, device_view, plan_merge, plan_unmerge
from consent.domain.model import Actor, DomainError, PurposeRecord, SubjectSnapshot

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CATALOG = load_catalog()
DEVICE = frozenset(k for k, p in CATALOG.items() if p.category == "cookies")
PURPOSES = ["sale", "share", "marketing_email", "analytics", "cookies_analytics"]
times = st.integers(min_value=1, max_value=400).map(lambda d: NOW - timedelta(days=d))


@st.composite
def records(draw: st.DrawFn, purpose: str) -> PurposeRecord:
    status = draw(st.sampled_from(["granted", "denied", "unset"]))
    expired = status == "granted" and draw(st.booleans()) and draw(st.booleans())
    return PurposeRecord(
        purpose=purpose,
        status=status,
        source=draw(st.sampled_from(["web", "api", "gpc"])) if status == "denied" else "web",
        updated_at=draw(times),
        expires_at=NOW - timedelta(days=1) if expired else None,
        actor=Actor("subject", "x"),
    )


@st.composite
def histories(draw: st.DrawFn, subject_id: str, jurisdiction: str | None = None) -> SubjectSnapshot:
    chosen = draw(st.lists(st.sampled_from(PURPOSES), unique=True))
    recs = {p: draw(records(p)) for p in chosen}
    return SubjectSnapshot(
        subject_id=subject_id,
        sequence=len(recs) + 1,
        jurisdiction=jurisdiction or draw(st.sampled_from(["DE", "US-CA", None])),
        gpc_opted_out_at=draw(st.none() | times),
        records=recs,
    )


def decisions(s: SubjectSnapshot) -> dict[str, bool]:
    ctx = DecisionContext(
        regime=jurisdictions.regime(s.jurisdiction), gpc_opted_out_at=s.gpc_opted_out_at
    )
    return {k: d.allowed for k, d in decide_all(ctx, CATALOG, s.records, NOW).items()}


def reasons(s: SubjectSnapshot) -> dict[str, str]:
    ctx = DecisionContext(
        regime=jurisdictions.regime(s.jurisdiction), gpc_opted_out_at=s.gpc_opted_out_at
    )
    return {k: d.reason for k, d in decide_all(ctx, CATALOG, s.records, NOW).items()}


def merge(person: SubjectSnapshot, device: SubjectSnapshot) -> SubjectSnapshot:
    plan = plan_merge(
        person,
        device,
        device_purposes=DEVICE,
        person_age="unknown",
        device_age="unknown",
        now=NOW,
    )
    return apply_merge(person, plan)


OPT_OUT = {"explicit_denial", "gpc_opt_out"}


@settings(max_examples=300, deadline=None)
@given(histories("person"), histories("anon"))
def test_an_opt_out_on_either_side_survives_any_grant(person, device):
    merged = merge(person, device)
    after = decisions(merged)
    for side in (person, device):
        for purpose, reason in reasons(side).items():
            if purpose not in DEVICE and reason in OPT_OUT:
                assert after[purpose] is False, (purpose, side.subject_id)


@settings(max_examples=300, deadline=None)
@given(histories("person"), histories("anon"))
def test_device_purposes_stay_with_the_device(person, device):
    merged = merge(person, device)
    for p in DEVICE:
        assert merged.records.get(p) == person.records.get(p)
    view = device_view(device, merged, DEVICE)
    for p in DEVICE:
        assert view.records.get(p) == device.records.get(p)
        assert (
            decisions(view)[p]
            == decisions(
                replace(
                    device,
                    jurisdiction=merged.jurisdiction,
                    gpc_opted_out_at=merged.gpc_opted_out_at,
                )
            )[p]
        )


@settings(max_examples=300, deadline=None)
@given(histories("person"), histories("anon"))
def test_without_opt_outs_the_newer_effective_grant_wins(person, device):
    merged = merge(person, device)
    r_person, r_device = reasons(person), reasons(device)
    for p in PURPOSES:
        if p in DEVICE or r_person[p] in OPT_OUT or r_device[p] in OPT_OUT:
            continue
        grants = [
            s.records[p]
            for s in (person, device)
            if p in s.records and reasons(s)[p] == "explicit_grant"
        ]
        if grants:
            newest = max(g.updated_at for g in grants)
            assert merged.records[p].status == "granted"
            assert merged.records[p].updated_at == newest
            assert decisions(merged)[p] is True


@settings(max_examples=200, deadline=None)
@given(histories("person", "US-CA"), histories("anon", "US-CA"))
def test_the_order_of_the_two_sides_does_not_change_the_decisions(a, b):
    """Same profile on both sides: which one is the person does not change any answer
    outside the device purposes (which never merge)."""
    ab, ba = decisions(merge(a, b)), decisions(merge(b, a))
    assert {k: v for k, v in ab.items() if k not in DEVICE} == {
        k: v for k, v in ba.items() if k not in DEVICE
    }


@settings(max_examples=200, deadline=None)
@given(histories("person"), histories("anon"))
def test_merging_again_changes_nothing(person, device):
    merged = merge(person, device)
    again = plan_merge(
        merged, device, device_purposes=DEVICE, person_age="unknown", device_age="unknown",
        now=NOW,
    )  # fmt: skip
    assert again.changes == ()


@settings(max_examples=300, deadline=None)
@given(histories("person"), histories("anon"))
def test_undo_never_leaves_the_person_more_permissive_than_before(person, device):
    plan = plan_merge(
        person, device, device_purposes=DEVICE, person_age="unknown", device_age="unknown",
        now=NOW,
    )  # fmt: skip
    seq = person.sequence + 1
    merged = apply_merge(person, replace(plan, carried=tuple(
        replace(r, sequence=seq) for r in plan.carried)))  # fmt: skip
    changes, restored = plan_unmerge(merged, seq, plan.replaced, NOW)
    undone = replace(merged, records={**merged.records, **{r.purpose: r for r in restored}})
    before, after = decisions(person), decisions(undone)
    for p, allowed in after.items():
        assert not allowed or before[p], p
    for c in changes:
        assert c.from_status == "granted"


@given(histories("person"), histories("anon"))
@settings(max_examples=100, deadline=None)
def test_a_child_person_takes_no_grant_made_without_its_guardian(person, device):
    plan = plan_merge(
        person, device, device_purposes=DEVICE, person_age="child", device_age="unknown",
        now=NOW,
    )  # fmt: skip
    assert all(r.status == "denied" for r in plan.carried)


@pytest.mark.parametrize(
    ("person_age", "device_age"),
    [("adult", "child"), ("unknown", "child"), ("teen_opt_in", "child"), ("adult", "teen_opt_in")],
)
def test_a_minors_choices_never_pass_to_an_older_person(person_age, device_age):
    with pytest.raises(DomainError) as err:
        plan_merge(
            SubjectSnapshot("p"), SubjectSnapshot("a"), device_purposes=DEVICE,
            person_age=person_age, device_age=device_age, now=NOW,
        )  # fmt: skip
    assert err.value.code == "minor_merge_refused"


def test_a_minor_devices_guardians_apply_to_a_minor_person():
    device = SubjectSnapshot("a", guardian_ids=frozenset({"parent"}))
    device.records["marketing_email"] = PurposeRecord(
        "marketing_email", "granted", "guardian", NOW - timedelta(days=1),
        actor=Actor("guardian", "parent"),
    )  # fmt: skip
    plan = plan_merge(
        SubjectSnapshot("p"), device, device_purposes=DEVICE, person_age="child",
        device_age="child", now=NOW,
    )  # fmt: skip
    assert plan.guardians == {"parent"}
    assert [c.purpose for c in plan.changes] == ["marketing_email"]


def test_anonymous_ids_are_random_and_valid_subject_ids():
    import re

    from consent.domain.merge import new_anonymous_id

    ids = {new_anonymous_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"[A-Za-z0-9._:@-]{1,128}", i) for i in ids)
