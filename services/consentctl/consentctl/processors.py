"""``consentctl processors …``: each processor's health, and enabling one that was disabled
after failing too long (propagator/health.py). Enabling is audited by the propagator, in the
one timeline ``consentctl audit`` shows."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import asyncpg
import typer
from rich.console import Console
from rich.table import Table

from consent.settings import get_settings
from consent_common.db import plain_url
from consentctl.runtime import resolve_database
from propagator import health
from propagator.db import SERVER_SETTINGS as PROPAGATOR_SESSION
from propagator.unit_of_work import unit_of_work

out = Console()
err = Console(stderr=True)
processors_app = typer.Typer(
    help="Processor health: failing streaks, disabled processors.", no_args_is_help=True
)


async def _states(url: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(plain_url(url), server_settings=PROPAGATOR_SESSION)
    try:
        async with unit_of_work(conn, atomic=False) as uow:
            return await health.report(uow)
    finally:
        await conn.close()


async def _enable(url: str, name: str) -> int | None:
    conn = await asyncpg.connect(plain_url(url), server_settings=PROPAGATOR_SESSION)
    try:
        async with unit_of_work(conn) as uow:
            return await health.enable(uow, name, "cli")
    finally:
        await conn.close()


def _url() -> str:
    settings, _server = resolve_database(get_settings())
    assert settings.database_url
    return settings.database_url


@processors_app.command("list")
def list_() -> None:
    """Every processor with an outcome so far: disabled or not, failing since when."""
    table = Table("processor", "state", "failing for", "last success", "last error")
    for s in asyncio.run(_states(_url())):
        state = "[red]disabled[/red]" if s["disabled"] else "enabled"
        failing = f"{s['failing_for_s']:.0f} s" if s["failing_since"] else "-"
        table.add_row(
            s["processor"], state, failing, s["last_success_at"] or "-", s["last_error"] or ""
        )
    out.print(table)


@processors_app.command("enable")
def enable(name: Annotated[str, typer.Argument(help="The processor's name")]) -> None:
    """Enable a disabled processor: it gets everything it missed, in order."""
    redriven = asyncio.run(_enable(_url(), name))
    if redriven is None:
        err.print(f"[red]error:[/red] processor {name!r} is not disabled")
        raise typer.Exit(1)
    out.print(f"{name} enabled; redriven: {redriven}, pending deliveries resume in order")
