"""The published contracts: JSON Schemas, examples, AsyncAPI and OpenAPI documents."""

from __future__ import annotations

import json
import re
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
        "consent.checkpoints.v1",
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


def test_every_answer_with_a_body_declares_its_shape():
    """A generated client knows what each 2xx answer holds: a schema with properties (or a
    reference to one), never ``{}`` or a bare ``object``; 204 carries no body."""
    doc = json.loads((SCHEMAS / "openapi.json").read_text())
    loose = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, response in op["responses"].items():
                if not status.startswith("2") or status == "204":
                    continue
                content = response.get("content")
                if not content:
                    loose.append(f"{method.upper()} {path} {status}: no content")
                for media, body in (content or {}).items():
                    schema = body.get("schema") or {}
                    if media == "application/json" and "$ref" not in schema:
                        if schema.get("type") != "array" and "properties" not in schema:
                            loose.append(f"{method.upper()} {path} {status}: {schema}")
                    elif not schema:
                        loose.append(f"{method.upper()} {path} {status} {media}: no schema")
    assert loose == []


def test_closed_vocabularies_are_enums_generated_from_the_catalog():
    """Purposes and jurisdictions are documented as exactly what validation accepts."""
    from consent.catalog import purpose_keys
    from consent.domain.jurisdictions import known_codes

    schemas = json.loads((SCHEMAS / "openapi.json").read_text())["components"]["schemas"]
    patch = schemas["PreferencesPatch"]["properties"]["purposes"]
    assert patch["propertyNames"]["enum"] == list(purpose_keys())
    assert schemas["DecisionQuery"]["properties"]["purpose"]["enum"] == list(purpose_keys())
    assert schemas["PolicyIn"]["properties"]["affected_purposes"]["items"]["enum"] == list(
        purpose_keys()
    )
    pattern = re.compile(schemas["SubjectIn"]["properties"]["jurisdiction"]["pattern"])
    assert all(pattern.match(code) for code in known_codes())
    assert {"US-CA", "DE", "GB"} <= set(known_codes())
    for unknown in ("XX", "US-ZZ", "DE-CA", "U", "USA", "us-ca"):
        assert not pattern.match(unknown), unknown
    channel = schemas["WriteContextIn"]["properties"]["channel"]
    assert {"web", "ios", "android", "api", "import"} == set(channel["anyOf"][0]["enum"])


def test_scopes_and_credentials_are_in_the_document():
    from consent.api.auth import SCOPES

    components = json.loads((SCHEMAS / "openapi.json").read_text())["components"]
    assert components["schemas"]["Scope"]["enum"] == list(SCOPES)
    assert components["securitySchemes"]["ApiKey"]["name"] == "X-API-Key"
    assert components["securitySchemes"]["UserToken"]["scheme"] == "bearer"
