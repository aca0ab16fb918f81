"""LISTEN on ``consent_changes`` (migration 0010) on a dedicated connection and apply each
notification to this worker's views: subject snapshots, API keys, policy versions.

Why NOTIFY rather than the compacted ``consent.state.v1`` topic: the notification is sent by
the write transaction itself (a trigger), delivered only once it has committed, and reaches
every worker in about a millisecond (docs/performance.md measures both); the topic is fed by
the outbox relay after the commit (its poll or wake-up, a produce, then each worker's fetch)
and does not carry API keys or policies. A lost connection loses notifications, so the views
are cleared and bypassed until LISTEN is in place again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog

from consent.service.subject_view import SubjectView
from consent_common.db import connect_durable, plain_url

CHANNEL = "consent_changes"
log = structlog.get_logger()


class ChangeFeed:
    """One per API worker. ``on_keys``/``on_policies`` drop those caches; ``on_state``
    tells them whether they may be used (the feed is live)."""

    def __init__(
        self,
        database_url: str,
        view: SubjectView,
        on_keys: Callable[[], None],
        on_policies: Callable[[], None],
        on_state: Callable[[bool], None],
        retry_s: float = 1.0,
    ) -> None:
        self.url, self.view = plain_url(database_url), view
        self.on_keys, self.on_policies, self.on_state = on_keys, on_policies, on_state
        self.retry_s = retry_s
        self.connected = asyncio.Event()
        self.server_pid: int | None = None  # the LISTEN connection's backend

    def _set_live(self, live: bool) -> None:
        self.view.clear(live)
        self.on_keys()
        self.on_policies()
        self.on_state(live)
        if live:
            self.connected.set()
        else:
            self.connected.clear()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith("s|"):
            _, seq, written, sid = payload.split("|", 3)
            self.view.changed(sid, int(seq), int(written))
        elif payload == "k":
            self.on_keys()
        elif payload == "p":
            self.on_policies()

    def _on_lost(self, _conn: Any) -> None:
        self._set_live(False)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            conn: Any = None
            try:
                conn = await asyncio.wait_for(connect_durable(self.url, "consent-change-feed"), 10)
                conn.add_termination_listener(self._on_lost)
                await conn.add_listener(CHANNEL, self._on_notify)
                self.server_pid = conn.get_server_pid()
                self._set_live(True)  # from empty: what happened before LISTEN is unknown
                while not stop.is_set() and not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 5)
                    if not stop.is_set() and not conn.is_closed():
                        await asyncio.wait_for(conn.execute("SELECT 1"), 5)  # a dead peer
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reconnect after any failure; the views stay off
                log.warning("change_feed_lost", error=type(exc).__name__)
            finally:
                self._set_live(False)
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.retry_s)
