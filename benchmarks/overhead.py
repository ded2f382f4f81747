"""Does the harness add overhead? Times one workload with flopsbench's loop and with
torch.utils.benchmark.Timer.blocked_autorange in the same process, alternating, and prints both
medians and their ratio.

    python benchmarks/overhead.py --op conv --shape 96x56x56 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.utils.benchmark as tb

import flopsbench_zoo
from flopsbench.cpu import pinned, set_interop_threads_once
from flopsbench.report import Row
from flopsbench.build import build_case
from flopsbench.sampling import sample_round
from flopsbench.spec import Execution, Shape, TimingBudget, Workload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--op", default="conv")
    parser.add_argument("--shape", default="96x56x56")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-time", type=float, default=2.0)
    args = parser.parse_args()

    set_interop_threads_once(1)
    op = flopsbench_zoo.get_operator(args.op)
    workload = Workload(args.op, Shape.parse(args.shape), 10, tuple(op.defaults.items()))
    execution = Execution(budget=TimingBudget(min_time_s=args.min_time, rounds=1))
    module, x = build_case(workload, execution)
    ours, theirs = [], []
    for _ in range(args.rounds):
        row = Row(workload)
        with torch.inference_mode():  # the loop a worker runs
            sample_round(row, lambda: module(x), execution, execution.budget.round_share(0), torch_threads=True)
        ours.append(row.stats.median_s)
        with pinned(execution.threads, execution.cores), torch.inference_mode():
            timer = tb.Timer("module(x)", globals={"module": module, "x": x}, num_threads=execution.threads)
            theirs.append(timer.blocked_autorange(min_run_time=args.min_time).median)
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"{args.op} {args.shape} x10, 1 thread pinned to core {execution.cores[0]}, {args.rounds} alternating rounds")
    print(f"flopsbench median:          {a * 1e3:.3f} ms  (per round: {', '.join(f'{v*1e3:.3f}' for v in ours)})")
    print(f"blocked_autorange median:   {b * 1e3:.3f} ms  (per round: {', '.join(f'{v*1e3:.3f}' for v in theirs)})")
    print(f"ratio flopsbench / torch:   {a / b:.4f}")


if __name__ == "__main__":
    main()
