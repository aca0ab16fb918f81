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
    """The relay's connection, except that the statement marking rows published ends the
    process instead."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        if query.lstrip().startswith("UPDATE outbox SET published_at"):
            os._exit(CRASHED)
        return await self._conn.execute(query, *args, **kwargs)


async def _crashing_publish_batch(self: OutboxRelay, conn: Any, producer: Any) -> int:
    return await _publish_batch(self, _DiesBeforeMarking(conn), producer)


if __name__ == "__main__":
    OutboxRelay.publish_batch = _crashing_publish_batch  # type: ignore[method-assign]
    app(["serve", "relay"])
