"""Import rows and the rules that turn one subject's rows into one change
(domain/imports.py, domain/import_mappings.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consent.domain import import_mappings as mappings
from consent.domain import imports as rules
from consent.domain.model import Actor, PurposeRecord, SubjectSnapshot

NOW = datetime(2026, 12, 1, tzinfo=UTC)
PURPOSES = {"marketing_email", "sale", "third_party_sharing", "analytics"}
OPERATOR = Actor("operator", "cli")


def row(**kw: object) -> dict[str, object]:
    base = {
        "subject_id": "s1",
        "purpose": "marketing_email",
        "status": "granted",
        "occurred_at": "2026-06-01T10:00:00Z",
    }
    return {**base, **kw}


def valid(raw: dict[str, object], line: int = 1) -> rules.ImportRow:
    out = rules.validate(line, raw, purposes=PURPOSES, policy_versions={"2026-01"}, now=NOW)
    assert isinstance(out, rules.ImportRow), out
    return out


def plan(snapshot: SubjectSnapshot, rows: list[rules.ImportRow], age: str = "adult"):  # type: ignore[no-untyped-def]
    return rules.plan_subject(
        snapshot, rows, now=NOW, policies=[], age_status=age,  # type: ignore[arg-type]
        validity_days={"third_party_sharing": 365}, sequence=snapshot.sequence + 1,
        actor=OPERATOR,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "column", "reason"),
    [
        (row(purpose="telepathy"), "purpose", "not a purpose of the catalog"),
        (row(status="maybe"), "status", "granted or denied"),
        (row(occurred_at="yesterday"), "occurred_at", "an RFC 3339 time with a UTC offset"),
        (row(occurred_at="2026-06-01T10:00"), "occurred_at", "an RFC 3339 time with a UTC offset"),
        (row(occurred_at="2027-01-01T00:00:00Z"), "occurred_at", "in the future"),
        (row(jurisdiction="Mars"), "jurisdiction", "an ISO 3166 code (US-CA, DE, ...)"),
        (row(policy_version="1999"), "policy_version", "not a published policy version"),
        (row(channel="gpc"), "channel", "one of import, web, ios, android, api"),
        (row(subject_id="a b"), "subject_id", "1-128 characters of A-Z a-z 0-9 . _ : @ -"),
        (row(colour="blue"), "colour", "unknown column"),
        ({k: v for k, v in row().items() if k != "status"}, "status", "required"),
        (row(notice_id=7), "notice_id", "must be a non-empty string"),
    ],
)
def test_a_bad_row_is_reported_with_its_column_and_reason(
    raw: dict[str, object], column: str, reason: str
) -> None:
    out = rules.validate(9, raw, purposes=PURPOSES, policy_versions={"2026-01"}, now=NOW)
    assert isinstance(out, rules.RowError)
    assert (out.line, out.column, out.reason) == (9, column, reason)


def test_csv_and_json_lines_read_the_same_rows() -> None:
    csv = b"subject_id,purpose,status,occurred_at\ns1,sale,denied,2026-01-01T00:00:00Z\n"
    jsonl = (
        b'{"subject_id":"s1","purpose":"sale","status":"denied",'
        b'"occurred_at":"2026-01-01T00:00:00Z"}\n'
    )
    (line_c, a), = rules.read_rows(csv, "csv")
    (line_j, b), = rules.read_rows(jsonl, "jsonl")
    assert a == b and (line_c, line_j) == (2, 1)


def test_a_line_that_is_not_an_object_is_reported() -> None:
    got = list(rules.read_rows(b'[1]\n{not json\n\n{"subject_id": "x"}\n', "jsonl"))
    assert [(line, getattr(r, "reason", None)) for line, r in got] == [
        (1, "a row must be a JSON object"),
        (2, "not valid JSON"),
        (4, None),
    ]


@given(st.dictionaries(st.sampled_from(rules.COLUMNS), st.text(max_size=30)))
def test_the_default_key_is_the_same_for_the_same_row(raw: dict[str, str]) -> None:
    assert rules.default_key(raw) == rules.default_key(dict(reversed(list(raw.items()))))


def test_the_newest_row_of_a_purpose_wins_and_rows_become_one_change() -> None:
    rows = [
        valid(row(status="granted", occurred_at="2026-03-01T00:00:00Z"), 1),
        valid(row(status="denied", occurred_at="2026-05-01T00:00:00Z"), 2),
        valid(row(purpose="analytics", occurred_at="2026-04-01T00:00:00Z"), 3),
    ]
    p = plan(SubjectSnapshot("s1"), rows)
    assert [(c.purpose, c.to_status) for c in p.changes] == [
        ("analytics", "granted"),
        ("marketing_email", "denied"),
    ]
    assert {r.line for r in p.applied} == {2, 3}
    assert [(r.line, why) for r, why in p.skipped] == [(1, "a newer row of the file wins")]
    assert all(r.sequence == 1 for r in p.records)
    email = next(r for r in p.records if r.purpose == "marketing_email")
    assert email.updated_at == datetime(2026, 5, 1, tzinfo=UTC)  # the original time


def test_an_older_imported_choice_never_overrides_a_newer_recorded_one() -> None:
    recorded = PurposeRecord(
        "marketing_email", "denied", "web", datetime(2026, 7, 1, tzinfo=UTC), sequence=3
    )
    snap = SubjectSnapshot("s1", sequence=3, records={"marketing_email": recorded})
    p = plan(snap, [valid(row(occurred_at="2026-06-01T00:00:00Z"))])
    assert not p.changes and not p.records
    assert [why for _, why in p.skipped] == ["older than the choice already recorded"]
    newer = plan(snap, [valid(row(occurred_at="2026-08-01T00:00:00Z"))])
    assert [(c.from_status, c.to_status) for c in newer.changes] == [("denied", "granted")]


def test_erased_and_merged_subjects_are_refused_row_by_row() -> None:
    erased = SubjectSnapshot("s1", erased_at=NOW)
    p = plan(erased, [valid(row(), 1), valid(row(purpose="sale"), 2)])
    assert [(e.line, e.reason) for e in p.rejected] == [
        (1, "subject_erased"),
        (2, "subject_erased"),
    ]
    merged = SubjectSnapshot("s1", merged_into="person")
    assert plan(merged, [valid(row())]).rejected[0].reason.startswith("subject_merged")


def test_the_rules_for_minors_apply_to_each_row() -> None:
    p = plan(
        SubjectSnapshot("kid"),
        [valid(row(subject_id="kid"), 1), valid(row(subject_id="kid", status="denied",
                                                     purpose="sale"), 2)],
        age="child",
    )  # fmt: skip
    assert [(e.line, e.reason) for e in p.rejected] == [(1, "guardian_required")]
    assert [r.line for r in p.applied] == [2]  # a child's denial is always welcome


def test_a_grant_older_than_its_validity_is_recorded_as_given_and_expired() -> None:
    old = valid(row(purpose="third_party_sharing", occurred_at="2025-01-01T00:00:00Z"))
    recent = valid(row(purpose="third_party_sharing", subject_id="s2",
                       occurred_at="2026-11-01T00:00:00Z"))  # fmt: skip
    (expired,) = plan(SubjectSnapshot("s1"), [old]).records
    assert expired.expires_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert expired.ended_reason == "expired" and expired.status == "granted"
    (current,) = plan(SubjectSnapshot("s2"), [recent]).records
    assert current.ended_reason is None and current.expires_at == datetime(
        2026, 11, 1, tzinfo=UTC
    ) + timedelta(days=365)


def test_a_jurisdiction_is_set_once_and_never_contradicted() -> None:
    p = plan(SubjectSnapshot("s1"), [valid(row(jurisdiction="US-CA"))])
    assert p.jurisdiction == "US-CA"
    known = SubjectSnapshot("s1", jurisdiction="DE")
    q = plan(known, [valid(row(jurisdiction="US-CA"))])
    assert q.rejected[0].column == "jurisdiction" and not q.records


def test_onetrust_and_didomi_exports_map_to_rows() -> None:
    ot = {
        "Identifier": "crm-1",
        "Purposes": [
            {"Id": "p-news", "Status": "ACTIVE", "ConsentDate": "2026-01-02T03:04:05Z"},
            {"Id": "p-sale", "Status": "WITHDRAWN", "LastTransactionDate": "2026-02-01T00:00:00Z"},
            {"Id": "p-ads", "Status": "PENDING", "ConsentDate": "2026-01-01T00:00:00Z"},
        ],
    }
    rows = mappings.onetrust(ot, {"p-news": "marketing_email", "p-sale": "sale"})
    assert [(r["purpose"], r["status"], r["occurred_at"]) for r in rows] == [
        ("marketing_email", "granted", "2026-01-02T03:04:05Z"),
        ("sale", "denied", "2026-02-01T00:00:00Z"),
    ]
    dd = {
        "id": "d-1",
        "organization_user_id": "crm-2",
        "updated_at": "2026-03-01T00:00:00Z",
        "consents": {"purposes": [{"id": "news", "enabled": False}, {"id": "x", "enabled": None}]},
    }
    assert mappings.didomi(dd, {"news": "marketing_email"}) == [
        {
            "subject_id": "crm-2",
            "purpose": "marketing_email",
            "status": "denied",
            "occurred_at": "2026-03-01T00:00:00Z",
            "evidence_ref": "didomi:d-1",
        }
    ]
    with pytest.raises(mappings.MappingError) as err:
        mappings.onetrust({**ot, "Purposes": [{"Id": "zzz", "Status": "ACTIVE",
                                               "ConsentDate": "2026-01-01T00:00:00Z"}]}, {})
    assert "not in the purpose map" in err.value.reason
    assert mappings.unsubscribe({"subject_id": "c", "unsubscribed_at": "2026-01-01T00:00:00Z"},
                                {})[0]["status"] == "denied"  # fmt: skip


@given(st.binary(max_size=300))
def test_any_bytes_read_as_csv_give_rows_or_reported_lines(data: bytes) -> None:
    """Nothing in an upload makes reading fail: a line the CSV reader refuses (a NUL, a stray
    carriage return) is reported for its line."""
    for line, raw in rules.read_rows(b"subject_id,purpose\n" + data, "csv"):
        assert line >= 1
        assert isinstance(raw, dict | rules.RowError)


def test_a_stray_carriage_return_ends_a_line_instead_of_failing_the_upload() -> None:
    """It once reached the API as a 500 (``new-line character seen in unquoted field``)."""
    got = list(rules.read_rows(b"subject_id,purpose\na\rb,sale\n", "csv"))
    assert [raw for _, raw in got] == [{"subject_id": "a"}, {"subject_id": "b", "purpose": "sale"}]


def test_a_line_nested_too_deep_is_reported_not_raised() -> None:
    got = list(rules.read_rows(b"[" * 100_000 + b"\n", "jsonl"))
    assert [(line, getattr(r, "reason", None)) for line, r in got] == [(1, "not valid JSON")]


def test_a_header_naming_a_column_twice_is_refused() -> None:
    data = b"subject_id,purpose,status,occurred_at,purpose\nk,sale,granted,2026-01-01T00:00:00Z,x\n"
    got = list(rules.read_rows(data, "csv"))
    assert [(line, r.column, r.reason) for line, r in got] == [  # type: ignore[union-attr]
        (1, "purpose", "the header names this column twice")
    ]
