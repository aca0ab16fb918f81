"""``consentctl ledger verify``: everything decisions read, rebuilt from the ledger.

Subjects are taken from the ledger itself as well as from ``subjects`` (a subject row
deleted, or an entry whose subject vanished, is seen). For each: the hash chain, retained
evidence, every projected field of ``consent_state``, the subject's decision inputs and its
guardian links. Then the transparency log: each entry's leaf against the stored tree, and
the checkpoints published outside the database (a file, or the topic) against the tree
rebuilt from the entries."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from consent.adapters.ledger_audit import LedgerAudit
from consent.domain.audit import compare_projection, compare_subject
from consent.domain.ledger import ChainedEntry, ChainProblem, verify_chain
from consent_common.db import plain_url
from consentctl.log_audit import TreeAudit

console = Console(stderr=True)


async def check_batch(audit: LedgerAudit, ids: list[str], tree: TreeAudit) -> list[ChainProblem]:
    problems: list[ChainProblem] = []
    entries = await audit.entries(ids)
    heads = await audit.heads(ids)
    states = await audit.states(ids)
    guardians = await audit.guardians(ids)
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
    audit = LedgerAudit(conn)
    problems: list[ChainProblem] = []
    tree = TreeAudit()
    try:
        total = await audit.subject_count()
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
            while ids := await audit.next_subjects(last, batch):
                last = ids[-1]
                problems += await check_batch(audit, ids, tree)
                checked += len(ids)
                progress.update(task, completed=checked)
        tree.check_nodes(await audit.leaves())
        if published is not None:
            in_db = await audit.checkpoint_roots()
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
