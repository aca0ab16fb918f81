"""Kafka client settings both services use: bootstrap plus optional SASL/TLS."""

from __future__ import annotations

import os
from typing import Any

from consent_common.settings import CommonSettings


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
