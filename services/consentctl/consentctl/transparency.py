"""``consentctl log …`` (checkpoints and keys) and ``consentctl proof verify`` (offline)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

log_app = typer.Typer(
    help="The transparency log: checkpoints and signing keys.", no_args_is_help=True
)
proof_app = typer.Typer(
    help="Verify proofs, checkpoints and receipts offline.", no_args_is_help=True
)


def _settings() -> Any:
    from consentctl.main import _settings as settings

    return settings()


@log_app.command("checkpoint")
def checkpoint() -> None:
    """Sequence every committed entry and sign a checkpoint now (if the log grew); prints
    the newest checkpoint as JSON."""
    from consent.adapters.db import make_engine, make_sessionmaker
    from consent.service.context import utcnow
    from consent.service.unit_of_work import unit_of_work
    from consent.transparency.keys import signing_key
    from consent.transparency.log import checkpoint_now
    from consentctl.runtime import resolve_database

    settings, _server = resolve_database(_settings())

    async def run() -> dict[str, Any] | None:
        engine = make_engine(settings.database_url or "", pool_size=1)
        try:
            key = signing_key(settings.checkpoint_key_file, settings.data_dir)
            sessions = make_sessionmaker(engine)
            sequenced, cp = await checkpoint_now(
                sessions, key, utcnow(), settings.checkpoint_file, wait=True
            )
            typer.echo(f"sequenced {sequenced} entr{'y' if sequenced == 1 else 'ies'}", err=True)
            if cp is None:
                async with unit_of_work(sessions) as uow:
                    cp = await uow.transparency.latest()
            return cp.as_dict() if cp else None
        finally:
            await engine.dispose()

    typer.echo(json.dumps(asyncio.run(run()), indent=2))


@log_app.command("keys")
def keys() -> None:
    """Print the JWKS of the keys that sign (the current one and the retired ones): what
    /.well-known/consent-keys.json serves; keep a copy before rotating."""
    from consent.transparency.keys import published_jwks, signing_key

    settings = _settings()
    key = signing_key(settings.checkpoint_key_file, settings.data_dir)
    typer.echo(json.dumps(published_jwks(key, settings.checkpoint_retired_keys_file), indent=2))


@log_app.command("new-key")
def new_key(path: Path) -> None:
    """Write a new Ed25519 private key (PKCS#8 PEM, mode 0600) to PATH; print its key id."""
    from consent.transparency.keys import generate_key_file

    if path.exists():
        typer.echo(f"error: {path} exists; refusing to overwrite a key", err=True)
        raise typer.Exit(2)
    typer.echo(generate_key_file(path).key_id)


def _load_jwks(source: str) -> dict[str, Any]:
    if source.startswith(("http://", "https://")):
        import httpx

        jwks: dict[str, Any] = httpx.get(source, timeout=10).raise_for_status().json()
        return jwks
    return dict(json.loads(Path(source).read_text()))


@proof_app.command("verify")
def verify(
    document: Annotated[
        str,
        typer.Argument(
            help="A proof (JSON), a checkpoint (JSON) or a receipt (compact JWS); '-' reads stdin"
        ),
    ],
    keys: Annotated[
        str,
        typer.Option(
            "--keys", help="JWKS file or URL of the signing keys (/.well-known/consent-keys.json)"
        ),
    ],
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="A checkpoint you kept (e.g. from the write-once store): the "
            "proof's checkpoint must be it, or be consistent with it"
        ),
    ] = None,
) -> None:
    """Check offline, without database access: a proof's entry, leaf and path against its
    signed checkpoint; a checkpoint's signature; a receipt's signature and claims."""
    from consent.transparency import verify as v

    text = sys.stdin.read() if document == "-" else Path(document).read_text()
    jwks = _load_jwks(keys)
    try:
        if text.strip().count(".") == 2 and not text.strip().startswith("{"):
            claims = v.verify_receipt(text, jwks)
            typer.echo(json.dumps(claims, indent=2))
            typer.echo("receipt OK: signature verifies", err=True)
            return
        doc = json.loads(text)
        if "inclusion_proof" in doc:
            v.verify_proof(doc, jwks)
            cp = doc["checkpoint"]
            if checkpoint is not None:
                kept = json.loads(checkpoint.read_text())
                v.verify_checkpoint(kept, jwks)
                if kept["tree_size"] != cp["tree_size"] or kept["root_hash"] != cp["root_hash"]:
                    raise v.VerificationError(
                        "the proof's checkpoint is not the one you kept: fetch the proof "
                        "again, or a consistency proof between the two"
                    )
            e = doc["entry"]["entry"]
            typer.echo(
                f"proof OK: {e['subject_id']}#{e['sequence']} ({e['type']}) is leaf "
                f"{doc['leaf_index']} of the signed tree of size {cp['tree_size']}",
                err=True,
            )
            return
        v.verify_checkpoint(doc, jwks)
        typer.echo(f"checkpoint OK: tree size {doc['tree_size']}, key {doc['key_id']}", err=True)
    except (v.VerificationError, KeyError, ValueError) as exc:
        typer.echo(f"FAILED: {exc}", err=True)
        raise typer.Exit(1) from None
