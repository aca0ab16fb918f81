"""One transaction owner in the propagator, and SQL only in its adapters: only
``propagator/unit_of_work.py`` opens a transaction (``unit_of_work()``, which each entry
point opens once: an API request, an intake batch, a recorded batch of outcomes, an outbox
batch, a job's step, a ``consentctl`` command); only ``propagator/repositories/`` sends SQL,
and what it returns is a dataclass, never an asyncpg record. A route, a worker or a rule
that opens a transaction or runs a statement itself fails here."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "services"
PROPAGATOR = ROOT / "propagator" / "propagator"
OWNER = PROPAGATOR / "unit_of_work.py"
REPOSITORIES = PROPAGATOR / "repositories"
# consentctl's commands that reach the propagator's tables
COMMANDS = [
    ROOT / "consentctl" / "consentctl" / n for n in ("processors.py", "parked.py", "ops.py")
]
SQL = {"execute", "executemany", "fetch", "fetchval", "fetchrow", "copy_from_query"}
SQL |= {"copy_from_table", "copy_to_table", "copy_records_to_table", "cursor", "prepare"}
OPENS = {"transaction", "commit", "rollback"}  # asyncpg's ways to open or end one by hand


def _scanned() -> list[Path]:
    files = [p for p in sorted(PROPAGATOR.rglob("*.py")) if "migrations" not in p.parts]
    return files + COMMANDS


def _calls(path: Path, names: set[str]) -> list[str]:
    """``x.<name>(...)`` calls in ``path`` (a Kafka consumer's ``commit`` is not a database
    one: receivers named ``consumer`` are skipped)."""
    return [
        f"{path.relative_to(ROOT)}:{node.lineno} .{node.func.attr}"
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in names
        and not (isinstance(node.func.value, ast.Name) and node.func.value.id == "consumer")
    ]


def test_only_the_unit_of_work_opens_a_transaction():
    offenders = [hit for p in _scanned() if p != OWNER for hit in _calls(p, OPENS)]
    assert offenders == []


def test_the_owner_opens_one_transaction_and_runs_no_sql():
    assert [h.split()[-1] for h in _calls(OWNER, OPENS)] == [".transaction"]
    assert _calls(OWNER, SQL) == []


def test_sql_runs_only_in_the_repositories():
    offenders = [hit for p in _scanned() if REPOSITORIES not in p.parents for hit in _calls(p, SQL)]
    assert offenders == []


def test_repositories_return_dataclasses_not_records():
    """No repository method is annotated to return an asyncpg record or a ``dict(row)``:
    rows become the dataclasses its module declares."""
    offenders = []
    for path in sorted(REPOSITORIES.glob("*.py")):
        for cls in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(cls, ast.ClassDef) and cls.name.endswith("Repository")):
                continue
            for fn in cls.body:
                if isinstance(fn, ast.AsyncFunctionDef | ast.FunctionDef) and fn.returns:
                    returns = ast.unparse(fn.returns)
                    if "Record" in returns or "dict[str, Any]" in returns:
                        offenders.append(f"{path.name}:{fn.lineno} {fn.name} -> {returns}")
    assert offenders == []


def test_the_scan_sees_what_it_checks():
    """Guards the guards: the scanned files exist and the repositories do run SQL."""
    assert {p.name for p in COMMANDS} >= {"processors.py", "parked.py", "ops.py"}
    assert sum(len(_calls(p, SQL)) for p in REPOSITORIES.glob("*.py")) > 30
