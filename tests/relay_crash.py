"""``python -m tests.relay_crash``: ``consentctl serve relay`` that dies (exit 86) after a
batch is published and before it is marked, the moment the crash test needs. The failure
is injected here, around the relay, so the production publish path carries no test hook."""

from __future__ import annotations

import os
from typing import Any

from consent.relay.relay import OutboxRelay
from consentctl.main import app

CRASHED = 86
_publish_batch = OutboxRelay.publish_batch


class _DiesBeforeMarking:
    """The relay's outbox (adapters/outbox_relay.py), except that marking rows published
    ends the process instead."""

    def __init__(self, outbox: Any) -> None:
        self._outbox = outbox

    def __getattr__(self, name: str) -> Any:
        return getattr(self._outbox, name)

    async def mark_published(self, ids: Any) -> None:
        os._exit(CRASHED)


async def _crashing_publish_batch(self: OutboxRelay, outbox: Any, producer: Any) -> int:
    return await _publish_batch(self, _DiesBeforeMarking(outbox), producer)


if __name__ == "__main__":
    OutboxRelay.publish_batch = _crashing_publish_batch  # type: ignore[method-assign]
    app(["serve", "relay"])
