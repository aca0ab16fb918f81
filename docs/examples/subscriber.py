"""A subscriber that keeps the latest consent decisions per subject, with ``consent_client``.

Run it against the dev stack (the broker address is in `consentctl dev`'s banner):

    uv run python docs/examples/subscriber.py --bootstrap 127.0.0.1:PORT --group my-service

The library's :class:`~consent_client.Subscriber` does the protocol's chores: it decodes the
CloudEvents records into typed events, drops an event whose id it applied and one whose
sequence is not newer than what it holds for the subject, commits offsets only after the
handler returned, and parks what cannot be decoded or what the handler rejects. The handler
below only keeps the latest decisions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass, field

from consent_client import (
    DecisionEvent,
    Delivery,
    IdempotencyStore,
    MemoryStore,
    SubjectErasureRequested,
    Subscriber,
)


@dataclass
class DecisionStore:
    """In a real service this is a table, written in the handler (so before the commit)."""

    decisions: dict[str, dict[str, bool]] = field(default_factory=dict)

    def apply(self, delivery: Delivery) -> None:
        event = delivery.event
        if isinstance(event, SubjectErasureRequested):
            self.decisions.pop(event.subject_id, None)  # forget everything about the subject
        elif isinstance(event, DecisionEvent):
            self.decisions[event.subject_id] = dict(event.decisions)  # the full set


async def consume(
    bootstrap: str,
    group: str,
    topic: str = "consent.events.v1",
    store: DecisionStore | None = None,
    seen: IdempotencyStore | None = None,
    max_idle_s: float | None = None,
) -> tuple[DecisionStore, Subscriber]:
    store = store or DecisionStore()
    subscriber = Subscriber(bootstrap, group, topic=topic, store=seen or MemoryStore())
    await subscriber.run(store.apply, max_idle_s=max_idle_s)
    return store, subscriber


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", default="example-subscriber")
    parser.add_argument("--topic", default="consent.events.v1")
    args = parser.parse_args()
    result, _ = asyncio.run(consume(args.bootstrap, args.group, args.topic))
    print(json.dumps(result.decisions, indent=2))
