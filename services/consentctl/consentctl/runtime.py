"""Resolving where PostgreSQL and Kafka are: explicit env vars, or the dev stack's files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from consent.settings import Settings
from consentctl.embedded import start_postgres

STACK_FILE = "stack.json"


def stack_file(settings: Settings) -> Path:
    return settings.data_dir / STACK_FILE


def read_stack(settings: Settings) -> dict[str, Any] | None:
    path = stack_file(settings)
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def resolve_database(settings: Settings) -> tuple[Settings, Any]:
    """Settings with ``database_url`` set; a handle to stop if we started PostgreSQL here."""
    if settings.database_url:
        return settings, None
    stack = read_stack(settings)
    if stack and stack.get("database_url"):
        return settings.model_copy(update={"database_url": stack["database_url"]}), None
    url, server = start_postgres(settings.data_dir / "pg")
    return settings.model_copy(update={"database_url": url}), server


def resolve_kafka(settings: Settings) -> Settings:
    if settings.kafka_bootstrap:
        return settings
    stack = read_stack(settings)
    if stack and stack.get("kafka_bootstrap"):
        return settings.model_copy(update={"kafka_bootstrap": stack["kafka_bootstrap"]})
    raise SystemExit("No broker: set CONSENT_KAFKA_BOOTSTRAP or start `consentctl dev`.")


def known_processors_for(settings: Settings) -> dict[str, Any]:
    """Processors from CONSENT_PROCESSORS_FILE, or the running dev stack's demo file."""
    from consent.service.processors import known_processors

    if settings.processors_file:
        return known_processors(settings.processors_file)
    stack = read_stack(settings)
    if stack and stack.get("processors_file"):
        return known_processors(Path(stack["processors_file"]))
    return {}
