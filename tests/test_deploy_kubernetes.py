"""The Kubernetes manifests rendered from base and the production overlay (kubectl kustomize,
then the Kubernetes JSON Schemas via kubernetes-validate, shown to reject a broken file):
probes, resources, jobs, settings from ConfigMaps and Secrets, network policies."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from consent.adapters import kafka as kafka_adapter
from consent.adapters.kafka import make_producer
from consent.settings import Settings
from propagator.config import ProcessorsFile
from tests.deploy_support import (
    ALL_ENV,
    BASE,
    DEV_ONLY_ENV,
    EXTERNAL_SECRETS,
    K8S_VERSIONS,
    KAFKA_CLIENTS,
    KAFKA_ENV,
    POSTGRES_CLIENTS,
    PRODUCTION,
    SECRET_ENV,
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
        assert migrate["args"] == ["migrate", "--service", service, "--apply-roles"]
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
    deliberate |= {"checkpoint_key_file", "checkpoint_retired_keys_file"}  # the Secret's mount
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
