"""The roofline's ceilings under each allocator convention, alternating ``--repeats`` times: each
kernel's best and median rate, timed as ``flopsbench ceilings`` times them (fresh processes,
one thread pinned to core 0, fp32, 2 s of samples in 2 rounds), with ``--allocator retain`` and
``system``. Under ``system`` glibc may hand conv's output back to the kernel after every call and
fault it in again on the next, so its peak reads low.

    python benchmarks/ceilings_allocator.py
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from flopsbench import ceilings
from flopsbench.environment import capture_environment
from flopsbench.spec import Execution, TimingBudget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--runtime", default="torch")
    args = parser.parse_args()
    budget = TimingBudget(warmup_s=0.2, min_time_s=2.0, min_runs=10, max_runs=10_000, rounds=2, stop_ci=0.0)
    for repeat in range(args.repeats):
        for convention in ("retain", "system"):
            execution = replace(Execution(budget=budget), runtime=args.runtime, allocator=convention)
            record = ceilings.measure(execution, environment=capture_environment(cores=execution.cores))
            parts = []
            for kernel in record["kernels"]:
                unit = "flops_per_s" if kernel["bound"] == "compute" else "bytes_per_s"
                best, median = kernel[unit], kernel[f"median_{unit}"]
                parts.append(f"{kernel['name']} {best / 1e9:.1f} (median {median / 1e9:.1f})" if best
                             else f"{kernel['name']} -")
            print(f"{repeat + 1} {convention:6s} (GFLOPS, GB/s): " + ", ".join(parts), flush=True)


if __name__ == "__main__":
    main()
