"""Signing keys and checkpoints (issue 19): a checkpoint verifies with the published key
set, fails on any altered field, and keeps verifying after a rotation because retired
keys stay published; key ids are RFC 7638 thumbprints."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consent.domain import merkle
from consent.transparency.keys import generate_key_file, load_key_file, published_jwks
from consent.transparency.log import sign_checkpoint
from consent.transparency.verify import VerificationError, verify_checkpoint

NOW = datetime(2026, 12, 4, 19, 0, 0, 123456, tzinfo=UTC)


def test_key_id_is_the_rfc7638_thumbprint(tmp_path: Path) -> None:
    key = generate_key_file(tmp_path / "k.pem")
    assert oct((tmp_path / "k.pem").stat().st_mode & 0o777) == "0o600"
    jwk = key.jwk
    canonical = json.dumps({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]},
                           separators=(",", ":"), sort_keys=True)  # fmt: skip
    want = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=")
    assert jwk["kid"] == key.key_id == want.decode()
    assert load_key_file(tmp_path / "k.pem").key_id == key.key_id


def test_checkpoints_verify_and_any_change_fails(tmp_path: Path) -> None:
    key = generate_key_file(tmp_path / "k.pem")
    root = merkle.root_of([merkle.leaf_hash(b"a"), merkle.leaf_hash(b"b")])
    cp = sign_checkpoint(key, 2, root, NOW).as_dict()
    assert cp["issued_at"] == "2026-12-04T19:00:00Z"
    jwks = published_jwks(key, None)
    verify_checkpoint(cp, jwks)
    for field, value in (
        ("tree_size", 3),
        ("root_hash", "00" * 32),
        ("issued_at", "2026-12-04T19:00:01Z"),
    ):
        with pytest.raises(VerificationError):
            verify_checkpoint({**cp, field: value}, jwks)
    other = generate_key_file(tmp_path / "other.pem")
    with pytest.raises(VerificationError, match="no published key"):
        verify_checkpoint(cp, published_jwks(other, None))


def test_rotation_keeps_old_checkpoints_verifiable(tmp_path: Path) -> None:
    old = generate_key_file(tmp_path / "old.pem")
    before = sign_checkpoint(old, 1, merkle.leaf_hash(b"a"), NOW).as_dict()
    retired = tmp_path / "retired-keys.json"
    retired.write_text(json.dumps(published_jwks(old, None)))  # `consentctl log keys`
    new = generate_key_file(tmp_path / "new.pem")
    after = sign_checkpoint(new, 1, merkle.leaf_hash(b"a"), NOW).as_dict()
    jwks = published_jwks(new, str(retired))
    assert [k["kid"] for k in jwks["keys"]] == [new.key_id, old.key_id]
    verify_checkpoint(before, jwks)
    verify_checkpoint(after, jwks)
    assert published_jwks(new, str(tmp_path / "missing.json"))["keys"] == [new.jwk]
