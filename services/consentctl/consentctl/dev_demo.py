"""The dev stack's demo processors and the secrets it keeps across restarts."""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
from pathlib import Path

from consentctl.embedded import free_port
from propagator.config import ProcessorConfig

DEMO = [
    (
        "email",
        9101,
        "EMAIL_PROCESSOR_SECRET",
        ["marketing_email", "marketing_sms", "marketing_push"],
        [
            "consent.changed",
            "consent.expired",
            "consent.lapsed",
            "subject.updated",
            "subject.erasure_requested",
        ],
    ),
    (
        "payment",
        9102,
        "PAYMENT_PROCESSOR_SECRET",
        ["sale", "share", "third_party_sharing"],
        [
            "consent.changed",
            "consent.expired",
            "consent.lapsed",
            "subject.updated",
            "subject.erasure_requested",
        ],
    ),
    (
        "logistics",
        9103,
        "LOGISTICS_PROCESSOR_SECRET",
        ["third_party_sharing"],
        [
            "consent.changed",
            "consent.expired",
            "consent.lapsed",
            "subject.updated",
            "subject.erasure_requested",
        ],
    ),
]


def dev_secrets(data_dir: Path) -> dict[str, str]:
    """Secrets kept across restarts of the dev stack (never printed except the admin key)."""
    path = data_dir / "dev-secrets.json"
    try:
        saved: dict[str, str] = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = {}
    saved.setdefault("admin_key", "dev-" + secrets.token_urlsafe(18))
    saved.setdefault("jwt_secret", secrets.token_urlsafe(32))
    for _, _, env, _, _ in DEMO:
        saved.setdefault(env, "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode())
    path.write_text(json.dumps(saved))
    path.chmod(0o600)
    return saved


def demo_processors(saved: dict[str, str]) -> list[tuple[ProcessorConfig, int]]:
    out = []
    for name, port, env, purposes, events in DEMO:
        os.environ.setdefault(env, saved[env])
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            port = free_port()
        cfg = ProcessorConfig(
            name=name,
            url=f"http://127.0.0.1:{port}/consent",
            secret_env=env,
            purposes=purposes,
            events=events,
        )
        out.append((cfg, port))
    return out
