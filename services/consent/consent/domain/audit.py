"""What ``ledger verify`` compares beyond the chains: every field of the projection and of
the subject that decisions read, rebuilt from the ledger, against what the tables say."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from consent.domain.entries import project
from consent.domain.ledger import ChainProblem

# consent_state column → the rebuilt record's attribute
STATE_FIELDS = {
    "status": "status",
    "source": "source",
    "sequence": "sequence",
    "policy_version": "policy_version",
    "actor_type": "actor.type",
    "actor_id": "actor.id",
    "updated_at": "updated_at",
    "expires_at": "expires_at",
    "ended_reason": "ended_reason",
}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a == b
    return bool(a == b)


def _attr(record: Any, path: str) -> Any:
    for part in path.split("."):
        record = getattr(record, part)
    return record


def compare_projection(
    subject_id: str, entries: Sequence[Mapping[str, Any]], state: Iterable[Mapping[str, Any]]
) -> list[ChainProblem]:
    """Each ``consent_state`` row, field by field, against the ledger's replay."""
    expected = project(entries)
    rows = {r["purpose"]: r for r in state}
    problems = []
    for purpose in sorted(set(expected) | set(rows)):
        rec, row = expected.get(purpose), rows.get(purpose)
        if rec is None or row is None:
            seq = rec.sequence if rec else int(row["sequence"]) if row else 0
            what = "missing from consent_state" if row is None else "not in the ledger"
            problems.append(
                ChainProblem(subject_id, seq, f"{purpose}: {what}", f"consent_state.{purpose}")
            )
            continue
        for column, attr in STATE_FIELDS.items():
            want = _attr(rec, attr)
            if not _same(row[column], want):
                problems.append(
                    ChainProblem(
                        subject_id,
                        rec.sequence,
                        f"{purpose}: consent_state.{column} is {row[column]!r}, "
                        f"the ledger says {want!r}",
                        f"consent_state.{column}",
                    )
                )
    return problems


def compare_subject(
    subject_id: str,
    entries: Sequence[Mapping[str, Any]],
    subject: Mapping[str, Any] | None,
    guardians: Iterable[Mapping[str, Any]],
) -> list[ChainProblem]:
    """The subject row's decision inputs (jurisdiction, erasure, GPC) and the active
    guardian links, against the entries that set them."""
    if not entries:
        return []
    last = entries[-1]
    seq = int(last["sequence"])
    if subject is None:
        return [
            ChainProblem(subject_id, seq, "the ledger has entries, subjects no row", "subjects")
        ]
    problems = []
    if subject["jurisdiction"] != last["jurisdiction"]:
        problems.append(
            ChainProblem(
                subject_id,
                seq,
                f"subjects.jurisdiction is {subject['jurisdiction']!r}, the ledger says "
                f"{last['jurisdiction']!r}",
                "subjects.jurisdiction",
            )
        )
    erasures = [e for e in entries if e["type"] == "subject.erasure_requested"]
    if bool(erasures) != (subject["erased_at"] is not None):
        problems.append(
            ChainProblem(
                subject_id,
                int(erasures[0]["sequence"]) if erasures else seq,
                "subjects.erased_at disagrees with the ledger's erasure entries",
                "subjects.erased_at",
            )
        )
    gpc = [e for e in entries if e["channel"] == "gpc"]
    if gpc and subject["gpc_opted_out_at"] is None:
        problems.append(
            ChainProblem(
                subject_id,
                int(gpc[0]["sequence"]),
                "the ledger records a GPC opt-out; subjects.gpc_opted_out_at is empty",
                "subjects.gpc_opted_out_at",
            )
        )
    active: dict[str, int] = {}
    for e in entries:
        gid = str((e.get("detail") or {}).get("guardian_id"))
        if e["type"] == "subject.guardian_linked":
            active[gid] = int(e["sequence"])
        elif e["type"] == "subject.guardian_revoked":
            active.pop(gid, None)
    linked = {g["guardian_id"] for g in guardians if g["revoked_at"] is None}
    for gid in sorted(set(active) ^ linked, key=str):
        problems.append(
            ChainProblem(
                subject_id,
                active.get(gid, seq),
                f"guardian {gid}: "
                + (
                    "linked in the ledger, not in guardian_links"
                    if gid in active
                    else "active in guardian_links, never linked (or revoked) in the ledger"
                ),
                "guardian_links",
            )
        )
    return problems
