"""Signals for ad tech and tags (IAB GPP, Google Consent Mode), derived from decisions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request

from consent.api.access import Granted, needs
from consent.api.deps import Caller, UoW, get_settings
from consent.api.gpc import GpcSignal, sends_gpc
from consent.api.routes.preferences import PROBLEMS, SubjectPath
from consent.api.schemas import SignalsOut
from consent.domain.signals import signals
from consent.service import preferences as svc
from consent.service.context import utcnow

router = APIRouter(tags=["signals"])


@router.get("/v1/subjects/{subject_id}/signals", response_model=SignalsOut, responses=PROBLEMS)
async def get_signals(
    subject_id: SubjectPath,
    request: Request,
    uow: UoW,
    principal: Caller,
    _access: Annotated[Granted, needs("preferences:read")],
    _gpc: GpcSignal,
) -> SignalsOut:
    """Computed on every read from the subject's effective decisions; never stored. Read
    rules are those of preferences: the subject, a guardian acting for a minor, or a
    service key with ``preferences:read``."""
    view = await svc.get_preferences(uow, subject_id, utcnow())
    own = principal.kind == "user" and principal.id == subject_id
    gpc = view.gpc_honored or (own and sends_gpc(request))
    out = signals(view.decisions, view.age_status, gpc, get_settings(request).gpp_notices())
    return SignalsOut(**out, sequence=view.snapshot.sequence)
