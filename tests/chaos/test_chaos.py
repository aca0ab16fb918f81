"""Chaos: under a steady write load, kill and restart the API, the relay and the propagator
(SIGKILL), pause the broker and PostgreSQL (SIGSTOP/SIGCONT), make the processor fail and
recover; then a counting oracle checks the promise:

- **0 acknowledged writes lost**: every write answered 200 is in the ledger and on
  ``consent.events.v1`` with its sequence;
- **0 events reordered** at the processor, per subject;
- **converged**: the processor's last applied decision equals the decision API's answer,
  and the drift report (``GET /v1/admin/drift``, from receipts only) is empty, after a
  repair if the fault model needs one (the number of repairs is printed).

It prints writes acknowledged, events delivered, duplicates delivered, faults injected and
the time to recover after each (fault over → a probe write delivered to the processor).

The embedded broker keeps data in memory, so it is paused, never killed; point
``CONSENT_KAFKA_BOOTSTRAP`` at Apache Kafka to run the same suite there.
``CONSENT_CHAOS_SECONDS`` (default 45) sets how long faults are injected.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from consent.settings import Settings
from tests.chaos.harness import (
    PROBE,
    Load,
    admin_key,
    broker_pids,
    paused,
    postgres_pids,
    stack,
    verdict,
)
from tests.support import RecordingProcessor, serving

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]
SECONDS = float(os.environ.get("CONSENT_CHAOS_SECONDS", "45"))


async def test_nothing_acknowledged_is_lost_or_reordered_whatever_fails(
    topics: Settings, tmp_path: Path, processor_secrets: dict[str, str]
) -> None:
    settings = topics
    processor = RecordingProcessor("email", processor_secrets["email"])
    failing = False
    processor.responder = lambda _r: 503 if failing else 204
    key = await asyncio.to_thread(admin_key, settings)
    broker_port = int((settings.kafka_bootstrap or "").split(",")[0].rsplit(":", 1)[1])
    faults: Counter[str] = Counter()
    recovery: dict[str, list[float]] = {}
    async with serving(processor), stack(settings, tmp_path, processor) as services:
        api = services["api"].health.removesuffix("/readyz")
        load = Load(api, key)
        writers = [asyncio.create_task(load.run()) for _ in range(3)]

        async def probe_recovered(name: str, since: float) -> None:
            """Time from the fault's end until a fresh write reaches the processor."""
            async with httpx.AsyncClient() as client:
                seq = None
                while seq is None:
                    seq = await load.write(client, PROBE, random.choice(["granted", "denied"]))
                    if seq is None:
                        await asyncio.sleep(0.1)
            while not any(r.body["subject_id"] == PROBE and r.body["sequence"] >= seq
                          and 200 <= r.status < 300 for r in processor.requests):  # fmt: skip
                await asyncio.sleep(0.05)
            recovery.setdefault(name, []).append(time.monotonic() - since)

        async def kill(name: str) -> None:
            services[name].kill()
            await asyncio.sleep(1)
            services[name].start()
            await services[name].ready()

        async def pause(what: str) -> None:
            if what == "broker":
                pids = broker_pids(broker_port)
            else:  # the backends change: take them at the moment of the fault
                pids = await postgres_pids(settings.database_url or "")
            with paused(pids):
                await asyncio.sleep(3)

        async def fail_processor() -> None:
            nonlocal failing
            failing = True
            await asyncio.sleep(3)
            failing = False

        actions = {
            "kill api": lambda: kill("api"),
            "kill relay": lambda: kill("relay"),
            "kill propagator": lambda: kill("propagator"),
            "pause broker": lambda: pause("broker"),
            "pause postgresql": lambda: pause("postgresql"),
            "processor down": fail_processor,
        }
        deadline = time.monotonic() + SECONDS
        names = list(actions)
        i = 0
        try:
            while time.monotonic() < deadline or i < len(names):  # every kind at least once
                name = names[i % len(names)]
                i += 1
                await asyncio.sleep(1.5)
                await actions[name]()
                faults[name] += 1
                await asyncio.wait_for(probe_recovered(name, time.monotonic()), 90)
        finally:
            load.stop.set()
            await asyncio.gather(*writers, return_exceptions=True)
            failing = False
        result = await verdict(settings, load, processor)

    print(f"\nchaos: {SECONDS:.0f} s, faults injected {sum(faults.values())} {dict(faults)}")
    print(f"  {result.line()}")
    for name, times in sorted(recovery.items()):
        print(f"  recovery after {name:<17} " + ", ".join(f"{t:.1f} s" for t in times))
    assert sum(faults.values()) >= len(actions)
    assert not result.not_in_ledger, result.not_in_ledger[:10]
    assert not result.lost, result.lost[:10]
    assert not result.reordered, result.reordered
    assert result.converged
    assert result.drift == 0  # the drift report is empty (after repair, if it took one)
