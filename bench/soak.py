"""A soak: the chaos suite's load and oracle for minutes or hours, with each service's
memory sampled over time.

    uv run python -m bench.soak [--minutes 5] [--faults] [--sample-s 30]

Starts embedded PostgreSQL and the broker (or uses ``CONSENT_DATABASE_URL`` /
``CONSENT_KAFKA_BOOTSTRAP``), the API, relay and propagator as ``consentctl serve``
subprocesses and a recording processor; writes steadily; with ``--faults`` kills and pauses
services in turn as the chaos suite does. Prints resident memory per service at each sample
and its growth, then the oracle's verdict (acknowledged writes lost, events reordered,
converged, the drift report empty; exit 1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
from tests.chaos.harness import Load, Service, admin_key, paused, postgres_pids, stack, verdict
from tests.support import RecordingProcessor, serving

from consent.adapters.db import migrate
from consent.adapters.kafka import ensure_topics
from consent.settings import Settings
from consentctl.embedded import TansuBroker, start_postgres, stop_postgres
from propagator.db import migrate as migrate_propagator


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


async def service_pids(services: dict[str, Service], settings: Settings) -> dict[str, list[int]]:
    out = {n: [s.proc.pid] for n, s in services.items() if s.proc and s.proc.poll() is None}
    out["postgresql"] = await postgres_pids(settings.database_url or "")
    return out


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--faults", action="store_true", help="kill and pause services in turn")
    parser.add_argument("--sample-s", type=float, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    server = broker = None
    url = os.environ.get("CONSENT_DATABASE_URL")
    if not url:
        url, server = start_postgres(work / "pg")
    bootstrap = os.environ.get("CONSENT_KAFKA_BOOTSTRAP")
    if not bootstrap:
        broker = TansuBroker().start()
        bootstrap = broker.bootstrap
    settings = Settings(
        database_url=url, kafka_bootstrap=bootstrap, topic_prefix=f"soak{uuid.uuid4().hex[:6]}."
    )
    await migrate(url)
    await migrate_propagator(url)
    await ensure_topics(settings, partitions=3)
    os.environ["TEST_EMAIL_SECRET"] = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    processor = RecordingProcessor("email", os.environ["TEST_EMAIL_SECRET"])
    key = await asyncio.to_thread(admin_key, settings)
    samples: list[tuple[float, dict[str, float]]] = []
    try:
        async with serving(processor), stack(settings, work, processor) as services:
            load = Load(services["api"].health.removesuffix("/readyz"), key)
            writers = [asyncio.create_task(load.run()) for _ in range(3)]
            start = time.monotonic()
            end = start + args.minutes * 60
            next_fault = start + 20
            names = ["api", "relay", "propagator", "postgresql"]
            n = 0
            while time.monotonic() < end:
                pids = await service_pids(services, settings)
                if broker and broker.process:
                    pids["broker"] = [broker.process.pid]
                mem = {name: rss_mib(p) for name, p in pids.items()}
                elapsed = time.monotonic() - start
                samples.append((elapsed, mem))
                print(
                    f"{elapsed / 60:6.1f} min  acked {len(load.acked):>7}  "
                    + "  ".join(f"{k} {v:6.0f} MiB" for k, v in sorted(mem.items())),
                    flush=True,
                )
                while time.monotonic() < min(end, start + len(samples) * args.sample_s):
                    if args.faults and time.monotonic() >= next_fault:
                        target = names[n % len(names)]
                        n += 1
                        if target == "postgresql":
                            with paused(await postgres_pids(settings.database_url or "")):
                                await asyncio.sleep(3)
                        else:
                            services[target].kill()
                            await asyncio.sleep(1)
                            services[target].start()
                            await services[target].ready()
                        next_fault = time.monotonic() + 20
                    await asyncio.sleep(0.5)
            load.stop.set()
            await asyncio.gather(*writers)
            result = await verdict(settings, load, processor, wait_s=120)
    finally:
        if broker:
            broker.stop()
        if server is not None:
            stop_postgres(server)
    first, last = samples[0][1], samples[-1][1]
    print(f"\nsoak: {args.minutes:g} min, faults {'on' if args.faults else 'off'}")
    for name in sorted(last):
        grew = last[name] - first.get(name, last[name])
        print(f"  {name:<11} {first.get(name, 0):6.0f} → {last[name]:6.0f} MiB ({grew:+.0f})")
    print(f"  {result.line()}")
    ok = not (result.lost or result.not_in_ledger or result.reordered) and result.converged
    ok = ok and result.drift == 0  # the drift report is empty (after repair, if it took one)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
