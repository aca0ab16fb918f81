"""Anonymous subjects merged into a person (issue 21): link, list, undo."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from consent.api.access import Granted, needs
from consent.api.deps import Caller, UoW
from consent.api.problems import Problem
from consent.api.routes.preferences import PROBLEMS, SubjectPath
from consent.api.schemas import Strict, SubjectId
from consent.api.views import AliasList
from consent.api.writes import write_context
from consent.domain.authority import default_channel
from consent.service import aliases as alias_svc
from consent_common.timefmt import rfc3339

router = APIRouter(tags=["aliases"])


class AliasIn(Strict):
    anonymous_id: SubjectId


class AliasOut(Strict):
    subject_id: str
    anonymous_id: str
    linked_at: str
    sequence: int
    anonymous_sequence: int
    changes: list[dict[str, str]]


def _out(result: alias_svc.LinkResult, status: int) -> Response:
    body = AliasOut(**{k: v for k, v in asdict(result).items() if k != "created"})
    return Response(
        body.model_dump_json(),
        status_code=status,
        media_type="application/json",
        headers={"Consent-Token": str(result.sequence)},
    )


@router.post(
    "/v1/subjects/{subject_id}/aliases",
    status_code=201,
    response_model=AliasOut,
    responses={
        **PROBLEMS,
        200: {"description": "Already linked to this subject: unchanged", "model": AliasOut},
    },
)
async def merge_alias(
    subject_id: SubjectPath,
    body: AliasIn,
    request: Request,
    uow: UoW,
    principal: Caller,
    _access: Annotated[Granted, needs("preferences:write", users=None)],
) -> Response:
    """Merge an anonymous subject into this person (README: "Anonymous visitors who sign
    up"). A service key with ``preferences:write``: the site's backend, which saw the login."""
    ctx = write_context(request, principal, default_channel("key", admin=principal.has("admin")))
    result = await alias_svc.link(uow, subject_id, body.anonymous_id, ctx)
    return _out(result, 201 if result.created else 200)


@router.delete(
    "/v1/subjects/{subject_id}/aliases/{anonymous_id}", response_model=AliasOut, responses=PROBLEMS
)
async def undo_merge(
    subject_id: SubjectPath,
    anonymous_id: Annotated[SubjectId, Path()],
    request: Request,
    uow: UoW,
    principal: Caller,
    _access: Annotated[Granted, needs("preferences:write", users=["subject"])],
) -> Response:
    """Undo a merge (a shared device, a mistaken login): a service key with
    ``preferences:write``, or the person's own token; never the anonymous id's token."""
    channel = default_channel(principal.kind, admin=principal.has("admin"))
    ctx = write_context(request, principal, channel)
    try:
        result = await alias_svc.unlink(uow, subject_id, anonymous_id, ctx)
    except LookupError as exc:
        raise Problem(404, "This anonymous id is not merged into this subject.") from exc
    return _out(result, 200)


@router.get("/v1/subjects/{subject_id}/aliases", response_model=AliasList, responses=PROBLEMS)
async def list_aliases(
    subject_id: SubjectPath, uow: UoW, _access: Annotated[Granted, needs("preferences:read")]
) -> dict[str, Any]:
    """Links of a person (or of an anonymous id), ended ones included."""
    return {
        "items": [
            {
                "subject_id": a.subject_id,
                "anonymous_id": a.alias_id,
                "linked_at": rfc3339(a.linked_at),
                "sequence": a.person_sequence,
                "anonymous_sequence": a.alias_sequence,
                "unlinked_at": rfc3339(a.unlinked_at) if a.unlinked_at else None,
            }
            for a in await uow.aliases.all_for(subject_id)
        ]
    }
