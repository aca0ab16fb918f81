"""API.md "Freshness": the ``Consent-Token`` a write answers with, and what a decision read
does with the token it is given (``min_sequence``, ``consistency=full``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Query, Request

from consent.api.problems import Problem
from consent.api.schemas import MAX_SEQUENCE
from consent.service.decision_reads import Answers, DecisionReader, SequenceNotReached

TOKEN_HEADER = b"consent-token"
SUBJECTS = "/v1/subjects/"

MinSequence = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_SEQUENCE,
        description="A Consent-Token: never answer from a state of the subject older than "
        "this sequence; one the database has not reached is 409 sequence_not_reached",
    ),
]
Consistency = Annotated[
    Literal["full"] | None,
    Query(description="`full`: read the database, never the worker's view"),
]


def not_reached(exc: SequenceNotReached) -> Problem:
    return Problem(
        409,
        f"The subject has not reached sequence {exc.wanted} (it is at {exc.current}).",
        code="sequence_not_reached",
    )


async def read_decisions(
    request: Request,
    pairs: Sequence[tuple[str, str]],
    now: datetime,
    min_sequence: Mapping[str, int],
    full: bool,
) -> Answers:
    """What this request itself committed (a GPC signal it carried) is a token too."""
    wanted = dict(min_sequence)
    uow = getattr(request.state, "uow", None)
    for sid, seq in (uow.committed_sequences if uow is not None else {}).items():
        wanted[sid] = max(seq, wanted.get(sid, 0))
    reader: DecisionReader = request.app.state.decisions
    try:
        return await reader.read(pairs, now, wanted, full)
    except SequenceNotReached as exc:
        raise not_reached(exc) from exc


def remember_written(request: Request, uow: Any) -> None:
    """Write-through: the snapshot a PATCH just committed enters this worker's view, so a
    read with its token on the same connection (the same worker) is answered from memory.
    Only the subject's own, whole snapshot at exactly the committed sequence; the view's
    floors refuse it if a newer commit was announced meanwhile."""
    snapshot = getattr(request.state, "written", None)
    if snapshot is None or snapshot.merged_into is not None:
        return
    if uow.committed_sequences.get(snapshot.subject_id) != snapshot.sequence:
        return  # nothing new was committed (a no-op), or not this
    view = request.app.state.view
    view.put(view.ticket(), snapshot)


def path_subject(path: str) -> str | None:
    if not path.startswith(SUBJECTS):
        return None
    return path[len(SUBJECTS) :].split("/", 1)[0] or None


def consent_token(scope: Mapping[str, Any]) -> bytes | None:
    """The subject's sequence after this request's committed write, for the subject the
    path names (a guardian route: the minor)."""
    uow = (scope.get("state") or {}).get("uow")
    if uow is None or not uow.committed_sequences:
        return None
    sid = path_subject(scope["path"])
    seq = uow.committed_sequences.get(sid) if sid else None
    if seq is None and len(uow.committed_sequences) == 1:
        seq = next(iter(uow.committed_sequences.values()))
    return str(seq).encode() if seq is not None else None
