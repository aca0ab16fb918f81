"""Pure tests of ``consent.domain.ages`` against DESIGN.md §3 "Minors and guardians"."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from consent.catalog import load_age_rules
from consent.domain.ages import AgeRules, age_on, age_status

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
RULES = load_age_rules()


def born(years_ago: int) -> date:
    """A birth date making the subject exactly ``years_ago`` years old on NOW."""
    return date(NOW.year - years_ago, NOW.month, NOW.day)


def test_age_on_counts_completed_years() -> None:
    assert age_on(date(2010, 6, 1), date(2026, 6, 1)) == 16
    assert age_on(date(2010, 6, 1), date(2026, 5, 31)) == 15
    assert age_on(date(2008, 2, 29), date(2026, 2, 28)) == 17
    assert age_on(date(2008, 2, 29), date(2026, 3, 1)) == 18


@pytest.mark.parametrize("jurisdiction", [None, "DE", "US-CA", "GB"])
def test_no_birth_date_means_no_actual_knowledge(jurisdiction: str | None) -> None:
    assert age_status(None, jurisdiction, NOW, RULES) == "unknown"


@pytest.mark.parametrize("jurisdiction", ["DE", "FR", "BE", "NO", "IE", "DE-BY"])
def test_eu_eea_children_are_under_16_whatever_the_member_state_law(jurisdiction: str) -> None:
    assert age_status(born(15), jurisdiction, NOW, RULES) == "child"
    assert age_status(born(16), jurisdiction, NOW, RULES) == "adult"


@pytest.mark.parametrize("jurisdiction", ["GB", "US", "US-NY", "BR", "JP", None])
def test_elsewhere_children_are_under_13(jurisdiction: str | None) -> None:
    assert age_status(born(12), jurisdiction, NOW, RULES) == "child"
    assert age_status(born(13), jurisdiction, NOW, RULES) == "adult"


def test_california_13_to_15_need_an_opt_in_for_sale_and_share() -> None:
    assert age_status(born(12), "US-CA", NOW, RULES) == "child"
    for years in (13, 14, 15):
        assert age_status(born(years), "US-CA", NOW, RULES) == "teen_opt_in"
    assert age_status(born(16), "US-CA", NOW, RULES) == "adult"


def test_the_stricter_of_law_and_policy_floor_applies() -> None:
    rules = AgeRules(law_child_under={"XY": 15}, floor_eu_eea=16, floor_other=13)
    assert rules.child_under("XY") == 15
    assert rules.child_under("ZZ") == 13
    assert rules.child_under("DE") == 16
    stricter_floor = load_age_rules(floor_other=14)
    assert age_status(born(13), "BR", NOW, stricter_floor) == "child"
    assert age_status(born(13), "BR", NOW, RULES) == "adult"


def test_birthday_boundary() -> None:
    assert age_status(date(2010, 6, 2), "DE", NOW, RULES) == "child"
    assert age_status(date(2010, 6, 1), "DE", NOW, RULES) == "adult"
