"""Age status from birth date and jurisdiction.

Two layers, the stricter applies: the **law** per jurisdiction (data file) and the
operator's **policy floor** (children under 16 in the EU/EEA, under 13 elsewhere, by
default). No birth date means no actual knowledge of age: ``unknown``, treated as adult.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from consent.domain.jurisdictions import EU_EEA, country
from consent.domain.model import AgeStatus


@dataclass(frozen=True)
class AgeRules:
    law_child_under: Mapping[str, int] = field(default_factory=dict)  # by country
    sale_share_opt_in_under: Mapping[str, int] = field(default_factory=dict)  # by jurisdiction
    floor_eu_eea: int = 16
    floor_other: int = 13

    def child_under(self, jurisdiction: str | None) -> int:
        """The age below which a subject is a child: max(law, policy floor)."""
        c = country(jurisdiction)
        floor = self.floor_eu_eea if c in EU_EEA else self.floor_other
        law = self.law_child_under.get(c or "", 0)
        return max(law, floor)

    def opt_in_under(self, jurisdiction: str | None) -> int:
        if not jurisdiction:
            return 0
        return self.sale_share_opt_in_under.get(jurisdiction, 0)


DEFAULT_RULES = AgeRules()


def age_on(birth_date: date, today: date) -> int:
    years = today.year - birth_date.year
    if (today.month, today.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


def age_status(
    birth_date: date | None,
    jurisdiction: str | None,
    now: datetime,
    rules: AgeRules = DEFAULT_RULES,
) -> AgeStatus:
    """Derived on every decision, so it changes on the birthday without a write."""
    if birth_date is None:
        return "unknown"
    age = age_on(birth_date, now.date())
    if age < rules.child_under(jurisdiction):
        return "child"
    if age < rules.opt_in_under(jurisdiction):
        return "teen_opt_in"
    return "adult"


def birthday_of_age(birth_date: date, years: int) -> date:
    """The first day on which someone born on ``birth_date`` is ``years`` old (a 29 February
    birthday falls on 1 March in other years, as ``age_on`` counts it)."""
    year = birth_date.year + years
    try:
        return birth_date.replace(year=year)
    except ValueError:
        return date(year, 3, 1)


def next_status_change(
    birth_date: date | None,
    jurisdiction: str | None,
    now: datetime,
    rules: AgeRules = DEFAULT_RULES,
) -> datetime | None:
    """When ``age_status`` next changes without a write (midnight UTC of the birthday that
    crosses a threshold), or None once the subject is an adult or has no birth date. The
    scheduler records the change then, so a birthday is an event, not only a lazy read."""
    if birth_date is None:
        return None
    age = age_on(birth_date, now.date())
    thresholds = sorted(
        t for t in (rules.child_under(jurisdiction), rules.opt_in_under(jurisdiction)) if t > age
    )
    if not thresholds:
        return None
    day = birthday_of_age(birth_date, thresholds[0])
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
