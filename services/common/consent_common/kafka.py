"""Kafka client settings both services use: bootstrap plus optional SASL/TLS."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from consent_common.settings import CommonSettings
from consent_common.timefmt import rfc3339

SPEC_VERSION = "1.0"


def client_kwargs(settings: CommonSettings) -> dict[str, Any]:
    """Bootstrap plus optional SASL/TLS, read from ``CONSENT_KAFKA_*`` variables."""
    assert settings.kafka_bootstrap, "CONSENT_KAFKA_BOOTSTRAP must be resolved before start"
    kw: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap}
    protocol = os.environ.get("CONSENT_KAFKA_SECURITY_PROTOCOL")
    if protocol:
        kw["security_protocol"] = protocol
        if "SSL" in protocol:
            from aiokafka.helpers import create_ssl_context

            kw["ssl_context"] = create_ssl_context(
                cafile=os.environ.get("CONSENT_KAFKA_SSL_CAFILE")
            )
    mechanism = os.environ.get("CONSENT_KAFKA_SASL_MECHANISM")
    if mechanism:
        kw["sasl_mechanism"] = mechanism
        kw["sasl_plain_username"] = os.environ.get("CONSENT_KAFKA_SASL_USERNAME")
        kw["sasl_plain_password"] = os.environ.get("CONSENT_KAFKA_SASL_PASSWORD")
    return kw


def cloudevent_headers(
    *,
    event_id: str,
    source: str,
    type_: str,
    time: datetime,
    subject: str,
    sequence: int | None,
    extra: Mapping[str, str] | None = None,
) -> list[tuple[str, bytes]]:
    headers = [
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", event_id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", type_.encode()),
        ("ce_time", rfc3339(time).encode()),
        ("ce_subject", subject.encode()),
    ]
    if sequence is not None:
        headers.append(("ce_subjectseq", f"{sequence:020d}".encode()))
    headers.append(("content-type", b"application/json"))
    for k, v in (extra or {}).items():
        headers.append((k, v.encode()))
    return headers


def encode(data: Any) -> bytes:
    return orjson.dumps(data)
