"""The directory N API workers share their metrics through (prometheus_client's
multiprocess mode; read by consent/api/metrics_exposition.py).

The parent makes a fresh, empty directory before the first worker starts, so no file from an
earlier run is counted, and removes it when the last worker has stopped. Each worker learns it
from ``PROMETHEUS_MULTIPROC_DIR``, inherited at spawn. An operator who sets that variable
chooses where: the fresh directory is made inside it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def shared_metrics_dir() -> Iterator[str]:
    """``PROMETHEUS_MULTIPROC_DIR`` for the workers started inside, removed at exit."""
    before = os.environ.pop(MULTIPROC_ENV, None)
    # Imported without the variable: the parent's own metrics (it serves none) stay in
    # memory and never write files of their own.
    import prometheus_client.values  # noqa: F401

    path = tempfile.mkdtemp(prefix="consent-api-metrics-", dir=before or None)
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = before
        shutil.rmtree(path, ignore_errors=True)


def worker_gone(path: str, pid: int | None) -> None:
    """A worker exited: its ``live*`` gauges stop counting (its counters still do)."""
    from prometheus_client import multiprocess

    if pid is not None:
        multiprocess.mark_process_dead(pid, path)


def one_process_metrics() -> None:
    """One API process keeps its own registry, as without workers: an inherited
    ``PROMETHEUS_MULTIPROC_DIR`` would have it write files there and read back, under a pid
    a container restart reuses, the counts an earlier run left."""
    os.environ.pop(MULTIPROC_ENV, None)
