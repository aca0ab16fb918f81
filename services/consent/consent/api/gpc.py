"""Global Privacy Control on every subject route (API.md: honoured on any request a subject
makes with its own token, GET included)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from consent.api.deps import Caller, UoW
from consent.api.schemas import SubjectId
from consent.api.writes import write_context
from consent.service import preferences as svc


def sends_gpc(request: Request) -> bool:
    return request.headers.get("sec-gpc", "").strip() == "1"


async def honour_gpc_signal(
    request: Request,
    subject_id: Annotated[SubjectId, Path(description="Opaque subject id")],
    uow: UoW,
    principal: Caller,
) -> None:
    """Record the opt-out of sale and share the first time; the header says it is honoured."""
    if not (sends_gpc(request) and principal.kind == "user" and principal.id == subject_id):
        return
    ctx = write_context(request, principal, "gpc", gpc=True)
    view = await svc.gpc_on_read(uow, subject_id, ctx)
    await uow.commit()  # its own transaction: the signal stands whatever the route does next
    uow.committed = False  # the route's own work is a new transaction
    if view.gpc_honored:
        request.state.gpc_honored = True


GpcSignal = Annotated[None, Depends(honour_gpc_signal)]
