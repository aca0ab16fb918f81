"""``uv run python -m bench.client_view``: ``consent_client.ConsentView`` at 1,000,000 subjects.

Starts the embedded broker, fills a compacted state topic (6 partitions) with one
``consent.state.v1`` record per subject (11 purposes, the shape the relay writes), then, each
in a fresh process so memory is its own:

- catch-up from an empty view (start → ready at the high watermark), in memory and on disk
  (SQLite), with the ceiling measured in the same run: a bare aiokafka consumer reading the
  same records without decoding them;
- the view's memory: resident set growth of that process, and the store's own objects;
- local ``allowed()`` calls per second on random subjects, one thread, against the ceiling of
  a plain ``dict[str, dict[str, bool]]`` lookup in the same process.

Options: ``--subjects N`` (default 1,000,000), ``--no-sqlite``, ``--out FILE`` (Markdown).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

PURPOSES = [
    "marketing_email", "marketing_sms", "marketing_push", "third_party_sharing", "sale",
    "share", "analytics", "personalization", "cookies_functional", "cookies_analytics",
    "cookies_advertising",
]  # fmt: skip
TOPIC = "bench.consent.state.v1"
CALLS = 1_000_000


def subject(i: int) -> str:
    return f"u-{i:08d}"


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


async def produce(bootstrap: str, n: int) -> dict[str, Any]:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(TOPIC, 6, 1, topic_configs={"cleanup.policy": "compact"})]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    rng = random.Random(7)
    t0 = time.monotonic()
    size = 0
    try:
        futures = []
        for i in range(n):
            sid = subject(i)
            value = json.dumps(
                {
                    "subject_id": sid,
                    "sequence": rng.randint(1, 9),
                    "decisions": {p: rng.random() < 0.5 for p in PURPOSES},
                    "jurisdiction": rng.choice(["US-CA", "DE", "FR", "GB", None]),
                    "updated_at": "2026-11-29T12:00:00.000000Z",
                },
                separators=(",", ":"),
            ).encode()
            size += len(value)
            futures.append(await producer.send(TOPIC, key=sid.encode(), value=value))
            if len(futures) >= 20_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return {"records": n, "bytes": size, "produce_s": time.monotonic() - t0}


async def raw_consume(bootstrap: str, n: int) -> dict[str, Any]:
    """The ceiling of catch-up: the same records fetched, not decoded."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )  # fmt: skip
    t0 = time.monotonic()
    await consumer.start()
    try:
        tps = [TopicPartition(TOPIC, p) for p in range(6)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got = 0
        while got < n:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            got += sum(len(r) for r in batch.values())
    finally:
        await consumer.stop()
    return {"records": got, "seconds": time.monotonic() - t0}


async def view_phase(bootstrap: str, n: int, store: str) -> dict[str, Any]:
    from consent_client import ConsentView

    gc.collect()
    before = rss()
    path = None
    if store == "sqlite":
        path = Path(tempfile.mkdtemp(prefix="bench-view-")) / "view.db"
    view = ConsentView(bootstrap, topic=TOPIC, path=path)
    t0 = time.monotonic()
    await view.start()
    await view.wait_ready(timeout=1800)
    ready_s = time.monotonic() - t0
    await view.stop()
    gc.collect()
    grown = rss() - before
    out: dict[str, Any] = {"store": store, "ready_s": ready_s, "size": len(view.store),
                           "rss_growth": grown}  # fmt: skip
    if store == "memory":
        d = view.store._subjects  # type: ignore[attr-defined]
        out["store_bytes"] = sys.getsizeof(d) + sum(
            sys.getsizeof(k) + sys.getsizeof(v) for k, v in d.items()
        )
    # allowed() on random subjects (10% never seen), random purposes
    rng = random.Random(11)
    calls = CALLS if store == "memory" else CALLS // 10
    asks = [
        (subject(rng.randrange(int(n * 1.1))), PURPOSES[rng.randrange(len(PURPOSES))])
        for _ in range(calls)
    ]
    allowed = view.allowed
    t0 = time.perf_counter()
    granted = 0
    for s, p in asks:
        if allowed(s, p).allowed:
            granted += 1
    out["allowed_per_s"] = calls / (time.perf_counter() - t0)
    out["granted_share"] = granted / calls
    if store == "memory":  # ceiling: a plain dict of dicts, same keys, same process
        plain = {subject(i): dict.fromkeys(PURPOSES, True) for i in range(n)}
        t0 = time.perf_counter()
        for s, p in asks:
            ds = plain.get(s)
            if ds is not None and ds.get(p):
                granted += 1
        out["dict_per_s"] = calls / (time.perf_counter() - t0)
    view.close()
    if path is not None:
        out["disk_bytes"] = sum(f.stat().st_size for f in path.parent.iterdir())
    return out


def child(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.client_view", "--child", *args],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subjects", type=int, default=1_000_000)
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", nargs="+")
    a = parser.parse_args()
    if a.child:
        kind, bootstrap, n = a.child[0], a.child[1], int(a.child[2])
        if kind == "produce":
            result = asyncio.run(produce(bootstrap, n))
        elif kind == "raw":
            result = asyncio.run(raw_consume(bootstrap, n))
        else:
            result = asyncio.run(view_phase(bootstrap, n, a.child[3]))
        print(json.dumps(result))
        return

    from consentctl.embedded import TansuBroker

    n = a.subjects
    run_dir = Path(tempfile.mkdtemp(prefix="bench-client-view-"))
    broker = TansuBroker(log_path=run_dir / "tansu.log").start()
    try:
        bs = broker.bootstrap
        print(f"producing {n:,} state records to the embedded broker ...", file=sys.stderr)
        made = child(["produce", bs, str(n)])
        print(f"  {made['produce_s']:.1f} s, {mib(made['bytes'])} of values", file=sys.stderr)
        raw = child(["raw", bs, str(n)])
        mem = child(["view", bs, str(n), "memory"])
        disk = None if a.no_sqlite else child(["view", bs, str(n), "sqlite"])
    finally:
        broker.stop()
    cpu = os.cpu_count()
    rows = [
        "| row | measured | ceiling measured in the same run | ratio |",
        "|---|---|---|---|",
        f"| local `allowed()` from a ConsentView of {n:,} subjects (memory store) "
        f"| {mem['allowed_per_s']:,.0f} calls/s (one thread) "
        f"| plain `dict` of dicts lookup {mem['dict_per_s']:,.0f}/s "
        f"| {mem['allowed_per_s'] / mem['dict_per_s']:.0%} |",
        f"| its memory | {mib(mem['rss_growth'])} resident growth "
        f"({mem['rss_growth'] / n:,.0f} B/subject); the store's own objects "
        f"{mib(mem['store_bytes'])} | — | — |",
        f"| catch-up from an empty view (memory store) | {mem['ready_s']:.1f} s "
        f"({n / mem['ready_s']:,.0f} records/s) "
        f"| bare aiokafka consumer, no decoding: {raw['seconds']:.1f} s "
        f"| {raw['seconds'] / mem['ready_s']:.0%} |",
    ]
    if disk:
        rows += [
            f"| catch-up from an empty view (SQLite store) | {disk['ready_s']:.1f} s "
            f"({n / disk['ready_s']:,.0f} records/s), {mib(disk['disk_bytes'])} on disk "
            f"| as above: {raw['seconds']:.1f} s | {raw['seconds'] / disk['ready_s']:.0%} |",
            f"| local `allowed()`, SQLite store | {disk['allowed_per_s']:,.0f} calls/s | — | — |",
        ]
    table = "\n".join(rows)
    print(f"\nConsentView, {n:,} subjects, {cpu} cores, embedded broker (6 partitions)\n")
    print(table)
    if a.out:
        a.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
