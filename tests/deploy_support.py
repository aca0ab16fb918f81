"""Shared by the deployment tests (tests/test_deploy_*.py): paths, the settings and secrets
every target must carry, the tool finder, and a consentctl command-line parser."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
import typer
from typer.testing import CliRunner

from consent.adapters.kafka import topic_specs
from consent.settings import Settings
from consentctl.main import app

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "deploy" / "compose.yaml"
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"
TOPICS_SCRIPT = BASE / "create-topics.sh"
OPERATIONS = ROOT / "docs" / "operations.md"

# Oldest Kubernetes the manifests target (preStop `sleep` is on by default from 1.30) and
# the newest schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())

# Compose services that run the consent image, and those that run something else.
CONSENT_SERVICES = {
    "migrate-consent",
    "migrate-propagator",
    "api",
    "relay",
    "propagator",
    "email-processor",
    "payment-processor",
    "logistics-processor",
}
OTHER_SERVICES = {"postgres": "postgres:", "kafka": "apache/kafka:", "topics": "apache/kafka:"}
MIGRATIONS = {"migrate-consent": "consent", "migrate-propagator": "propagator"}
LONG_RUNNING = {"postgres", "kafka"} | (CONSENT_SERVICES - set(MIGRATIONS))

# Kafka client settings read straight from the environment by consent.adapters.kafka.
KAFKA_ENV = {
    "CONSENT_KAFKA_SECURITY_PROTOCOL",
    "CONSENT_KAFKA_SASL_MECHANISM",
    "CONSENT_KAFKA_SASL_USERNAME",
    "CONSENT_KAFKA_SASL_PASSWORD",
    "CONSENT_KAFKA_SSL_CAFILE",
}
SETTINGS_ENV = {f"CONSENT_{name.upper()}" for name in Settings.model_fields}
ALL_ENV = SETTINGS_ENV | KAFKA_ENV
# Read only by `consentctl dev`; `consentctl serve` refuses to start with it set, so no
# deployment file may pass it.
DEV_ONLY_ENV = {"CONSENT_DEV_ADMIN_KEY"}
# Settings that are secrets: in Kubernetes they come from a Secret, never a ConfigMap.
SECRET_ENV = {
    "CONSENT_DATABASE_URL",
    "CONSENT_JWT_SECRET",
    "CONSENT_DEV_ADMIN_KEY",
    "CONSENT_IP_HASH_SALT",
    "CONSENT_KAFKA_SASL_USERNAME",
    "CONSENT_KAFKA_SASL_PASSWORD",
    "CONSENT_PROPAGATOR_API_KEY",  # issue 16: the propagator's own API credential
}
# Secrets the operator creates (docs/operations.md says how); the manifests reference them.
EXTERNAL_SECRETS = {
    "consent-secrets",
    "consent-migrate-secrets",  # each migration Job's own DSN (its service's owner side)
    "consent-propagator-migrate-secrets",
    "consent-propagator-db",  # issue 19: the propagator's runtime role
    "consent-checkpoint-key",  # issue 19: the transparency log's signing key (a volume)
    "consent-processor-secrets",
    "consent-kafka-ca",
    "consent-kafka-client",
}
# Which workloads may reach PostgreSQL and Kafka (NetworkPolicies).
POSTGRES_CLIENTS = {
    "consent-api",
    "consent-relay",
    "consent-propagator",
    "consent-migrate",
    "consent-propagator-migrate",
}
KAFKA_CLIENTS = {"consent-api", "consent-relay", "consent-propagator", "consent-topics"}


def tool(name: str) -> str:
    """A binary installed by a dev dependency, next to this interpreter or on PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: it comes with the dev dependencies (`uv sync`)")
    return found


def run(*argv: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, **kw)


# --- consentctl: does it accept a command line? ---------------------------------------


def parse_consentctl(argv: list[str]) -> click.Command:
    """Parse ``consentctl ARGV`` completely (options, types, required values) without
    running it; raises ``click.UsageError`` when consentctl would refuse the line."""
    cmd: click.Command = typer.main.get_command(app)
    ctx = cmd.make_context("consentctl", list(argv))
    while isinstance(cmd, click.Group):
        protected = getattr(ctx, "_protected_args", None)  # click >= 8.2
        rest = [*(ctx.protected_args if protected is None else protected), *ctx.args]
        name, sub, rest = cmd.resolve_command(ctx, rest)
        assert name and sub is not None, f"no command in {argv}"
        ctx = sub.make_context(name, rest, parent=ctx)
        cmd = sub
    return cmd


def assert_consentctl_accepts(argv: list[str]) -> None:
    result = CliRunner().invoke(app, [*argv, "--help"])
    assert result.exit_code == 0, (
        f"`consentctl {shlex.join(argv)} --help` exited {result.exit_code}:\n{result.output}"
    )
    try:
        parse_consentctl(argv)
    except click.UsageError as exc:
        pytest.fail(f"consentctl refuses `{shlex.join(argv)}`: {exc.format_message()}")


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def clean_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key in list(os.environ):
        if key.startswith("CONSENT_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def run_topic_script(tmp_path: Path, env: dict[str, str]) -> list[list[str]]:
    """Run create-topics.sh against a stand-in kafka-topics.sh recording its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "calls.jsonl"
    log.unlink(missing_ok=True)
    fake = bin_dir / "kafka-topics.sh"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'"{sys.executable}" -c "import json, sys; print(json.dumps(sys.argv[1:]))" "$@" '
        f'>> "{log}"\n'
    )
    fake.chmod(0o755)
    full = {"PATH": os.environ["PATH"], "KAFKA_BIN_DIR": str(bin_dir), **env}
    proc = run(tool("bash"), str(TOPICS_SCRIPT), env=full)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads(line) for line in log.read_text().splitlines()]


def created_topics(calls: list[list[str]]) -> dict[str, dict[str, Any]]:
    topics = {}
    for call in calls:
        if "--create" not in call:
            continue
        configs = dict(call[i + 1].split("=", 1) for i, arg in enumerate(call) if arg == "--config")
        topics[option(call, "--topic")] = {
            "partitions": int(option(call, "--partitions") or 0),
            "replication": int(option(call, "--replication-factor") or 0),
            "configs": configs,
            "bootstrap": option(call, "--bootstrap-server"),
            "command_config": option(call, "--command-config"),
            "if_not_exists": "--if-not-exists" in call,
        }
    return topics


def assert_topics_match_specs(
    topics: dict[str, dict[str, Any]], prefix: str, replication: int, min_isr: int
) -> None:
    specs = topic_specs(Settings(topic_prefix=prefix))
    assert set(topics) == {s.name for s in specs}
    for spec in specs:
        got = topics[spec.name]
        assert got["if_not_exists"]
        assert got["partitions"] == spec.num_partitions, spec.name
        assert got["replication"] == replication, spec.name
        assert got["configs"]["min.insync.replicas"] == str(min_isr)
        for key, value in (spec.topic_configs or {}).items():
            assert got["configs"].get(key) == value, (spec.name, key)
    assert topics[f"{prefix}consent.state.v1"]["configs"]["cleanup.policy"] == "compact"
