"""docs/architecture.md names a module at every hop of a change: each one it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
BASES = {
    "consent/": ROOT / "services" / "consent" / "consent",
    "propagator/": ROOT / "services" / "propagator" / "propagator",
}


def _resolve(name: str) -> Path | None:
    name = name.split(" ")[0].rstrip(",")
    for prefix, base in BASES.items():
        if name.startswith(prefix):
            return base / name.removeprefix(prefix)
    if name.startswith(("tests/", "schemas/", "services/", "docs/")):
        return ROOT / name
    for sub in ("api", "service", "domain", "adapters", "relay"):  # short forms, consent's
        if name.startswith(f"{sub}/"):
            return BASES["consent/"] / name
    return None


def test_every_module_the_architecture_names_exists():
    names = set(re.findall(r"`([\w/.*-]+\.(?:py|json|md))", DOC.read_text()))
    names |= set(re.findall(r"\b((?:consent|propagator)/[\w/]+\.py)", DOC.read_text()))
    missing = []
    for name in sorted(names):
        path = _resolve(name)
        if path is None:
            continue
        if "*" in path.name:
            if not list(path.parent.glob(path.name)):
                missing.append(name)
        elif not path.exists():
            missing.append(name)
    assert len(names) > 30
    assert missing == []
