"""Settings from the environment (prefix ``CONSENT_``), one object for every process."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, PrivateAttr, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONSENT_", extra="ignore")

    data_dir: Path = Path(".consent/dev")
    database_url: str | None = None
    kafka_bootstrap: str | None = None
    topic_prefix: str = ""

    jwt_secret: SecretStr | None = None
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    dev_admin_key: SecretStr | None = None
    ip_hash_salt: SecretStr = SecretStr("dev-only-salt-change-me")
    cors_origins: list[str] = Field(default_factory=list)

    processors_file: Path | None = None
    event_source: str = "urn:consent:consent-api"
    db_pool_size: int = 20
    db_pool_timeout_s: float = 5.0  # waiting longer for a connection is answered 429
    max_in_flight: int = 64  # per API process; beyond it 429 + Retry-After (0: no limit)
    evidence_retention_days: int = 365 * 3
    outbox_retention_hours: int = 24 * 7
    scheduler_interval_s: float = 30.0
    scheduler_enabled: bool = True
    relay_batch_size: int = 500
    relay_poll_interval_s: float = 1.0
    child_age_floor_eu_eea: int = Field(default=16, ge=0, le=21)
    child_age_floor_other: int = Field(default=13, ge=0, le=21)
    log_level: str = "INFO"
    log_json: bool = True

    # Set only in code (``consentctl dev``, the tests), never from the environment: the dev
    # admin key is accepted only when it is on.
    _dev_stack: bool = PrivateAttr(default=False)

    @property
    def dev_stack(self) -> bool:
        return self._dev_stack

    def as_dev_stack(self) -> Settings:
        copy = self.model_copy()
        copy._dev_stack = True
        return copy

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


@lru_cache
def get_settings() -> Settings:
    return Settings()
