"""The published contracts: JSON Schemas, examples, AsyncAPI and OpenAPI documents."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from consent.api.app import create_app
from consent.settings import Settings
from tests.contracts import SCHEMAS, personal_keys, validator, violations

EVENT_TYPES = sorted(p.stem for p in (SCHEMAS / "events").glob("*.json"))


def test_every_api_event_type_has_a_schema_and_a_valid_example():
    required = {
        "consent.changed",
        "consent.expired",
        "consent.lapsed",
        "consent.reconsent_required",
        "subject.age_status_changed",
        "subject.guardian_linked",
        "subject.guardian_revoked",
        "subject.erasure_requested",
        "policy.published",
    }
    assert required <= set(EVENT_TYPES)
    for t in EVENT_TYPES:
        validator(t)  # the schema itself is valid 2020-12
        example = json.loads((SCHEMAS / "examples" / f"{t}.json").read_text())
        assert violations(t, example) == [], t
        assert not personal_keys(example)


def test_schemas_reject_personal_data_and_missing_fields():
    example = json.loads((SCHEMAS / "examples" / "consent.changed.json").read_text())
    assert violations("consent.changed", {**example, "birth_date": "2010-01-01"})
    missing = dict(example)
    del missing["decisions"]
    assert violations("consent.changed", missing)


def _refs(node, out):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                out.append(v)
            else:
                _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)
    return out


def _resolve_local(doc, ref):
    node = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_asyncapi_parses_and_references_only_existing_schemas():
    doc = yaml.safe_load((SCHEMAS / "asyncapi.yaml").read_text())
    assert doc["asyncapi"].startswith("3.")
    assert {c["address"] for c in doc["channels"].values()} == {
        "consent.events.v1",
        "consent.state.v1",
        "consent.deadletter.v1",
        "consent.replays.v1",  # private: replays to processors and drift repairs
        "consent.receipts.v1",  # private: the propagator's receipts
    }
    assert doc["channels"]["consentState"]["bindings"]["kafka"]["topicConfiguration"][
        "cleanup.policy"
    ] == ["compact"]
    referenced_files = set()
    for ref in _refs(doc, []):
        if ref.startswith("#/"):
            _resolve_local(doc, ref)
        else:
            path = (SCHEMAS / ref).resolve()
            assert path.exists(), ref
            referenced_files.add(path)
    for t in EVENT_TYPES:
        assert (SCHEMAS / "events" / f"{t}.json").resolve() in referenced_files, t


def test_checked_in_openapi_is_current(tmp_path: Path):
    """Regenerate with: uv run python -m consentctl.main openapi > schemas/openapi.json"""
    app = create_app(Settings(database_url="postgresql://unused/db", data_dir=tmp_path))
    current = json.loads((SCHEMAS / "openapi.json").read_text())
    assert current == json.loads(json.dumps(app.openapi())), (
        "schemas/openapi.json is stale: run `uv run consentctl openapi > schemas/openapi.json`"
    )
