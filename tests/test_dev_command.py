"""``consentctl dev`` as a user runs it: a real subprocess on embedded defaults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from consent.embedded import free_port


def _start(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CONSENT_") or k == "CONSENT_TEST_CONTAINERS"
    }
    env["CONSENT_DATA_DIR"] = str(tmp / "dev")
    env["CONSENT_LOG_JSON"] = "true"
    return subprocess.Popen(
        [sys.executable, "-m", "consent.cli.main", "dev", "--port", str(port)],
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
        proc.wait(timeout=15)
        assert time.monotonic() - t0 < 10
        time.sleep(0.5)
        alive = [p for p in children + pg if p.is_running() and p.status() != "zombie"]
        assert not alive, f"left behind: {[p.pid for p in alive]}"
        output = proc.stdout.read().decode() if proc.stdout else ""
        assert "consent API" in output and "dev admin key" in output
        assert f"Preference center (dev sign-in): {link}" in output
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
