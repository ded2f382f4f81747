"""Does flopsbench report what a user's own program sees? Its median against
``torch.utils.benchmark.Timer.blocked_autorange`` timing the same stack in a fresh process that
never counted anything (one thread, pinned to the same core, inference mode), alternating the
two ``--repeats`` times per case.

    python benchmarks/fidelity.py                     # the five cases of issue 9, 3 repeats
    python benchmarks/fidelity.py --case conv:192x28x28 --repeats 1
    python benchmarks/fidelity.py --case conv:192x28x28 --checkout . --checkout /tmp/old   # before/after

Each flopsbench run is a default ``flopsbench ops --op OP --shape S`` (its own process; counting
in the parent, timing in workers); every other repeat runs the sides in reverse order. The Timer side is ``python benchmarks/fidelity.py --timer OP S``.
Prints one line per measurement and a summary: median of the repeats per side and their ratio."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CASES = ("conv:192x28x28", "pconv:192x28x28", "dwconv:768x7x7", "pwconv:96x56x56", "gconv:384x14x14")
FLOPSBENCH = [sys.executable, "-m", "flopsbench"]


def flopsbench_median(op: str, shape: str, core: int, checkout: str) -> float:
    """A default ``flopsbench ops`` run of the source tree at ``checkout`` (``-m`` imports from the cwd)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "r.json"
        subprocess.run([*FLOPSBENCH, "ops", "--op", op, "--shape", shape, "--cores", str(core), "--format", "json",
                        "-o", str(out)], check=True, capture_output=True, cwd=checkout)
        (row,) = json.loads(out.read_text())["rows"]
        return row["stats"]["median_s"]


def timer_median(op: str, shape: str, core: int, min_run_time: float) -> float:
    result = subprocess.run([sys.executable, __file__, "--timer", op, shape, "--core", str(core),
                             "--min-run-time", str(min_run_time)], check=True, capture_output=True, text=True)
    return float(result.stdout.strip().splitlines()[-1])


def time_with_timer(op: str, shape: str, core: int, min_run_time: float) -> float:
    """In this fresh process: build the stack as flopsbench does (seed 0, fp32, batch 1), pin,
    one thread, inference mode, Timer.blocked_autorange."""
    os.sched_setaffinity(0, {core})
    import torch
    import torch.utils.benchmark as benchmark

    import flopsbench_zoo
    from flopsbench.build import build_case
    from flopsbench.spec import Execution, Shape, Workload

    torch.set_num_threads(1)
    definition = flopsbench_zoo.get_operator(op)
    workload = Workload(op, Shape.parse(shape), 10, tuple(definition.resolve({}).items()))
    module, x = build_case(workload, Execution(cores=(core,)))
    with torch.inference_mode():
        measurement = benchmark.Timer("module(x)", globals={"module": module, "x": x},
                                      num_threads=1).blocked_autorange(min_run_time=min_run_time)
    return measurement.median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", help="OP:CxHxW (repeatable; default: the five of issue 9)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--core", type=int, default=0)
    parser.add_argument("--min-run-time", type=float, default=2.0, help="Timer's blocked_autorange budget (s)")
    parser.add_argument("--checkout", action="append", help="a flopsbench source tree to run (repeatable; default: "
                                                            "this one); each is timed in turn with Timer")
    parser.add_argument("--timer", nargs=2, metavar=("OP", "SHAPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.timer:
        print(time_with_timer(*args.timer, args.core, args.min_run_time))
        return
    checkouts = args.checkout or [str(Path(__file__).resolve().parent.parent)]
    summary = []
    for case in args.case or CASES:
        op, shape = case.split(":")
        ours: dict[str, list[float]] = {checkout: [] for checkout in checkouts}
        theirs = []
        for repeat in range(args.repeats):
            sides = [*checkouts, None]  # None: the Timer
            for side in sides if repeat % 2 == 0 else sides[::-1]:  # every other repeat reversed: no side always last
                if side is None:
                    theirs.append(timer_median(op, shape, args.core, args.min_run_time))
                else:
                    ours[side].append(flopsbench_median(op, shape, args.core, side))
            print(f"{op} {shape} repeat {repeat + 1}: "
                  + ", ".join(f"flopsbench[{checkout}] {ours[checkout][-1] * 1e3:.3f} ms" for checkout in checkouts)
                  + f", Timer {theirs[-1] * 1e3:.3f} ms", flush=True)
        b = statistics.median(theirs)
        for checkout in checkouts:
            a = statistics.median(ours[checkout])
            summary.append(f"{op:>7} {shape:>10}  flopsbench[{checkout}] {a * 1e3:8.3f} ms  Timer {b * 1e3:8.3f} ms  "
                           f"ratio {a / b:.3f}  ({(a / b - 1) * 100:+.1f} %)")
    print("\nmedians of the repeats:")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
