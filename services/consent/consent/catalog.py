"""Loads the versioned purpose catalog shipped in ``consent/data``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources

from consent.domain.ages import AgeRules
from consent.domain.model import Purpose

CATALOG_FILE = "purposes.v1.json"


@lru_cache
def load_catalog() -> dict[str, Purpose]:
    raw = json.loads(resources.files("consent.data").joinpath(CATALOG_FILE).read_text())
    return {
        p["key"]: Purpose(
            key=p["key"],
            title=p["title"],
            description=p["description"],
            category=p["category"],
            legal_basis=p["legal_basis"],
            validity_days=p.get("validity_days"),
        )
        for p in raw["purposes"]
    }


@lru_cache
def purpose_keys() -> tuple[str, ...]:
    """The catalog's purpose keys, in catalog order: the only purposes a caller may name."""
    return tuple(load_catalog())


def unknown_purposes(keys: Iterable[str]) -> list[str]:
    """The names in ``keys`` that are not catalog purposes, sorted (for a message)."""
    return sorted(set(keys) - load_catalog().keys())


@lru_cache
def catalog_version() -> str:
    raw = json.loads(resources.files("consent.data").joinpath(CATALOG_FILE).read_text())
    return str(raw["catalog_version"])


@lru_cache
def load_age_rules(floor_eu_eea: int | None = None, floor_other: int | None = None) -> AgeRules:
    """Thresholds from the versioned data file; floors from the operator (settings)."""
    raw = json.loads(resources.files("consent.data").joinpath("age_thresholds.v1.json").read_text())
    floor = raw["policy_floor"]
    return AgeRules(
        law_child_under=dict(raw["law"]["countries"]),
        sale_share_opt_in_under=dict(raw["law"]["sale_share_opt_in_under"]),
        floor_eu_eea=floor["eu_eea"] if floor_eu_eea is None else floor_eu_eea,
        floor_other=floor["other"] if floor_other is None else floor_other,
    )
