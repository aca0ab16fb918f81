"""Event contracts: the JSON Schemas in ``schemas/events`` checked against real events."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


@cache
def validator(event_type: str) -> Draft202012Validator:
    path = SCHEMAS / "events" / f"{event_type}.json"
    if not path.exists():
        raise AssertionError(f"no JSON Schema for event type {event_type!r} ({path})")
    schema = json.loads(path.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def violations(event_type: str, data: Any) -> list[str]:
    return [
        f"{event_type}: {'/'.join(map(str, e.path))}: {e.message}"
        for e in validator(event_type).iter_errors(data)
    ]


# Event types seen across the whole session (for a final coverage report).
SEEN: dict[str, int] = {}

PERSONAL_KEYS = {"birth_date", "email", "phone", "address", "date_of_birth"}


def personal_keys(data: Any) -> set[str]:
    if isinstance(data, dict):
        found = {k for k in data if k in PERSONAL_KEYS}
        for v in data.values():
            found |= personal_keys(v)
        return found
    if isinstance(data, list):
        out: set[str] = set()
        for v in data:
            out |= personal_keys(v)
        return out
    return set()


async def check_outbox(conn: Any) -> list[str]:
    """Validate every outbox row of a test database; return the problems."""
    problems: list[str] = []
    for row in await conn.fetch("SELECT type, payload::text AS p FROM outbox ORDER BY position"):
        data = json.loads(row["p"])
        SEEN[row["type"]] = SEEN.get(row["type"], 0) + 1
        problems += violations(row["type"], data)
        leaked = personal_keys(data)
        if leaked:
            problems.append(f"{row['type']}: personal data keys in event: {sorted(leaked)}")
    return problems
