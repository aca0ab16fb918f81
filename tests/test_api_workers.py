"""`consentctl serve api` with CONSENT_API_WORKERS=2: two processes behind one port, each
with its own view of decision inputs. A write answered by one worker and reads answered by
either, given the write's Consent-Token, never answer from older state; SIGTERM to the parent
stops every worker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from consent.api.auth import hash_key, new_key
from consent.settings import Settings
from consentctl.embedded import free_port
from tests.test_serve_commands import _ready


async def fresh(method: str, url: str, **kw: object) -> httpx.Response:
    """A new connection each time: the kernel picks the worker."""
    async with httpx.AsyncClient() as c:
        return await c.request(method, url, timeout=10, **kw)  # type: ignore[arg-type]


@pytest.mark.timeout(120)
async def test_two_workers_share_the_port_and_never_answer_older_than_a_token(topics: Settings, db):
    key_id, raw = new_key()
    await db.execute(
        "INSERT INTO api_keys (id, key_hash, name, scopes) VALUES ($1, $2, 'w', $3)",
        key_id,
        hash_key(raw),
        ["admin"],
    )
    port = free_port()
    env = {
        **os.environ,
        "CONSENT_DATABASE_URL": topics.database_url or "",
        "CONSENT_KAFKA_BOOTSTRAP": topics.kafka_bootstrap or "",
        "CONSENT_TOPIC_PREFIX": topics.topic_prefix,
        "CONSENT_API_WORKERS": "2",
        "CONSENT_RECEIPTS_PROJECTION": "false",
    }
    env.pop("CONSENT_DEV_ADMIN_KEY", None)
    cmd = [sys.executable, "-m", "consentctl.main", "serve", "api", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--insecure-dev-defaults"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base, h = f"http://127.0.0.1:{port}", {"X-API-Key": raw}
    try:
        await _ready(f"{base}/readyz", proc)
        pids: set[str] = set()
        for _ in range(200):
            text = (await fresh("GET", f"{base}/metrics")).text
            pids |= {
                ln.split('pid="')[1].split('"')[0] for ln in text.splitlines() if 'pid="' in ln
            }
            if len(pids) == 2:
                break
        assert len(pids) == 2, pids
        children = {c.pid for c in psutil.Process(proc.pid).children()}
        assert {int(p) for p in pids} <= children
        older = 0
        for i in range(20):
            status = "granted" if i % 2 == 0 else "denied"
            w = await fresh(
                "PATCH",
                f"{base}/v1/subjects/w-1/preferences",
                json={"purposes": {"marketing_email": status}},
                headers=h,
            )
            token = int(w.headers["Consent-Token"])
            for _ in range(3):
                r = await fresh(
                    "GET",
                    f"{base}/v1/subjects/w-1/decisions",
                    params={"purpose": "marketing_email", "min_sequence": token},
                    headers=h,
                )
                doc = r.json()
                older += doc["sequence"] < token or doc["allowed"] != (status == "granted")
        assert older == 0
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
        assert code == 0, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        assert time.monotonic() - t0 < 20
        assert not any(psutil.pid_exists(int(p)) for p in pids)
    finally:
        if proc.poll() is None:
            proc.kill()
