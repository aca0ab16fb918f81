"""``next_status_change``: the scheduler's alarm clock for birthdays. The rule: the age
status is constant from now until the instant it names, and differs at that instant; with
no instant, it never changes again."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from consent.catalog import load_age_rules
from consent.domain.ages import age_status, birthday_of_age, next_status_change

RULES = load_age_rules()
JURISDICTIONS = ["DE", "FR", "AT", "DK", "GB", "US-CA", "US-TX", "US-NY", "BR", "JP", None]


@given(
    birth=st.dates(min_value=date(1990, 1, 1), max_value=date(2026, 12, 31)),
    jurisdiction=st.sampled_from(JURISDICTIONS),
    now=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2045, 1, 1)),
)
def test_status_is_constant_until_the_next_change_and_differs_at_it(birth, jurisdiction, now):
    now = now.replace(tzinfo=UTC)
    if birth > now.date():
        return
    status = age_status(birth, jurisdiction, now, RULES)
    at = next_status_change(birth, jurisdiction, now, RULES)
    if at is None:
        for years in (1, 5, 30):
            later = now + timedelta(days=365 * years)
            assert age_status(birth, jurisdiction, later, RULES) == status
        return
    assert at > now
    assert age_status(birth, jurisdiction, at - timedelta(microseconds=1), RULES) == status
    assert age_status(birth, jurisdiction, at, RULES) != status


def test_a_29_february_birthday_counts_on_1_march():
    assert birthday_of_age(date(2012, 2, 29), 13) == date(2025, 3, 1)
    assert birthday_of_age(date(2012, 2, 29), 16) == date(2028, 2, 29)


def test_no_birth_date_never_changes():
    assert next_status_change(None, "DE", datetime.now(UTC), RULES) is None
