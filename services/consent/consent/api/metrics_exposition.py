"""What ``/metrics`` answers: this process's registry, or every API worker's values merged.

With ``CONSENT_API_WORKERS`` > 1 the parent (``consentctl/workers.py``) gives the workers a
fresh ``PROMETHEUS_MULTIPROC_DIR`` before starting them, so each writes its values to files
there; whichever worker takes a scrape reads them all (``MultiProcessCollector``): counters
and histograms are summed over every worker that ever ran, and each gauge is combined as its
``multiprocess_mode`` says. With one worker (no directory), the process's own registry.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Info, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Which worker process answered a scrape (several share the port: CONSENT_API_WORKERS).
# An Info is not written to the shared files: each worker reports only itself.
WORKER = Info("consent_api_worker", "The API worker process that answered")
WORKER.info({"pid": str(os.getpid())})


class _AnsweringWorker:
    """This process's ``consent_api_worker_info``, next to the merged values."""

    def collect(self) -> Iterable[Metric]:
        return WORKER.collect()


def exposition() -> bytes:
    """The text exposition of every metric, merged over the workers when there are several."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path)
    registry.register(_AnsweringWorker())
    return generate_latest(registry)
