"""`/metrics` with CONSENT_API_WORKERS=2 (prometheus_client's multiprocess mode): one scrape,
whichever worker takes it, counts every worker's requests; a worker killed and replaced
leaves no stale gauge; the parent's metrics directory is fresh and removed at exit; and the
exposition has the names of the one-worker default, one series per pod (no `pid` label)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from consent.api.auth import hash_key, new_key
from consent.settings import Settings
from consentctl.embedded import free_port
from tests.test_api_workers import fresh
from tests.test_serve_commands import _ready

DECISIONS = {"route": "/v1/subjects/{subject_id}/decisions", "method": "GET", "status": "2xx"}


def samples(text: str) -> Iterator[Sample]:
    for family in text_string_to_metric_families(text):
        yield from family.samples


def value(text: str, name: str, **labels: str) -> float | None:
    found = [s.value for s in samples(text) if s.name == name and s.labels == labels]
    assert len(found) <= 1, (name, labels, found)  # one coherent series, not one per worker
    return found[0] if found else None


@asynccontextmanager
async def api(
    topics: Settings, workers: int, extra: dict[str, str]
) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {
        **os.environ,
        "CONSENT_DATABASE_URL": topics.database_url or "",
        "CONSENT_KAFKA_BOOTSTRAP": topics.kafka_bootstrap or "",
        "CONSENT_TOPIC_PREFIX": topics.topic_prefix,
        "CONSENT_API_WORKERS": str(workers),
        "CONSENT_RECEIPTS_PROJECTION": "false",
        **extra,
    }
    env.pop("CONSENT_DEV_ADMIN_KEY", None)
    if "PROMETHEUS_MULTIPROC_DIR" not in extra:
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    cmd = [sys.executable, "-m", "consentctl.main", "serve", "api", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--insecure-dev-defaults"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        await _ready(f"{base}/readyz", proc)
        yield base, proc
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
        assert code == 0, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()


async def admin_key(db: asyncpg.Connection) -> str:
    key_id, raw = new_key()
    await db.execute(
        "INSERT INTO api_keys (id, key_hash, name, scopes) VALUES ($1, $2, 'm', $3)",
        key_id,
        hash_key(raw),
        ["admin"],
    )
    return raw


async def both_workers(base: str, not_before: frozenset[str] = frozenset()) -> set[str]:
    """Scrape until two workers (none of ``not_before``) answered and both views are live."""
    pids: set[str] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            text = (await fresh("GET", f"{base}/metrics")).text
        except httpx.HTTPError:  # no worker on the port yet
            await asyncio.sleep(0.1)
            continue
        pids |= {s.labels["pid"] for s in samples(text) if s.name == "consent_api_worker_info"}
        pids -= not_before
        if len(pids) == 2 and value(text, "consent_view_live") == 1:
            return pids
        await asyncio.sleep(0.05)
    raise AssertionError(f"workers seen: {pids}")


@pytest.mark.timeout(180)
async def test_one_scrape_counts_every_workers_requests_and_no_dead_workers_gauge(
    topics: Settings, db, tmp_path: Path
) -> None:
    raw = await admin_key(db)
    h, k = {"X-API-Key": raw}, 40
    parent_dir = tmp_path / "metrics"
    parent_dir.mkdir()
    async with api(topics, 2, {"PROMETHEUS_MULTIPROC_DIR": str(parent_dir)}) as (base, proc):
        (run_dir,) = parent_dir.iterdir()  # a fresh directory of this run's, inside
        first = await both_workers(base)
        assert {int(p) for p in first} <= {c.pid for c in psutil.Process(proc.pid).children()}
        for i in range(k):  # a new connection each: the kernel spreads them over both
            r = await fresh(
                "GET",
                f"{base}/v1/subjects/metrics-{i}/decisions",
                params={"purpose": "analytics"},
                headers=h,
            )
            assert r.status_code == 200, r.text
        text = (await fresh("GET", f"{base}/metrics")).text
        assert value(text, "consent_api_requests_total", **DECISIONS) == k
        route = {k: v for k, v in DECISIONS.items() if k != "status"}
        assert value(text, "consent_api_request_seconds_count", **route) == k
        assert value(text, "consent_view_misses_total") == k
        assert value(text, "consent_view_snapshots") == k  # each subject read by one worker
        assert value(text, "consent_view_live") == 1

        for pid in first:  # both die at once; the parent starts two others
            os.kill(int(pid), signal.SIGKILL)
        second = await both_workers(base, not_before=frozenset(first))
        text = (await fresh("GET", f"{base}/metrics")).text
        assert value(text, "consent_view_snapshots") == 0  # the dead workers' views are gone
        assert value(text, "consent_view_live") == 1
        assert value(text, "consent_api_requests_total", **DECISIONS) == k  # counts stay
        assert second.isdisjoint(first)
    assert not run_dir.exists()
    assert list(parent_dir.iterdir()) == []


def exposed(text: str) -> set[str]:
    """The service's sample names, less the `_created` timestamps multiprocess mode does not
    keep (nor the process_* and python_* of whichever worker answered: docs/operations.md)."""
    return {
        s.name
        for s in samples(text)
        if s.name.startswith("consent_") and not s.name.endswith("_created")
    }


@pytest.mark.timeout(180)
async def test_two_workers_expose_the_names_of_one_worker_one_series_per_pod(
    topics: Settings, db, tmp_path: Path
) -> None:
    raw = await admin_key(db)
    h = {"X-API-Key": raw}
    texts = {}
    # one worker ignores an inherited directory: its own registry, as without workers
    envs = {1: {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}, 2: {}}
    for workers in (1, 2):
        async with api(topics, workers, envs[workers]) as (base, _proc):
            for path in ("/readyz", "/v1/purposes", "/v1/subjects/names-1/decisions?purpose=x"):
                await fresh("GET", base + path, headers=h)
            texts[workers] = (await fresh("GET", f"{base}/metrics")).text
    assert list(tmp_path.iterdir()) == []
    assert "process_resident_memory_bytes" in {s.name for s in samples(texts[1])}
    one, two = exposed(texts[1]), exposed(texts[2])
    assert "consent_api_requests_total" in one and "consent_outbox_backlog" in one
    assert one == two, (sorted(one - two), sorted(two - one))
    with_pid = {s.name for s in samples(texts[2]) if "pid" in s.labels}
    assert with_pid == {"consent_api_worker_info"}
    assert value(texts[2], "consent_api_broker_reachable") == 1
