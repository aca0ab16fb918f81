"""Settings from the environment (prefix ``CONSENT_``), one object for every process."""

from __future__ import annotations

import ipaddress
import json
from functools import lru_cache
from typing import Annotated, Any

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from consent.domain.signals import GppNotices
from consent_common.settings import CommonSettings


class Settings(CommonSettings):
    """The consent service's settings (and, for ``consentctl``, everything)."""

    jwt_secret: SecretStr | None = None
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_jwks_timeout_s: float = Field(default=2.0, gt=0, le=30)  # one JWKS fetch
    jwt_jwks_refresh_s: float = Field(default=300.0, ge=1)  # keys older than this: refetch
    jwt_jwks_max_stale_s: float = Field(default=86400.0, ge=0)  # served while the IdP is down
    dev_admin_key: SecretStr | None = None
    ip_hash_salt: SecretStr = SecretStr("dev-only-salt-change-me")
    cors_origins: list[str] = Field(default_factory=list)
    # Hops (CIDRs) whose X-Forwarded-For is believed; without them the peer address counts.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    event_source: str = "urn:consent:consent-api"
    db_pool_size: int = 20
    db_pool_timeout_s: float = 5.0  # waiting longer for a connection is answered 429
    max_in_flight: int = 64  # per API process; beyond it 429 + Retry-After (0: no limit)
    body_timeout_s: float = Field(default=10.0, gt=0)  # whole body by then, or 408 + close
    # POST /v1/admin/imports (with an X-API-Key) may send this much; every other body 64 KiB
    import_max_bytes: int = Field(default=10 * 1024 * 1024, ge=64 * 1024, le=512 * 1024 * 1024)
    max_per_client: int = Field(default=16, ge=0)  # with CONSENT_TRUSTED_PROXIES only; 0: off
    # each API worker's view of decision inputs (service/subject_view.py): how many subject
    # snapshots it holds (0: off), and the backstop age after which one is read again
    view_size: int = Field(default=20_000, ge=0, le=10_000_000)
    view_max_age_s: float = Field(default=60.0, gt=0, le=3600)
    # API worker processes behind one port (`consentctl serve api`); 0: one per CPU
    api_workers: int = Field(default=0, ge=0, le=256)
    evidence_retention_days: int = 365 * 3
    outbox_retention_hours: int = 24 * 7
    idempotency_retention_hours: int = Field(default=24, ge=1, le=24 * 366)
    scheduler_interval_s: float = 30.0
    scheduler_enabled: bool = True
    # the drift report's scheduled check (consent_drift in /metrics) starts a new pass over
    # every subject at most this often
    drift_check_interval_s: float = Field(default=300.0, ge=1, le=86400)
    # project consent.receipts.v1 (the propagator's receipts and audit entries) into this
    # service's read model; one API replica at a time does it (an advisory lease)
    receipts_projection: bool = True
    # bulk time-driven jobs (re-consent announcements) pause while the outbox holds this many
    # unpublished rows, so a person's own change never queues behind a million of them
    scheduler_max_outbox_backlog: int = 1000
    # how long one scheduler round may spend on a bulk job before the other jobs' turn
    scheduler_job_budget_s: float = 20.0
    relay_batch_size: int = 500
    relay_poll_interval_s: float = 1.0
    child_age_floor_eu_eea: int = Field(default=16, ge=0, le=21)
    child_age_floor_other: int = Field(default=13, ge=0, le=21)
    # GPP notice and MSPA fields (IAB values: 0 not applicable, 1 yes, 2 no); see README
    gpp_sharing_notice: int = Field(default=1, ge=0, le=2)
    gpp_sale_opt_out_notice: int = Field(default=1, ge=0, le=2)
    gpp_sharing_opt_out_notice: int = Field(default=1, ge=0, le=2)
    gpp_targeted_advertising_opt_out_notice: int = Field(default=1, ge=0, le=2)
    gpp_sensitive_data_processing_opt_out_notice: int = Field(default=0, ge=0, le=2)
    gpp_sensitive_data_limit_use_notice: int = Field(default=0, ge=0, le=2)
    gpp_mspa_covered_transaction: int = Field(default=2, ge=1, le=2)
    gpp_mspa_opt_out_option_mode: int = Field(default=0, ge=0, le=2)
    gpp_mspa_service_provider_mode: int = Field(default=0, ge=0, le=2)
    # origins allowed to embed /preference-center/ (CSP frame-ancestors) and to hand it a
    # token by postMessage; empty: only the API's own origin
    preference_center_frame_ancestors: list[str] = Field(default_factory=list)
    # the dev-only token helper at /preference-center/dev (consentctl dev turns it on)
    preference_center_dev: bool = False

    # the transparency log (issue 19): the Ed25519 key that signs checkpoints and receipts
    # (PKCS#8 PEM, outside the database; without it the dev stack makes one in data_dir and
    # `consentctl serve api` refuses to start), retired public keys (a JWKS file) still
    # published, and a JSON Lines file each new checkpoint is appended to (ship it to
    # write-once storage)
    checkpoint_key_file: str | None = None
    checkpoint_retired_keys_file: str | None = None
    checkpoint_file: str | None = None
    checkpoint_interval_s: float = Field(default=10.0, gt=0, le=3600)
    # who receipts name as the controller, and where a person withdraws
    controller_name: str = "Example Controller (set CONSENT_CONTROLLER_NAME)"
    controller_contact: str | None = None
    withdraw_url: str | None = None  # default: the preference center

    @property
    def checkpoints_topic(self) -> str:
        return self.topic("consent.checkpoints.v1")

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _cidrs(cls, value: Any) -> Any:
        """A JSON list or a comma-separated string of CIDRs (a bare address is a /32 or
        /128), normalised."""
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else text.split(",")
        if not isinstance(value, list | tuple):
            raise ValueError("a list of CIDRs")
        return [
            str(ipaddress.ip_network(str(v).strip(), strict=False)) for v in value if str(v).strip()
        ]

    @model_validator(mode="after")
    def _jwks_needs_issuer_and_audience(self) -> Settings:
        """Tokens from a shared identity provider are accepted only when issued for us."""
        if self.jwt_jwks_url and not (self.jwt_issuer and self.jwt_audience):
            raise ValueError(
                "CONSENT_JWT_JWKS_URL is set: CONSENT_JWT_ISSUER and CONSENT_JWT_AUDIENCE "
                "are required too"
            )
        return self

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

    def gpp_notices(self) -> GppNotices:
        return GppNotices(**{f: getattr(self, f"gpp_{f}") for f in GppNotices.__dataclass_fields__})


@lru_cache
def get_settings() -> Settings:
    return Settings()
