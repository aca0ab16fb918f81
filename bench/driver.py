"""Plumbing shared by the phases: the plan, progress lines, running one load in its own
process (inside a resource window), and small calls to the sink and the database."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import orjson

from bench.profile import profiled
from bench.sampler import Sampler
from bench.stack import REPO, Stack
from consent_common.db import plain_url


@dataclass
class Plan:
    quick: bool = False
    growth: bool = True

    def d(self, seconds: float) -> float:
        """A phase's duration: shorter with --quick."""
        return max(2.0, round(seconds * 0.3, 1)) if self.quick else seconds

    @property
    def growth_target(self) -> int:
        return 100_000 if self.quick else 1_000_000


@dataclass
class Ctx:
    stack: Stack
    plan: Plan
    sampler: Sampler
    profile: bool = False


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load(ctx: Ctx, label: str, **spec: Any) -> dict[str, Any]:
    """Run one load in a separate process, inside a resource window named ``label``."""
    spec.setdefault("api_key", ctx.stack.admin_key)
    spec.setdefault("base", ctx.stack.api)
    bound = float(spec.get("duration", 10)) + float(spec.get("warmup", 1)) + 60
    waited = ctx.sampler.quiesce()
    if waited > 2:
        log(f"  (waited {waited}s for the services to go idle before {label})")
    with (
        profiled(ctx.stack, ctx.profile, label) as prof,
        ctx.sampler.window(label) as info,
    ):
        out = subprocess.run(
            [sys.executable, "-m", "bench.load"],
            input=orjson.dumps(spec),
            capture_output=True,
            cwd=REPO,
            timeout=bound,
            check=False,
        )
    if out.returncode != 0:
        raise RuntimeError(f"load {label} failed: {out.stderr.decode()[-2000:]}")
    result: dict[str, Any] = orjson.loads(out.stdout.splitlines()[-1])
    result["resources"] = info
    if prof:
        result["profile"] = prof
    rate = result.get("throughput", result.get("ok"))
    log(
        f"  {label:<22} {rate}/s ok={result.get('ok')} p50={result.get('p50')} "
        f"p99={result.get('p99')} ms {result.get('status', '')} "
        f"busy={info.get('machine_busy')}"
    )
    return result


async def _sink_stats(stack: Stack) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"{stack.sink}/_stats") as r:
        return dict(await r.json())


def sink_stats(stack: Stack) -> dict[str, Any]:
    return asyncio.run(_sink_stats(stack))


def wait_sink(stack: Stack, count: int, limit_s: float, key: str = "count") -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if sink_stats(stack)[key] >= count:
            return True
        time.sleep(0.25)
    return False


def db(stack: Stack, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run ``fn(conn, *args)`` on a fresh connection."""

    async def run() -> Any:
        conn = await asyncpg.connect(plain_url(stack.database_url), command_timeout=600)
        try:
            return await fn(conn, *args)
        finally:
            await conn.close()

    return asyncio.run(run())
