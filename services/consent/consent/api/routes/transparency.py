"""The transparency log's read side: inclusion and consistency proofs, checkpoints, the
public keys, and consent receipts (API.md, Additions). Proofs and receipts follow the read
rules of preferences; checkpoints and keys are public (they hold no personal data, and
anyone may keep a copy)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from consent.api.access import Granted, needs
from consent.api.deps import Caller, UoW
from consent.api.problems import Problem
from consent.api.routes.preferences import PROBLEMS, SubjectPath
from consent.service.context import utcnow
from consent.settings import Settings
from consent.transparency import proofs
from consent.transparency.keys import SigningKey, published_jwks, signing_key
from consent.transparency.receipts import receipt_claims, sign_receipt

router = APIRouter()


class CheckpointOut(BaseModel):
    """A signed tree head: Ed25519 over ``consent.checkpoint.v1\\n{key_id}\\n{tree_size}\\n
    {root_hash}\\n{issued_at}\\n`` (README, "Compliance"), base64url."""

    tree_size: int
    root_hash: str
    issued_at: str
    key_id: str
    signature: str


class ChainedEntryOut(BaseModel):
    """A ledger entry as hashed: SHA-256 of the canonical JSON of the first three fields is
    ``hash``; SHA-256(0x00 || it) is the leaf."""

    entry: dict[str, Any]
    prev_hash: str
    evidence_hash: str
    hash: str


class ProofOut(BaseModel):
    entry: ChainedEntryOut
    leaf_index: int
    leaf_hash: str
    inclusion_proof: list[str]
    checkpoint: CheckpointOut


class ConsistencyOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    from_: CheckpointOut = Field(alias="from")
    to: CheckpointOut
    consistency_proof: list[str]


class JwkOut(BaseModel):
    kty: str
    crv: str
    x: str
    kid: str
    use: str
    alg: str


class JwksOut(BaseModel):
    keys: list[JwkOut]


Sequence = Annotated[int, Query(ge=1, le=2**62, description="The subject sequence")]
TreeSize = Annotated[int, Path(ge=1, le=2**62, description="A checkpoint's tree size")]


def _key(request: Request) -> SigningKey:
    settings: Settings = request.app.state.settings
    return signing_key(settings.checkpoint_key_file, settings.data_dir)


def _retry_after(request: Request) -> str:
    return str(max(1, round(request.app.state.settings.checkpoint_interval_s)))


@router.get(
    "/v1/subjects/{subject_id}/proof",
    response_model=ProofOut,
    responses=PROBLEMS,
    tags=["transparency"],
)
async def proof(
    subject_id: SubjectPath,
    sequence: Sequence,
    request: Request,
    uow: UoW,
    principal: Caller,
    _access: Annotated[Granted, needs("preferences:read")],
) -> dict[str, Any]:
    try:
        return await proofs.inclusion(uow.transparency, subject_id, sequence)
    except proofs.NoSuchEntry as exc:
        raise Problem(404, str(exc)) from exc
    except proofs.NotYetCheckpointed as exc:
        raise Problem(
            409,
            str(exc),
            code="not_yet_checkpointed",
            headers={"Retry-After": _retry_after(request)},
        ) from exc


@router.get(
    "/v1/checkpoints/latest",
    response_model=CheckpointOut,
    responses=PROBLEMS,
    tags=["transparency"],
)
async def checkpoint_latest(uow: UoW) -> dict[str, Any]:
    cp = await uow.transparency.latest()
    if cp is None:
        raise Problem(404, "No checkpoint has been issued yet.")
    return cp.as_dict()


@router.get(
    "/v1/checkpoints/consistency",
    response_model=ConsistencyOut,
    responses=PROBLEMS,
    tags=["transparency"],
)
async def checkpoint_consistency(
    uow: UoW,
    from_: Annotated[int, Query(alias="from", ge=1, le=2**62)],
    to: Annotated[int, Query(ge=1, le=2**62)],
) -> dict[str, Any]:
    if from_ > to:
        raise Problem(
            422,
            "from must not exceed to.",
            errors=[{"loc": ["query", "from"], "msg": "from > to", "type": "value_error"}],
        )
    try:
        return await proofs.consistency(uow.transparency, from_, to)
    except proofs.NoSuchCheckpoint as exc:
        raise Problem(404, str(exc)) from exc


@router.get(
    "/v1/checkpoints/{tree_size}",
    response_model=CheckpointOut,
    responses=PROBLEMS,
    tags=["transparency"],
)
async def checkpoint(tree_size: TreeSize, uow: UoW) -> dict[str, Any]:
    cp = await uow.transparency.at(tree_size)
    if cp is None:
        raise Problem(404, f"No checkpoint of tree size {tree_size}.")
    return cp.as_dict()


@router.get("/.well-known/consent-keys.json", response_model=JwksOut, tags=["transparency"])
async def consent_keys(request: Request) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    return published_jwks(_key(request), settings.checkpoint_retired_keys_file)


@router.get(
    "/v1/subjects/{subject_id}/receipts/{sequence}",
    responses={
        **PROBLEMS,
        200: {
            "description": "A compact JWS (EdDSA, `kid` in its header): the consent receipt",
            "content": {
                "application/jose": {
                    "schema": {
                        "type": "string",
                        "pattern": "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$",
                    }
                }
            },
        },
    },
    response_class=Response,
    tags=["transparency"],
)
async def receipt(
    subject_id: SubjectPath,
    sequence: Annotated[int, Path(ge=1, le=2**62)],
    request: Request,
    uow: UoW,
    principal: Caller,
    _access: Annotated[Granted, needs("preferences:read")],
) -> Response:
    try:
        row = await proofs.entry_row(uow.transparency, subject_id, sequence)
    except proofs.NoSuchEntry as exc:
        raise Problem(404, str(exc)) from exc
    evidence = await uow.transparency.evidence(subject_id, sequence)
    settings: Settings = request.app.state.settings
    controller = {"name": settings.controller_name, "contact": settings.controller_contact}
    withdraw = settings.withdraw_url or str(request.base_url).rstrip("/") + "/preference-center/"
    claims = receipt_claims(
        row,
        json.loads(evidence) if evidence else None,
        controller=controller,
        withdraw_url=withdraw,
        issued_at=utcnow(),
    )
    return Response(sign_receipt(_key(request), claims), media_type="application/jose")
