"""The background loop that keeps the log current: every replica runs it, the advisory
lock lets one at a time work, and a round with nothing new costs two index lookups."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.service.context import utcnow
from consent.settings import Settings
from consent.transparency.keys import signing_key
from consent.transparency.log import checkpoint_now

log = structlog.get_logger()


async def run_sequencer(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, stop: asyncio.Event
) -> None:
    key = signing_key(settings.checkpoint_key_file, settings.data_dir)
    while not stop.is_set():
        try:
            await checkpoint_now(sessions, key, utcnow(), settings.checkpoint_file)
        except Exception as exc:  # the next round retries; the write path never waits on us
            log.warning("sequencer_round_failed", error=type(exc).__name__)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.checkpoint_interval_s)
