"""Jurisdiction codes and the consent regime that applies to each."""

from __future__ import annotations

import re
from functools import lru_cache

import pycountry

EU_EEA = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "HR",
        "CY",
        "CZ",
        "DK",
        "EE",
        "FI",
        "FR",
        "DE",
        "GR",
        "HU",
        "IE",
        "IT",
        "LV",
        "LT",
        "LU",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SK",
        "SI",
        "ES",
        "SE",
        "IS",
        "LI",
        "NO",
    ]
)
GDPR_LIKE = EU_EEA | {"GB", "CH"}
_CODE = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")


@lru_cache
def known_codes() -> tuple[str, ...]:
    """Every code ``normalize`` accepts, canonical and sorted (the OpenAPI enum)."""
    countries = {c.alpha_2 for c in pycountry.countries}
    subdivisions = {s.code for s in pycountry.subdivisions if _CODE.match(s.code)}
    return tuple(sorted(countries | {s for s in subdivisions if s[:2] in countries}))


def normalize(code: str) -> str | None:
    """Return the canonical ISO 3166 code (``DE``, ``US-CA``) or None when unknown."""
    code = code.strip().upper()
    if not _CODE.match(code):
        return None
    country = code[:2]
    if pycountry.countries.get(alpha_2=country) is None:
        return None
    if len(code) > 2 and pycountry.subdivisions.get(code=code) is None:
        return None
    return code


def country(jurisdiction: str | None) -> str | None:
    return jurisdiction[:2] if jurisdiction else None


def regime(jurisdiction: str | None) -> str:
    """``gdpr`` (EU/EEA, UK, CH), ``us`` (US states: opt-out) or ``other`` (opt-in)."""
    c = country(jurisdiction)
    if c in GDPR_LIKE:
        return "gdpr"
    if c == "US":
        return "us"
    return "other"
