"""The measured phases. Each drives the stack through the load process (``bench.load``) and
returns plain dicts for the report."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.ceilings import run_pgbench
from bench.driver import Ctx, db, load, log, sink_stats, wait_sink
from bench.load import percentiles
from bench.profile import profiled
from bench.stack import drain


def settle(ctx: Ctx, limit_s: float = 120) -> dict[str, Any]:
    result: dict[str, Any] = asyncio.run(drain(ctx.stack.database_url, limit_s))
    log(f"  drain {result}")
    return result


def warmup(ctx: Ctx) -> None:
    """First writes: compiled statements, pools, the propagator's consumer group join."""
    before = sink_stats(ctx.stack)["count"]
    load(
        ctx,
        "warm-up",
        scenario="patch",
        mode="closed",
        concurrency=4,
        duration=5,
        warmup=0,
        max_requests=60,
        prefix="warm",
        pool=60,
    )
    if not wait_sink(ctx.stack, before + 60, 90):
        log("warning: warm-up deliveries did not all arrive within 90 s")
    settle(ctx, 30)


def ceilings(ctx: Ctx) -> dict[str, Any]:
    log("ceilings: minimal insert endpoint, pgbench, trivial GET, processor alone, broker")
    st, d = ctx.stack, ctx.plan.d
    out = {
        "write_max": load(
            ctx,
            "minimal endpoint max",
            scenario="ceiling_write",
            mode="closed",
            base=st.ceiling,
            concurrency=32,
            duration=d(10),
            prefix="cw",
            pool=2000,
        ),
        "write_1000": load(
            ctx,
            "minimal endpoint 1000/s",
            scenario="ceiling_write",
            mode="open",
            base=st.ceiling,
            rate=1000,
            duration=d(10),
            prefix="co",
            pool=4000,
            connections=128,
        ),
        "trivial_max": load(
            ctx,
            "trivial GET max",
            scenario="get",
            mode="closed",
            base=f"{st.ceiling}/trivial",
            concurrency=32,
            duration=d(8),
        ),
        "sink_max": load(
            ctx,
            "processor alone max",
            scenario="sink",
            mode="closed",
            base=st.sink,
            concurrency=8,
            duration=d(6),
        ),
        "kafka": load(
            ctx,
            "broker 500/s",
            mode="kafka",
            bootstrap=st.bootstrap,
            rate=500,
            duration=d(8),
            topic=f"{st.prefix}bench.latency",
        ),
    }
    ctx.sampler.quiesce()
    with ctx.sampler.window("pgbench") as info:
        out["pgbench"] = run_pgbench(st.database_url, st.run_dir, 8, int(d(10)))
    out["pgbench"]["resources"] = info
    log(f"  pgbench {out['pgbench']}")
    db(st, vacuum_ceiling)  # so that autovacuum of these rows does not run during the next phase
    return out


async def vacuum_ceiling(conn: Any) -> None:
    for t in ("subjects", "consent_ledger", "consent_evidence", "consent_state", "outbox"):
        await conn.execute(f"VACUUM (ANALYZE) bench_ceiling.{t}")


def writes(ctx: Ctx) -> dict[str, Any]:
    log("writes: PATCH max throughput, then 1,000/s fixed rate (relay + propagator running)")
    out: dict[str, Any] = {}
    with ctx.sampler.window("writes"):
        out["max"] = load(
            ctx,
            "PATCH max",
            scenario="patch",
            mode="closed",
            concurrency=32,
            duration=ctx.plan.d(10),
            prefix="wc",
            pool=1000,
        )
        out["since"] = datetime.now(UTC)
        out["fixed"] = load(
            ctx,
            "PATCH 1000/s",
            scenario="patch",
            mode="open",
            rate=1000,
            duration=ctx.plan.d(12),
            prefix="wo",
            pool=4000,
            connections=128,
        )
        out["until"] = datetime.now(UTC)
    out["drain"] = settle(ctx)
    return out


async def _committed(conn: Any, prefix: str) -> dict[tuple[str, int], float]:
    rows = await conn.fetch(
        "SELECT subject_id, sequence, extract(epoch FROM recorded_at)::float8 AS at "
        "FROM consent_ledger WHERE subject_id LIKE $1",
        prefix + "-%",
    )
    return {(r["subject_id"], r["sequence"]): r["at"] for r in rows}


def end_to_end(ctx: Ctx, rate: int, prefix: str, seconds: float) -> dict[str, Any]:
    """Writes at a fixed rate; each commit matched with its arrival at the sink processor."""
    log(f"end to end: {rate} writes/s, commit → processor 2xx")
    st = ctx.stack
    record = st.run_dir / f"{prefix}-writes.json"
    res = load(
        ctx,
        f"PATCH {rate}/s e2e",
        scenario="patch",
        mode="open",
        rate=rate,
        duration=ctx.plan.d(seconds),
        prefix=prefix,
        pool=3000,
        record=str(record),
        connections=128,
    )
    res["drain"] = settle(ctx)

    async def dump() -> list[list[Any]]:
        url = f"{st.sink}/_dump"
        async with aiohttp.ClientSession() as s, s.get(url, params={"prefix": f"{prefix}-"}) as r:
            return list(orjson.loads(await r.read()))

    received: dict[tuple[str, int], float] = {}
    for t_recv, sid, seq, _occurred in asyncio.run(dump()):
        received.setdefault((sid, seq), t_recv)
    began = db(st, _committed, prefix)
    writes_done = orjson.loads(Path(record).read_bytes())
    upper, lower = [], []
    for sid, seq, t_resp in writes_done:
        t_recv = received.get((sid, seq))
        if t_recv is not None:
            # The commit lies between the transaction's start (recorded_at) and the response.
            upper.append(t_recv - began.get((sid, seq), t_resp))
            lower.append(max(0.0, t_recv - t_resp))
    res["e2e_upper"] = percentiles(upper, len(writes_done))
    res["e2e_lower"] = percentiles(lower, len(writes_done))
    res["delivered"], res["committed"] = len(upper), len(writes_done)
    log(f"  e2e from transaction start {res['e2e_upper']}; from response {res['e2e_lower']}")
    return res


def decisions(ctx: Ctx, subjects: list[str]) -> dict[str, Any]:
    log("decisions: single max, fixed rate, trivial GET at the same rate, batch of 1,000")
    d = ctx.plan.d
    out: dict[str, Any] = {}
    out["max"] = load(
        ctx,
        "decision max",
        scenario="decision",
        mode="closed",
        concurrency=32,
        duration=d(8),
        subjects=subjects,
    )
    rate = int(min(5000, max(10, out["max"]["throughput"] * 0.5)))
    out["fixed"] = load(
        ctx,
        f"decision {rate}/s",
        scenario="decision",
        mode="open",
        rate=rate,
        duration=d(8),
        subjects=subjects,
    )
    out["trivial_fixed"] = load(
        ctx,
        f"trivial GET {rate}/s",
        scenario="get",
        mode="open",
        rate=rate,
        base=f"{ctx.stack.ceiling}/trivial",
        duration=d(8),
    )
    out["batch"] = load(
        ctx,
        "batch of 1,000",
        scenario="batch",
        mode="closed",
        concurrency=1,
        duration=d(10),
        subjects=subjects,
        pairs=1000,
        warmup=1,
    )
    return out


def replay(ctx: Ctx, since: datetime, until: datetime) -> dict[str, Any]:
    log("replay: processor-only replay to the sink of the 1,000/s write window")
    st = ctx.stack
    before = sink_stats(st)

    async def start() -> dict[str, Any]:
        body = {"since": since.isoformat(), "until": until.isoformat(), "processors": ["email"]}
        headers = {"X-API-Key": st.admin_key}
        url = f"{st.api}/v1/admin/replays"
        async with aiohttp.ClientSession() as s, s.post(url, json=body, headers=headers) as r:
            return {"http": r.status, **(await r.json())}

    ctx.sampler.quiesce()
    with profiled(st, ctx.profile, "replay") as prof, ctx.sampler.window("replay") as info:
        t0 = time.time()
        job = asyncio.run(start())
        total = int(job.get("total") or 0)
        ok = wait_sink(st, before["replay"] + total, 180, key="replay")
    after = sink_stats(st)
    n = after["replay"] - before["replay"]
    span = (after["last_replay"] or t0) - t0
    steady = (after["last_replay"] or 0) - (after["first_replay"] or 0)
    out = {
        "job": {k: job.get(k) for k in ("http", "job_id", "total", "status")},
        "complete": ok,
        "delivered": n,
        "seconds": round(span, 2),
        "rate": round(n / span, 1) if span > 0 else 0.0,
        "sink_side_rate": round(n / steady, 1) if steady > 0 else 0.0,
        "resources": info,
        "profile": prof,
    }
    log(f"  {out}")
    settle(ctx, 60)
    return out
