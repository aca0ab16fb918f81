"""Credentials: end-user bearer JWTs and hashed service API keys with scopes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

import jwt

from consent.adapters.api_keys import ApiKeyRepository
from consent.api.jwks import JwksCache, UnknownKey
from consent.settings import Settings

SCOPES = (
    "preferences:read",
    "preferences:write",
    "decisions:read",
    "rights:erase",  # irreversible, pushed to every processor
    "minors:write",  # guardian links and a minor's age-relevant facts: grants trust
    "admin",
)
# A user token acts for its own subject only (or a linked minor): it may erase itself.
USER_SCOPES = frozenset({"preferences:read", "preferences:write", "decisions:read", "rights:erase"})


@dataclass(frozen=True)
class Principal:
    kind: str  # "user" | "key"
    id: str  # subject id for users, key id for keys
    scopes: frozenset[str] = field(default_factory=frozenset)

    def has(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


class AuthError(Exception):
    pass


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """Return (key id, raw key). Only the hash of the raw key is ever stored."""
    key_id = secrets.token_hex(4)
    return key_id, f"ck_{key_id}_{secrets.token_urlsafe(24)}"


async def principal_from_key(
    raw: str, keys: ApiKeyRepository, settings: Settings
) -> Principal:
    """The dev admin key counts only in a dev stack (``consentctl dev``, the tests): a
    setting read from the environment never turns it on in ``consentctl serve``."""
    dev = (
        settings.dev_admin_key.get_secret_value()
        if settings.dev_admin_key and settings.dev_stack
        else None
    )
    if dev and hmac.compare_digest(raw.encode(), dev.encode()):
        return Principal("key", "dev-admin", frozenset({"admin"}))
    key = await keys.by_hash(hash_key(raw))
    if key is None or key.revoked_at is not None:
        raise AuthError("unknown or revoked API key")
    return Principal("key", key.id, key.scopes)


async def principal_from_jwt(token: str, settings: Settings, jwks: JwksCache | None) -> Principal:
    """RS256 with the provider's keys (``iss`` and ``aud`` required), or HS256 with the
    shared secret (``iss``/``aud`` checked when configured)."""
    require = ["exp", "sub"]
    try:
        if settings.jwt_jwks_url and jwks is not None:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            try:
                key: Any = await jwks.key_for(kid if isinstance(kid, str) else None)
            except UnknownKey as exc:
                raise AuthError("invalid token: unknown signing key") from exc
            algorithms = ["RS256"]
            require += ["iss", "aud"]
        elif settings.jwt_secret:
            key, algorithms = settings.jwt_secret.get_secret_value(), ["HS256"]
        else:
            raise AuthError("bearer tokens are not configured")
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            options={"require": require, "verify_aud": bool(settings.jwt_audience)},
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {type(exc).__name__}") from exc
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise AuthError("token has no subject")
    return Principal("user", sub, USER_SCOPES)
