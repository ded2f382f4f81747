"""Repeatability: ``--runs`` default ``flopsbench ops`` runs (or any other flopsbench command line)
back to back, each with its wall-clock seconds; then, for every row of at least ``--floor-ms``
in the first run, how far the other runs' medians lie from it, and how many rows agree within
``--within`` (issue 9's goal: every row >= 1 ms within 2 %). Before each run and after the last,
two machine probes pinned to ``--core``: a fixed pure-Python loop (~1.5 s) and a 64 MiB numpy copy
(60 calls), each one's median call against its fastest; how far a probe's medians move between
runs is the machine's own drift, which no harness can take out. The reports stay in ``--out``::

    python benchmarks/repeatability.py --out results/repeatability
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def run(command: list[str], report: Path) -> float:
    """Wall-clock seconds of ``command`` writing its JSON report to ``report``; it must succeed."""
    start = time.perf_counter()
    subprocess.run([*command, "--format", "json", "-o", str(report)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


# Two probes, each in a fresh process pinned to the timed core: a pure-Python loop (the CPU's own
# speed) and a copy of 64 MiB with numpy (the memory's, which the conv rows lean on: a neighbour on
# the host that loads memory slows them while the loop runs as fast as ever).
PROBES = {
    "python loop": """
def call():
    start = time.perf_counter()
    total = 0
    for i in range(200_000):
        total += i
    return time.perf_counter() - start
calls = sorted(call() for _ in range(300))
""",
    "64 MiB copy": """
import numpy as np
a, b = np.ones(8 << 20), np.empty(8 << 20)
def call():
    start = time.perf_counter()
    np.copyto(b, a)
    return time.perf_counter() - start
calls = sorted(call() for _ in range(60))
""",
}
PINNED = "import os, time\nos.sched_setaffinity(0, {%d})\n"


def probe(name: str, core: int) -> tuple[float, float]:
    """Probe ``name``'s fastest and median call [s] on ``core``."""
    code = PINNED % core + PROBES[name] + "print(calls[0], calls[len(calls) // 2])\n"
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    fastest, median = map(float, done.stdout.split())
    return fastest, median


def show_probes(label: str, core: int) -> dict[str, float]:
    """Each probe's median [s], printed with how far it lies above the probe's fastest call."""
    medians = {}
    for name in PROBES:
        fastest, medians[name] = probe(name, core)
        print(f"probe {label}, {name}: median {medians[name] * 1e3:.3f} ms, "
              f"{medians[name] / fastest - 1:+.1%} above its fastest", flush=True)
    return medians


def medians(report: Path) -> dict[str, tuple[float, int | None]]:
    """Each row's median [s] and the round it stopped after (None: it took every round)."""
    rows = json.loads(report.read_text())["rows"]
    return {f"{row['workload']['name']} {'x'.join(map(str, row['workload']['shape']))}":
            (row["stats"]["median_s"], row.get("stopped_after_round")) for row in rows if row.get("stats")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs' reports")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--command", default="ops", help="the flopsbench command line after 'flopsbench'")
    parser.add_argument("--floor-ms", type=float, default=1.0)
    parser.add_argument("--within", type=float, default=0.02)
    parser.add_argument("--core", type=int, default=0, help="the core the probe runs on (flopsbench's timed core)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "flopsbench", *args.command.split()]
    reports = [args.out / f"run{index + 1}.json" for index in range(args.runs)]
    probes = []
    for report in reports:
        probes.append(show_probes(f"before {report.stem}", args.core))
        print(f"{report.name}: {run(command, report):.2f} s wall", flush=True)
    probes.append(show_probes("after the last run", args.core))
    for name in PROBES:
        spread = [taken[name] for taken in probes]
        print(f"the {name} probe's medians span {max(spread) / min(spread) - 1:.1%}")
    first, *others = [medians(report) for report in reports]
    rows = [name for name, (median, _) in first.items() if median * 1e3 >= args.floor_ms]
    worst = {}
    print(f"\n{'row':<22} {'run1 [ms]':>10} " + " ".join(f"{'run' + str(i + 2) + ' [ms]':>10}" for i in range(len(others)))
          + f" {'worst':>7}  stopped after")
    for name in rows:
        median, stopped = first[name]
        theirs = [other.get(name, (float("nan"), None)) for other in others]
        worst[name] = max(abs(m / median - 1) for m, _ in theirs)
        print(f"{name:<22} {median * 1e3:>10.3f} " + " ".join(f"{m * 1e3:>10.3f}" for m, _ in theirs)
              + f" {worst[name]:>6.1%}  " + ", ".join(str(s or "all") for s in [stopped, *(s for _, s in theirs)]))
    within = sum(value <= args.within for value in worst.values())
    print(f"\n{within} of {len(rows)} rows >= {args.floor_ms:g} ms within {args.within:.0%}; "
          f"worst {max(worst, key=worst.get)} {max(worst.values()):.1%}")


if __name__ == "__main__":
    main()
