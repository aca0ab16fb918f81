"""consent_client's models against schemas/events/*.json and schemas/state.json, and its
parser on every example and on broken records (no broker needed)."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Union

import pytest

from consent_client import EVENT_TYPES, MalformedEvent, Parser, StateRecord
from consent_client.events import ConsentChanged, PolicyPublished, SubjectErasureRequested

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas" / "events"
EXAMPLES = ROOT / "schemas" / "examples"


def json_types(tp: Any) -> set[str]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return set().union(*(json_types(a) for a in typing.get_args(tp)))
    if tp is type(None):
        return {"null"}
    if tp in (str, datetime):
        return {"string"}
    if tp is int:
        return {"integer"}
    if tp is bool:
        return {"boolean"}
    if origin is tuple:
        return {"array"}
    if origin in (Mapping, dict) or (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
        return {"object"}
    raise AssertionError(f"unmapped type {tp!r}")


def schema_types(prop: dict[str, Any]) -> set[str]:
    if "type" in prop:
        t = prop["type"]
        return set(t) if isinstance(t, list) else {t}
    if "enum" in prop:
        names = {type(v): n for v, n in ((None, "null"), ("", "string"), (True, "boolean"))}
        return {names[type(v)] for v in prop["enum"]}
    raise AssertionError(f"no type in {prop}")


def disagreements(cls: type, schema: dict[str, Any], where: str) -> list[str]:
    hints = typing.get_type_hints(cls)
    fields = {f.metadata.get("json", f.name): f for f in dataclasses.fields(cls)}
    props, required = schema["properties"], set(schema.get("required", []))
    out = [f"{where}: schema field {n!r} has no model attribute" for n in props if n not in fields]
    out += [f"{where}: model field {n!r} is not in the schema" for n in fields if n not in props]
    for name, f in fields.items():
        if name not in props:
            continue
        prop, tp = props[name], hints[f.name]
        model_required = (
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
        if model_required != (name in required):
            out.append(
                f"{where}.{name}: required in schema={name in required}, model={model_required}"
            )
        model_types = json_types(tp)
        if not model_required and f.default is None:
            model_types -= {"null"} - schema_types(prop)  # None stands for "absent"
        if model_types != schema_types(prop):
            out.append(f"{where}.{name}: schema {schema_types(prop)} != model {model_types}")
        base = tp
        if typing.get_origin(tp) in (Union, types.UnionType):
            base = next(a for a in typing.get_args(tp) if a is not type(None))
        if base is datetime and prop.get("format") != "date-time":
            out.append(f"{where}.{name}: a datetime in the model, not date-time in the schema")
        if prop.get("format") == "date-time" and base is not datetime:
            out.append(f"{where}.{name}: date-time in the schema, {base} in the model")
        if typing.get_origin(base) is tuple:
            item = typing.get_args(base)[0]
            if dataclasses.is_dataclass(item):
                out += disagreements(item, prop["items"], f"{where}.{name}[]")
            elif json_types(item) != schema_types(prop["items"]):
                out.append(f"{where}.{name}[]: item types differ")
        if typing.get_origin(base) is Mapping:
            value = typing.get_args(base)[1]
            if json_types(value) != schema_types(prop["additionalProperties"]):
                out.append(f"{where}.{name}{{}}: value types differ")
        if isinstance(base, type) and dataclasses.is_dataclass(base):
            out += disagreements(base, prop, f"{where}.{name}")
    return out


def test_every_schema_has_a_model_and_they_agree() -> None:
    names = {p.stem for p in SCHEMAS.glob("*.json")}
    assert names == set(EVENT_TYPES), "schemas and consent_client.EVENT_TYPES differ"
    problems = []
    for name in sorted(names):
        problems += disagreements(
            EVENT_TYPES[name], json.loads((SCHEMAS / f"{name}.json").read_text()), name
        )
    state = json.loads((ROOT / "schemas" / "state.json").read_text())
    problems += disagreements(StateRecord, state, "state")
    assert not problems, "\n".join(problems)


def test_the_check_catches_a_drift() -> None:
    schema = json.loads((SCHEMAS / "consent.changed.json").read_text())
    schema["properties"]["new_field"] = {"type": "string"}
    schema["required"].append("new_field")
    schema["properties"]["sequence"] = {"type": "string"}
    found = disagreements(ConsentChanged, schema, "x")
    assert any("new_field" in p for p in found) and any("sequence" in p for p in found)


def headers(ce_type: str, data: dict[str, Any], **over: str) -> list[tuple[str, bytes]]:
    h = {
        "ce_specversion": "1.0",
        "ce_id": "00000000-0000-0000-0000-000000000001",
        "ce_source": "/consent",
        "ce_type": ce_type,
        "ce_time": "2026-11-22T20:51:31Z",
        "content-type": "application/json",
    }
    if "subject_id" in data:
        h["ce_subject"] = data["subject_id"]
        h["ce_subjectseq"] = f"{data['sequence']:020d}"
    h.update(over)
    return [(k, v.encode()) for k, v in h.items()]


@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*.json")))
def test_every_example_parses(name: str) -> None:
    data = json.loads((EXAMPLES / f"{name}.json").read_text())
    parser = Parser()
    parsed = parser.record(headers(name, data), json.dumps(data).encode())
    assert type(parsed.event) is EVENT_TYPES[name]
    assert parsed.unknown_fields == ()
    if "subject_id" in data and name != "delivery.dead":
        assert parsed.subject_id == data["subject_id"] and parsed.sequence == data["sequence"]


def example(name: str) -> dict[str, Any]:
    return dict(json.loads((EXAMPLES / f"{name}.json").read_text()))


def test_typed_fields() -> None:
    data = example("consent.changed")
    event = Parser().record(headers("consent.changed", data), json.dumps(data)).event
    assert isinstance(event, ConsentChanged)
    assert event.decisions["sale"] is False and event.changed_decisions == ("sale",)
    assert event.changes[0].from_ == "unset" and event.actor.type == "operator"
    assert event.occurred_at.tzinfo is not None


def test_unknown_types_and_fields_are_skipped_and_counted() -> None:
    parser = Parser()
    data = example("consent.changed") | {"mood": "sunny"}
    data["actor"] = data["actor"] | {"badge": 7}
    parsed = parser.record(headers("consent.changed", data), json.dumps(data))
    assert isinstance(parsed.event, ConsentChanged)
    assert set(parsed.unknown_fields) == {"mood", "actor.badge"}
    new = parser.record(headers("subject.teleported", {"subject_id": "u", "sequence": 3}), b"{}")
    assert new.event is None and new.sequence == 3
    assert parser.stats.unknown_types == {"subject.teleported": 1}
    assert parser.stats.unknown_fields["consent.changed:mood"] == 1
    assert parser.stats.parsed == 1 and parser.stats.malformed == 0


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda h, d: (h, b"{not json"), "not JSON"),
        (lambda h, d: (h, None), "no value"),
        (lambda h, d: ([x for x in h if x[0] != "ce_id"], d), "ce_id missing"),
        (lambda h, d: ([(k, b"0.3" if k == "ce_specversion" else v) for k, v in h], d), "only 1.0"),
        (lambda h, d: ([(k, b"x7" if k == "ce_subjectseq" else v) for k, v in h], d), "digits"),
        (
            lambda h, d: (h, json.dumps({**json.loads(d), "sequence": "2"}).encode()),
            "sequence: expected int",
        ),
        (
            lambda h, d: (
                h,
                json.dumps({k: v for k, v in json.loads(d).items() if k != "decisions"}).encode(),
            ),
            "decisions: required field missing",
        ),
        (
            lambda h, d: (h, json.dumps({**json.loads(d), "sequence": 9}).encode()),
            "differs from data.sequence",
        ),
        (
            lambda h, d: (h, json.dumps({**json.loads(d), "occurred_at": "yesterday"}).encode()),
            "RFC 3339",
        ),
        (lambda h, d: (h, json.dumps([1]).encode()), "JSON object"),
    ],
)
def test_malformed_records_are_refused_clearly(mutate: Any, message: str) -> None:
    data = example("consent.changed")
    h, v = mutate(headers("consent.changed", data), json.dumps(data).encode())
    parser = Parser()
    with pytest.raises(MalformedEvent, match=message):
        parser.record(h, v)
    assert parser.stats.malformed == 1


def test_state_records_and_tombstones() -> None:
    parser = Parser()
    value = {
        "subject_id": "u-1",
        "sequence": 4,
        "decisions": {"sale": True},
        "jurisdiction": "US-CA",
        "updated_at": "2026-11-22T20:51:31Z",
    }
    rec = parser.state(b"u-1", json.dumps(value).encode())
    assert rec is not None and rec.sequence == 4 and rec.decisions == {"sale": True}
    assert parser.state(b"u-1", None) is None
    with pytest.raises(MalformedEvent, match="key"):
        parser.state(b"u-2", json.dumps(value).encode())


def test_other_event_shapes() -> None:
    erasure = example("subject.erasure_requested")
    parsed = Parser().record(headers("subject.erasure_requested", erasure), json.dumps(erasure))
    assert isinstance(parsed.event, SubjectErasureRequested)
    policy = example("policy.published")
    parsed = Parser().record(
        headers("policy.published", policy, ce_subject=f"policy:{policy['version']}"),
        json.dumps(policy),
    )
    assert isinstance(parsed.event, PolicyPublished) and parsed.sequence is None
