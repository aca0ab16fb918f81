"""Credentials: end-user bearer JWTs and hashed service API keys with scopes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

import jwt
from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from consent.adapters.tables import ApiKey
from consent.settings import Settings

SCOPES = ("preferences:read", "preferences:write", "decisions:read", "admin")
USER_SCOPES = frozenset({"preferences:read", "preferences:write", "decisions:read"})


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


async def principal_from_key(raw: str, session: AsyncSession, settings: Settings) -> Principal:
    dev = settings.dev_admin_key.get_secret_value() if settings.dev_admin_key else None
    if dev and hmac.compare_digest(raw.encode(), dev.encode()):
        return Principal("key", "dev-admin", frozenset({"admin"}))
    row = (
        await session.execute(
            select(ApiKey).where(ApiKey.key_hash == hash_key(raw))  # type: ignore[arg-type]
        )
    ).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        raise AuthError("unknown or revoked API key")
    return Principal("key", row.id, frozenset(row.scopes))


_jwks_clients: dict[str, jwt.PyJWKClient] = {}


def principal_from_jwt(token: str, settings: Settings) -> Principal:
    options = {"require": ["exp", "sub"]}
    kwargs: dict[str, object] = {}
    if settings.jwt_issuer:
        kwargs["issuer"] = settings.jwt_issuer
    if settings.jwt_audience:
        kwargs["audience"] = settings.jwt_audience
    else:
        options["verify_aud"] = False  # type: ignore[assignment]
    try:
        if settings.jwt_jwks_url:
            client = _jwks_clients.setdefault(
                settings.jwt_jwks_url, jwt.PyJWKClient(settings.jwt_jwks_url)
            )
            key = client.get_signing_key_from_jwt(token).key
            claims = jwt.decode(token, key, algorithms=["RS256"], options=options, **kwargs)  # type: ignore[arg-type]
        elif settings.jwt_secret:
            claims = jwt.decode(
                token,
                settings.jwt_secret.get_secret_value(),
                algorithms=["HS256"],
                options=options,
                **kwargs,
            )  # type: ignore[arg-type]
        else:
            raise AuthError("bearer tokens are not configured")
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {type(exc).__name__}") from exc
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise AuthError("token has no subject")
    return Principal("user", sub, USER_SCOPES)
