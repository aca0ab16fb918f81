"""Where the test PostgreSQL and Kafka come from.

Order: ``CONSENT_DATABASE_URL`` / ``CONSENT_KAFKA_BOOTSTRAP`` if set; testcontainers when a
Docker engine answers (unless ``CONSENT_TEST_CONTAINERS=0``); else the embedded servers.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from consentctl.embedded import TansuBroker, start_postgres, stop_postgres


def docker_available() -> bool:
    if os.environ.get("CONSENT_TEST_CONTAINERS") == "0":
        return False
    try:
        import docker

        client = docker.from_env(timeout=2)
        client.ping()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def postgres(workdir: Path) -> Iterator[str]:
    url = os.environ.get("CONSENT_DATABASE_URL")
    if url:
        yield url
        return
    if docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:17-alpine", driver=None) as pg:
            yield pg.get_connection_url()
        return
    url, server = start_postgres(workdir / "pg")
    try:
        yield url
    finally:
        stop_postgres(server)


@contextlib.contextmanager
def kafka(workdir: Path) -> Iterator[str]:
    bootstrap = os.environ.get("CONSENT_KAFKA_BOOTSTRAP")
    if bootstrap:
        yield bootstrap
        return
    if docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as k:
            yield k.get_bootstrap_server()
        return
    broker = TansuBroker(log_path=workdir / "tansu.log").start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
