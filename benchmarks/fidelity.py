"""Does flopsbench report what a user's own program sees? Its median against
``torch.utils.benchmark.Timer.blocked_autorange`` timing the same stack in a fresh process that
never counted anything (one thread, pinned to the same core, inference mode), alternating the
two ``--repeats`` times per case.

    python benchmarks/fidelity.py                     # the five cases of issue 9, 3 repeats
    python benchmarks/fidelity.py --case conv:192x28x28 --repeats 1
    python benchmarks/fidelity.py --case conv:192x28x28 --checkout . --checkout /tmp/old   # before/after
    python benchmarks/fidelity.py --together --case dwconv:96x56x56 --case gconv:192x28x28   # from a 20-case run
    python benchmarks/fidelity.py --allocator system  # both sides with the allocator as the environment configures it

Each flopsbench run is a default ``flopsbench ops --op OP --shape S`` (its own process; counting
in the parent, timing in workers); every other repeat runs the sides in reverse order. The Timer side is ``python benchmarks/fidelity.py --timer OP S``.
Prints one line per measurement and a summary: median of the repeats per side and their ratio."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from stack import pinned_stack

CASES = ("conv:192x28x28", "pconv:192x28x28", "dwconv:768x7x7", "pwconv:96x56x56", "gconv:384x14x14")
FLOPSBENCH = [sys.executable, "-m", "flopsbench"]


def flopsbench_median(op: str, shape: str, core: int, checkout: str, allocator: str) -> float:
    """A default ``flopsbench ops`` run of the source tree at ``checkout`` (``-m`` imports from the cwd)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "r.json"
        subprocess.run([*FLOPSBENCH, "ops", "--op", op, "--shape", shape, "--cores", str(core),
                        "--allocator", allocator, "--format", "json", "-o", str(out)],
                       check=True, capture_output=True, cwd=checkout)
        (row,) = json.loads(out.read_text())["rows"]
        return row["stats"]["median_s"]


def timer_median(op: str, shape: str, core: int, min_run_time: float, allocator: str) -> float:
    result = subprocess.run([sys.executable, __file__, "--timer", op, shape, "--core", str(core),
                             "--min-run-time", str(min_run_time), "--allocator", allocator],
                            check=True, capture_output=True, text=True)
    return float(result.stdout.strip().splitlines()[-1])


def time_with_timer(op: str, shape: str, core: int, min_run_time: float, convention: str) -> float:
    """In this fresh process: build the stack as flopsbench does (seed 0, fp32, batch 1), pin,
    one thread, inference mode, the same allocator convention, Timer.blocked_autorange."""
    module, x = pinned_stack(op, shape, core, convention)
    import torch
    import torch.utils.benchmark as benchmark

    with torch.inference_mode():
        measurement = benchmark.Timer("module(x)", globals={"module": module, "x": x},
                                      num_threads=1).blocked_autorange(min_run_time=min_run_time)
    return measurement.median


def flopsbench_table(core: int, checkout: str, allocator: str) -> dict[str, float]:
    """A default ``flopsbench ops`` run (the 20 cases of Table 1, every round's worker timing them
    all in a shuffled order): each row's median, by ``op:CxHxW``."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "r.json"
        subprocess.run([*FLOPSBENCH, "ops", "--cores", str(core), "--allocator", allocator, "--format", "json",
                        "-o", str(out)], check=True, capture_output=True, cwd=checkout)
        return {f"{row['workload']['name']}:{'x'.join(map(str, row['workload']['shape']))}": row["stats"]["median_s"]
                for row in json.loads(out.read_text())["rows"] if row.get("stats")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", help="OP:CxHxW (repeatable; default: the five of issue 9)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--core", type=int, default=0)
    parser.add_argument("--min-run-time", type=float, default=2.0, help="Timer's blocked_autorange budget (s)")
    parser.add_argument("--checkout", action="append", help="a flopsbench source tree to run (repeatable; default: "
                                                            "this one); each is timed in turn with Timer")
    parser.add_argument("--together", action="store_true",
                        help="take flopsbench's medians from one default 'flopsbench ops' run per repeat (the cases "
                             "must be among its 20), not from a run of each case alone")
    parser.add_argument("--allocator", default="retain", choices=("retain", "system"),
                        help="the allocator convention of both sides (flopsbench's --allocator; default retain)")
    parser.add_argument("--timer", nargs=2, metavar=("OP", "SHAPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.timer:
        print(time_with_timer(*args.timer, args.core, args.min_run_time, args.allocator))
        return
    checkouts = args.checkout or [str(Path(__file__).resolve().parent.parent)]
    cases = args.case or list(CASES)
    # one unit per side and repeat: a case alone, or (--together) every case from one run
    units = [cases] if args.together else [[case] for case in cases]
    ours = {case: {checkout: [] for checkout in checkouts} for case in cases}
    theirs: dict[str, list[float]] = {case: [] for case in cases}
    for unit in units:
        for repeat in range(args.repeats):
            sides = [*checkouts, None]  # None: the Timer
            for side in sides if repeat % 2 == 0 else sides[::-1]:  # every other repeat reversed: no side always last
                if side is None:
                    for case in unit:
                        theirs[case].append(timer_median(*case.split(":"), args.core, args.min_run_time,
                                                         args.allocator))
                elif args.together:
                    table = flopsbench_table(args.core, side, args.allocator)
                    for case in unit:
                        ours[case][side].append(table[case])
                else:
                    ours[unit[0]][side].append(flopsbench_median(*unit[0].split(":"), args.core, side, args.allocator))
            for case in unit:
                print(f"{case.replace(':', ' ')} repeat {repeat + 1}: "
                      + ", ".join(f"flopsbench[{c}] {ours[case][c][-1] * 1e3:.3f} ms" for c in checkouts)
                      + f", Timer {theirs[case][-1] * 1e3:.3f} ms", flush=True)
    summary = []
    for case in cases:
        op, shape = case.split(":")
        b = statistics.median(theirs[case])
        for checkout in checkouts:
            a = statistics.median(ours[case][checkout])
            summary.append(f"{op:>7} {shape:>10}  flopsbench[{checkout}] {a * 1e3:8.3f} ms  Timer {b * 1e3:8.3f} ms  "
                           f"ratio {a / b:.3f}  ({(a / b - 1) * 100:+.1f} %)")
    print("\nmedians of the repeats:")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
