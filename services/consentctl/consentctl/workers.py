"""N worker processes behind one port (``CONSENT_API_WORKERS``): each binds the port with
SO_REUSEPORT and the kernel spreads connections over them.

Each worker is a whole API process: its own event loop, pool, view of decision inputs and
change feed (NOTIFY reaches every worker). What must hold across them does: load shedding
and the body deadline are per worker (``CONSENT_MAX_IN_FLIGHT`` is per worker), the
scheduler and the receipts projection run under PostgreSQL advisory-lock leases, so one
worker of one replica does each. The parent only supervises: the first SIGINT/SIGTERM is
passed to every worker, which stops cleanly (5 s grace for requests in flight); a worker
that dies unexpectedly is started again.

Metrics are the workers' together: they share a directory the parent makes and removes
(consentctl/worker_metrics.py), so one scrape of ``/metrics``, whichever worker takes it,
counts every worker's requests.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import structlog

from consentctl.servers import Shutdown
from consentctl.worker_metrics import shared_metrics_dir, worker_gone

log = structlog.get_logger()
STOP_GRACE_S = 15.0


def worker_count(configured: int) -> int:
    """0: one per CPU this process may run on."""
    if configured > 0:
        return configured
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def reuseport_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_workers(
    target: Callable[..., None], args: tuple[Any, ...], count: int, shutdown: Shutdown
) -> None:
    """Start ``count`` processes running ``target(*args)`` and supervise them until the
    first signal; then stop them all (SIGTERM, then SIGKILL after the grace period)."""
    with shared_metrics_dir() as metrics_dir:
        _supervise(target, args, count, shutdown, metrics_dir)


def _supervise(
    target: Callable[..., None],
    args: tuple[Any, ...],
    count: int,
    shutdown: Shutdown,
    metrics_dir: str,
) -> None:
    ctx = multiprocessing.get_context("spawn")  # no inherited event loop, pools or threads
    procs: list[Any] = []

    def start() -> Any:
        p = ctx.Process(target=target, args=args, daemon=False)
        p.start()
        return p

    procs = [start() for _ in range(count)]
    log.info("api_workers_started", workers=count)
    try:
        while not shutdown.requested:
            time.sleep(0.2)
            for i, p in enumerate(procs):
                if not p.is_alive() and not shutdown.requested:
                    log.error("api_worker_exited", exitcode=p.exitcode)
                    worker_gone(metrics_dir, p.pid)
                    time.sleep(1)
                    procs[i] = start()
    finally:
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for p in procs:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(2)
