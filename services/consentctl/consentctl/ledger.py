"""``consentctl ledger verify``: everything decisions read, rebuilt from the ledger.

Subjects are taken from the ledger itself as well as from ``subjects`` (a subject row
deleted, or an entry whose subject vanished, is seen). For each: the hash chain, retained
evidence, every projected field of ``consent_state``, the subject's decision inputs and its
guardian links. Then the transparency log: each entry's leaf against the stored tree, and
the checkpoints published outside the database (a file, or the topic) against the tree
rebuilt from the entries."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

import asyncpg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from consent.domain.audit import compare_projection, compare_subject
from consent.domain.ledger import ChainedEntry, ChainProblem, verify_chain
from consent_common.db import plain_url
from consentctl.log_audit import TreeAudit

console = Console(stderr=True)

ENTRIES = """
SELECT l.subject_id, l.sequence, l.type, l.changes::text AS changes, l.detail::text AS detail,
       l.policy_version, l.jurisdiction, l.channel, l.actor_type, l.actor_id, l.occurred_at,
       l.evidence_hash, l.prev_hash, l.hash, l.leaf_index, e.evidence::text AS evidence
FROM consent_ledger l
LEFT JOIN consent_evidence e ON e.subject_id = l.subject_id AND e.sequence = l.sequence
WHERE l.subject_id = ANY($1::text[]) ORDER BY l.subject_id, l.sequence
"""
NEXT_SUBJECTS = """
(SELECT subject_id FROM subjects WHERE subject_id > $1 ORDER BY subject_id LIMIT $2)
UNION
(SELECT DISTINCT subject_id FROM consent_ledger WHERE subject_id > $1
 ORDER BY subject_id LIMIT $2)
ORDER BY subject_id LIMIT $2
"""


def _decode(row: asyncpg.Record) -> dict[str, Any]:
    d = dict(row)
    d["changes"] = json.loads(d["changes"]) if d["changes"] else []
    d["detail"] = json.loads(d["detail"]) if d["detail"] else {}
    d["evidence"] = json.loads(d["evidence"]) if d["evidence"] else None
    return d


async def _by_subject(
    conn: asyncpg.Connection, sql: str, ids: list[str]
) -> dict[str, list[asyncpg.Record]]:
    out: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for r in await conn.fetch(sql, ids):
        out[r["subject_id"]].append(r)
    return out


async def check_batch(
    conn: asyncpg.Connection, ids: list[str], tree: TreeAudit
) -> list[ChainProblem]:
    problems: list[ChainProblem] = []
    entries = {
        sid: [_decode(r) for r in rows]
        for sid, rows in (await _by_subject(conn, ENTRIES, ids)).items()
    }
    heads = {
        r["subject_id"]: r
        for r in await conn.fetch(
            "SELECT subject_id, sequence, last_hash, jurisdiction, erased_at, gpc_opted_out_at "
            "FROM subjects WHERE subject_id = ANY($1::text[])",
            ids,
        )
    }
    states = await _by_subject(
        conn, "SELECT * FROM consent_state WHERE subject_id = ANY($1::text[])", ids
    )
    guardians = await _by_subject(
        conn,
        "SELECT subject_id, guardian_id, revoked_at FROM guardian_links "
        "WHERE subject_id = ANY($1::text[])",
        ids,
    )
    for sid in ids:
        mine, head = entries.get(sid, []), heads.get(sid)
        evidence = {e["sequence"]: e["evidence"] for e in mine if e["evidence"] is not None}
        problems += verify_chain(
            sid,
            mine,
            evidence,
            head_sequence=head["sequence"] if head else None,
            head_hash=head["last_hash"] if head else None,
        )
        problems += compare_projection(sid, mine, states.get(sid, []))
        problems += compare_subject(sid, mine, head, guardians.get(sid, []))
        for e in mine:
            if e["leaf_index"] is not None:
                tree.add(int(e["leaf_index"]), ChainedEntry.of(e).leaf_hash(), sid, e["sequence"])
    return problems


async def verify_all(
    database_url: str,
    batch: int = 500,
    show_progress: bool = True,
    published: list[dict[str, Any]] | None = None,
    jwks: dict[str, Any] | None = None,
) -> tuple[int, list[ChainProblem]]:
    """Verify every subject and the log; return (subjects checked, problems)."""
    conn = await asyncpg.connect(plain_url(database_url))
    problems: list[ChainProblem] = []
    tree = TreeAudit()
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
            while ids := [r["subject_id"] for r in await conn.fetch(NEXT_SUBJECTS, last, batch)]:
                last = ids[-1]
                problems += await check_batch(conn, ids, tree)
                checked += len(ids)
                progress.update(task, completed=checked)
        stored = {
            int(r["idx"]): bytes(r["hash"])
            for r in await conn.fetch("SELECT idx, hash FROM log_nodes WHERE level = 0")
        }
        tree.check_nodes(stored)
        if published is not None:
            in_db = {
                int(r["tree_size"]): r["root_hash"]
                for r in await conn.fetch("SELECT tree_size, root_hash FROM log_checkpoints")
            }
            tree.check_published(published, jwks or {"keys": []}, in_db)
        return checked, problems + tree.problems
    finally:
        await conn.close()


def run_verify(
    database_url: str,
    published: list[dict[str, Any]] | None = None,
    jwks: dict[str, Any] | None = None,
) -> int:
    checked, problems = asyncio.run(verify_all(database_url, published=published, jwks=jwks))
    if not problems:
        against = f", {len(published)} published checkpoint(s)" if published is not None else ""
        console.print(
            f"[green]ledger OK[/green]: {checked} subjects, every chain, the projection and "
            f"the log verified{against}",
            soft_wrap=True,
        )
        return 0
    for p in problems:
        console.print(
            f"[red]TAMPERED[/red] subject={p.subject_id} sequence={p.sequence} "
            f"field={p.field or '-'}: {p.problem}",
            soft_wrap=True,
        )
    console.print(f"{len(problems)} problem(s) in {checked} subjects")
    return 1
