"""``uv run python -m bench.freshness``: the decision read path against its ceiling, in one run
with the same number of worker processes on both sides (issue 20's targets).

Rows: single decisions vs the trivial GET (closed loop), both at half the decisions' rate
(p99), batches of 1,000 pairs one call at a time (pairs/s vs trivial GET req/s), a decision
with a fresh Consent-Token right after a write vs a plain one (sequential, p99), and write →
every worker's view updated (each worker's ``consent_view_lag_seconds``) vs the database's own
commit → NOTIFY wake-up on a connection of the bench's.

Options: ``--workers N`` (default: CPUs), ``--duration S`` per phase, ``--api-src DIR``
(run the API from another checkout, e.g. ``git archive main``: the "before"), ``--profile``
(py-spy every API process during an extra single-decision phase, after the measured
ones), ``--out FILE`` (JSON).
PostgreSQL is embedded; no broker is needed (the API only writes its outbox here).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import psutil

from bench import dataset
from bench.freshness_probes import fresh_token_rounds, view_lag, warm_views
from bench.profile import summarize
from bench.stack import PY, REPO, wait_http
from consent.api.auth import hash_key
from consent_common.db import plain_url
from consentctl.embedded import free_port, start_postgres, stop_postgres
from consentctl.workers import worker_count

SUBJECTS = 5000


def cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def measured(pids: list[int], spec: dict[str, Any]) -> dict[str, Any]:
    """A load, and the server's CPU milliseconds per answered request (all its processes):
    a figure that holds on a shared machine where rates do not."""
    before = cpu_s(pids)
    out = load(spec)
    used = cpu_s(pids) - before
    out["server_cpu_ms_per_req"] = round(used * 1000 / max(1, out["ok"] + out.get("warm_ok", 0)), 3)
    return out


def load(spec: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [PY, "-m", "bench.load"], input=orjson.dumps(spec), capture_output=True, cwd=REPO
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr.decode()[-2000:])
    return dict(orjson.loads(out.stdout))


def source_env(api_src: Path | None) -> str:
    if api_src is None:
        return str(REPO)
    parts = [api_src / "services" / n for n in ("consent", "common", "consentctl", "propagator")]
    return os.pathsep.join([*map(str, parts), str(REPO)])


async def seed(url: str, key: str) -> list[str]:
    conn = await asyncpg.connect(plain_url(url))
    try:
        await dataset.grow_to(conn, SUBJECTS * dataset.PER_SUBJECT, 1)
        await conn.execute(
            "INSERT INTO api_keys (id, key_hash, name, scopes) VALUES ('fresh', $1, 'b', $2)",
            hash_key(key),
            ["admin"],
        )
        return [f"b-{i}" for i in range(1, SUBJECTS + 1)]
    finally:
        await conn.close()


def api_pids(proc: subprocess.Popen[bytes]) -> list[int]:
    p = psutil.Process(proc.pid)
    kids = [c.pid for c in p.children(recursive=True)]
    return kids or [proc.pid]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.freshness", description=__doc__)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--api-src", type=Path)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    workers = worker_count(args.workers)
    run_dir = Path(tempfile.mkdtemp(prefix="consent-fresh-"))
    url, pg = start_postgres(run_dir / "pg")
    key = "fresh-" + secrets.token_urlsafe(16)
    env = {
        **os.environ,
        "CONSENT_DATABASE_URL": url,
        "CONSENT_KAFKA_BOOTSTRAP": "127.0.0.1:9",  # never dialled: no projection, no relay
        "CONSENT_RECEIPTS_PROJECTION": "false",
        "CONSENT_IP_HASH_SALT": secrets.token_urlsafe(32),
        "CONSENT_DATA_DIR": str(run_dir / "data"),
        "CONSENT_API_WORKERS": str(workers),
        "PYTHONPATH": source_env(args.api_src),
    }
    res: dict[str, Any] = {
        "workers": workers,
        "api_src": str(args.api_src or REPO),
        "load_before": os.getloadavg(),
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        mig = [PY, "-m", "consentctl.main", "migrate"]
        subprocess.run(mig, env=env, cwd=REPO, check=True, capture_output=True)
        subjects = asyncio.run(seed(url, key))
        api_port, ceil_port = free_port(), free_port()
        logs = {n: open(run_dir / f"{n}.log", "ab") for n in ("api", "ceiling")}  # noqa: SIM115
        serve = [PY, "-m", "consentctl.main", "serve", "api", "--host", "127.0.0.1"]
        procs.append(
            subprocess.Popen(
                [*serve, "--port", str(api_port)],
                env=env,
                cwd=REPO,
                stdout=logs["api"],
                stderr=subprocess.STDOUT,
            )
        )
        ceiling = [PY, "-m", "bench.ceilings", "--port", str(ceil_port), "--workers", str(workers)]
        procs.append(
            subprocess.Popen(
                ceiling,
                env={**env, "PYTHONPATH": str(REPO)},
                cwd=REPO,
                stdout=logs["ceiling"],
                stderr=subprocess.STDOUT,
            )
        )
        api, ceil = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{ceil_port}"

        async def ready() -> None:
            await wait_http(f"{api}/healthz", 90, procs[0])
            await wait_http(f"{ceil}/trivial", 90, procs[1])

        asyncio.run(ready())
        time.sleep(2)  # every worker up
        common = {"api_key": key, "subjects": subjects, "timeout": 10}
        d = args.duration
        asyncio.run(warm_views(api, key, subjects, workers))
        load(
            {
                **common,
                "base": api,
                "scenario": "decision",
                "mode": "closed",
                "concurrency": 16,
                "duration": 3,
                "warmup": 0.5,
            }
        )
        apis, ceils = api_pids(procs[0]), api_pids(procs[1])
        res["decision_max"] = measured(
            apis,
            {
                **common,
                "base": api,
                "scenario": "decision",
                "mode": "closed",
                "concurrency": 32,
                "duration": d,
            },
        )
        res["trivial_max"] = measured(
            ceils,
            {
                **common,
                "base": f"{ceil}/trivial",
                "scenario": "get",
                "mode": "closed",
                "concurrency": 32,
                "duration": d,
            },
        )
        half = max(50, int(res["decision_max"]["throughput"] / 2))
        asyncio.run(warm_views(api, key, subjects, workers))  # within the views' max age
        res["decision_half"] = measured(
            apis,
            {
                **common,
                "base": api,
                "scenario": "decision",
                "mode": "open",
                "rate": half,
                "duration": d,
            },
        )
        res["trivial_half"] = measured(
            ceils,
            {
                **common,
                "base": f"{ceil}/trivial",
                "scenario": "get",
                "mode": "open",
                "rate": half,
                "duration": d,
            },
        )
        res["batch"] = measured(
            apis,
            {
                **common,
                "base": api,
                "scenario": "batch",
                "pairs": 1000,
                "mode": "closed",
                "concurrency": 1,
                "duration": d,
            },
        )
        res["batch"]["pairs_per_s"] = round(res["batch"]["throughput"] * 1000)
        if args.api_src is None:
            res["fresh_token"] = asyncio.run(fresh_token_rounds(api, key, subjects, 2000))
            res["view_lag"] = asyncio.run(view_lag(url, api, key, subjects, workers))
        spy = []
        if args.profile:
            exe = str(Path(PY).with_name("py-spy"))
            for pid in api_pids(procs[0]):
                raw = run_dir / f"profile-{pid}.txt"
                spy.append(
                    (
                        raw,
                        subprocess.Popen(
                            [
                                exe,
                                "record",
                                "-p",
                                str(pid),
                                "-r",
                                "100",
                                "-f",
                                "raw",
                                "--nonblocking",
                                "-o",
                                str(raw),
                                "-d",
                                str(int(d + 2)),
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        ),
                    )
                )
        if spy:  # a phase of its own: the sampler's cost stays out of the figures above
            load(
                {
                    **common,
                    "base": api,
                    "scenario": "decision",
                    "mode": "closed",
                    "concurrency": 32,
                    "duration": d,
                }
            )
        for _raw, p in spy:
            p.wait(60)
        if spy:
            res["profile"] = [summarize(raw) for raw, _ in spy if raw.exists()]
        res["api_rss_mib"] = round(
            sum(psutil.Process(p).memory_info().rss for p in api_pids(procs[0])) / 2**20
        )
        res["load_after"] = os.getloadavg()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        stop_postgres(pg)
    text = orjson.dumps(res, option=orjson.OPT_INDENT_2).decode()
    if args.out:
        args.out.write_text(text)
    sys.stdout.write(text + "\n")
    print(summary(res))


def summary(res: dict[str, Any]) -> str:
    dm, tm = res["decision_max"]["throughput"], res["trivial_max"]["throughput"]
    lines = [
        f"workers {res['workers']}; load before {res['load_before']}, after "
        f"{res.get('load_after')}",
        f"single decisions {dm}/s vs trivial GET {tm}/s = {dm / tm:.0%} (target >= 50%); "
        f"server CPU ms/req {res['decision_max']['server_cpu_ms_per_req']} vs "
        f"{res['trivial_max']['server_cpu_ms_per_req']}",
        f"at {res['decision_half']['offered_rate']}/s: decision p99 {res['decision_half']['p99']}"
        f" ms vs trivial p99 {res['trivial_half']['p99']} ms (target <= 3x)",
        f"batch 1,000: {res['batch']['pairs_per_s']} pairs/s = "
        f"{res['batch']['pairs_per_s'] / tm:.1f}x trivial req/s (target >= 10x)",
    ]
    if "fresh_token" in res:
        f = res["fresh_token"]
        lines.append(
            f"fresh token p99 {f['fresh_p99']} ms vs plain p99 {f['plain_p99']} ms "
            f"(target <= 2x); older answers {f['older_answers']}"
        )
        v = res["view_lag"]
        lines.append(
            f"view lag per worker (p99 bucket): {v['workers']}; raw NOTIFY p99 "
            f"{v['raw_notify_p99']} ms"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
