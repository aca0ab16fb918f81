"""The propagator's database: its own schema (``propagator``), its own migrations.

Every connection the propagator opens sets ``search_path`` to its schema, so its SQL names
its tables unqualified and cannot reach another service's tables by accident."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic.config import Config

from consent_common.db import sqlalchemy_url

SCHEMA = "propagator"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SERVER_SETTINGS = {"search_path": SCHEMA}


def _alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def migrate_sync(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(_alembic_config(url), revision)


async def migrate(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(migrate_sync, url, revision)
