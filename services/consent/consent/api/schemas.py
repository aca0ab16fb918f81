"""Request and response bodies of the public API (API.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from consent.api.vocabulary import Jurisdiction, PurposeKey
from consent.domain import jurisdictions

BIGINT_MAX = 2**63 - 1  # ids and sequences are BIGINT: larger values overflow asyncpg (500)


def _bounded_utc(value: datetime) -> datetime:
    """Aware, in UTC, and in a sane range (extreme offsets overflow PostgreSQL and Python)."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("time out of range") from exc
    if not 1900 <= utc.year <= 9000:
        raise ValueError("time out of range (years 1900 to 9000)")
    return utc


# The pattern documents the accepted range (years 1901 to 8999 in any offset fall within
# 1900 to 9000 in UTC); the validator is the rule.
Timestamp = Annotated[
    AwareDatetime,
    AfterValidator(_bounded_utc),
    Field(json_schema_extra={"pattern": r"^(190[1-9]|19[1-9][0-9]|[2-8][0-9]{3})-"}),
]
SubjectId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:@-]{1,128}$")]
StatusIn = Literal["granted", "denied", "unset"]
# What a request may name; which of these a credential may use is consent.domain.authority.
# gpc, guardian, system and operator are recorded by the platform itself, never requested.
Channel = Literal["web", "ios", "android", "api", "import"]


def _has_nul(value: Any) -> bool:
    """Whether any string (or key) in a parsed body holds a NUL. Fast path: orjson writes a
    NUL only as ``\\u0000``, so a body whose encoding lacks it has none (a 1,000-item batch:
    0.07 ms instead of 0.64 ms of recursion); a hit, or something orjson cannot encode, is
    settled by the walk."""
    try:
        if b"\\u0000" not in orjson.dumps(value):
            return False
    except TypeError:
        pass
    return _walk_for_nul(value)


def _walk_for_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_walk_for_nul(k) or _walk_for_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_walk_for_nul(v) for v in value)
    return False


class StrictPart(BaseModel):
    """An object nested in a request body: unknown fields are refused with 422. Its parent
    (a ``Strict`` body) has already looked for NUL characters in it."""

    model_config = ConfigDict(extra="forbid")


class Strict(StrictPart):
    """Request bodies: unknown fields and NUL characters (PostgreSQL text cannot hold them)
    are refused with 422. The whole body is searched once, here."""

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if _has_nul(data):
            raise ValueError("strings must not contain NUL characters")
        return data


class SubjectIn(Strict):
    jurisdiction: Jurisdiction
    birth_date: date | None = Field(
        default=None,
        description="In the past, from 1900",
        json_schema_extra={"pattern": r"^(19[0-9]{2}|[2-9][0-9]{3})-"},
    )

    @field_validator("jurisdiction")
    @classmethod
    def _known(cls, v: str) -> str:
        code = jurisdictions.normalize(v)
        if code is None:
            raise ValueError("unknown jurisdiction (ISO 3166-1 alpha-2 or ISO 3166-2 code)")
        return code

    @field_validator("birth_date")
    @classmethod
    def _past(cls, v: date | None) -> date | None:
        if v is not None and (v > date.today() or v.year < 1900):
            raise ValueError("birth_date must be in the past and after 1900")
        return v


class WriteContextIn(StrictPart):
    channel: Channel | None = None
    notice_id: Annotated[str, StringConstraints(max_length=200)] | None = None
    locale: Annotated[str, StringConstraints(max_length=35)] | None = None


class PreferencesPatch(Strict):
    purposes: dict[PurposeKey, StatusIn] = Field(min_length=1, max_length=64)
    policy_version: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        default=None, description="A published policy version (GET /v1/policies)"
    )
    context: WriteContextIn | None = None


class PurposeOut(BaseModel):
    status: StatusIn
    allowed: bool
    reason: str
    source: str | None
    updated_at: str | None
    expires_at: str | None
    policy_version: str | None
    needs_reconsent: bool


class PreferencesOut(BaseModel):
    subject_id: str
    sequence: int
    jurisdiction: str | None
    age_status: str
    gpc_honored: bool
    purposes: dict[str, PurposeOut]
    # a merged anonymous id: the person it answers for (absent otherwise)
    merged_into: str | None = None


class DecisionOut(BaseModel):
    subject_id: str
    purpose: str
    allowed: bool
    reason: str


def decision_doc(subject_id: str, purpose: str, allowed: bool, reason: str) -> dict[str, Any]:
    """A ``DecisionOut`` as a plain dict: the hot read paths serialise it with orjson."""
    return {"subject_id": subject_id, "purpose": purpose, "allowed": allowed, "reason": reason}


class PurposeInfo(BaseModel):
    key: str
    title: str
    description: str
    category: str
    legal_basis: dict[str, Literal["opt_in", "opt_out"]]
    validity_days: int | None


class PurposeList(BaseModel):
    items: list[PurposeInfo]
    catalog_version: str


def as_out(data: dict[str, Any]) -> PreferencesOut:
    return PreferencesOut.model_validate(data)


class DecisionQuery(StrictPart):
    subject_id: SubjectId
    purpose: PurposeKey


class BatchIn(Strict):
    items: list[DecisionQuery] = Field(min_length=1, max_length=1000)


class BatchOut(BaseModel):
    items: list[DecisionOut]


class PolicyIn(Strict):
    version: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
    effective_at: Timestamp
    material: bool = False
    affected_purposes: list[PurposeKey] = Field(default_factory=list, max_length=64)
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None


class PolicyOut(BaseModel):
    version: str
    effective_at: str
    material: bool
    affected_purposes: list[str]
    description: str | None
    published_at: str


class PolicyList(BaseModel):
    items: list[PolicyOut]


class HistoryEntry(BaseModel):
    sequence: int
    type: str
    changes: list[dict[str, Any]]
    detail: dict[str, Any]
    policy_version: str | None
    jurisdiction: str | None
    channel: str
    actor: dict[str, str | None]
    occurred_at: str | None
    recorded_at: str | None
    evidence: dict[str, Any] | None
    evidence_hash: str
    prev_hash: str
    hash: str


class HistoryPage(BaseModel):
    subject_id: str
    items: list[HistoryEntry]
    next_cursor: str | None


GrantedDenied = Literal["granted", "denied"]


class ConsentModeOut(BaseModel):
    ad_storage: GrantedDenied
    analytics_storage: GrantedDenied
    ad_user_data: GrantedDenied
    ad_personalization: GrantedDenied


class SignalsOut(BaseModel):
    gpp: str = Field(description="IAB GPP string: header, usnat (v2) and usca (v1) sections")
    gpp_sid: list[int] = Field(description="GPP section ids in the string: [7, 8]")
    consent_mode: ConsentModeOut = Field(description="Google Consent Mode v2 values")
    sequence: int = Field(description="The subject sequence the signals were derived from")
