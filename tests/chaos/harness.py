"""The chaos suite's and the soak's harness: the services as production runs them (``consentctl
serve …`` subprocesses), a steady write load that remembers what was acknowledged, the
faults (kill, pause), and the counting oracle."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import yaml

from consent.settings import Settings
from consent.transparency.keys import generate_key_file
from consent_common.db import plain_url
from consentctl.embedded import free_port
from tests.support import RecordingProcessor, headers_of, read_topic

SUBJECTS = [f"chaos-{i}" for i in range(12)]
PROBE = "chaos-probe"


@dataclass
class Service:
    name: str
    args: list[str]
    health: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "consentctl.main", *self.args],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.health, timeout=1)).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise AssertionError(f"{self.name} never became ready")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def broker_pids(port: int) -> list[int]:
    """The process listening on the broker's port."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return [conn.pid]
    raise AssertionError(f"nothing listens on {port}")


async def postgres_pids(url: str) -> list[int]:
    """The postmaster (a backend's parent) and every process it runs."""
    conn = await asyncpg.connect(plain_url(url))
    try:  # (the backend exits with the connection: find its parent first)
        root = psutil.Process(await conn.fetchval("SELECT pg_backend_pid()")).parent()
    finally:
        await conn.close()
    assert root is not None
    while True:
        try:  # a backend may exit while we list them
            return [root.pid, *(c.pid for c in root.children(recursive=True))]
        except psutil.NoSuchProcess:
            continue


@contextlib.contextmanager
def paused(pids: list[int]) -> Any:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@dataclass
class Load:
    api: str
    key: str
    acked: list[tuple[str, int, str]] = field(default_factory=list)  # subject, seq, status
    failed: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def write(self, client: httpx.AsyncClient, sid: str, status: str) -> int | None:
        try:
            r = await client.patch(
                f"{self.api}/v1/subjects/{sid}/preferences",
                headers={"X-API-Key": self.key},
                json={"purposes": {"marketing_email": status}},
                timeout=5,
            )
        except httpx.HTTPError:
            self.failed += 1
            return None
        if r.status_code != 200:
            self.failed += 1
            return None
        seq = int(r.headers["etag"].strip('"'))
        self.acked.append((sid, seq, status))
        return seq

    async def run(self) -> None:
        async with httpx.AsyncClient() as client:
            while not self.stop.is_set():
                sid = random.choice(SUBJECTS)
                await self.write(client, sid, random.choice(["granted", "denied"]))
                await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def stack(
    settings: Settings, tmp_path: Path, processor: RecordingProcessor
) -> AsyncIterator[dict[str, Service]]:
    procs_file = tmp_path / "processors.yaml"
    procs_file.write_text(yaml.safe_dump({"processors": [{
        "name": "email", "url": processor.url, "secret_env": "TEST_EMAIL_SECRET",
        "purposes": ["marketing_email"], "backoff_initial_s": 0.1, "backoff_max_s": 1,
        "max_attempts": 100, "recovery_probe_s": 1}]}))  # fmt: skip
    key_file = tmp_path / "checkpoint-key.pem"
    generate_key_file(key_file)
    env = {
        **os.environ,
        "CONSENT_DATABASE_URL": settings.database_url or "",
        "CONSENT_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
        "CONSENT_TOPIC_PREFIX": settings.topic_prefix,
        "CONSENT_PROCESSORS_FILE": str(procs_file),
        "CONSENT_JWT_SECRET": "chaos-" + "x" * 40,
        "CONSENT_IP_HASH_SALT": "chaos-salt-" + os.urandom(8).hex(),
        "CONSENT_RELAY_POLL_INTERVAL_S": "0.2",
        "CONSENT_LOG_LEVEL": "WARNING",
        # `serve api` signs the transparency log with a key held outside the database
        "CONSENT_CHECKPOINT_KEY_FILE": str(key_file),
    }
    env.pop("CONSENT_DEV_ADMIN_KEY", None)
    ports = {n: free_port() for n in ("api", "relay", "propagator")}
    services = {
        "api": Service("api", ["serve", "api", "--host", "127.0.0.1", "--port",
                               str(ports["api"])],
                       f"http://127.0.0.1:{ports['api']}/readyz", env),
        "relay": Service("relay", ["serve", "relay", "--health-port", str(ports["relay"])],
                         f"http://127.0.0.1:{ports['relay']}/readyz", env),
        "propagator": Service("propagator", ["serve", "propagator", "--health-port",
                                             str(ports["propagator"])],
                              f"http://127.0.0.1:{ports['propagator']}/readyz", env),
    }  # fmt: skip
    for s in services.values():
        s.start()
    try:
        for s in services.values():
            await s.ready()
        yield services
    finally:
        for s in services.values():
            s.kill()


def admin_key(settings: Settings) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "consentctl.main", "keys", "create", "--scope", "admin"],
        env={**os.environ, "CONSENT_DATABASE_URL": settings.database_url or ""},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


@dataclass
class Verdict:
    acked: int
    failed: int
    delivered: int
    duplicates: int
    not_in_ledger: list[tuple[str, int]]
    lost: list[tuple[str, int]]
    reordered: dict[str, list[int]]
    converged: bool
    drift: int = -1  # differences the drift report still lists at the end
    repairs: int = 0  # repair deliveries it took to get there

    def line(self) -> str:
        return (
            f"writes acknowledged {self.acked}, refused or failed {self.failed}, events "
            f"delivered {self.delivered} (duplicates {self.duplicates}); lost "
            f"{len(self.lost) + len(self.not_in_ledger)}, reordered {len(self.reordered)}, "
            f"converged {self.converged}; drift report {self.drift} differences "
            f"after {self.repairs} repairs"
        )


async def drift_report(client: httpx.AsyncClient, api: str, key: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        r = await client.get(
            f"{api}/v1/admin/drift",
            params={"cursor": cursor} if cursor else {},
            headers={"X-API-Key": key},
        )
        r.raise_for_status()
        items += r.json()["items"]
        if (cursor := r.json()["next_cursor"]) is None:
            return items


async def drift_after(api: str, key: str, wait_s: float = 30) -> tuple[int, int]:
    """The drift report once the receipts are in: (differences left, repairs sent). It
    waits for receipts to arrive, and repairs only what is still there after ``wait_s``."""
    async with httpx.AsyncClient(timeout=30) as client:
        deadline = time.monotonic() + wait_s
        while (items := await drift_report(client, api, key)) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        if not items:
            return 0, 0
        r = await client.post(f"{api}/v1/admin/drift/repair", json={},
                              headers={"X-API-Key": key})  # fmt: skip
        r.raise_for_status()
        job_id = r.json()["job_id"]
        while (job := (await client.get(f"{api}/v1/admin/replays/{job_id}",
                                        headers={"X-API-Key": key})).json())["status"] != (
            "completed"
        ):  # fmt: skip
            await asyncio.sleep(0.2)
        deadline = time.monotonic() + wait_s
        while (items := await drift_report(client, api, key)) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        return len(items), int(job["emitted"])


def held(processor: RecordingProcessor) -> dict[str, bool]:
    """Each subject's decision as the processor last applied it (by sequence)."""
    out: dict[str, tuple[int, bool]] = {}
    for r in processor.requests:
        if 200 <= r.status < 300:
            sid, seq = r.body["subject_id"], r.body["sequence"]
            if seq >= out.get(sid, (-1, False))[0]:
                out[sid] = (seq, r.body["decisions"]["marketing_email"])
    return {sid: v for sid, (_, v) in out.items()}


async def verdict(
    settings: Settings, load: Load, processor: RecordingProcessor, wait_s: float = 60
) -> Verdict:
    """After the faults: wait for the processor to hold what the API answers, then count."""
    async with httpx.AsyncClient() as client:
        want = {}
        for sid in {s for s, _, _ in load.acked}:
            r = await client.get(
                f"{load.api}/v1/subjects/{sid}/decisions?purpose=marketing_email",
                headers={"X-API-Key": load.key},
            )
            want[sid] = r.json()["allowed"]
    deadline = time.monotonic() + wait_s
    while {s: held(processor).get(s) for s in want} != want and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    converged = {s: held(processor).get(s) for s in want} == want
    drift, repairs = await drift_after(load.api, load.key)
    conn = await asyncpg.connect(plain_url(settings.database_url or ""))
    try:
        in_ledger = {
            (r["subject_id"], r["sequence"])
            for r in await conn.fetch("SELECT subject_id, sequence FROM consent_ledger")
        }
    finally:
        await conn.close()
    records = await read_topic(settings, settings.events_topic, min_count=len(load.acked))
    on_topic = {(r.key.decode(), int(headers_of(r)["ce_subjectseq"])) for r in records}
    applied: dict[str, list[int]] = {}
    for r in processor.requests:
        if 200 <= r.status < 300:
            applied.setdefault(r.body["subject_id"], []).append(r.body["sequence"])
    ids = Counter(r.headers["webhook-id"] for r in processor.requests if 200 <= r.status < 300)
    return Verdict(
        acked=len(load.acked),
        failed=load.failed,
        delivered=sum(ids.values()),
        duplicates=sum(ids.values()) - len(ids),
        not_in_ledger=[(s, q) for s, q, _ in load.acked if (s, q) not in in_ledger],
        lost=[(s, q) for s, q, _ in load.acked if (s, q) not in on_topic],
        reordered={s: q for s, q in applied.items() if q != sorted(q)},
        converged=converged,
        drift=drift,
        repairs=repairs,
    )
