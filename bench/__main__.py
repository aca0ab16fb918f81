"""``uv run python -m bench``: start the stack, measure every row with its ceiling in the same
run, print one table.

Options: ``--quick`` (short phases, growth to 100k rows), ``--skip-1m`` (no growth phase),
``--out FILE`` (also write the tables as Markdown), ``--keep`` (keep the run directory with
its PostgreSQL data; logs and raw results are kept either way).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psutil

from bench import dataset, phases, report, stack
from bench.driver import Ctx, Plan, db, log
from bench.sampler import Sampler


def machine() -> dict[str, Any]:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(psutil.virtual_memory().total / 2**30),
        "load_before": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


async def existing_subjects(conn: Any) -> list[str]:
    """Decisions are asked about subjects that exist (a random 5,000)."""
    rows = await conn.fetch("SELECT subject_id FROM subjects ORDER BY random() LIMIT 5000")
    return [r["subject_id"] for r in rows]


def git_state() -> str:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=stack.REPO, capture_output=True, text=True)
        return out.stdout.strip()

    dirty = git("status", "--porcelain", "--", "services", "pyproject.toml")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted service changes" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short phases, growth to 100k rows")
    parser.add_argument("--skip-1m", action="store_true", help="skip the ledger growth phase")
    parser.add_argument("--out", type=Path, help="also write the tables (Markdown) here")
    parser.add_argument("--profile", action="store_true", help="py-spy the API and propagator")
    parser.add_argument("--keep", action="store_true", help="keep PostgreSQL data of the run")
    args = parser.parse_args()
    plan = Plan(quick=args.quick, growth=not args.skip_1m)
    started = time.monotonic()
    run_dir = Path(tempfile.mkdtemp(prefix="consent-bench-"))
    res: dict[str, Any] = {
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "uv run python -m bench " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "git": git_state(),
        "run_dir": str(run_dir),
    }
    log(f"run directory {run_dir}")
    st = stack.start(run_dir)
    log(f"stack ready in {time.monotonic() - started:.0f}s: api {st.api}, db {st.database_url}")
    sampler = Sampler(st)
    sampler.start()
    ctx = Ctx(st, plan, sampler, args.profile)
    try:
        phases.warmup(ctx)
        res["growth"] = []
        if plan.growth:
            res["growth"].append(dataset.growth(ctx, 10_000, 1))
        res["ceilings"] = phases.ceilings(ctx)
        res["writes"] = phases.writes(ctx)
        res["e2e"] = phases.end_to_end(ctx, 500, "e2e", 12)
        if res["writes"]["max"]["throughput"] < 1000:  # latency below saturation, for contrast
            rate = max(5, int(res["writes"]["max"]["throughput"] * 0.5))
            res["writes"]["sustainable"] = phases.end_to_end(ctx, rate, "ws", 10)
        res["decisions"] = phases.decisions(ctx, db(st, existing_subjects))
        res["replay"] = phases.replay(ctx, res["writes"]["since"], res["writes"]["until"])
        if plan.growth:
            first = res["growth"][0]["hi"] + 1
            res["growth"].append(dataset.growth(ctx, plan.growth_target, first))
    finally:
        sampler.halt.set()
        log("stopping the stack")
        stack.stop(st)
        if not args.keep:
            shutil.rmtree(run_dir / "pg", ignore_errors=True)
    res["windows"] = sampler.windows
    res["machine"]["load_after"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    res["elapsed_s"] = round(time.monotonic() - started, 1)
    (run_dir / "results.json").write_bytes(
        orjson.dumps(res, default=str, option=orjson.OPT_INDENT_2)
    )
    text = report.render(res)
    if args.out:
        args.out.write_text(text)
    log(f"raw results and logs in {run_dir}")
    print(text)


if __name__ == "__main__":
    main()
