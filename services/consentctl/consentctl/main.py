"""``consentctl``: the operator's command line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from consent.settings import Settings, get_settings
from consent_common.logs import configure_logging
from consentctl import db_roles, maintenance, ops, transparency
from consentctl.imports import import_file
from consentctl.parked import parked_app
from consentctl.processors import processors_app
from consentctl.verify import verify_app

app = typer.Typer(help="Consent platform operations.", no_args_is_help=True)
keys_app = typer.Typer(help="Service API keys.", no_args_is_help=True)
serve_app = typer.Typer(help="Run one service (what the containers run).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(serve_app, name="serve")
ledger_app = typer.Typer(help="The consent ledger.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
outbox_app = typer.Typer(help="The transactional outbox.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")
app.add_typer(ops.deliveries_app, name="deliveries")
app.command("replay")(ops.replay)
app.command("audit")(ops.audit)
app.command("import")(import_file)
app.add_typer(maintenance.topic_app, name="topic")
app.add_typer(maintenance.state_app, name="state")
app.add_typer(parked_app, name="parked")
app.add_typer(transparency.log_app, name="log")
app.add_typer(transparency.proof_app, name="proof")
app.add_typer(db_roles.db_app, name="db")
app.add_typer(verify_app, name="verify")
app.add_typer(processors_app, name="processors")


InsecureDevDefaults = Annotated[
    bool,
    typer.Option(
        "--insecure-dev-defaults",
        help="Start even with published development secrets (compose, laptops); never in "
        "production.",
    ),
]


def _settings() -> Settings:
    from pydantic import ValidationError

    try:
        s = get_settings()
    except ValidationError as exc:  # name the setting, never echo values (secrets)
        for err in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(p) for p in err["loc"])
            typer.echo(
                f"error: {'CONSENT_' + where.upper() + ': ' if where else ''}{err['msg']}", err=True
            )
        raise SystemExit(2) from None
    configure_logging(s.log_level, s.log_json)
    return s


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="API port")] = 8000,
    host: Annotated[str, typer.Option(help="API host")] = "127.0.0.1",
) -> None:
    """Start the whole stack: PostgreSQL, Kafka broker, API, relay, propagator, demo processors."""
    from consentctl.dev import run_dev

    run_dev(_settings(), host, port)


@app.command()
def token(
    subject_id: str, ttl: Annotated[int, typer.Option(help="Lifetime in seconds")] = 3600
) -> None:
    """Mint an HS256 user token for SUBJECT_ID with CONSENT_JWT_SECRET (dev and tests)."""
    import jwt

    from consentctl.dev_demo import dev_secrets

    settings = get_settings()
    secret = (
        settings.jwt_secret.get_secret_value()
        if settings.jwt_secret
        else dev_secrets(settings.data_dir)["jwt_secret"]
    )
    claims: dict[str, object] = {"sub": subject_id, "exp": int(time.time()) + ttl}
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    typer.echo(jwt.encode(claims, secret, algorithm="HS256"))


@app.command()
def openapi() -> None:
    """Print the OpenAPI document (checked in as schemas/openapi.json)."""
    import json

    from consent.api.app import create_app

    doc = create_app(get_settings().model_copy(update={"database_url": "unused"})).openapi()
    typer.echo(json.dumps(doc, indent=2, sort_keys=True))


@app.command("migrate")
def migrate_cmd(
    service: str = typer.Option(
        "all", "--service", help="all, consent or propagator: whose schema to migrate"
    ),
    apply_roles: bool = typer.Option(
        False,
        "--apply-roles",
        help="Then give each migrated schema to its owner role and grant its runtime role "
        "row access only (`consentctl db roles`)",
    ),
) -> None:
    """Apply database migrations: each service's own, in its own schema (idempotent)."""
    from consent.adapters.db import migrate_sync
    from consentctl.runtime import resolve_database
    from propagator.db import migrate_sync as migrate_propagator_sync

    if service not in ("all", "consent", "propagator"):
        raise typer.BadParameter("one of: all, consent, propagator", param_hint="--service")
    settings, _server = resolve_database(_settings())
    assert settings.database_url
    if service in ("all", "consent"):
        migrate_sync(settings.database_url)
    if service in ("all", "propagator"):
        migrate_propagator_sync(settings.database_url)
    typer.echo("migrations applied")
    if apply_roles:
        db_roles.apply_all(settings.database_url, service)


@keys_app.command("create")
def keys_create(
    scope: Annotated[list[str], typer.Option("--scope", help="Scope (repeatable)")],
    name: Annotated[str | None, typer.Option(help="A label for the key")] = None,
) -> None:
    """Create an API key; the key is printed once, alone on the last line."""
    from consentctl import keys

    keys.create(_settings(), scope, name)


@keys_app.command("list")
def keys_list() -> None:
    """List API keys (never the keys themselves)."""
    from consentctl import keys

    keys.list_keys(_settings())


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke an API key by id."""
    from consentctl import keys

    keys.revoke(_settings(), key_id)


@ledger_app.command("verify")
def ledger_verify(
    checkpoints_file: Annotated[
        Path | None,
        typer.Option(
            help="Published checkpoints (JSON Lines, as CONSENT_CHECKPOINT_FILE "
            "writes them), e.g. a copy from write-once storage"
        ),
    ] = None,
    checkpoints_topic: Annotated[
        bool, typer.Option(help="Read the published checkpoints from consent.checkpoints.v1")
    ] = False,
    keys: Annotated[
        Path | None,
        typer.Option(
            help="JWKS of the signing keys (default: the configured current and retired keys)"
        ),
    ] = None,
) -> None:
    """Recompute every hash chain, every projected field decisions read, the guardian
    links and the log; with published checkpoints, check the tree against them."""
    import asyncio
    import json

    from consent.transparency.keys import published_jwks, signing_key
    from consentctl.ledger import run_verify
    from consentctl.log_audit import read_file, read_topic
    from consentctl.runtime import resolve_database

    settings, _server = resolve_database(_settings())
    assert settings.database_url
    published = None
    if checkpoints_file is not None:
        published = read_file(checkpoints_file)
    if checkpoints_topic:
        from consentctl.runtime import resolve_kafka

        settings = resolve_kafka(settings)
        published = (published or []) + asyncio.run(read_topic(settings))
    jwks = (
        json.loads(keys.read_text())
        if keys
        else published_jwks(
            signing_key(settings.checkpoint_key_file, settings.data_dir),
            settings.checkpoint_retired_keys_file,
        )
    )
    raise typer.Exit(run_verify(settings.database_url or "", published, jwks))


@outbox_app.command("parked")
def outbox_parked(limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100) -> None:
    """Rows the relay could not publish; each holds back only its own subject."""
    from consentctl.parked import outbox_parked as run

    run(limit)


@outbox_app.command("retry")
def outbox_retry(row_id: str) -> None:
    """Give a parked outbox row back to the relay (after fixing the cause)."""
    from consentctl.parked import outbox_retry as run

    run(row_id)


@outbox_app.command("skip")
def outbox_skip(row_id: str) -> None:
    """Never publish a parked row: its subject's later rows (full decisions) go on."""
    from consentctl.parked import outbox_skip as run

    run(row_id)


@outbox_app.command("status")
def outbox_status() -> None:
    """Backlog, oldest unpublished age, publish rate and the active relay."""
    from consentctl.outbox import print_status
    from consentctl.runtime import resolve_database

    settings, _server = resolve_database(_settings())
    assert settings.database_url
    print_status(settings.database_url)


@serve_app.command("api")
def serve_api(
    port: Annotated[int, typer.Option()] = 8000,
    host: Annotated[str, typer.Option()] = "0.0.0.0",
    insecure_dev_defaults: InsecureDevDefaults = False,
) -> None:
    """The consent API. Refuses published development secrets (and the dev admin key)."""
    from consentctl import serve

    serve.api(_settings(), host, port, insecure_dev_defaults)


@serve_app.command("relay")
def serve_relay(
    health_port: Annotated[
        int | None, typer.Option(help="Serve /healthz, /readyz, /metrics")
    ] = None,
    insecure_dev_defaults: InsecureDevDefaults = False,
) -> None:
    """The outbox relay (one active, others stand by)."""
    from consentctl import serve

    serve.relay(_settings(), health_port, insecure_dev_defaults)


@serve_app.command("propagator")
def serve_propagator(
    processors_file: Annotated[Path | None, typer.Option(envvar="CONSENT_PROCESSORS_FILE")] = None,
    health_port: Annotated[
        int | None, typer.Option(help="Serve /healthz, /readyz, /metrics")
    ] = None,
    insecure_dev_defaults: InsecureDevDefaults = False,
) -> None:
    """The propagator (Kafka intake and delivery workers)."""
    from consentctl import serve

    serve.propagator(_settings(), processors_file, health_port, insecure_dev_defaults)


@serve_app.command("demo-processor")
def serve_demo_processor(
    name: Annotated[str, typer.Option(help="email, payment or logistics")],
    port: Annotated[int, typer.Option()] = 9101,
    host: Annotated[str, typer.Option()] = "0.0.0.0",
    insecure_dev_defaults: InsecureDevDefaults = False,
) -> None:
    """A demo processor that verifies signatures and logs what it receives.
    Its secret is read from ``<NAME>_PROCESSOR_SECRET`` (``whsec_…``)."""
    from consentctl import serve

    serve.demo_processor(_settings(), name, host, port, insecure_dev_defaults)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
