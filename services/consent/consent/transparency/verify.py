"""Offline verification of what the log hands out: a checkpoint's signature, an entry and
its inclusion proof, a consistency proof, a consent receipt. No database, no network:
``hashlib``, ``json``, ``base64`` and ``cryptography`` for Ed25519 (the README's
"Compliance" section gives the same steps in plain Python)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from consent.domain import merkle

CHECKPOINT_HEADER = "consent.checkpoint.v1"


class VerificationError(Exception):
    """What does not verify, and why."""


def checkpoint_bytes(key_id: str, tree_size: int, root_hash: str, issued_at: str) -> bytes:
    """The bytes a checkpoint's signature covers: five lines, each ending in ``\\n``."""
    return f"{CHECKPOINT_HEADER}\n{key_id}\n{tree_size}\n{root_hash}\n{issued_at}\n".encode()


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _public_key(jwks: Mapping[str, Any], kid: str) -> Ed25519PublicKey:
    for k in jwks.get("keys", []):
        if k.get("kid") == kid and k.get("kty") == "OKP" and k.get("crv") == "Ed25519":
            return Ed25519PublicKey.from_public_bytes(_b64(k["x"]))
    raise VerificationError(f"no published key {kid!r}")


def verify_checkpoint(checkpoint: Mapping[str, Any], jwks: Mapping[str, Any]) -> None:
    key = _public_key(jwks, checkpoint["key_id"])
    message = checkpoint_bytes(
        checkpoint["key_id"],
        int(checkpoint["tree_size"]),
        checkpoint["root_hash"],
        checkpoint["issued_at"],
    )
    try:
        key.verify(_b64(checkpoint["signature"]), message)
    except InvalidSignature as exc:
        raise VerificationError("checkpoint signature does not verify") from exc


def entry_leaf_hash(entry: Mapping[str, Any]) -> bytes:
    """SHA-256(0x00 || canonical entry): the entry's leaf; checks its chain hash too."""
    body = {k: entry[k] for k in ("entry", "prev_hash", "evidence_hash")}
    data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    if "hash" in entry and hashlib.sha256(data).hexdigest() != entry["hash"]:
        raise VerificationError("entry hash does not recompute")
    return hashlib.sha256(b"\x00" + data).digest()


def verify_proof(proof: Mapping[str, Any], jwks: Mapping[str, Any]) -> None:
    """A document of ``GET /v1/subjects/{id}/proof``: its entry is the leaf it names, the
    path leads to the checkpoint's root, and the checkpoint is signed by a published key."""
    verify_checkpoint(proof["checkpoint"], jwks)
    leaf = entry_leaf_hash(proof["entry"])
    if leaf.hex() != proof["leaf_hash"]:
        raise VerificationError("leaf_hash is not the entry's")
    cp = proof["checkpoint"]
    path = [bytes.fromhex(h) for h in proof["inclusion_proof"]]
    if not merkle.verify_inclusion(
        int(proof["leaf_index"]), int(cp["tree_size"]), leaf, path, bytes.fromhex(cp["root_hash"])
    ):
        raise VerificationError("inclusion proof does not lead to the checkpoint's root")


def verify_consistency(
    doc: Mapping[str, Any], old: Mapping[str, Any], new: Mapping[str, Any]
) -> None:
    """A consistency proof between two (already verified) checkpoints."""
    ok = merkle.verify_consistency(
        int(old["tree_size"]),
        int(new["tree_size"]),
        bytes.fromhex(old["root_hash"]),
        bytes.fromhex(new["root_hash"]),
        [bytes.fromhex(h) for h in doc["consistency_proof"]],
    )
    if not ok:
        raise VerificationError("the newer checkpoint does not extend the older one")


def verify_receipt(token: str, jwks: Mapping[str, Any]) -> dict[str, Any]:
    """A compact JWS (EdDSA) consent receipt; returns its claims."""
    try:
        head_b64, claims_b64, sig_b64 = token.strip().split(".")
        header = json.loads(_b64(head_b64))
    except ValueError as exc:
        raise VerificationError("not a compact JWS") from exc
    if header.get("alg") != "EdDSA":
        raise VerificationError("receipt is not signed with EdDSA")
    key = _public_key(jwks, header.get("kid", ""))
    try:
        key.verify(_b64(sig_b64), f"{head_b64}.{claims_b64}".encode())
    except InvalidSignature as exc:
        raise VerificationError("receipt signature does not verify") from exc
    claims: dict[str, Any] = json.loads(_b64(claims_b64))
    return claims
