"""``consentctl dev`` as a user runs it: a real subprocess on embedded defaults."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import yaml
from aiokafka import AIOKafkaConsumer

from consentctl.embedded import free_port
from tests import contracts

REQUIRED_CE = {"ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject"}


async def _public_records(bootstrap: str) -> list[tuple[dict[str, bytes], bytes]]:
    """Every record on the public events topic, as a subscriber would read it."""
    consumer = AIOKafkaConsumer(
        "consent.events.v1", bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=3000)
        return [(dict(r.headers), r.value) for recs in batch.values() for r in recs]
    finally:
        await consumer.stop()



@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """Outside pytest's basetemp, like the session's own servers (conftest ``workdir``): a
    concurrent pytest run may prune it or reset its mode, and the embedded PostgreSQL runs
    as another user."""
    path = Path(tempfile.mkdtemp(prefix="consent-dev-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _start(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CONSENT_") or k == "CONSENT_TEST_CONTAINERS"
    }
    env["CONSENT_DATA_DIR"] = str(tmp / "dev")
    env["CONSENT_LOG_JSON"] = "true"
    return subprocess.Popen(
        [sys.executable, "-m", "consentctl.main", "dev", "--port", str(port)],
        cwd=tmp,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
            if r.status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("consentctl dev was not ready in time")


@pytest.mark.timeout(120)
def test_dev_starts_serves_readyz_and_stops_cleanly(tmp_path: Path):
    port = free_port()
    started = time.monotonic()
    proc = _start(tmp_path, port)
    try:
        elapsed = _wait_ready(port, proc)
        while not (tmp_path / "dev" / "stack.json").exists():  # written with the banner
            assert time.monotonic() - started < 60, "no ready banner within 60 s"
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        print(f"consentctl dev ready in {elapsed:.1f}s")
        r = httpx.get(f"http://127.0.0.1:{port}/readyz")
        assert r.json()["checks"] == {"database": True, "broker": True}
        children = psutil.Process(proc.pid).children(recursive=True)
        pg = [
            p
            for p in psutil.process_iter(["cmdline"])
            if str(tmp_path / "dev" / "pg") in " ".join(p.info["cmdline"] or [])
        ]
        assert children, "tansu should run as a child process"
        assert pg, "the embedded PostgreSQL should be running on the data dir"

        key = json.loads((tmp_path / "dev" / "dev-secrets.json").read_text())["admin_key"]
        t0 = time.monotonic()
        r = httpx.patch(
            f"http://127.0.0.1:{port}/v1/subjects/u-dev/preferences",
            headers={"X-API-Key": key},
            json={"purposes": {"marketing_email": "granted"}},
        )
        assert r.status_code == 200, r.text
        procs = yaml.safe_load((tmp_path / "dev" / "processors.yaml").read_text())["processors"]
        email = next(p["url"] for p in procs if p["name"] == "email")  # 9101 unless taken
        while time.monotonic() - t0 < 2.0:
            got = httpx.get(email.replace("/consent", "/_received")).json()
            if any(e.get("subject_id") == "u-dev" for e in got["events"]):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the PATCH did not reach the demo email processor within 2 s")
        print(f"PATCH to demo email processor: {time.monotonic() - t0:.3f}s")
        stack = json.loads((tmp_path / "dev" / "stack.json").read_text())
        records = asyncio.run(_public_records(stack["kafka_bootstrap"]))
        assert records, "the PATCH's event should be on consent.events.v1"
        for headers, value in records:  # the warm-up went to a topic of its own
            assert set(headers) >= REQUIRED_CE, headers
            assert headers["ce_specversion"] == b"1.0" and headers["ce_source"]
            assert not contracts.violations(headers["ce_type"].decode(), json.loads(value))

        # the preference center's dev sign-in helper (the link the banner prints) works
        link = f"http://127.0.0.1:{port}/preference-center/dev.html"
        assert httpx.get(link).status_code == 200
        minted = httpx.post(
            f"http://127.0.0.1:{port}/preference-center/dev/token", json={"subject_id": "u-dev"}
        ).json()
        r = httpx.get(
            f"http://127.0.0.1:{port}/v1/subjects/u-dev/preferences",
            headers={"Authorization": f"Bearer {minted['token']}"},
        )
        assert r.status_code == 200, r.text

        second = _start(tmp_path, free_port())
        out, _ = second.communicate(timeout=60)
        assert second.returncode != 0
        assert b"already running" in out

        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)  # a liveness bound, not a figure: the time is printed
        print(f"SIGTERM: stopped in {time.monotonic() - t0:.1f}s")
        time.sleep(0.5)
        alive = [p for p in children + pg if p.is_running() and p.status() != "zombie"]
        assert not alive, f"left behind: {[p.pid for p in alive]}"
        output = proc.stdout.read().decode() if proc.stdout else ""
        assert "consent API" in output and "dev admin key" in output
        assert f"Preference center (dev sign-in): {link}" in output
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _name(p: psutil.Process) -> str:
    try:
        return p.name()
    except psutil.Error:  # short-lived (initdb's helpers): gone already
        return ""


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _parent(p: psutil.Process) -> int | None:
    try:
        return p.ppid()
    except psutil.Error:
        return None


def _ours(tmp: Path, proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The stack's processes: its children (the broker) and the PostgreSQL on its data dir
    (pg_ctl daemonizes it, so it is no child)."""
    try:
        found = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        found = []
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if str(tmp / "dev") in " ".join(p.info["cmdline"] or []) and p.pid != proc.pid:
                found.append(p)
    return found


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("sig", "when"),
    [
        (signal.SIGTERM, "postgres_starting"),
        (signal.SIGINT, "broker_running"),
        (signal.SIGTERM, "api_ready"),  # a script: wait for /readyz, two calls, SIGTERM
    ],
)
def test_first_signal_during_start_up_stops_everything(
    tmp_path: Path, sig: signal.Signals, when: str
) -> None:
    """One signal, at any moment of start-up, stops the stack within 10 s and leaves no
    process."""
    port = free_port()
    proc = _start(tmp_path, port)
    seen: dict[int, psutil.Process] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            ours = _ours(tmp_path, proc)
            seen.update({p.pid: p for p in ours})
            pg = any("postgres" in _name(p) for p in ours)
            broker = any("postgres" not in _name(p) for p in ours if _parent(p) == proc.pid)
            if (when == "postgres_starting" and pg) or (when == "broker_running" and broker):
                break
            if when == "api_ready" and _answers(f"http://127.0.0.1:{port}/readyz"):
                assert _answers(f"http://127.0.0.1:{port}/v1/purposes")
                assert _answers(f"http://127.0.0.1:{port}/.well-known/gpc.json")
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"never reached {when}")
        t0 = time.monotonic()
        proc.send_signal(sig)  # to the process only, as a script or an orchestrator does
        proc.wait(timeout=30)  # a liveness bound, not a figure: the time is printed
        took = time.monotonic() - t0
        print(f"{sig.name} while {when}: stopped in {took:.1f}s")
        time.sleep(0.5)
        seen.update({p.pid: p for p in _ours(tmp_path, proc)})
        alive = [p for p in seen.values() if _alive(p)]
        assert not alive, f"left behind: {[(p.pid, _name(p)) for p in alive]}"
        output = proc.stdout.read().decode() if proc.stdout else ""
        if when != "api_ready":  # the API answers before the banner; here it may be out
            assert "dev admin key" not in output, "the banner came after the signal"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for p in seen.values():
            with contextlib.suppress(psutil.Error):
                p.kill()
