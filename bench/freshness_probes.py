"""The probes of ``bench.freshness``: warming the workers' views, fresh-token rounds, and
the view lag of every worker beside the database's own commit → NOTIFY wake-up."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import asyncpg
import orjson

from consent_common.db import plain_url


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1000, 2) if xs else float("nan")


async def worker_metrics(base: str, workers: int) -> dict[str, str]:
    """Each worker's /metrics (fresh connections until every pid answered)."""
    seen: dict[str, str] = {}
    for _ in range(400):
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as s, s.get(f"{base}/metrics") as r:
            text = await r.text()
        pid = next(
            (ln.split('pid="')[1].split('"')[0] for ln in text.splitlines() if "pid=" in ln), "?"
        )
        seen[pid] = text
        if len(seen) >= workers:
            break
    return seen


def histogram_p99(text: str, name: str) -> tuple[float | None, int]:
    """The upper bound of the bucket holding the 99th percentile, and the count."""
    buckets = []
    for ln in text.splitlines():
        if ln.startswith(f"{name}_bucket"):
            le = ln.split('le="')[1].split('"')[0]
            buckets.append((float(le), float(ln.rsplit(" ", 1)[1])))
    total = buckets[-1][1] if buckets else 0
    for le, count in buckets:
        if total and count >= 0.99 * total:
            return le * 1000, int(total)
    return None, int(total)


async def warm_views(base: str, key: str, subjects: list[str], workers: int) -> None:
    """Every subject into every worker's view: all subjects in batches, sent over fresh
    connections (the kernel spreads them over the workers) until each worker surely had
    them; the figures are for a working set the views hold."""
    h = {"X-API-Key": key, "Content-Type": "application/json"}
    for _ in range(8 * workers if workers > 1 else 1):
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as s:
            for i in range(0, len(subjects), 1000):
                items = [{"subject_id": x, "purpose": "analytics"} for x in subjects[i : i + 1000]]
                async with s.post(
                    f"{base}/v1/decisions:batch", data=orjson.dumps({"items": items}), headers=h
                ) as r:
                    await r.read()


async def fresh_token_rounds(
    base: str, key: str, subjects: list[str], n: int, purpose: str = "marketing_sms"
) -> dict[str, Any]:
    """Sequential: write, then the decision with its token; and plain decisions alike."""
    h = {"X-API-Key": key, "Content-Type": "application/json"}
    fresh, plain, older = [], [], 0
    async with aiohttp.ClientSession() as s:
        for i in range(n):
            sid = subjects[i % len(subjects)]
            status = "granted" if i % 2 else "denied"
            body = orjson.dumps({"purposes": {purpose: status}})
            async with s.patch(f"{base}/v1/subjects/{sid}/preferences", data=body, headers=h) as r:
                token = r.headers["Consent-Token"]
            url = f"{base}/v1/subjects/{sid}/decisions?purpose={purpose}"
            t0 = time.perf_counter()
            async with s.get(f"{url}&min_sequence={token}", headers=h) as r:
                doc = await r.json()
            fresh.append(time.perf_counter() - t0)
            older += doc["sequence"] < int(token) or doc["allowed"] != (status == "granted")
            t0 = time.perf_counter()
            async with s.get(url, headers=h) as r:
                await r.read()
            plain.append(time.perf_counter() - t0)
    return {
        "rounds": n,
        "older_answers": older,
        "fresh_p50": pct(fresh, 0.5),
        "fresh_p99": pct(fresh, 0.99),
        "plain_p50": pct(plain, 0.5),
        "plain_p99": pct(plain, 0.99),
    }


async def notify_wakeups(url: str, stop: asyncio.Event, out: list[float]) -> None:
    """The database's own commit → NOTIFY wake-up, on a connection of the bench's."""
    conn = await asyncpg.connect(plain_url(url))

    def on(_c: Any, _p: int, _ch: str, payload: str) -> None:
        if payload.startswith("s|"):
            out.append(time.time() - int(payload.split("|")[2]) / 1e6)

    await conn.add_listener("consent_changes", on)
    await stop.wait()
    await conn.close()


async def view_lag(url: str, base: str, key: str, subjects: list[str], workers: int) -> dict:
    raw: list[float] = []
    stop = asyncio.Event()
    listener = asyncio.create_task(notify_wakeups(url, stop, raw))
    await asyncio.sleep(0.3)
    await fresh_token_rounds(base, key, subjects[:200], 200, "marketing_push")  # 200 writes
    await asyncio.sleep(0.5)
    stop.set()
    await listener
    per_worker = {
        pid: histogram_p99(text, "consent_view_lag_seconds")
        for pid, text in (await worker_metrics(base, workers)).items()
    }
    return {"raw_notify_p50": pct(raw, 0.5), "raw_notify_p99": pct(raw, 0.99), "n": len(raw)} | {
        "workers": {pid: {"p99_bucket_ms": p, "count": c} for pid, (p, c) in per_worker.items()}
    }
