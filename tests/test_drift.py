"""The drift report (issue 17): where a processor's last acknowledged decisions differ from
the decision API's answers, on its purposes; and its repair. Real PostgreSQL, the real
broker, real HTTP processors; the consent service knows what processors hold only from the
receipts it projects."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from consent.adapters.db import make_engine, make_sessionmaker
from consent.api.app import create_app
from consent.service.drift import check_drift
from consent.settings import Settings, get_settings
from tests.conftest import admin, eventually
from tests.support import RecordingProcessor, processors_file, running_stack, serving, settle
from tests.test_minors_guardians import born_years_ago

FAST = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2}


@pytest.fixture
def trio(processor_secrets: dict[str, str]) -> tuple[RecordingProcessor, ...]:
    return tuple(
        RecordingProcessor(n, processor_secrets[n]) for n in ("email", "payment", "logistics")
    )


def configs(email: Any, payment: Any, logistics: Any) -> list[Any]:
    return [
        email.config("TEST_EMAIL_SECRET", ["marketing_email", "marketing_sms"], **FAST),
        payment.config("TEST_PAYMENT_SECRET", ["sale", "share", "third_party_sharing"], **FAST),
        logistics.config("TEST_LOGISTICS_SECRET", ["third_party_sharing"], **FAST),
    ]


@pytest.fixture
def known(
    topics: Settings, trio: tuple[RecordingProcessor, ...], tmp_path: Path, monkeypatch: Any
) -> Settings:
    """The settings with a processors file; the process-wide settings (the scheduled
    check's) name it too."""
    path = processors_file(tmp_path / "processors.yaml", configs(*trio))
    monkeypatch.setenv("CONSENT_PROCESSORS_FILE", str(path))
    get_settings.cache_clear()
    return topics.model_copy(update={"processors_file": path, "scheduler_enabled": False})


@pytest.fixture
async def api(known: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(known)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            yield c
    get_settings.cache_clear()


async def report(api: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        q = {**params, **({"cursor": cursor} if cursor else {}), "limit": 2}
        r = await api.get("/v1/admin/drift", params=q, headers=admin())
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return items


async def repair(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await api.post("/v1/admin/drift/repair", json=body, headers=admin())
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]

    async def done() -> dict[str, Any] | None:
        j = (await api.get(f"/v1/admin/replays/{job_id}", headers=admin())).json()
        return j if j["status"] == "completed" else None

    job: dict[str, Any] = await eventually(done, timeout=120)
    return job


@pytest.mark.timeout(400)
async def test_a_missed_delivery_is_drift_until_repaired(api, known, trio, db):
    payment = trio[1]
    payment.responder = lambda r: 422 if r.body["subject_id"] == "d-miss" else 204
    grant = {"purposes": {"marketing_email": "granted", "third_party_sharing": "granted"}}
    async with serving(*trio), running_stack(known, configs(*trio), receipts=True):
        for sid in ("d-miss", "d-fine", "d-other"):
            r = await api.patch(f"/v1/subjects/{sid}/preferences", json=grant, headers=admin())
            assert r.status_code == 200, r.text
        await settle(db)
        items = await report(api)
        assert [(i["subject_id"], i["processor"], i["purpose"]) for i in items] == [
            ("d-miss", "payment", "third_party_sharing")
        ]
        (item,) = items
        assert (item["delivered"], item["current"]) == (False, True)
        first_change = await db.fetchval(
            "SELECT recorded_at FROM consent_ledger WHERE subject_id = 'd-miss' AND sequence = 1"
        )
        assert datetime.fromisoformat(item["since"]) == first_change
        assert item["age_seconds"] >= 0
        assert await report(api, processor="email") == []
        assert len(await report(api, processor="payment", subject_id="d-miss")) == 1
        r = await api.get("/v1/admin/drift", params={"processor": "nope"}, headers=admin())
        assert r.status_code == 422

        # the gauge, refreshed by the scheduled check
        engine = make_engine(known.database_url or "", pool_size=2)
        try:
            assert await check_drift(make_sessionmaker(engine), datetime.now(UTC)) == 1
        finally:
            await engine.dispose()
        metrics = (await api.get("/metrics")).text
        assert 'consent_drift{processor="payment"} 1.0' in metrics
        assert 'consent_drift{processor="email"} 0.0' in metrics

        payment.responder = lambda r: 204  # it is fixed; the repair sends what it missed
        sent_before = len(payment.requests)
        job = await repair(api)
        assert job["emitted"] == 1 and job["params"]["kind"] == "repair"
        await settle(db)
        assert await report(api) == []
        (sent,) = payment.requests[sent_before:]
        assert sent.body["repair"] is True and sent.body["replay"] is True
        assert sent.body["sequence"] == 1 and sent.body["decisions"]["third_party_sharing"]
        assert sent.headers["webhook-id"] not in {r.headers["webhook-id"] for r in
                                                  payment.requests[:sent_before]}  # fmt: skip
        assert sent.signature_ok

        # idempotent: nothing drifted, nothing sent
        again = await repair(api)
        assert again["emitted"] == 0
        await settle(db)
        assert len(payment.requests) == sent_before + 1
        audit = (await api.get("/v1/admin/audit", headers=admin())).json()["items"]
        actions = [a["action"] for a in audit if a["reference"] == job["job_id"]]
        assert sorted(actions) == ["drift.repair.completed", "drift.repair.started",
                                   "drift.repaired"]  # fmt: skip
        repaired = next(a for a in audit if a["action"] == "drift.repaired")
        assert repaired["scope"]["subjects"] == ["d-miss"] and repaired["actor"] == "dev-admin"


@pytest.mark.timeout(400)
async def test_a_configuration_change_that_moves_a_decision_is_drift(
    api, known, trio, db, monkeypatch
):
    """The operator raises the age floor: a 14-year-old in Texas becomes a child, whose
    data no processor may use, without any event. The report catches it; repair fixes it."""
    async with serving(*trio), running_stack(known, configs(*trio), receipts=True):
        profile = {"jurisdiction": "US-TX", "birth_date": born_years_ago(14.5)}
        r = await api.put("/v1/subjects/d-teen", json=profile, headers=admin())
        assert r.status_code in (200, 201), r.text
        grant = {"purposes": {"marketing_email": "granted"}}
        r = await api.patch("/v1/subjects/d-teen/preferences", json=grant, headers=admin())
        assert r.status_code == 200, r.text
        await settle(db)
        assert await report(api) == []

        monkeypatch.setenv("CONSENT_CHILD_AGE_FLOOR_OTHER", "16")
        get_settings.cache_clear()
        items = await report(api)
        assert ("email", "marketing_email") in {(i["processor"], i["purpose"]) for i in items}
        assert all(i["delivered"] and not i["current"] for i in items)
        # the check keeps when it first saw each difference
        engine = make_engine(known.database_url or "", pool_size=2)
        try:
            assert await check_drift(make_sessionmaker(engine), datetime.now(UTC)) == len(items)
        finally:
            await engine.dispose()
        seen = {
            (r["processor"], r["purpose"]): r["since"]
            for r in await db.fetch("SELECT * FROM drift_findings WHERE subject_id = 'd-teen'")
        }
        later = await report(api)
        assert later and len(later) == len(seen)
        assert all(datetime.fromisoformat(i["since"]) == seen[(i["processor"], i["purpose"])]
                   for i in later)  # fmt: skip

        job = await repair(api, subject_id="d-teen")
        assert job["emitted"] == len({i["processor"] for i in items})
        await settle(db)
        assert await report(api) == []
        email = trio[0]
        assert email.requests[-1].body["decisions"]["marketing_email"] is False


def consentctl(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CONSENT_DATABASE_URL": settings.database_url or "",
        "CONSENT_PROCESSORS_FILE": str(settings.processors_file),
    }
    return subprocess.run(
        [sys.executable, "-m", "consentctl.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.timeout(600)  # three CLI processes: slow to start on a busy machine
async def test_consentctl_verify_propagation_reports_and_repairs(api, known, trio, db):
    payment = trio[1]
    payment.responder = lambda r: 503  # down: its deliveries wait
    grant = {"purposes": {"third_party_sharing": "granted"}}
    async with serving(*trio), running_stack(known, configs(*trio), receipts=True):
        for sid in ("v1", "v2"):
            r = await api.patch(f"/v1/subjects/{sid}/preferences", json=grant, headers=admin())
            assert r.status_code == 200, r.text
        await settle(db, failing={"payment"})
        bad = await asyncio.to_thread(
            consentctl, known, "verify", "propagation", "--processor", "nope"
        )
        assert bad.returncode == 2 and "unknown processor" in bad.stderr
        found = await asyncio.to_thread(consentctl, known, "verify", "propagation")
        assert found.returncode == 1, found.stderr
        summary = json.loads(found.stdout)
        assert summary["differences"] == 2 and summary["by_processor"] == {"payment": 2}
        assert "repair with --repair" in found.stderr
        payment.responder = lambda r: 204
        fixed = await asyncio.to_thread(
            consentctl, known, "verify", "propagation", "--repair", "--wait", "60"
        )
        assert fixed.returncode == 0, fixed.stderr
        assert json.loads(fixed.stdout)["remaining"] == 0
        assert "no drift" in fixed.stderr
