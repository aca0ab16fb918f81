"""Every integer, number and time parameter of the OpenAPI document (query, path and request
body fields), walked with out-of-range values: each is refused with a 422 problem document,
never a 500. A new parameter of those kinds must be listed in ``BASE`` with a valid request,
so it cannot escape the walk; integers and numbers must declare both bounds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import admin

SCHEMA = json.loads(
    (Path(__file__).resolve().parent.parent / "schemas" / "openapi.json").read_text()
)
COMPONENTS = SCHEMA["components"]["schemas"]
TIME_FORMATS = {"date", "date-time"}
# A request each operation accepts; the walk replaces one parameter at a time.
BASE: dict[tuple[str, str], dict[str, Any]] = {
    ("get", "/v1/admin/audit"): {"query": {}},
    ("get", "/v1/admin/parked"): {"query": {}},
    ("delete", "/v1/admin/parked/{parked_id}"): {"path": {"parked_id": "1"}},
    ("post", "/v1/admin/parked/{parked_id}/retry"): {"path": {"parked_id": "1"}},
    ("get", "/v1/admin/deliveries"): {"query": {}},
    ("get", "/v1/admin/drift"): {"query": {}},
    ("get", "/v1/subjects/{subject_id}/history"): {"query": {}},
    ("get", "/v1/subjects/{subject_id}/decisions"): {"query": {"purpose": "analytics"}},
    ("post", "/v1/decisions:batch"): {
        "body": {"items": [{"subject_id": "s-1", "purpose": "analytics", "min_sequence": 0}]}
    },
    ("post", "/v1/admin/replays"): {
        "body": {"since": "2026-01-01T00:00:00Z", "dry_run": True, "rate": 10}
    },
    ("post", "/v1/policies"): {
        "body": {
            "version": "range-1",
            "effective_at": "2026-01-01T00:00:00Z",
            "material": False,
            "affected_purposes": [],
        }
    },
    ("put", "/v1/subjects/{subject_id}"): {"body": {"jurisdiction": "DE"}},
    ("get", "/v1/subjects/{subject_id}/proof"): {"query": {"sequence": "1"}},
    ("get", "/v1/subjects/{subject_id}/receipts/{sequence}"): {"path": {"sequence": "1"}},
    ("get", "/v1/checkpoints/{tree_size}"): {"path": {"tree_size": "1"}},
    ("get", "/v1/checkpoints/consistency"): {"query": {"from": "1", "to": "1"}},
    ("post", "/v1/subjects/{subject_id}/guardians"): {
        "body": {
            "guardian_id": "g-1",
            "verification": {
                "method": "signed_form",
                "reference": "r-1",
                "verified_at": "2026-01-01T00:00:00Z",
            },
        }
    },
}
OUT_OF_RANGE = {
    "integer": [2**63, 10**40, -(2**63) - 1, -(10**40)],
    "number": [10**40, -(10**40), 1.7e308],
    "date-time": [
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC: overflows Python and asyncpg
        "9999-12-31T23:59:59-14:00",  # after year 9999 in UTC
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
    ],
    "date": ["0001-01-01", "9999-12-31"],
}


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = COMPONENTS[schema["$ref"].split("/")[-1]]
    return schema


def _leaves(schema: dict[str, Any], path: tuple[str, ...]) -> list[tuple[tuple[str, ...], dict]]:  # type: ignore[type-arg]
    """(field path, schema) of each integer/number/time field, through refs and anyOf."""
    schema = _resolve(schema)
    out = []
    for alt in schema.get("anyOf", []) + schema.get("allOf", []):
        out += _leaves(alt, path)
    if schema.get("type") in ("integer", "number") or schema.get("format") in TIME_FORMATS:
        out.append((path, schema))
    for name, sub in schema.get("properties", {}).items():
        out += _leaves(sub, (*path, name))
    return out


def parameters() -> list[tuple[str, str, str, tuple[str, ...], dict]]:  # type: ignore[type-arg]
    found = []
    for path, ops in SCHEMA["paths"].items():
        for method, op in ops.items():
            for p in op.get("parameters", []):
                for _, sub in _leaves(p["schema"], ()):
                    found.append((method, path, p["in"], (p["name"],), sub))
            for content in op.get("requestBody", {}).get("content", {}).values():
                for field, sub in _leaves(content["schema"], ()):
                    found.append((method, path, "body", field, sub))
    return found


def _kind(schema: dict[str, Any]) -> str:
    return str(schema.get("format") if schema.get("format") in TIME_FORMATS else schema["type"])


def _set(body: dict[str, Any], field: tuple[str, ...], value: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(body))
    target = body
    for name in field[:-1]:
        target = target.setdefault(name, {})
    target[field[-1]] = value
    return body


def test_the_walk_finds_the_known_parameters() -> None:
    names = {(m, p, loc, f) for m, p, loc, f, _ in parameters()}
    assert ("get", "/v1/admin/audit", "query", ("before",)) in names
    assert (
        "post",
        "/v1/subjects/{subject_id}/guardians",
        "body",
        ("verification", "verified_at"),
    ) in names
    assert len(names) >= 9


async def test_every_integer_and_time_parameter_refuses_out_of_range_values(
    client: httpx.AsyncClient,
) -> None:
    for method, path, where, field, sub in parameters():
        assert (method, path) in BASE, f"add a valid request for {method} {path} to BASE"
        kind = _kind(sub)
        if kind in ("integer", "number"):
            bounded = _resolve(sub)
            assert "maximum" in bounded and (
                "minimum" in bounded or "exclusiveMinimum" in bounded
            ), f"{method} {path} {field}: declare both bounds"
        base = BASE[(method, path)]
        for value in OUT_OF_RANGE[kind]:
            names = {"subject_id": "u-range", **base.get("path", {})}
            if where == "path":
                names[field[0]] = str(value)
            url = path.format(**names)
            if where == "body":
                r = await client.request(
                    method, url, json=_set(base["body"], field, value), headers=admin()
                )
            else:
                params = {**base.get("query", {})}
                if where == "query":
                    params[field[0]] = str(value)
                r = await client.request(method, url, params=params, headers=admin())
            assert r.status_code == 422, (method, path, field, value, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json"
