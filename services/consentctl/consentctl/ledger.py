"""``consentctl ledger verify``: recompute every hash chain and the projection."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

import asyncpg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from consent.domain.ledger import ChainProblem, project, verify_chain
from consent_common.db import plain_url

console = Console(stderr=True)

ENTRIES = """
SELECT l.subject_id, l.sequence, l.type, l.changes::text AS changes, l.detail::text AS detail,
       l.policy_version, l.jurisdiction, l.channel, l.actor_type, l.actor_id, l.occurred_at,
       l.evidence_hash, l.prev_hash, l.hash, e.evidence::text AS evidence
FROM consent_ledger l
LEFT JOIN consent_evidence e ON e.subject_id = l.subject_id AND e.sequence = l.sequence
WHERE l.subject_id = ANY($1::text[]) ORDER BY l.subject_id, l.sequence
"""


def _decode(row: asyncpg.Record) -> dict[str, Any]:
    d = dict(row)
    d["changes"] = json.loads(d["changes"]) if d["changes"] else []
    d["detail"] = json.loads(d["detail"]) if d["detail"] else {}
    d["evidence"] = json.loads(d["evidence"]) if d["evidence"] else None
    return d


async def verify_all(
    database_url: str, batch: int = 500, show_progress: bool = True
) -> tuple[int, list[ChainProblem]]:
    """Verify every subject; return (subjects checked, problems)."""
    conn = await asyncpg.connect(plain_url(database_url))
    problems: list[ChainProblem] = []
    try:
        total = await conn.fetchval("SELECT count(*) FROM subjects")
        checked = 0
        progress = Progress(
            TextColumn("verifying"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not show_progress,
        )
        with progress:
            task = progress.add_task("subjects", total=total)
            last = ""
            while True:
                heads = await conn.fetch(
                    "SELECT subject_id, sequence, last_hash FROM subjects WHERE subject_id > $1 "
                    "ORDER BY subject_id LIMIT $2",
                    last,
                    batch,
                )
                if not heads:
                    break
                last = heads[-1]["subject_id"]
                ids = [h["subject_id"] for h in heads]
                by_subject: dict[str, list[dict[str, Any]]] = defaultdict(list)
                for row in await conn.fetch(ENTRIES, ids):
                    by_subject[row["subject_id"]].append(_decode(row))
                states: dict[str, dict[str, tuple[str, int]]] = defaultdict(dict)
                for s in await conn.fetch(
                    "SELECT subject_id, purpose, status, sequence FROM consent_state "
                    "WHERE subject_id = ANY($1::text[])",
                    ids,
                ):
                    states[s["subject_id"]][s["purpose"]] = (s["status"], s["sequence"])
                for h in heads:
                    sid = h["subject_id"]
                    entries = by_subject.get(sid, [])
                    evidence = {
                        e["sequence"]: e["evidence"] for e in entries if e["evidence"] is not None
                    }
                    problems += verify_chain(
                        sid,
                        entries,
                        evidence,
                        head_sequence=h["sequence"],
                        head_hash=h["last_hash"],
                    )
                    expected = {p: (r.status, r.sequence) for p, r in project(entries).items()}
                    for purpose in sorted(set(expected) | set(states[sid])):
                        if expected.get(purpose) != states[sid].get(purpose):
                            seq = (expected.get(purpose) or states[sid].get(purpose) or ("", 0))[1]
                            problems.append(
                                ChainProblem(
                                    sid,
                                    int(seq),
                                    f"projection differs for {purpose}: state "
                                    f"{states[sid].get(purpose)} vs ledger {expected.get(purpose)}",
                                )
                            )
                checked += len(heads)
                progress.update(task, completed=checked)
        return checked, problems
    finally:
        await conn.close()


def run_verify(database_url: str) -> int:
    checked, problems = asyncio.run(verify_all(database_url))
    if not problems:
        console.print(
            f"[green]ledger OK[/green]: {checked} subjects, every chain and the projection verified"
        )
        return 0
    for p in problems:
        console.print(
            f"[red]TAMPERED[/red] subject={p.subject_id} sequence={p.sequence}: {p.problem}"
        )
    console.print(f"{len(problems)} problem(s) in {checked} subjects")
    return 1
