"""Domain events: what happened, as the data of a CloudEvent. No personal data here."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from consent.domain.model import Actor, Change, Decision
from consent_common.timefmt import rfc3339

EVENT_NAMESPACE = uuid.UUID("6f1c2a0e-4d4b-4f7e-9a55-2c1f3e7b9d10")


def event_id(subject_id: str, sequence: int, replay_tag: str | None = None) -> str:
    """Stable per (subject, sequence): redelivery and replays can be recognised by id."""
    name = f"{subject_id}:{sequence}" + (f":replay:{replay_tag}" if replay_tag else "")
    return str(uuid.uuid5(EVENT_NAMESPACE, name))


@dataclass(frozen=True)
class DomainEvent:
    type: str
    subject_id: str
    sequence: int | None
    occurred_at: datetime
    data: dict[str, Any]
    id: str = field(default="")
    aggregatetype: str = "subject"  # "replay": for the private replays topic only
    targets: str | None = None  # a replay's processors, comma-separated

    def __post_init__(self) -> None:
        if not self.id:
            ident = (
                event_id(self.subject_id, self.sequence)
                if self.sequence is not None
                else str(uuid.uuid4())
            )
            object.__setattr__(self, "id", ident)


def decisions_map(decisions: Mapping[str, Decision]) -> dict[str, bool]:
    return {k: d.allowed for k, d in sorted(decisions.items())}


def changed_decisions(before: Mapping[str, bool] | None, after: Mapping[str, bool]) -> list[str]:
    """The purposes whose ``allowed`` differs from the previous event's; every purpose when
    the previous answers are not known (a subject written before they were kept)."""
    if before is None:
        return sorted(after)
    return sorted(p for p, allowed in after.items() if before.get(p) != allowed)


def consent_event(
    type_: str,
    *,
    subject_id: str,
    sequence: int,
    changes: list[Change],
    decisions: Mapping[str, Decision],
    jurisdiction: str | None,
    policy_version: str | None,
    channel: str,
    actor: Actor,
    occurred_at: datetime,
    replay: bool = False,
    extra: Mapping[str, Any] | None = None,
    previous: Mapping[str, bool] | None = None,
) -> DomainEvent:
    """``consent.changed`` / ``consent.expired`` / ``consent.lapsed`` and subject events.

    ``previous`` is what the subject's previous event said (see ``changed_decisions``)."""
    now_allowed = decisions_map(decisions)
    data: dict[str, Any] = {
        "subject_id": subject_id,
        "sequence": sequence,
        "changes": [c.as_dict() for c in changes],
        "decisions": now_allowed,
        "changed_decisions": changed_decisions(previous, now_allowed),
        "jurisdiction": jurisdiction,
        "policy_version": policy_version,
        "channel": channel,
        "actor": {"type": actor.type, "id": actor.id},
        "occurred_at": rfc3339(occurred_at),
        "replay": replay,
    }
    if extra:
        data.update(extra)
    return DomainEvent(type_, subject_id, sequence, occurred_at, data)
