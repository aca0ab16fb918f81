"""Processor configuration (``CONSENT_PROCESSORS_FILE``, format in API.md)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_EVENTS = [
    "consent.changed",
    "subject.updated",
    "consent.expired",
    "consent.lapsed",
    "subject.erasure_requested",
]


class ProcessorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9_-]{1,64}$")
    url: str
    secret_env: str
    purposes: list[str]
    events: list[str] = Field(default_factory=lambda: list(DEFAULT_EVENTS))
    kind: str | None = None  # adapter: "email", "payment", "logistics"; default: by name
    timeout_s: float = 5.0
    max_attempts: int = Field(default=8, ge=1, le=100)
    backoff_initial_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=300.0, gt=0)
    concurrency: int = Field(default=8, ge=1, le=256)
    recovery_probe_s: float = Field(default=30.0, gt=0)  # retry one exhausted delivery this often
    # Processor health (propagator/breaker.py, propagator/health.py):
    rate_limit_per_s: float | None = Field(default=None, gt=0)  # per propagator replica
    breaker_failures: int = Field(default=5, ge=1, le=10_000)  # in a row, to open the circuit
    breaker_open_s: float = Field(default=1.0, gt=0)  # first open period, doubling on a
    breaker_max_open_s: float = Field(default=30.0, gt=0)  # failed probe up to this
    disable_after_s: float = Field(default=5 * 86400.0, gt=0)  # failing without a success

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("url must be http(s)")
        return v

    def secret(self) -> str:
        value = os.environ.get(self.secret_env)
        if not value:
            raise RuntimeError(f"processor {self.name}: env var {self.secret_env} is not set")
        return value

    def wants(self, event_type: str) -> bool:
        return event_type in self.events


class ProcessorsFile(BaseModel):
    processors: list[ProcessorConfig]


def load_processors(path: Path) -> list[ProcessorConfig]:
    raw = yaml.safe_load(path.read_text())
    procs = ProcessorsFile.model_validate(raw).processors
    names = [p.name for p in procs]
    if len(names) != len(set(names)):
        raise ValueError("processor names must be unique")
    return procs
