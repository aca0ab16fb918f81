"""Who is writing, through which channel, with what evidence, at what time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from consent.domain.model import Actor


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class WriteContext:
    channel: str
    actor: Actor
    now: datetime = field(default_factory=utcnow)
    policy_version: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    acting_guardian: str | None = None
