#!/usr/bin/env python3
"""The Python section of the benchmark report (issue 11), from bench/run.sh's
results file: rows "py-ROW" against the Python echo servers of bench/py_echo.py.

    py_report.py --rows "pp1 pp100 pipe bulk" --servers "py-ssock-cb ..." RESULTS

Each cell is the median over rounds; x ref is the paired ratio (the median over
rounds of server / reference in the same round). The reference is the better
of the two asyncio servers in that round for the message rows, and the C echo
(`ssock echo`) for bulk.
"""
import argparse
import statistics
from collections import defaultdict

TITLES = {
    "pp1": "pingpong, 1 connection, 64 B messages",
    "pp100": "pingpong, 100 connections, 64 B messages",
    "pipe": "pipeline, 10 connections, depth 64, 64 B messages",
    "bulk": "bulk, 1 MiB messages (1 connection, depth 4), payload MB/s",
}
ASYNCIO = ("py-asyncio-streams", "py-asyncio-proto")
# (row, server, goal, what it is measured against)
TARGETS = [
    ("pp100", "py-ssock-cb", 2.0, "asyncio"),
    ("pp100", "py-ssock-inbox", 2.0, "asyncio"),
    ("pipe", "py-ssock-cb", 2.0, "asyncio"),
    ("pipe", "py-ssock-inbox", 2.0, "asyncio"),
    ("bulk", "py-ssock-cb", 0.9, "ssock"),
    ("bulk", "py-ssock-cb-zc", 0.9, "ssock"),
    ("bulk", "py-ssock-cb-mt", 0.9, "ssock"),
]


def metric(row):
    return "mb_per_s" if row == "bulk" else "msgs_per_s"


def load(path):
    """vals[(row, server)][round] = {key: float}; na = servers not built."""
    vals, na, fails = defaultdict(dict), set(), defaultdict(int)
    with open(path) as f:
        for line in f:
            kv = dict(p.split("=", 1) for p in line.split() if "=" in p)
            if kv.get("status") == "na":
                na.add(kv.get("server"))
                continue
            row = kv.get("row", "")
            if not row.startswith("py-"):
                continue
            key = (row[3:], kv["server"])
            if kv.get("status") != "ok":
                fails[key] += 1
                continue
            vals[key][kv["round"]] = {k: float(v) for k, v in kv.items()
                                      if k.endswith(("_per_s", "_us", "_pct", "_per_msg"))}
    return vals, na, fails


def reference(vals, row, rnd, against):
    """The reference value of a round: the better asyncio server, or the C echo."""
    m = metric(row)
    names = ASYNCIO if against == "asyncio" else (against,)
    got = [vals[(row, n)][rnd][m] for n in names if rnd in vals.get((row, n), {})]
    return max(got) if got else None


def ratios(vals, row, server, against):
    m = metric(row)
    out = []
    for rnd, v in vals.get((row, server), {}).items():
        ref = reference(vals, row, rnd, against)
        if ref:
            out.append(v[m] / ref)
    return out


def fmt(m, v):
    if m == "mb_per_s":
        return f"{v:.0f}" if v >= 100 else f"{v:.1f}"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    return f"{v / 1e3:.1f}k" if v >= 1e3 else f"{v:.0f}"


def block(vals, na, fails, row, servers):
    m = metric(row)
    against = "ssock" if row == "bulk" else "asyncio"
    ref_name = "the C echo (ssock echo)" if row == "bulk" else "the better asyncio server"
    print(f"\n{TITLES[row]} (x ref: paired ratio to {ref_name})")
    unit = "MB/s" if m == "mb_per_s" else "msgs/s"
    print(f"  {'server':<19}{unit:>9} {'x ref':>7} {'spread':>6} | {'p99 us':>9} | "
          f"{'cpu':>5} {'ns/msg':>7}")
    for s in servers:
        if row != "bulk" and s in ("ssock", "py-ssock-cb-zc", "py-ssock-cb-mt"):
            continue
        cells = vals.get((row, s), {})
        if s in na:
            print(f"  {s:<19}{'n/a':>9}")
            continue
        if not cells:
            print(f"  {s:<19}{'FAIL' if fails.get((row, s)) else '-':>9}")
            continue
        xs = [c[m] for c in cells.values()]
        med = statistics.median(xs)
        spread = (max(xs) - min(xs)) / 2 / med * 100 if len(xs) > 1 and med else 0
        r = ratios(vals, row, s, against)
        ratio = f"{statistics.median(r):.2f}" if r else "-"
        p99 = statistics.median(c.get("p99_us", 0) for c in cells.values())
        cpu = statistics.median(c.get("server_cpu_pct", 0) for c in cells.values())
        ns = statistics.median(c.get("server_ns_per_msg", 0) for c in cells.values())
        note = f"  FAILED in {fails[(row, s)]} rounds" if fails.get((row, s)) else ""
        print(f"  {s:<19}{fmt(m, med):>9} {ratio:>7} {spread:>5.1f}% | {p99:>9.1f} | "
              f"{cpu:>4.0f}% {ns:>7.0f}{note}")


def targets(vals, rows):
    print("\nPython targets (issue 11; paired ratios; rounds = in how many rounds the pair "
          "alone met it):")
    print(f"  {'target':<44} {'ratio':>7}  {'goal':<7} {'status':<6}  rounds")
    met = total = 0
    for row, server, goal, against in TARGETS:
        if row not in rows:
            continue
        what = "best asyncio" if against == "asyncio" else "C echo"
        label = f"{row}: {server} vs {what}"
        r = ratios(vals, row, server, against)
        total += 1
        if not r:
            print(f"  {label:<44} {'-':>7}  >= {goal:<4} not run")
            continue
        x = statistics.median(r)
        ok = x >= goal
        met += ok
        hits = sum(v >= goal for v in r)
        print(f"  {label:<44} {x:>6.2f}x  >= {goal:<4} {'met' if ok else 'MISSED':<6}  "
              f"{hits} of {len(r)}")
    print(f"  {met} of {total} Python targets met")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", required=True)
    p.add_argument("--servers", required=True)
    p.add_argument("results")
    a = p.parse_args()
    vals, na, fails = load(a.results)
    rows, servers = a.rows.split(), a.servers.split()
    print("\nPython echo servers (bench/py_echo.py, issue 11): ssock's Python package with "
          "callbacks\n(py-ssock-cb; -zc: zero_copy=True; -mt: glibc malloc tuned to keep freed "
          "memory)\nand with the inbox (py-ssock-inbox), against asyncio streams and protocols,"
          "\nall on one pinned CPU like the C servers.")
    for row in rows:
        if row in TITLES:
            block(vals, na, fails, row, servers)
    targets(vals, rows)


if __name__ == "__main__":
    main()
