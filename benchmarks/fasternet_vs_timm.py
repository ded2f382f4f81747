"""flopsbench's FasterNet-T0 against timm's ``fasternet_t0`` (eval mode), side by side in one run
(interleaved timing rounds, one thread pinned, batch 1), for each PConv forward and BN setting.

    python benchmarks/fasternet_vs_timm.py --min-time 4 --rounds 8
"""

from __future__ import annotations

import argparse

from flopsbench.report import Report
from flopsbench.runner import run_all
from flopsbench.spec import Execution, Shape, TimingBudget, Workload

INPUT = Shape(3, 224, 224)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="t0")
    parser.add_argument("--min-time", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    ours = f"fasternet_{args.variant}"
    cases = {
        "timm eval (unfused)": Workload(f"timm:fasternet_{args.variant}", INPUT, 1, (), "model"),
        "ours split_cat, unfused": Workload(ours, INPUT, 1, (("forward_mode", "split_cat"),), "model"),
        "ours split_cat, BN fused": Workload(ours, INPUT, 1, (("forward_mode", "split_cat"),), "model", fuse_bn=True),
        "ours slicing, BN fused": Workload(ours, INPUT, 1, (("forward_mode", "slicing"),), "model", fuse_bn=True),
    }
    execution = Execution(budget=TimingBudget(min_time_s=args.min_time, rounds=args.rounds))
    report = run_all(Report("model", execution, {}), list(cases.values()))
    base = report.rows[0].stats.median_s
    print(f"FasterNet-{args.variant.upper()}, 224x224, batch 1, 1 thread pinned to core {execution.cores[0]}, "
          f"{args.min_time:g} s per case in {args.rounds} interleaved rounds")
    for label, row in zip(cases, report.rows):
        if row.status != "ok":
            print(f"{label:26} error: {row.error}")
            continue
        stats = row.stats
        print(f"{label:26} median {stats.median_s * 1e3:7.3f} ms  IQR {stats.iqr_s * 1e3:6.3f} ms  "
              f"n={stats.n:4d}  ratio to timm {stats.median_s / base:.3f}"
              + (f"  [{'; '.join(row.warnings)}]" if row.warnings else ""))


if __name__ == "__main__":
    main()
