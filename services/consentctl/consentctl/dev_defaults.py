"""Published development secrets that ``consentctl serve`` refuses to run with.

Every value here is public (the compose file, the settings defaults, the test suite), so a
deployment that still uses one has no secret at all: tokens can be forged, hashed IPs
reversed, webhooks spoofed. ``serve`` names the setting (never the value) and stops, unless
``--insecure-dev-defaults`` says this is a development setup.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from consent.settings import Settings

MIN_HS256_SECRET_BYTES = 32  # RFC 7518 §3.2: a key at least as long as the hash output

PUBLISHED_JWT_SECRETS = frozenset(
    {"compose-dev-only-jwt-secret-change-me", "test-jwt-secret-0123456789abcdef0123"}
)
PUBLISHED_IP_SALTS = frozenset({"dev-only-salt-change-me", "compose-dev-only-salt-change-me"})
PUBLISHED_DB_PASSWORDS = frozenset({"consent-dev-only"})
PUBLISHED_WEBHOOK_SECRETS = frozenset(
    {
        "whsec_eosR+2wwbGrfm14tQMhJuwuzhyBkgaxq",
        "whsec_WG/pkrRvdCSeVM3PryPhQWTa1UVX0rzT",
        "whsec_bkfvqQNbPXXs7sPhAH87oWwCcfEHtBac",
    }
)


def _database(settings: Settings) -> list[str]:
    try:
        password = urlsplit(settings.database_url or "").password
    except ValueError:
        return []
    if password in PUBLISHED_DB_PASSWORDS:
        return ["CONSENT_DATABASE_URL: the password is the compose file's published default"]
    return []


def api_problems(settings: Settings) -> list[str]:
    """What is wrong with the API's secrets, one line per setting."""
    out = _database(settings)
    if settings.dev_admin_key is not None:
        out.append(
            "CONSENT_DEV_ADMIN_KEY: accepted only by `consentctl dev`; unset it and create "
            "keys with `consentctl keys create --scope ...`"
        )
    if settings.preference_center_dev:
        out.append(
            "CONSENT_PREFERENCE_CENTER_DEV: the dev sign-in helper mints user tokens; "
            "only for `consentctl dev`"
        )
    if settings.jwt_secret is not None:
        secret = settings.jwt_secret.get_secret_value()
        if secret in PUBLISHED_JWT_SECRETS:
            out.append("CONSENT_JWT_SECRET: a published default")
        elif len(secret.encode()) < MIN_HS256_SECRET_BYTES:
            out.append(f"CONSENT_JWT_SECRET: shorter than {MIN_HS256_SECRET_BYTES} bytes (HS256)")
    if settings.ip_hash_salt.get_secret_value() in PUBLISHED_IP_SALTS:
        out.append("CONSENT_IP_HASH_SALT: a published default (set a random value)")
    out += _checkpoint_key(settings)
    return out


def _checkpoint_key(settings: Settings) -> list[str]:
    """Checkpoints and receipts are signed with a key held outside the database; without
    one, a key made on the spot in the data dir would vanish with the container."""
    from consent.transparency.keys import load_key_file

    if not settings.checkpoint_key_file:
        return [
            "CONSENT_CHECKPOINT_KEY_FILE: not set; checkpoints and receipts need an Ed25519 "
            "key held outside the database (`consentctl log new-key PATH`, a Secret)"
        ]
    try:
        load_key_file(settings.checkpoint_key_file)
    except (OSError, ValueError, TypeError):
        return ["CONSENT_CHECKPOINT_KEY_FILE: not a readable Ed25519 private key (PEM)"]
    return []


def relay_problems(settings: Settings) -> list[str]:
    return _database(settings)


def webhook_problems(
    env_names: Iterable[str], environ: Mapping[str, str] | None = None
) -> list[str]:
    environ = os.environ if environ is None else environ
    return [
        f"{name}: a published webhook secret (the compose file's)"
        for name in sorted(set(env_names))
        if environ.get(name) in PUBLISHED_WEBHOOK_SECRETS
    ]


def enforce(problems: list[str], allow: bool, service: str) -> None:
    """Stop with the reasons, or go on with a warning under ``--insecure-dev-defaults``."""
    if not problems:
        return
    if allow:
        import structlog

        structlog.get_logger().warning(
            "insecure_dev_defaults",
            service=service,
            settings=[p.split(":", 1)[0] for p in problems],
        )
        return
    import typer

    lines = "\n".join(f"  - {p}" for p in problems)
    typer.echo(
        f"consentctl serve {service}: refusing to start with development secrets:\n{lines}\n"
        "Set real secrets, or pass --insecure-dev-defaults for a development setup.",
        err=True,
    )
    raise SystemExit(2)
