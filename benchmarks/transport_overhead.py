"""What reaching a device costs: the same cases timed on a local device, on a device over ssh and,
with --sweep, through ``flopsbench sweep`` (Ray), alternating ``--pairs`` times. Prints each run's
wall-clock seconds and, per path, ``flopsbench compare``'s NEW / BASE ratio of medians against the
local run beside it (its interval: the run's own noise).

The inventory needs two devices of one protocol (kind, runtime, cores, threads), one local and one
over ssh, e.g. the machine itself through its own sshd::

    python benchmarks/transport_overhead.py --devices devices.toml --local here --ssh here-ssh \\
        --op pconv,dwconv --shape 96x56x56 --pairs 2 --sweep
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(command: list[str]) -> float:
    """Wall-clock seconds of ``command``, which must succeed."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def compare(base: Path, new: Path) -> list[tuple[str, float, float, float, str]]:
    done = subprocess.run([sys.executable, "-m", "flopsbench", "compare", str(base), str(new), "--format", "json"],
                          capture_output=True, text=True)
    rows = json.loads(done.stdout)["rows"]
    return [(f"{row['workload']['name']} {'x'.join(map(str, row['workload']['shape']))}", row["ratio"],
             row["ratio_ci_low"], row["ratio_ci_high"], row["verdict"]) for row in rows if row.get("ratio") is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", required=True)
    parser.add_argument("--local", required=True, help="the local device's name")
    parser.add_argument("--ssh", required=True, help="the ssh device's name (same kind, runtime, cores)")
    parser.add_argument("--op", default="pconv,dwconv")
    parser.add_argument("--shape", default="96x56x56")
    parser.add_argument("--options", default="--min-time 1 --rounds 4 --stop-ci 0",
                        help="timing options for every run")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--sweep", action="store_true", help="also time the same cases through flopsbench sweep")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="transport-overhead-"))
    base = [sys.executable, "-m", "flopsbench", "ops", "--devices", args.devices, "--op", args.op,
            "--shape", args.shape, *args.options.split(), "--format", "json"]
    walls: dict[str, list[float]] = {"local": [], "ssh": [], "sweep": []}
    ratios: dict[str, list] = {"ssh": [], "sweep": []}
    for pair in range(args.pairs):
        local = folder / f"local-{pair}.json"
        walls["local"].append(timed([*base, "--on", args.local, "-o", str(local)]))
        remote = folder / f"ssh-{pair}.json"
        walls["ssh"].append(timed([*base, "--on", args.ssh, "-o", str(remote)]))
        ratios["ssh"].append(compare(local, remote))
        if args.sweep:
            plan = folder / f"plan-{pair}.toml"
            out = folder / f"sweep-{pair}"
            plan.write_text(f'devices = "{Path(args.devices).resolve()}"\n[[cases]]\ncommand = "ops"\n'
                            f'ops = {json.dumps(args.op.split(","))}\nshapes = {json.dumps(args.shape.split(","))}\n'
                            f'options = {json.dumps(args.options.split())}\ndevices = ["{args.local}"]\n')
            walls["sweep"].append(timed([sys.executable, "-m", "flopsbench", "sweep", str(plan), "--out", str(out)]))
            reports = sorted(p for p in out.glob("*.json") if p.name[0] != "s")  # the jobs' own reports
            ratios["sweep"].append([r for report in reports for r in compare(local, report)])
    for path, seconds in walls.items():
        if seconds:
            print(f"{path:6} wall-clock s: " + ", ".join(f"{s:.1f}" for s in seconds))
    for path, runs in ratios.items():
        for pair, rows in enumerate(runs):
            for name, ratio, low, high, verdict in rows:
                print(f"{path:6} pair {pair}: {name}: median {path} / local {ratio:.3f} [{low:.3f}, {high:.3f}] "
                      f"{verdict}")
    print(f"reports kept in {folder}")


if __name__ == "__main__":
    main()
