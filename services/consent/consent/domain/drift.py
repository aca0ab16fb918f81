"""What a processor holds, and where it differs from the decision API (pure rules).

A processor holds the decisions of the last delivery it acknowledged, on its purposes. An
erasure it acknowledged means it holds nothing: every purpose is denied. A processor that
never acknowledged anything for a subject holds what a never-written subject answers (the
first event of a subject is routed by its difference from exactly those answers, so a
processor left out of it already agreed). A purpose a delivery did not carry (added to the
processor's configuration later) counts the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

ERASURE = "subject.erasure_requested"


@dataclass(frozen=True)
class Held:
    """One processor's last acknowledged delivery for one subject (from the receipts)."""

    sequence: int
    event_type: str | None
    decisions: Mapping[str, bool] | None  # None: a receipt from before receipts carried them
    delivered_at: datetime | None = None


@dataclass(frozen=True)
class Difference:
    subject_id: str
    processor: str
    purpose: str
    delivered: bool
    current: bool
    since: datetime | None = None  # filled in by the caller (service/drift.py)


def held_answers(
    held: Held | None, purposes: Iterable[str], unwritten: Mapping[str, bool]
) -> dict[str, bool] | None:
    """The answers a processor holds on its purposes; None when the receipts cannot tell."""
    purposes = list(purposes)
    if held is None:
        return {p: unwritten.get(p, False) for p in purposes}
    if held.event_type == ERASURE:
        return dict.fromkeys(purposes, False)
    if held.decisions is None:
        return None
    return {
        p: bool(held.decisions[p]) if p in held.decisions else unwritten.get(p, False)
        for p in purposes
    }


def differences(
    subject_id: str,
    processors: Mapping[str, Iterable[str]],
    held: Mapping[str, Held],
    current: Mapping[str, bool],
    unwritten: Mapping[str, bool],
) -> tuple[list[Difference], list[str]]:
    """Every (processor, purpose) where what the processor holds differs from ``current``,
    and the processors whose holdings the receipts cannot tell (``unknown``)."""
    found: list[Difference] = []
    unknown: list[str] = []
    for name, purposes in sorted(processors.items()):
        mine = [p for p in purposes if p in current]
        answers = held_answers(held.get(name), mine, unwritten)
        if answers is None:
            unknown.append(name)
            continue
        found += [
            Difference(subject_id, name, p, answers[p], current[p])
            for p in mine
            if answers[p] != current[p]
        ]
    return found, unknown
