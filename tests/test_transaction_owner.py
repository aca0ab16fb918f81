"""One transaction owner: in the consent service and consentctl, only
``service/unit_of_work.py`` commits (its ``unit_of_work()``, which the request dependency,
the GPC signal, the jobs and the operator commands all open). A route or a service that
commits, or resets a flag to commit twice, fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "services"
OWNER = ROOT / "consent" / "consent" / "service" / "unit_of_work.py"
SCANNED = [ROOT / "consent" / "consent", ROOT / "consentctl" / "consentctl"]


KAFKA = {"consumer"}  # a Kafka consumer commits offsets, not a database transaction


def _receiver(node: ast.Attribute) -> str:
    return node.value.id if isinstance(node.value, ast.Name) else ""


def _commits(path: Path) -> list[str]:
    """``x.commit(...)`` calls and ``session.begin()`` blocks (which commit on exit)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Attribute) or _receiver(node) in KAFKA:
            continue
        if node.attr in ("commit", "begin", "committed"):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    return found


def test_only_the_unit_of_work_commits():
    offenders = [
        hit
        for base in SCANNED
        for path in sorted(base.rglob("*.py"))
        if path != OWNER and "migrations" not in path.parts
        for hit in _commits(path)
    ]
    assert offenders == []


def test_the_owner_commits_once_and_rolls_back_on_error():
    tree = ast.parse(OWNER.read_text())
    calls = [
        n.func.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
    ]
    assert calls.count("commit") == 2  # UnitOfWork.commit's session.commit, unit_of_work's
    assert "rollback" in calls


def test_the_request_dependency_ends_before_the_answer_is_sent():
    """``scope="function"``: the commit runs before the response goes out, so a failed
    commit becomes the answer (a problem document), never a 2xx for a write that was lost."""
    from consent.api.deps import UoW

    depends = UoW.__metadata__[0]
    assert depends.scope == "function"


def test_routes_reach_tables_through_the_unit_of_works_repositories():
    """One way to the database from a route: ``uow.<repository>``, never a repository built
    on the session by hand, nor SQL."""
    routes = ROOT / "consent" / "consent" / "api" / "routes"
    offenders = [
        f"{path.name}: {line.strip()}"
        for path in sorted(routes.glob("*.py"))
        for line in path.read_text().splitlines()
        if re.search(r"uow\.session|\btext\(|Repository\(", line)
    ]
    # /metrics: a read of its own, on the autocommit pool, never a 5xx (named by its code,
    # not its line numbers, so that editing meta.py does not break this test)
    assert offenders == [
        "meta.py: count, age = await asyncio.wait_for(OutboxRepository(session).backlog(), 2.0)",
        "meta.py: outbox = await asyncio.wait_for(ParkedRepository(session).outbox_count(), 2.0)",
    ]
