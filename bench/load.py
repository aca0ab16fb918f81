"""The load generator: a separate process that reads a JSON spec on stdin and prints one
JSON result on stdout.

- ``open``: a fixed rate. Each request has a scheduled send time and its latency is taken
  from that time, so a slow server delays the clock and is not hidden (no coordinated
  omission). Requests that fail or time out count as infinitely slow in the percentiles.
- ``closed``: N workers back to back, for the maximum throughput.
- ``kafka``: broker produce → consume latency at a fixed rate (``bench.broker``).

Every loop is bounded in count and in time. HTTP/1.1 keep-alive pool via aiohttp: on this
machine httpx costs several times more client CPU per request (see docs/performance.md),
and on 2 cores the client competes with the server for CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson

Req = tuple[str, str, bytes | None]
clock = time.perf_counter  # not loop.time(): uvloop's clock has millisecond resolution
PURPOSES = ("marketing_email", "marketing_sms", "analytics", "sale", "personalization")


def percentiles(lat: list[float], total: int) -> dict[str, float | None]:
    """p50/p90/p99/max in ms over ``total`` attempts; missing ones are infinitely slow."""
    xs = sorted(lat) + [math.inf] * (total - len(lat))
    out: dict[str, float | None] = {}
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)):
        if not xs:
            out[name] = None
            continue
        v = xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]
        out[name] = None if math.isinf(v) else round(v * 1000, 2)
    return out


def factory(spec: dict[str, Any]) -> Callable[[int], Req]:
    """Scenario → function from request index to (method, url, body)."""
    base, kind = spec["base"], spec["scenario"]
    prefix, pool = spec.get("prefix", "s"), int(spec.get("pool", 1000))
    subjects: list[str] = spec.get("subjects") or []
    rnd = random.Random(42)

    def patch_body(i: int) -> bytes:
        status = "granted" if (i // pool) % 2 == 0 else "denied"
        if "status" in spec:
            status = spec["status"]
        return orjson.dumps(
            {"purposes": {"marketing_email": status}, "context": {"channel": "web"}}
        )

    def subject(i: int) -> str:
        return subjects[i % len(subjects)] if subjects else f"{prefix}-{i % pool}"

    if kind == "patch":
        return lambda i: ("PATCH", f"{base}/v1/subjects/{subject(i)}/preferences", patch_body(i))
    if kind == "ceiling_write":
        return lambda i: ("POST", f"{base}/write/{subject(i)}", patch_body(i))
    if kind == "decision":

        def decision(_i: int) -> Req:
            s, p = rnd.choice(subjects), rnd.choice(PURPOSES)
            return "GET", f"{base}/v1/subjects/{s}/decisions?purpose={p}", None

        return decision
    if kind == "batch":

        def batch(_i: int) -> Req:
            items = [
                {"subject_id": rnd.choice(subjects), "purpose": rnd.choice(PURPOSES)}
                for _ in range(int(spec.get("pairs", 1000)))
            ]
            return "POST", f"{base}/v1/decisions:batch", orjson.dumps({"items": items})

        return batch
    if kind == "get":
        return lambda _i: ("GET", base, None)
    if kind == "sink":

        def sink(i: int) -> Req:
            body = {
                "event_id": str(uuid.uuid4()),
                "type": "consent.changed",
                "subject_id": f"ceil-{i}",
                "sequence": 1,
                "decisions": {"marketing_email": True},
                "occurred_at": "2026-01-01T00:00:00Z",
                "replay": False,
            }
            return "POST", f"{base}/consent", orjson.dumps(body)

        return sink
    raise ValueError(f"unknown scenario {kind}")


class Runner:
    def __init__(self, spec: dict[str, Any], session: aiohttp.ClientSession) -> None:
        self.spec, self.session = spec, session
        self.make = factory(spec)
        self.lat: list[float] = []
        self.status: Counter[str] = Counter()
        self.records: list[tuple[str, int, float]] = []
        self.warm_ok = 0  # answered during the warm-up: not in the figures, but in CPU used
        self.last_ok = 0.0
        self.record = bool(spec.get("record"))
        self.headers = {"X-API-Key": spec.get("api_key", ""), "Content-Type": "application/json"}
        if spec["scenario"] == "sink":
            self.headers |= {
                "webhook-id": "x",
                "webhook-timestamp": "0",
                "webhook-signature": "v1,x",
            }
        self.timeout = aiohttp.ClientTimeout(total=float(spec.get("timeout", 10)))

    async def one(self, i: int, start: float, counted: bool = True) -> None:
        method, url, body = self.make(i)
        try:
            async with self.session.request(
                method, url, data=body, headers=self.headers, timeout=self.timeout
            ) as r:
                data = await r.read()
                done = clock()
                if not counted:
                    self.warm_ok += 200 <= r.status < 300
                    return
                self.status[str(r.status)] += 1
                if 200 <= r.status < 300:
                    self.lat.append(done - start)
                    self.last_ok = max(self.last_ok, done)
                    if self.record:
                        doc = orjson.loads(data)
                        self.records.append((doc["subject_id"], doc["sequence"], time.time()))
        except TimeoutError:
            if counted:
                self.status["timeout"] += 1
        except aiohttp.ClientError as exc:
            if counted:
                self.status[type(exc).__name__] += 1

    async def open_loop(self) -> dict[str, Any]:
        rate, duration = float(self.spec["rate"]), float(self.spec["duration"])
        n = min(int(self.spec.get("max_requests", 10**7)), int(rate * duration))
        t0 = clock() + 0.05
        tasks: set[asyncio.Task[None]] = set()
        sent = 0
        for i in range(n):
            at = t0 + i / rate
            delay = at - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            elif clock() > t0 + 1.5 * duration + 5:
                break  # the client cannot keep the schedule: stop, report what was sent
            task = asyncio.create_task(self.one(i, at))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.timeout.total or 10)
            for t in pending:
                t.cancel()
                self.status["cancelled"] += 1
        # Achieved rate: answers over the time the server was answering (under overload the
        # queue keeps draining after the schedule ends, until the client's timeout).
        elapsed = (self.last_ok if self.last_ok > t0 else clock()) - t0
        return {"mode": "open", "offered_rate": rate, "scheduled": n, "sent": sent} | self.summary(
            n, elapsed
        )

    async def closed_loop(self) -> dict[str, Any]:
        conc, duration = int(self.spec["concurrency"]), float(self.spec["duration"])
        limit = int(self.spec.get("max_requests", 10**7))
        warmup = float(self.spec.get("warmup", 1.0))
        counter = itertools.count()
        t_warm = clock() + warmup
        deadline = t_warm + duration
        last = [t_warm]

        async def worker() -> None:
            while True:
                i = next(counter)
                now = clock()
                if i >= limit or now >= deadline:
                    return
                counted = now >= t_warm
                await self.one(i, now, counted)
                last[0] = max(last[0], clock())

        await asyncio.gather(*(worker() for _ in range(conc)))
        elapsed = max(last[0] - t_warm, 1e-9)
        total = len(self.lat) + sum(v for k, v in self.status.items() if not k.startswith("2"))
        out = {"mode": "closed", "concurrency": conc, "warm_ok": self.warm_ok}
        return out | self.summary(total, elapsed)

    def summary(self, total: int, elapsed: float) -> dict[str, Any]:
        return {
            "ok": len(self.lat),
            "status": dict(self.status),
            "elapsed_s": round(elapsed, 3),
            "throughput": round(len(self.lat) / elapsed, 1) if elapsed > 0 else 0.0,
            **percentiles(self.lat, total),
            # the answered (2xx) requests alone: under load shedding, the ones let in
            "answered": percentiles(self.lat, len(self.lat)),
        }


async def http(spec: dict[str, Any]) -> dict[str, Any]:
    conns = int(spec.get("connections", spec.get("concurrency", 64)))
    connector = aiohttp.TCPConnector(limit=conns, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        runner = Runner(spec, session)
        result = await (runner.open_loop() if spec["mode"] == "open" else runner.closed_loop())
    if runner.record:
        Path(spec["record"]).write_bytes(orjson.dumps(runner.records))  # noqa: ASYNC240 (after the run)
    return result


def fast_loop() -> None:
    """uvloop when installed: on 2 cores the client's CPU is taken from the server."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main() -> None:
    fast_loop()
    spec = orjson.loads(sys.stdin.buffer.read())
    cpu0 = time.process_time()
    if spec["mode"] == "kafka":
        from bench.broker import kafka

        result = asyncio.run(kafka(spec))
    else:
        result = asyncio.run(http(spec))
    result["client_cpu_s"] = round(time.process_time() - cpu0, 2)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
