"""Subjects and preferences: PUT profile, GET/PATCH preferences, decisions."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Path, Query, Request, Response

from consent.adapters.idempotency import StoredResponse
from consent.api.access import Granted, needs
from consent.api.auth import Principal
from consent.api.deps import Caller, UoW
from consent.api.freshness import Consistency, MinSequence, read_decisions
from consent.api.gpc import GpcSignal, SecGpc, is_gpc, own_gpc
from consent.api.problems import Problem
from consent.api.schemas import (
    DecisionOut,
    PreferencesOut,
    PreferencesPatch,
    SubjectId,
    SubjectIn,
    decision_doc,
)
from consent.api.vocabulary import PurposeKey
from consent.api.writes import actor_for, evidence_from, ip_salt, write_context
from consent.domain.authority import choose_channel
from consent.service import preferences as svc
from consent.service.context import WriteContext, utcnow
from consent.service.unit_of_work import UnitOfWork

router = APIRouter(prefix="/v1/subjects", tags=["preferences"])
SubjectPath = Annotated[SubjectId, Path(description="Opaque subject id")]
PROBLEMS: dict[int | str, dict[str, Any]] = {
    s: {"description": d, "content": {"application/problem+json": {}}}
    for s, d in {
        400: "Malformed JSON",
        401: "No or invalid credentials",
        404: "Not found",
        403: "Not allowed",
        409: "Conflict with a consent rule",
        412: "Stale If-Match",
        413: "Body too large",
        422: "Invalid request",
    }.items()
}


def _etag(sequence: int) -> str:
    return f'"{sequence}"'


def _check_if_match(if_match: str | None, sequence: int) -> None:
    if if_match is None:
        return
    tags = {t.strip().removeprefix("W/").strip('"') for t in if_match.split(",")}
    if "*" not in tags and str(sequence) not in tags:
        raise Problem(
            412,
            f"If-Match does not match the current sequence {sequence}.",
            headers={"ETag": _etag(sequence)},
        )


def _respond(view: svc.PreferencesView, gpc_applied: bool) -> Response:
    body = orjson.dumps(
        PreferencesOut.model_validate(view.as_dict()).model_dump(exclude_defaults=True)
    )
    headers = {"ETag": _etag(view.snapshot.sequence)}
    if gpc_applied:
        headers["Sec-GPC-Honored"] = "1"
    return Response(body, media_type="application/json", headers=headers)


@router.put("/{subject_id}", response_model=PreferencesOut, responses=PROBLEMS)
async def put_subject(
    subject_id: SubjectPath,
    body: SubjectIn,
    request: Request,
    uow: UoW,
    principal: Caller,
    access: Annotated[Granted, needs("preferences:write", "minors:write")],  # either writes
    _gpc: GpcSignal,
) -> Response:
    minors = principal.kind == "key" and principal.has("minors:write")
    guardian = access.guardian
    choice = choose_channel(principal.kind, None, acting_guardian=guardian is not None)
    ctx = write_context(request, principal, choice.channel, guardian=guardian)
    view = await svc.put_subject(
        uow,
        subject_id,
        jurisdiction=body.jurisdiction,
        birth_date=body.birth_date,
        birth_date_given="birth_date" in body.model_fields_set,
        ctx=ctx,
        may_write_minors=minors,
    )
    return _respond(view, False)


@router.get("/{subject_id}/preferences", response_model=PreferencesOut, responses=PROBLEMS)
async def get_preferences(
    subject_id: SubjectPath,
    uow: UoW,
    principal: Caller,
    _access: Annotated[Granted, needs("preferences:read")],
    _gpc: GpcSignal,
) -> Response:
    """A subject's own ``Sec-GPC: 1`` is recorded first, in its own unit of work (api/gpc.py),
    so this read sees it; the middleware adds ``Sec-GPC-Honored``."""
    view = await svc.get_preferences(uow, subject_id, utcnow())
    return _respond(view, False)


def _request_hash(subject_id: str, body: PreferencesPatch, sec_gpc: str | None) -> str:
    """What an Idempotency-Key is bound to: a key reused for another request is refused."""
    return hashlib.sha256(
        b"PATCH "
        + subject_id.encode()
        + b" "
        + orjson.dumps(body.model_dump(mode="json"))
        + (b" gpc" if is_gpc(sec_gpc) else b"")
    ).hexdigest()


@router.patch("/{subject_id}/preferences", response_model=PreferencesOut, responses=PROBLEMS)
async def patch_preferences(
    subject_id: SubjectPath,
    body: PreferencesPatch,
    request: Request,
    uow: UoW,
    principal: Caller,
    access: Annotated[Granted, needs("preferences:write")],
    if_match: Annotated[str | None, Header()] = None,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    sec_gpc: SecGpc = None,
) -> Response:
    guardian = access.guardian
    idem = uow.idempotency
    request_hash = _request_hash(subject_id, body, sec_gpc) if idempotency_key else ""
    owner = f"{principal.kind}:{principal.id}"  # a subject id never collides with a key id
    if idempotency_key:
        await idem.lock(owner, idempotency_key)
        stored = await idem.get(owner, idempotency_key)
        if stored is not None:
            if stored.request_hash != request_hash:
                raise Problem(
                    422,
                    "This Idempotency-Key was used for a different request.",
                    code="idempotency_key_reused",
                )
            return Response(
                stored.body,
                status_code=stored.status_code,
                media_type="application/json",
                headers={**stored.headers, "Idempotent-Replayed": "true"},
            )
    response = await _apply_patch(
        subject_id, body, request, uow, principal, guardian, if_match, sec_gpc
    )
    if idempotency_key:
        await idem.save(
            StoredResponse(
                principal=owner,
                key=idempotency_key,
                request_hash=request_hash,
                status_code=response.status_code,
                body=bytes(response.body),
                headers={
                    k: v
                    for k, v in response.headers.items()
                    if k.lower() in ("etag", "sec-gpc-honored")
                },
            )
        )
    return response


async def _apply_patch(
    subject_id: str,
    body: PreferencesPatch,
    request: Request,
    uow: UnitOfWork,
    principal: Principal,
    guardian: str | None,
    if_match: str | None,
    sec_gpc: str | None,
) -> Response:
    context = body.context
    choice = choose_channel(
        principal.kind, context.channel if context else None, acting_guardian=bool(guardian)
    )
    gpc = own_gpc(principal, subject_id, sec_gpc)
    evidence = evidence_from(
        request,
        ip_salt(request),
        context.notice_id if context else None,
        context.locale if context else None,
        gpc,
    )
    if choice.device:
        evidence["device_channel"] = choice.device
    ctx = WriteContext(
        channel=choice.channel,
        actor=actor_for(principal, guardian),
        policy_version=body.policy_version,
        acting_guardian=guardian,
        evidence=evidence,
    )
    view = await svc.change_preferences(
        uow,
        subject_id,
        dict(body.purposes),
        ctx,
        gpc=gpc,
        precondition=lambda sequence: _check_if_match(if_match, sequence),
    )
    request.state.written = view.snapshot
    return _respond(view, gpc and view.gpc_honored)


@router.get(
    "/{subject_id}/decisions",
    response_model=DecisionOut,
    responses=PROBLEMS,
    description="One purpose's decision, recomputed now from the worker's view of the "
    "subject or the database; with `min_sequence` never from an older state. The common "
    "case is answered by a lean path (api/fast_decisions.py) with the same answers.",
)
async def get_decision(
    subject_id: SubjectPath,
    request: Request,
    uow: UoW,
    principal: Caller,
    _access: Annotated[Granted, needs("decisions:read")],
    _gpc: GpcSignal,
    purpose: Annotated[PurposeKey, Query()],
    min_sequence: MinSequence = None,
    consistency: Consistency = None,
) -> Response:
    answers = await read_decisions(
        request,
        [(subject_id, purpose)],
        utcnow(),
        {subject_id: min_sequence} if min_sequence else {},
        consistency == "full",
    )
    [d] = answers.decisions
    body = decision_doc(subject_id, purpose, d.allowed, d.reason, answers.sequences[subject_id])
    return Response(orjson.dumps(body), media_type="application/json")  # hot: no re-validation
