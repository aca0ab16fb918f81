"""The Ed25519 keys that sign checkpoints and receipts, held outside the database.

``CONSENT_CHECKPOINT_KEY_FILE`` is the current private key (PKCS#8 PEM);
``CONSENT_CHECKPOINT_RETIRED_KEYS_FILE`` (optional) a JWKS of retired public keys, still
published so that everything they signed keeps verifying (docs/operations.md, rotation).
A key's id is its RFC 7638 JWK thumbprint."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(raw_public: bytes) -> dict[str, str]:
    """The JWK of an Ed25519 public key, with its thumbprint as ``kid``."""
    x = b64url(raw_public)
    thumb = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    kid = b64url(hashlib.sha256(thumb.encode()).digest())
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"}


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey

    @property
    def jwk(self) -> dict[str, str]:
        raw = self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return public_jwk(raw)

    @property
    def key_id(self) -> str:
        return self.jwk["kid"]

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)


def generate_key_file(path: Path) -> SigningKey:
    """A new private key, written owner-readable only (``consentctl dev``, rotation)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return SigningKey(key)


def load_key_file(path: str | Path) -> SigningKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return SigningKey(key)


def published_jwks(current: SigningKey | None, retired_file: str | None) -> dict[str, Any]:
    """Every public key that verifies something we signed: the current one and the
    retired ones."""
    keys: list[dict[str, Any]] = [current.jwk] if current else []
    if retired_file and Path(retired_file).exists():
        for k in json.loads(Path(retired_file).read_text()).get("keys", []):
            if k.get("kty") == "OKP" and k.get("crv") == "Ed25519" and k.get("x"):
                jwk = public_jwk(base64.urlsafe_b64decode(k["x"] + "=" * (-len(k["x"]) % 4)))
                if all(jwk["kid"] != have["kid"] for have in keys):
                    keys.append(jwk)
    return {"keys": keys}


_loaded: dict[str, SigningKey] = {}


def signing_key(key_file: str | None, data_dir: Path) -> SigningKey:
    """The configured key; without one (the dev stack, or `serve --insecure-dev-defaults`),
    one kept in the data dir, made on first use."""
    path = Path(key_file) if key_file else Path(data_dir) / "checkpoint-key.pem"
    cached = _loaded.get(str(path))
    if cached is None:
        if not key_file and not path.exists():
            cached = generate_key_file(path)
        else:
            cached = load_key_file(path)
        _loaded[str(path)] = cached
    return cached
