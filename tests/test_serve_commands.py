"""The container entry points: each serve command starts against the embedded PostgreSQL and
broker, reports ready, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from consent.adapters.db import migrate
from consent.embedded import free_port
from consent.settings import Settings
from propagator.db import migrate as migrate_propagator


@pytest.mark.timeout(120)
async def test_serve_commands_start_ready_and_stop_on_sigterm(
    topics: Settings, tmp_path, processor_secrets
):
    await migrate(topics.database_url or "")  # what the migrate jobs run (idempotent)
    await migrate_propagator(topics.database_url or "")
    procs_file = tmp_path / "processors.yaml"
    procs_file.write_text(
        yaml.safe_dump(
            {
                "processors": [
                    {
                        "name": "email",
                        "url": "http://127.0.0.1:9/consent",
                        "secret_env": "TEST_EMAIL_SECRET",
                        "purposes": ["marketing_email"],
                    }
                ]
            }
        )
    )
    env = {
        **os.environ,
        "CONSENT_DATABASE_URL": topics.database_url or "",
        "CONSENT_KAFKA_BOOTSTRAP": topics.kafka_bootstrap or "",
        "CONSENT_TOPIC_PREFIX": topics.topic_prefix,
        "CONSENT_PROCESSORS_FILE": str(procs_file),
    }
    ports = {name: free_port() for name in ("api", "relay", "propagator")}
    commands = {
        "api": ["serve", "api", "--host", "127.0.0.1", "--port", str(ports["api"])],
        "relay": ["serve", "relay", "--health-port", str(ports["relay"])],
        "propagator": ["serve", "propagator", "--health-port", str(ports["propagator"])],
    }
    running = {
        name: subprocess.Popen(
            [sys.executable, "-m", "consent.cli.main", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for name, args in commands.items()
    }
    try:
        for name, port in ports.items():
            body = await _ready(f"http://127.0.0.1:{port}/readyz", running[name])
            assert body["checks"] == {"database": True, "broker": True}, name
        metrics = httpx.get(f"http://127.0.0.1:{ports['relay']}/metrics").text
        assert "consent_outbox_relay_leader" in metrics
        for name, proc in running.items():
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, 15)
            assert code == 0, (name, proc.stderr.read().decode()[-2000:] if proc.stderr else "")
            assert time.monotonic() - t0 < 10, name
    finally:
        for proc in running.values():
            if proc.poll() is None:
                proc.kill()


async def _ready(url: str, proc: subprocess.Popen[bytes]) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode()[-2000:] if proc.stderr else "")
            try:
                r = await client.get(url, timeout=1)
                if r.status_code == 200:
                    return r.json()  # type: ignore[no-any-return]
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url} never became ready")
