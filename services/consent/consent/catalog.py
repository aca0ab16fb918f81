"""Loads the versioned purpose catalog shipped in ``consent/data``."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

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
def catalog_version() -> str:
    raw = json.loads(resources.files("consent.data").joinpath(CATALOG_FILE).read_text())
    return str(raw["catalog_version"])
