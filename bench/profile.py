"""``--profile``: py-spy samples a service while a phase runs (non-blocking, 100 Hz) and the
report lists where the time went. Off by default: the sampler costs CPU on 2 cores."""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.stack import Stack

TARGETS = {
    "PATCH max": "api",
    "decision max": "api",
    "batch of 1,000": "api",
    "replay": "propagator",
}
OURS = re.compile(r"[(/](consent/(?!cli/)|propagator/)")  # not the CLI entry frames


# Library frames worth naming when they show up (inclusive share of samples).
NOTABLE = {
    "SQLAlchemy (greenlet_spawn)": "greenlet_spawn (concurrency.py)",
    "asyncpg round trips": "Connection._execute (connection.py)",
    "socket writes": "_SelectorSocketTransport.write (selector_events.py)",
    "httpx client": "AsyncClient.send (_client.py)",
    "imports at run time": "_find_and_load (<frozen importlib._bootstrap>)",
    "FastAPI dependencies": "solve_dependencies (utils.py)",
    "pydantic validation": "BaseModel.model_validate (main.py)",
    "structlog": "BoundLoggerBase._proxy_to_logger (_base.py)",
    "aiokafka": "AIOKafkaClient.send (client.py)",
}


def _key(frame: str) -> str:
    """``fn (path/to/file.py:12)`` → ``fn (file.py)``."""
    m = re.match(r"(.*) \((.*?):\d+\)$", frame)
    return f"{m.group(1)} ({Path(m.group(2)).name})" if m else frame


def summarize(path: Path, top: int = 12) -> dict[str, Any]:
    inclusive: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count, frames = int(n), stack.split(";")
        total += count
        keys = {_key(f) for f in frames}
        inclusive.update(dict.fromkeys(keys, count))
        ours.update(dict.fromkeys({_key(f) for f in frames if OURS.search(f)}, count))
        leaf[_key(frames[-1])] += count

    def pct(c: Counter[str]) -> list[tuple[float, str]]:
        return [(round(v / total * 100, 1), k) for k, v in c.most_common(top)] if total else []

    notable = {
        name: round(inclusive[frame] / total * 100, 1)
        for name, frame in NOTABLE.items()
        if total and inclusive[frame] / total >= 0.02
    }
    return {"samples": total, "ours": pct(ours), "self": pct(leaf), "notable": notable}


@contextlib.contextmanager
def profiled(stack: Stack, enabled: bool, label: str) -> Iterator[dict[str, Any]]:
    """Yields a dict that holds the summary once the phase is over."""
    out: dict[str, Any] = {}
    service = TARGETS.get(label)
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not enabled or service is None or service not in stack.procs:
        yield out
        return
    raw = stack.run_dir / f"profile-{re.sub(r'[^a-z0-9]+', '-', label.lower())}.txt"
    cmd = [exe, "record", "-p", str(stack.procs[service].pid), "-d", "600"]
    cmd += ["-r", "100", "-f", "raw", "--nonblocking", "-o", str(raw)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield out
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes what it has and exits
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if raw.exists():
            out.update(summarize(raw), service=service, label=label)
