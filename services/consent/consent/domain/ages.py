"""Age status from birth date and jurisdiction (thresholds per law and policy floor)."""

from __future__ import annotations

from datetime import date, datetime

from consent.domain.model import AgeStatus


def age_on(birth_date: date, today: date) -> int:
    years = today.year - birth_date.year
    if (today.month, today.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


def age_status(birth_date: date | None, jurisdiction: str | None, now: datetime) -> AgeStatus:
    """No birth date means no actual knowledge of age: treated as an adult (``unknown``)."""
    if birth_date is None:
        return "unknown"
    age = age_on(birth_date, now.date())
    if age < (16 if jurisdiction and jurisdiction[:2] != "US" else 13):
        return "child"
    return "adult"
