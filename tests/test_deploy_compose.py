"""deploy/compose.yaml, checked offline: the compose-spec JSON Schema (check-jsonschema,
shown to reject a broken file), every command run by consentctl, health checks, settings,
and the topic script it shares with the Kubernetes Job."""

from __future__ import annotations

import os
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from consent.settings import Settings
from propagator.config import ProcessorsFile
from tests.deploy_support import (
    ALL_ENV,
    COMPOSE,
    CONSENT_SERVICES,
    DEV_ONLY_ENV,
    LONG_RUNNING,
    MIGRATIONS,
    OTHER_SERVICES,
    TOPICS_SCRIPT,
    assert_consentctl_accepts,
    assert_topics_match_specs,
    clean_env,
    created_topics,
    option,
    run,
    run_topic_script,
    tool,
)

# --- compose ----------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


_VAR = re.compile(r"\$\$|\$\{(\w+)(?::?-([^}]*))?\}|\$(\w+)")


def interpolate(value: Any, env: dict[str, str] | None = None) -> str:
    """Compose's ${VAR:-default} interpolation, with the defaults when VAR is unset."""
    env = env or {}

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(3)
        return env.get(name) or (m.group(2) or "")

    return _VAR.sub(sub, str(value))


def service_env(name: str) -> dict[str, str]:
    raw = compose()["services"][name].get("environment") or {}
    assert isinstance(raw, dict), f"{name}: environment as a mapping"
    return {k: interpolate(v) for k, v in raw.items()}


def service_command(name: str) -> list[str]:
    command = compose()["services"][name]["command"]
    return [str(a) for a in command] if isinstance(command, list) else shlex.split(command)


def test_compose_file_is_valid_compose_spec() -> None:
    proc = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_spec_validator_rejects_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  api:\n    image: x\n    restart_policy: always\n")
    proc = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(bad))
    assert proc.returncode != 0
    assert "restart_policy" in proc.stdout


def test_compose_services_are_the_expected_ones() -> None:
    services = compose()["services"]
    assert set(services) == CONSENT_SERVICES | set(OTHER_SERVICES)
    images = {interpolate(s.get("image", "")) for n, s in services.items() if n in CONSENT_SERVICES}
    assert len(images) == 1, f"one image for every consent service: {images}"
    for name in CONSENT_SERVICES:
        assert services[name]["build"]["dockerfile"] == "Dockerfile"
        assert (COMPOSE.parent / services[name]["build"]["context"] / "Dockerfile").is_file()
    for name, prefix in OTHER_SERVICES.items():
        assert services[name]["image"].startswith(prefix), name


@pytest.mark.parametrize("service", sorted(CONSENT_SERVICES))
def test_compose_command_is_accepted_by_consentctl(service: str) -> None:
    assert_consentctl_accepts(service_command(service))


def test_compose_order_and_health() -> None:
    services = compose()["services"]
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
    for name in LONG_RUNNING:
        assert "healthcheck" in services[name], f"{name} has no healthcheck"

    def conditions(name: str) -> dict[str, str]:
        return {d: c["condition"] for d, c in services[name].get("depends_on", {}).items()}

    for name, service in MIGRATIONS.items():  # one per service, each with its own DSN
        assert conditions(name) == {"postgres": "service_healthy"}
        assert service_command(name) == ["migrate", "--service", service]
        assert "CONSENT_DATABASE_URL" in services[name]["environment"]
    assert conditions("topics") == {"kafka": "service_healthy"}
    for name in ("api", "relay", "propagator"):
        got = conditions(name)
        assert got["postgres"] == got["kafka"] == "service_healthy", name
        done = {got[m] for m in MIGRATIONS} | {got["topics"]}
        assert done == {"service_completed_successfully"}, name
    for name in (*MIGRATIONS, "topics"):
        assert services[name]["restart"] == "no"

    # No cycle: every service can be started after its dependencies.
    started: set[str] = set()
    while len(started) < len(services):
        ready = {n for n in services if n not in started and set(conditions(n)) <= started}
        assert ready, f"dependency cycle among {set(services) - started}"
        started |= ready

    assert services["api"]["deploy"]["replicas"] == 2
    kafka = service_env("kafka")
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}  # KRaft
    assert not any("ZOOKEEPER" in key for key in kafka)


def test_compose_healthchecks_probe_the_ports_the_commands_listen_on() -> None:
    for name in LONG_RUNNING & CONSENT_SERVICES:
        argv = service_command(name)
        port = option(argv, "--health-port") or option(argv, "--port")
        test = " ".join(compose()["services"][name]["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/" in test, (name, test)
        path = "/_received" if name.endswith("-processor") else "/readyz"
        assert path in test, (name, test)


def test_compose_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CONSENT_SERVICES:
        env = service_env(name)
        unknown = {k for k in env if k.startswith("CONSENT_")} - ALL_ENV
        assert not unknown, f"{name}: not consent settings: {unknown}"
        clean_env(monkeypatch, env)
        Settings()  # raises on a value of the wrong type
    env = service_env("api")
    assert env["CONSENT_DATABASE_URL"].startswith("postgresql://")
    assert env["CONSENT_KAFKA_BOOTSTRAP"] == "kafka:9092"


def test_compose_runs_with_published_dev_secrets_only_when_told() -> None:
    """The compose file comes up with one command on published secrets: every consent
    service says so with --insecure-dev-defaults, every published default it carries is one
    `serve` recognises (so without the flag it would refuse), and no dev admin key."""
    from consent.settings import Settings as S
    from consentctl import dev_defaults

    for name in CONSENT_SERVICES:
        env = service_env(name)
        assert not DEV_ONLY_ENV & set(env), name
        if service_command(name)[0] == "serve":
            assert "--insecure-dev-defaults" in service_command(name), name
    api = service_env("api")
    settings = S(
        database_url=api["CONSENT_DATABASE_URL"],
        jwt_secret=api["CONSENT_JWT_SECRET"],
        ip_hash_salt=api["CONSENT_IP_HASH_SALT"],
    )
    wrong = {p.split(":")[0] for p in dev_defaults.api_problems(settings)}
    assert wrong == {
        "CONSENT_DATABASE_URL",
        "CONSENT_JWT_SECRET",
        "CONSENT_IP_HASH_SALT",
        "CONSENT_CHECKPOINT_KEY_FILE",  # compose signs with a key made in its data dir
    }
    secrets = service_env("propagator")
    names = [k for k in secrets if k.endswith("_PROCESSOR_SECRET")]
    assert len(dev_defaults.webhook_problems(names, secrets)) == len(names) == 3


def test_compose_processors_match_the_demo_processors() -> None:
    services = compose()["services"]
    argv = service_command("propagator")
    path = option(argv, "--processors-file")
    sources = set()
    for name in ("api", "propagator"):  # the API reads it for replays and redrives
        assert service_env(name)["CONSENT_PROCESSORS_FILE"] == path, name
        configs = {c["target"]: c["source"] for c in services[name].get("configs", [])}
        assert path in configs, f"{name}: {path} is not mounted"
        sources.add(configs[path])
    (source_name,) = sources
    source = compose()["configs"][source_name]["file"]
    raw = yaml.safe_load((COMPOSE.parent / source).read_text())
    processors = ProcessorsFile.model_validate(raw).processors
    demos = {
        option(service_command(n), "--name"): (n, option(service_command(n), "--port"))
        for n in CONSENT_SERVICES
        if service_command(n)[:2] == ["serve", "demo-processor"]
    }
    assert {p.name for p in processors} == set(demos)
    propagator_env = service_env("propagator")
    for proc in processors:
        service, port = demos[proc.name]
        assert proc.url == f"http://{service}:{port}/consent"
        assert propagator_env.get(proc.secret_env, "").startswith("whsec_")
        assert service_env(service)[proc.secret_env] == propagator_env[proc.secret_env]
        assert proc.secret_env == f"{proc.name.upper()}_PROCESSOR_SECRET"


# --- the topic script (compose service and Kubernetes Job) -------------------------------


def test_topic_script_creates_the_topics_of_topic_specs(tmp_path: Path) -> None:
    script_env = {"KAFKA_BOOTSTRAP": "broker:9092", "TOPIC_PREFIX": "t1."}
    topics = created_topics(run_topic_script(tmp_path, script_env))
    assert_topics_match_specs(topics, "t1.", replication=1, min_isr=1)
    assert {t["bootstrap"] for t in topics.values()} == {"broker:9092"}
    assert {t["command_config"] for t in topics.values()} == {None}

    props = tmp_path / "client.properties"
    props.write_text("security.protocol=SASL_SSL\n")
    env = {**script_env, "KAFKA_CLIENT_CONFIG": str(props), "REPLICATION_FACTOR": "3"}
    env["MIN_INSYNC_REPLICAS"] = "2"
    topics = created_topics(run_topic_script(tmp_path, env))
    assert_topics_match_specs(topics, "t1.", replication=3, min_isr=2)
    assert {t["command_config"] for t in topics.values()} == {str(props)}

    proc = run(tool("bash"), str(TOPICS_SCRIPT), env={"PATH": os.environ["PATH"]})
    assert proc.returncode != 0 and "KAFKA_BOOTSTRAP" in proc.stderr


def test_compose_topics_service_creates_the_topics(tmp_path: Path) -> None:
    svc = compose()["services"]["topics"]
    targets = {c["target"]: compose()["configs"][c["source"]]["file"] for c in svc["configs"]}
    script = svc["entrypoint"][-1]
    assert (COMPOSE.parent / targets[script]).resolve() == TOPICS_SCRIPT.resolve()
    env = service_env("topics")
    topics = created_topics(run_topic_script(tmp_path, env))
    assert_topics_match_specs(topics, env.get("TOPIC_PREFIX", ""), 1, 1)
    assert {t["bootstrap"] for t in topics.values()} == {
        service_env("api")["CONSENT_KAFKA_BOOTSTRAP"]
    }
