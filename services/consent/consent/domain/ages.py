"""Age status from birth date and jurisdiction.

Two layers, the stricter applies: the **law** per jurisdiction (data file) and the
operator's **policy floor** (children under 16 in the EU/EEA, under 13 elsewhere, by
default). No birth date means no actual knowledge of age: ``unknown``, treated as adult.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

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
