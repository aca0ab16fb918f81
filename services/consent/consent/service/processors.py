"""Which processors exist, as the consent service sees them (for replays restricted to
processors): their names and purposes, read from ``CONSENT_PROCESSORS_FILE``.

The file belongs to the propagator, which validates all of it; the consent service reads
only what it needs and never imports the propagator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class KnownProcessor:
    name: str
    purposes: tuple[str, ...]


def known_processors(path: Path | None) -> dict[str, KnownProcessor]:
    if path is None:
        return {}
    raw = yaml.safe_load(path.read_text()) or {}
    out: dict[str, KnownProcessor] = {}
    for p in raw.get("processors") or []:
        if isinstance(p, dict) and isinstance(p.get("name"), str):
            out[p["name"]] = KnownProcessor(p["name"], tuple(p.get("purposes") or ()))
    return out
