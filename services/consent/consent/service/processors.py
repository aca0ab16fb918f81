"""Which processors exist, as the consent service sees them (for replays and receipts)."""

from __future__ import annotations

from pathlib import Path

from propagator.config import ProcessorConfig, load_processors


def known_processors(path: Path | None) -> dict[str, ProcessorConfig]:
    if path is None:
        return {}
    return {p.name: p for p in load_processors(path)}
