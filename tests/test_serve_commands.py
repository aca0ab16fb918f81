"""The container entry points: each serve command starts against the embedded PostgreSQL and
broker, reports ready, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from consent.adapters.db import migrate
from consent.settings import Settings
from consentctl.embedded import free_port
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
        # the compose file's published secrets: accepted only with --insecure-dev-defaults
        "CONSENT_JWT_SECRET": "compose-dev-only-jwt-secret-change-me",
        "CONSENT_IP_HASH_SALT": "compose-dev-only-salt-change-me",
    }
    env.pop("CONSENT_DEV_ADMIN_KEY", None)
    ports = {name: free_port() for name in ("api", "relay", "propagator")}
    commands = {
        "api": [
            "serve",
            "api",
            "--host",
            "127.0.0.1",
            "--port",
            str(ports["api"]),
            "--insecure-dev-defaults",
        ],
        "relay": ["serve", "relay", "--health-port", str(ports["relay"])],
        "propagator": ["serve", "propagator", "--health-port", str(ports["propagator"])],
    }
    running = {
        name: subprocess.Popen(
            [sys.executable, "-m", "consentctl.main", *args],
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


COMPOSE_SECRETS = {
    "CONSENT_DATABASE_URL": "postgresql://consent:consent-dev-only@127.0.0.1:9/consent",
    "CONSENT_JWT_SECRET": "compose-dev-only-jwt-secret-change-me",
    "CONSENT_DEV_ADMIN_KEY": "dev-compose-admin-key",
    "CONSENT_IP_HASH_SALT": "compose-dev-only-salt-change-me",
}


def _key_file() -> str:
    """A real checkpoint key, so each refusal below is about one setting only."""
    import tempfile

    from consent.transparency.keys import generate_key_file

    path = Path(tempfile.mkdtemp()) / "checkpoint-key.pem"
    generate_key_file(path)
    return str(path)


KEY_FILE = _key_file()


def _consentctl(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CONSENT_")}
    clean["CONSENT_CHECKPOINT_KEY_FILE"] = KEY_FILE
    return subprocess.run(
        [sys.executable, "-m", "consentctl.main", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_api_refuses_the_compose_secrets_and_names_each_setting():
    proc = _consentctl(["serve", "api", "--port", "9"], COMPOSE_SECRETS)
    assert proc.returncode == 2, proc.stderr
    for name in COMPOSE_SECRETS:
        assert name in proc.stderr, (name, proc.stderr)
    for value in COMPOSE_SECRETS.values():  # says which setting, never the secret itself
        assert value not in proc.stderr
    assert "--insecure-dev-defaults" in proc.stderr


@pytest.mark.parametrize(
    "env, wrong",
    [
        (
            {"CONSENT_JWT_SECRET": "short-but-not-published", "CONSENT_IP_HASH_SALT": "s" * 32},
            "CONSENT_JWT_SECRET",
        ),
        ({"CONSENT_JWT_SECRET": "x" * 40}, "CONSENT_IP_HASH_SALT"),  # the settings default
        ({"CONSENT_JWT_SECRET": "x" * 40, "CONSENT_IP_HASH_SALT": "s" * 32,
          "CONSENT_DEV_ADMIN_KEY": "a-long-random-looking-admin-key-0123456789"},
         "CONSENT_DEV_ADMIN_KEY"),
        ({"CONSENT_JWT_SECRET": "x" * 40, "CONSENT_IP_HASH_SALT": "s" * 32,
          "CONSENT_CHECKPOINT_KEY_FILE": ""}, "CONSENT_CHECKPOINT_KEY_FILE"),
        ({"CONSENT_JWT_SECRET": "x" * 40, "CONSENT_IP_HASH_SALT": "s" * 32,
          "CONSENT_CHECKPOINT_KEY_FILE": "/dev/null"}, "CONSENT_CHECKPOINT_KEY_FILE"),
    ],
)  # fmt: skip
def test_serve_api_refuses_each_dev_default(env, wrong):
    proc = _consentctl(["serve", "api", "--port", "9"], env)
    assert proc.returncode == 2 and wrong in proc.stderr, proc.stderr
    assert sum(line.startswith("  - ") for line in proc.stderr.splitlines()) == 1, proc.stderr


def test_serve_workers_refuse_published_secrets(tmp_path):
    procs = tmp_path / "processors.yaml"
    procs.write_text(
        "processors:\n  - name: email\n    url: http://127.0.0.1:9/consent\n"
        "    secret_env: EMAIL_PROCESSOR_SECRET\n    purposes: [marketing_email]\n"
    )
    published = {"EMAIL_PROCESSOR_SECRET": "whsec_eosR+2wwbGrfm14tQMhJuwuzhyBkgaxq"}
    db = {"CONSENT_DATABASE_URL": COMPOSE_SECRETS["CONSENT_DATABASE_URL"]}
    proc = _consentctl(["serve", "relay"], db)
    assert proc.returncode == 2 and "CONSENT_DATABASE_URL" in proc.stderr, proc.stderr
    proc = _consentctl(["serve", "propagator", "--processors-file", str(procs)], published)
    assert proc.returncode == 2 and "EMAIL_PROCESSOR_SECRET" in proc.stderr, proc.stderr
    proc = _consentctl(["serve", "demo-processor", "--name", "email", "--port", "9"], published)
    assert proc.returncode == 2 and "EMAIL_PROCESSOR_SECRET" in proc.stderr, proc.stderr


def test_jwks_url_without_issuer_and_audience_is_refused():
    env = {
        "CONSENT_JWT_JWKS_URL": "https://idp.example/jwks.json",
        "CONSENT_IP_HASH_SALT": "s" * 40,
    }
    proc = _consentctl(["serve", "api", "--port", "9"], env)
    assert proc.returncode == 2
    assert "CONSENT_JWT_ISSUER" in proc.stderr and "CONSENT_JWT_AUDIENCE" in proc.stderr
