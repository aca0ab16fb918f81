"""The transparency log through the API (issue 19): an entry's inclusion proof, a
checkpoint's signature, a consistency proof and a consent receipt, each taken from the API
and verified offline with the published keys only; 409 until a checkpoint covers an entry."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature

from consent.adapters.db import make_engine, make_sessionmaker
from consent.api.app import create_app
from consent.service.context import utcnow
from consent.settings import Settings
from consent.transparency import verify
from consent.transparency.keys import signing_key
from consent.transparency.log import checkpoint_now
from tests.conftest import user

SID = "carol"


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API, its background sequencer quiet after its first round: checkpoints are
    issued by the test (``checkpoint``)."""
    quiet = settings.model_copy(update={"checkpoint_interval_s": 3600.0})
    app = create_app(quiet)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            yield c


async def checkpoint(settings: Settings) -> Any:
    engine = make_engine(settings.database_url or "", pool_size=1)
    try:
        key = signing_key(settings.checkpoint_key_file, settings.data_dir)
        _, cp = await checkpoint_now(make_sessionmaker(engine), key, utcnow(), wait=True)
        return cp
    finally:
        await engine.dispose()


async def write(api: httpx.AsyncClient, purposes: dict[str, str]) -> int:
    r = await api.patch(
        f"/v1/subjects/{SID}/preferences",
        json={"purposes": purposes, "context": {"channel": "web", "notice_id": "banner-v3"}},
        headers=user(SID),
    )
    assert r.status_code == 200, r.text
    return int(r.json()["sequence"])


async def test_proofs_and_receipts_verify_offline(api, settings):
    first = await write(api, {"marketing_email": "granted"})
    r = await api.get(f"/v1/subjects/{SID}/proof?sequence={first}", headers=user(SID))
    assert r.status_code == 409 and r.json()["code"] == "not_yet_checkpointed"
    assert int(r.headers["retry-after"]) >= 1

    cp1 = await checkpoint(settings)
    assert cp1 is not None and await checkpoint(settings) is None  # nothing new: no new head
    for i in range(6):  # other subjects grow the tree
        r = await api.patch(
            f"/v1/subjects/other-{i}/preferences",
            json={"purposes": {"analytics": "granted"}},
            headers=user(f"other-{i}"),
        )
        assert r.status_code == 200
    second = await write(api, {"marketing_email": "denied", "sale": "denied"})
    cp2 = await checkpoint(settings)
    assert cp2.tree_size == cp1.tree_size + 7

    jwks = (await api.get("/.well-known/consent-keys.json")).json()
    assert jwks["keys"][0]["kty"] == "OKP" and jwks["keys"][0]["crv"] == "Ed25519"
    latest = (await api.get("/v1/checkpoints/latest")).json()
    assert latest == cp2.as_dict()
    verify.verify_checkpoint(latest, jwks)
    old = (await api.get(f"/v1/checkpoints/{cp1.tree_size}")).json()
    verify.verify_checkpoint(old, jwks)

    for seq in (first, second):
        r = await api.get(f"/v1/subjects/{SID}/proof?sequence={seq}", headers=user(SID))
        assert r.status_code == 200, r.text
        doc = r.json()
        assert set(doc) == {"entry", "leaf_index", "leaf_hash", "inclusion_proof", "checkpoint"}
        verify.verify_proof(doc, jwks)
        assert doc["entry"]["entry"]["sequence"] == seq
        # an altered entry, path or checkpoint fails
        doc["entry"]["entry"]["channel"] = "api"
        with pytest.raises(verify.VerificationError):
            verify.verify_proof(doc, jwks)

    r = await api.get(f"/v1/checkpoints/consistency?from={cp1.tree_size}&to={cp2.tree_size}")
    assert r.status_code == 200, r.text
    cons = r.json()
    verify.verify_consistency(cons, old, latest)
    forged = {**old, "root_hash": "00" * 32}
    with pytest.raises(verify.VerificationError):
        verify.verify_consistency(cons, forged, latest)

    r = await api.get(f"/v1/subjects/{SID}/receipts/{second}", headers=user(SID))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/jose")
    claims = verify.verify_receipt(r.text, jwks)
    assert claims["pii_principal_id"] == SID and claims["ledger"]["sequence"] == second
    assert {p["purpose"]: p["status"] for p in claims["purposes"]} == {
        "marketing_email": "denied",
        "sale": "denied",
    }
    assert claims["notice_id"] == "banner-v3" and claims["collection_method"] == "web"
    proof2 = await api.get(f"/v1/subjects/{SID}/proof?sequence={second}", headers=user(SID))
    assert claims["ledger"]["leaf_hash"] == proof2.json()["leaf_hash"]
    head, body, sig = r.text.split(".")
    with pytest.raises(verify.VerificationError):
        verify.verify_receipt(f"{head}.{body[:-4]}AAAA.{sig}", jwks)


async def test_unknown_entries_and_checkpoints_are_404(api, settings):
    await write(api, {"analytics": "granted"})
    await checkpoint(settings)
    r = await api.get(f"/v1/subjects/{SID}/proof?sequence=99", headers=user(SID))
    assert r.status_code == 404
    assert (await api.get(f"/v1/subjects/{SID}/receipts/99", headers=user(SID))).status_code == 404
    assert (await api.get("/v1/checkpoints/999")).status_code == 404
    r = await api.get("/v1/checkpoints/consistency?from=1&to=999")
    assert r.status_code == 404
    r = await api.get("/v1/checkpoints/consistency?from=3&to=1")
    assert r.status_code == 422


def readme_verifier() -> dict[str, Any]:
    """The README's plain-Python steps, run as written."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = text.split("<!-- offline-verifier -->", 1)[1].split("```python", 1)[1]
    namespace: dict[str, Any] = {}
    exec(block.split("```", 1)[0], namespace)  # our own documentation, run as written
    return namespace


async def test_the_documented_steps_and_the_cli_verify_what_the_api_hands_out(
    api, settings, tmp_path
):
    seq = await write(api, {"analytics": "granted", "sale": "denied"})
    await write(api, {"analytics": "denied"})
    await checkpoint(settings)
    jwks = (await api.get("/.well-known/consent-keys.json")).json()
    proof = (await api.get(f"/v1/subjects/{SID}/proof?sequence={seq}", headers=user(SID))).json()
    receipt = (await api.get(f"/v1/subjects/{SID}/receipts/{seq}", headers=user(SID))).text

    steps = readme_verifier()
    entry = steps["check_proof"](proof, jwks)
    assert entry["subject_id"] == SID and entry["sequence"] == seq
    claims = steps["check_receipt"](receipt, jwks)
    assert claims["ledger"]["leaf_hash"] == proof["leaf_hash"]
    tampered = json.loads(json.dumps(proof))
    change = tampered["entry"]["entry"]["changes"][0]
    change["to"] = "denied" if change["to"] == "granted" else "granted"
    with pytest.raises(AssertionError):
        steps["check_proof"](tampered, jwks)
    forged = json.loads(json.dumps(proof))
    forged["checkpoint"]["tree_size"] += 1
    with pytest.raises(InvalidSignature):
        steps["check_proof"](forged, jwks)

    from typer.testing import CliRunner

    from consentctl.main import app

    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(jwks))
    for name, content in (
        ("proof.json", json.dumps(proof)),
        ("receipt.jws", receipt),
        ("checkpoint.json", json.dumps(proof["checkpoint"])),
    ):
        (tmp_path / name).write_text(content)
        result = CliRunner().invoke(
            app, ["proof", "verify", str(tmp_path / name), "--keys", str(keys)]
        )
        assert result.exit_code == 0, (name, result.output)
    (tmp_path / "bad.json").write_text(json.dumps(tampered))
    result = CliRunner().invoke(
        app, ["proof", "verify", str(tmp_path / "bad.json"), "--keys", str(keys)]
    )
    assert result.exit_code == 1 and "FAILED" in result.output
