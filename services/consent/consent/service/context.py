"""Who is writing, through which channel, with what evidence, at what time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from consent.domain.model import Actor


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class WriteContext:
    """Built once at the edge; a service that knows more (the policy version in force, a
    verification) makes a new one with ``dataclasses.replace``, never changes this one."""

    channel: str
    actor: Actor
    now: datetime = field(default_factory=utcnow)
    policy_version: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    acting_guardian: str | None = None
