"""Decision reads (single and batch) from the worker's view, never older than the caller
allows (API.md, "Freshness").

A subject is answered from the view when the view holds it at a sequence at least the
caller's ``min_sequence``; otherwise it is read from the database (a miss, or a
read-through when the view is behind the token or the caller asked ``consistency=full``).
A token the database itself has not reached is refused (409 ``sequence_not_reached``):
never an answer from older state. Decisions are computed at read time from the snapshot and
``now``, so time-driven changes (an expiry, a birthday, a policy's effective date) need no
invalidation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.adapters.db import driver
from consent.adapters.subject_store import fetch_snapshots
from consent.domain.merge import device_view
from consent.domain.model import Decision, SubjectSnapshot
from consent.service.decisions import decide_pairs, device_purposes
from consent.service.recorder import cached_policies, load_policies
from consent.service.subject_view import HITS, MISSES, READ_THROUGHS, SubjectView
from consent.service.unit_of_work import UnitOfWork


class SequenceNotReached(Exception):
    """A ``min_sequence`` beyond what the database has committed for the subject."""

    def __init__(self, subject_id: str, wanted: int, current: int) -> None:
        super().__init__(f"subject {subject_id!r} is at sequence {current}, not {wanted} yet")
        self.subject_id, self.wanted, self.current = subject_id, wanted, current


@dataclass(frozen=True)
class Answers:
    decisions: list[Decision]  # in the order of the pairs asked
    sequences: dict[str, int]  # subject id → the sequence its answers were computed from


class DecisionReader:
    def __init__(
        self, view: SubjectView, sessions: async_sessionmaker[AsyncSession], policy_key: str
    ) -> None:
        self.view, self.sessions, self.policy_key = view, sessions, policy_key

    async def read(
        self,
        pairs: Sequence[tuple[str, str]],
        now: datetime,
        min_sequence: Mapping[str, int] | None = None,
        full: bool = False,
    ) -> Answers:
        wanted = min_sequence or {}
        ids = list(dict.fromkeys(s for s, _ in pairs))
        snapshots, absent = self._from_view(ids, wanted, full)
        policies = cached_policies(self.policy_key)
        if absent or policies is None:
            async with self.sessions() as session:
                if absent:
                    snapshots.update(await self._from_database(session, absent))
                if policies is None:
                    policies = await load_policies(UnitOfWork(session))
        for sid, need in wanted.items():
            snap = snapshots.get(sid)
            if snap is not None and snap.sequence < need:
                raise SequenceNotReached(sid, need, snap.sequence)
        sequences = {sid: snap.sequence for sid, snap in snapshots.items()}
        await self._answer_for_persons(snapshots, wanted)
        return Answers(decide_pairs(snapshots, pairs, policies, now), sequences)

    def _from_view(
        self, ids: Sequence[str], wanted: Mapping[str, int], full: bool
    ) -> tuple[dict[str, SubjectSnapshot], list[str]]:
        found: dict[str, SubjectSnapshot] = {}
        absent: list[str] = []
        view = self.view
        for sid in ids:
            snap = None if full else view.get(sid)
            if snap is not None and snap.sequence >= wanted.get(sid, 0):
                found[sid] = snap
                HITS.inc()
                continue
            absent.append(sid)
            if full or snap is not None:  # behind the caller's token: read through
                READ_THROUGHS.inc()
            else:
                MISSES.inc()
        return found, absent

    async def _from_database(
        self, session: AsyncSession, ids: Sequence[str]
    ) -> dict[str, SubjectSnapshot]:
        ticket = self.view.ticket()
        rows = await fetch_snapshots(await driver(session), ids)
        out = {}
        for sid in ids:
            snap = rows.get(sid) or SubjectSnapshot(subject_id=sid)  # never written: defaults
            self.view.put(ticket, snap)
            out[sid] = snap
        return out

    async def _answer_for_persons(
        self, snapshots: dict[str, SubjectSnapshot], wanted: Mapping[str, int]
    ) -> None:
        """A merged anonymous id answers for its person (its device purposes aside); its
        reported sequence stays its own. A token for the person holds for the person."""
        merged = {sid: s.merged_into for sid, s in snapshots.items() if s.merged_into}
        if not merged:
            return
        people, absent = self._from_view(sorted(set(merged.values())), wanted, False)
        if absent:
            async with self.sessions() as session:
                people.update(await self._from_database(session, absent))
        device = device_purposes()
        for sid, person in merged.items():
            snapshots[sid] = device_view(snapshots[sid], people[person], device)
