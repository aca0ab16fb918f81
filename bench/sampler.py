"""Resource windows: peak memory and CPU seconds per service while a phase runs."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import psutil

from bench.stack import Stack


class Sampler(threading.Thread):
    """Resources per service while a window is open: peak memory (RSS for one process; for
    PostgreSQL the sum of PSS over its processes, shared buffers counted once) and CPU
    seconds used, plus how busy the whole machine was (other users' load included)."""

    def __init__(self, stack: Stack, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.stack, self.interval = stack, interval
        self.windows: dict[str, dict[str, Any]] = {}
        self.open: dict[str, dict[str, int]] = {}
        self.halt = threading.Event()
        self.lock = threading.Lock()

    def rss(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name, pids in self.stack.pids().items():
            total = 0
            for pid in pids:
                with contextlib.suppress(psutil.Error):
                    p = psutil.Process(pid)
                    total += p.memory_full_info().pss if len(pids) > 1 else p.memory_info().rss
            out[name] = total
        return out

    def cpu(self) -> dict[str, float]:
        """CPU seconds per service; PostgreSQL's exited backends are in the postmaster's
        children times."""
        out: dict[str, float] = {}
        for name, pids in self.stack.pids().items():
            total = 0.0
            for i, pid in enumerate(pids):
                with contextlib.suppress(psutil.Error):
                    t = psutil.Process(pid).cpu_times()
                    total += t.user + t.system
                    if i == 0 and len(pids) > 1:
                        total += t.children_user + t.children_system
            out[name] = total
        return out

    def quiesce(self, limit_s: float = 20.0, cores: float = 0.25) -> float:
        """Wait until the services are nearly idle (an overloaded phase leaves work behind:
        requests already accepted, autovacuum); return the seconds waited."""
        start = time.monotonic()
        before = self.cpu()
        while time.monotonic() - start < limit_s:
            time.sleep(0.5)
            after = self.cpu()
            used = sum(after.get(k, 0.0) - v for k, v in before.items()) / 0.5
            if used < cores:
                break
            before = after
        return round(time.monotonic() - start, 1)

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            with self.lock:
                targets = list(self.open.values())
            if not targets:
                continue
            values = self.rss()
            with self.lock:
                for peaks in targets:
                    for k, v in values.items():
                        peaks[k] = max(peaks.get(k, 0), v)

    @contextlib.contextmanager
    def window(self, label: str) -> Any:
        info: dict[str, Any] = {"rss": {}}
        cpu0, sys0, t0 = self.cpu(), psutil.cpu_times(), time.monotonic()
        with self.lock:
            self.open[label] = info["rss"]
        try:
            yield info
        finally:
            with self.lock:
                self.open.pop(label, None)
            cpu1, sys1, dt = self.cpu(), psutil.cpu_times(), time.monotonic() - t0
            idle = (sys1.idle - sys0.idle) + (sys1.iowait - sys0.iowait)
            total = sum(sys1) - sum(sys0)
            info["cpu_s"] = {k: round(v - cpu0.get(k, 0.0), 3) for k, v in cpu1.items()}
            info["seconds"] = round(dt, 2)
            info["machine_busy"] = round(1 - idle / total, 3) if total > 0 else None
            self.windows[label] = info
