"""Global Privacy Control on every subject route (API.md: honoured on any request a subject
makes with its own token, GET included). The ``Sec-GPC`` header is read here only."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Request

from consent.api.auth import Principal
from consent.api.deps import Caller
from consent.api.schemas import SubjectId
from consent.api.writes import write_context
from consent.service import preferences as svc
from consent.service.unit_of_work import unit_of_work

SecGpc = Annotated[
    str | None,
    Header(alias="Sec-GPC", description="Global Privacy Control: `1` opts out of sale and share"),
]


def is_gpc(value: str | None) -> bool:
    """The one reading of the header: ``1`` (surrounding spaces allowed) is the signal."""
    return value is not None and value.strip() == "1"


def sends_gpc(request: Request) -> bool:
    return is_gpc(request.headers.get("sec-gpc"))


def own_gpc(principal: Principal, subject_id: str, value: str | None) -> bool:
    """Only the subject's own token carries its GPC signal (never a key, never a guardian)."""
    return is_gpc(value) and principal.kind == "user" and principal.id == subject_id


async def honour_gpc_signal(
    request: Request,
    subject_id: Annotated[SubjectId, Path(description="Opaque subject id")],
    principal: Caller,
    sec_gpc: SecGpc = None,
) -> None:
    """Record the opt-out of sale and share the first time, in a unit of work of its own:
    the signal stands whatever the route does next. The header says it is honoured."""
    if not own_gpc(principal, subject_id, sec_gpc):
        return
    ctx = write_context(request, principal, "gpc", gpc=True)
    async with unit_of_work(request.app.state.sessions) as uow:
        view = await svc.gpc_on_read(uow, subject_id, ctx)
    if view.gpc_honored:
        request.state.gpc_honored = True


GpcSignal = Annotated[None, Depends(honour_gpc_signal)]
