"""The settings every process reads (prefix ``CONSENT_``): where the database and the broker
are, topic names. Each service subclasses it with its own settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONSENT_", extra="ignore")

    data_dir: Path = Path(".consent/dev")
    database_url: str | None = None
    kafka_bootstrap: str | None = None
    topic_prefix: str = ""
    processors_file: Path | None = None
    inbox_retention_days: int = Field(default=14, ge=1, le=3660)
    delivery_retention_days: int = Field(default=30, ge=1, le=3660)
    # the propagator's HTTP API (deliveries, redrive, parked records): its own credential,
    # checked by the propagator and sent by the consent service, which forwards its admin
    # endpoints there (CONSENT_PROPAGATOR_URL); without the key the API is closed (503)
    propagator_api_key: SecretStr | None = None
    propagator_url: str | None = None
    log_level: str = "INFO"
    log_json: bool = True

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def events_topic(self) -> str:
        return self.topic("consent.events.v1")

    @property
    def state_topic(self) -> str:
        return self.topic("consent.state.v1")

    @property
    def deadletter_topic(self) -> str:
        return self.topic("consent.deadletter.v1")

    @property
    def receipts_topic(self) -> str:
        """The propagator → consent service topic: delivery receipts and audit entries."""
        return self.topic("consent.receipts.v1")

    @property
    def replays_topic(self) -> str:
        """Private: replays restricted to processors, which only the propagator reads."""
        return self.topic("consent.replays.v1")

    @property
    def warmup_topic(self) -> str:
        """Private to `consentctl dev`: its warm-up record never reaches subscribers."""
        return self.topic("consent.warmup.v1")
