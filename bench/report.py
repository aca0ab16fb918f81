"""The printed tables: measured, the ceiling measured in the same run, ratio, target, met?"""

from __future__ import annotations

from typing import Any


def ms(v: float | None) -> str:
    if v is None:
        return "> timeout"
    return f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def lat(r: dict[str, Any]) -> str:
    return f"p50 {ms(r.get('p50'))} / p99 {ms(r.get('p99'))} ms"


def per_s(v: float) -> str:
    return f"{v:,.0f}/s"


def failures(r: dict[str, Any]) -> str:
    bad = {k: v for k, v in (r.get("status") or {}).items() if not k.startswith("2")}
    text = ", " + ", ".join(f"{v} {k}" for k, v in bad.items()) if bad else ""
    if bad and r.get("answered") and r.get("ok"):  # e.g. shed with 429: how the rest fared
        text += f"; the {r['ok']:,} answered 2xx: {lat(r['answered'])}"
    return text


def yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def under(r: dict[str, Any], key: str, limit: float) -> bool:
    v = r.get(key)
    return v is not None and v < limit


def e2e_cell(e: dict[str, Any]) -> str:
    """Commit lies between the transaction start and the PATCH response: a range."""
    lo, hi = e["e2e_lower"], e["e2e_upper"]
    return (
        f"p50 {ms(lo.get('p50'))} to {ms(hi.get('p50'))} / p99 {ms(lo.get('p99'))} to "
        f"{ms(hi.get('p99'))} ms at {per_s(e['throughput'])} achieved "
        f"({e['delivered']:,}/{e['committed']:,} commits delivered{failures(e)})"
    )


def main_table(res: dict[str, Any]) -> list[str]:
    c, w, d, e, rp = (res[k] for k in ("ceilings", "writes", "decisions", "e2e", "replay"))
    rows: list[tuple[str, ...]] = []
    cw, pgb = c["write_max"]["throughput"], c["pgbench"].get("tps", 0.0)
    wmax, f = w["max"]["throughput"], w["fixed"]
    dm, tm, df = d["max"]["throughput"], c["trivial_max"]["throughput"], d["fixed"]
    b, sm = d["batch"], c["sink_max"]["throughput"]
    rows.append(
        (
            "preference writes: throughput",
            f"{per_s(wmax)} PATCH (closed loop, 32 conns){failures(w['max'])}",
            f"minimal FastAPI+asyncpg endpoint {per_s(cw)}; pgbench (C, 8 clients) {pgb:,.0f} tps",
            f"{wmax / cw:.0%} of endpoint; {wmax / pgb:.0%} of pgbench" if cw and pgb else "—",
            "≥ 60% of the minimal endpoint",
            yes(bool(cw) and wmax >= 0.6 * cw),
        )
    )
    rows.append(
        (
            "preference writes: latency at 1,000/s",
            f"{lat(f)} (achieved {per_s(f['throughput'])}{failures(f)})",
            f"minimal endpoint at 1,000/s: {lat(c['write_1000'])} "
            f"(achieved {per_s(c['write_1000']['throughput'])})",
            "—",
            "p99 < 50 ms at 1,000/s",
            yes(under(f, "p99", 50) and f["throughput"] >= 950),
        )
    )
    if "sustainable" in w:
        s = w["sustainable"]
        rows.append(
            (
                f"preference writes: latency at {s['offered_rate']:,.0f}/s (half the max)",
                f"{lat(s)} (achieved {per_s(s['throughput'])}{failures(s)}); "
                f"end to end {e2e_cell(s)}",
                "—",
                "—",
                "(information)",
                "—",
            )
        )
    rows.append(
        (
            "decision reads: throughput",
            f"{per_s(dm)} single decisions (closed loop, 32 conns){failures(d['max'])}",
            f"trivial FastAPI GET {per_s(tm)}",
            f"{dm / tm:.0%}" if tm else "—",
            "≥ 5,000/s",
            yes(dm >= 5000),
        )
    )
    rows.append(
        (
            f"decision reads: latency at {df['offered_rate']:,.0f}/s (half the max)",
            f"{lat(df)} (achieved {per_s(df['throughput'])}{failures(df)})",
            f"trivial GET at the same rate: {lat(d['trivial_fixed'])}",
            "—",
            "p99 < 10 ms (at 5,000/s)",
            yes(under(df, "p99", 10) and df["offered_rate"] >= 5000),
        )
    )
    rows.append(
        (
            "batch decisions: 1,000 pairs per call",
            f"{lat(b)} per call, one at a time "
            f"({b['throughput'] * 1000:,.0f} pairs/s{failures(b)})",
            "—",
            "—",
            "p99 < 50 ms",
            yes(under(b, "p99", 50)),
        )
    )
    rows.append(
        (
            f"end to end at {e['offered_rate']:,.0f} writes/s offered (commit → processor 2xx)",
            e2e_cell(e),
            f"broker produce→consume at {c['kafka']['offered_rate']:,.0f}/s: {lat(c['kafka'])}",
            "—",
            "p99 < 500 ms at 500 writes/s",
            yes(under(e["e2e_upper"], "p99", 500) and e["throughput"] >= 475),
        )
    )
    rows.append(
        (
            "replay: deliveries to one processor",
            f"{per_s(rp['rate'])} ({rp['delivered']:,} in {rp['seconds']} s)",
            f"processor alone (8 conns) {per_s(sm)}",
            f"{rp['rate'] / sm:.0%}" if sm else "—",
            "≥ 2,000/s",
            yes(rp["rate"] >= 2000),
        )
    )
    head = ("row", "measured", "ceiling measured in the same run", "ratio", "target", "met?")
    return _md(head, rows)


def memory_table(res: dict[str, Any]) -> list[str]:
    wins = res["windows"]
    labels = ["writes", *(g["label"] for g in res.get("growth", []))]
    labels = [lab for lab in labels if lab in wins]
    names = sorted({n for lab in labels for n in wins[lab]["rss"]})
    head = ("service", *(f"peak during {lab}" for lab in labels))
    rows = [
        (n, *(f"{wins[lab]['rss'].get(n, 0) / 2**20:,.0f} MiB" for lab in labels)) for n in names
    ]
    return _md(head, rows)


SERVICES = ("api", "ceiling", "relay", "propagator", "postgres", "tansu", "sink")


def cpu_table(res: dict[str, Any]) -> list[str]:
    """CPU milliseconds per operation for each process: unlike rates, these hold on a noisy
    machine. "others" is the rest of the machine's load (other users), in cores."""
    c, w, d = res["ceilings"], res["writes"], res["decisions"]
    pgb = c["pgbench"]
    picks: list[tuple[str, dict[str, Any], float]] = [
        ("PATCH (closed loop)", w["max"]["resources"], w["max"]["ok"]),
        ("minimal insert endpoint", c["write_max"]["resources"], c["write_max"]["ok"]),
        ("pgbench transaction", pgb["resources"], pgb.get("tps", 0) * pgb.get("seconds", 0)),
        ("single decision", d["max"]["resources"], d["max"]["ok"]),
        ("trivial GET", c["trivial_max"]["resources"], c["trivial_max"]["ok"]),
        ("batch of 1,000 pairs", d["batch"]["resources"], d["batch"]["ok"]),
        ("replay delivery", res["replay"]["resources"], res["replay"]["delivered"]),
    ]
    client = {
        "PATCH (closed loop)": w["max"],
        "minimal insert endpoint": c["write_max"],
        "single decision": d["max"],
        "trivial GET": c["trivial_max"],
        "batch of 1,000 pairs": d["batch"],
    }
    ncpu = res["machine"]["cpus"] or 1
    rows = []
    for name, r, n in picks:
        n += client[name].get("warm_ok", 0) if name in client else 0
        cpu = r.get("cpu_s", {})
        cells = [f"{cpu.get(s, 0) / n * 1000:.2f}" if n else "—" for s in SERVICES]
        loader = client[name]["client_cpu_s"] if name in client else 0.0
        secs = r.get("seconds") or 1
        busy = r.get("machine_busy") or 0
        others = (busy * ncpu * secs - sum(cpu.values()) - loader) / secs
        load_cell = f"{loader / n * 1000:.2f}" if n and name in client else "—"
        rows.append((name, f"{n:,.0f}", *cells, load_cell, f"{busy:.0%}", f"{max(others, 0):.2f}"))
    head = ("operation", "count", *SERVICES, "load client", "machine busy", "others (cores)")
    return _md(head, rows)


def growth_table(res: dict[str, Any]) -> list[str]:
    rows = []
    for g in res.get("growth", []):
        rows.append(
            (
                f"{g['ledger_rows']:,}",
                f"{g['db_bytes'] / 2**20:,.0f} MiB",
                f"{lat(g['writes'])}{failures(g['writes'])}",
                f"{lat(g['decisions'])}{failures(g['decisions'])}",
            )
        )
    head = ("ledger rows", "database size", "writes at 25/s", "single decisions at 50/s")
    return _md(head, rows)


def profiles(res: dict[str, Any]) -> list[str]:
    found = [
        res["writes"]["max"].get("profile"),
        res["decisions"]["max"].get("profile"),
        res["decisions"]["batch"].get("profile"),
        res["replay"].get("profile"),
    ]
    lines: list[str] = []
    for p in filter(None, found):
        lines += ["", f"py-spy, {p['service']} during {p['label']} ({p['samples']:,} samples):", ""]
        lines += ["- our code, inclusive: " + "; ".join(f"{k} {v}%" for v, k in p["ours"][:8])]
        lines += [
            "- libraries, inclusive: " + "; ".join(f"{k} {v}%" for k, v in p["notable"].items())
        ]
        lines += ["- self time: " + "; ".join(f"{k} {v}%" for v, k in p["self"][:6])]
    return lines


def _md(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def render(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        f"Run {res['started']} · {m['cpus']} cores {m['cpu_model']}, {m['mem_gib']} GiB · "
        f"load average before {m['load_before']}, after {m['load_after']} · "
        f"bench took {res['elapsed_s'] / 60:.1f} min · {res['command']} · code at {res['git']}",
        "",
        *main_table(res),
        "",
        "CPU milliseconds per operation, by process (same run):",
        "",
        *cpu_table(res),
        "",
        "Peak memory (RSS; PostgreSQL: PSS summed over its processes):",
        "",
        *memory_table(res),
    ]
    if res.get("growth"):
        lines += ["", "Growth with the ledger (fixed-rate probes, bulk-loaded subjects):", ""]
        lines += growth_table(res)
    lines += profiles(res)
    return "\n".join(lines) + "\n"
