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
    for sid, seq in getattr(request.state, "committed_sequences", {}).items():
        wanted[sid] = max(seq, wanted.get(sid, 0))
    reader: DecisionReader = request.app.state.decisions
    try:
        return await reader.read(pairs, now, wanted, full)
    except SequenceNotReached as exc:
        raise not_reached(exc) from exc


def note_committed(request: Request, uow: Any) -> None:
    """After a unit of work of this request committed (api/deps.py, api/gpc.py): its
    sequences join the request's Consent-Token and raise this worker's view floors at once
    (any write: no read on this worker sees the state before it, notification or not), and
    the snapshot a PATCH wrote (``written``) enters this worker's view, so a read with its
    token on the same connection (the same worker) is answered from memory. Only the
    subject's own whole snapshot at exactly the committed sequence; the view's floors
    refuse it if a newer commit was announced meanwhile."""
    if not uow.committed_sequences:
        return
    seen: dict[str, int] = getattr(request.state, "committed_sequences", {})
    view = request.app.state.view
    for sid, seq in uow.committed_sequences.items():
        seen[sid] = max(seq, seen.get(sid, 0))
        view.reached(sid, seq)  # before the change feed says so: read-your-writes here
    request.state.committed_sequences = seen
    snapshot = getattr(request.state, "written", None)
    if snapshot is None or snapshot.merged_into is not None:
        return
    if uow.committed_sequences.get(snapshot.subject_id) != snapshot.sequence:
        return  # nothing new was committed for it (a no-op), or not this
    view.put(view.ticket(), snapshot)


def path_subject(path: str) -> str | None:
    if not path.startswith(SUBJECTS):
        return None
    return path[len(SUBJECTS) :].split("/", 1)[0] or None


def consent_token(scope: Mapping[str, Any]) -> bytes | None:
    """The subject's sequence after this request's committed write, for the subject the
    path names (a guardian route: the minor)."""
    committed = (scope.get("state") or {}).get("committed_sequences")
    if not committed:
        return None
    sid = path_subject(scope["path"])
    seq = committed.get(sid) if sid else None
    if seq is None and len(committed) == 1:
        seq = next(iter(committed.values()))
    return str(seq).encode() if seq is not None else None
