"""Each fresh process draws its own speed under glibc's default allocator: page faults per call and
the median of each of ``--processes`` fresh processes per case and ``--allocator`` convention
(flopsbench.allocator), alternating the conventions process by process.

    python benchmarks/allocator_draws.py                          # pwconv, dwconv 96x56x56 and conv 192x28x28
    python benchmarks/allocator_draws.py --case gconv:192x28x28 --processes 8

A process builds the stack as flopsbench does (seed 0, fp32, batch 1), pins itself to ``--core``,
one thread, inference mode, sets the convention, warms up 20 calls, then times calls for
``--seconds`` with ``time.perf_counter``; page faults are its minor faults (``getrusage``) over
the timed calls. Prints one line per process and, per case and convention, the range of the
processes' medians and how many of them faulted."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

from stack import pinned_stack

CASES = ("pwconv:96x56x56", "dwconv:96x56x56", "conv:192x28x28")


def one_process(op: str, shape: str, convention: str, core: int, seconds: float) -> tuple[float, float]:
    """In this fresh process: (minor page faults per timed call, median seconds)."""
    import resource
    import time

    module, x = pinned_stack(op, shape, convention=convention, core=core)
    import torch

    samples = []
    with torch.inference_mode():
        for _ in range(20):
            module(x)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = time.perf_counter()
            module(x)
            samples.append(time.perf_counter() - start)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return faults / len(samples), statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", help="OP:CxHxW (repeatable; default: " + ", ".join(CASES) + ")")
    parser.add_argument("--allocator", action="append", help="a convention (repeatable; default: retain, system)")
    parser.add_argument("--processes", type=int, default=6, help="fresh processes per case and convention (6)")
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per process (1)")
    parser.add_argument("--core", type=int, default=0)
    parser.add_argument("--one", nargs=3, metavar=("OP", "SHAPE", "CONVENTION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        faults, median = one_process(*args.one, args.core, args.seconds)
        print(f"{faults} {median}")
        return
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for case in args.case or CASES:
        op, shape = case.split(":")
        for number in range(args.processes):
            for convention in args.allocator or ("retain", "system"):
                out = subprocess.run([sys.executable, __file__, "--one", op, shape, convention, "--core",
                                      str(args.core), "--seconds", str(args.seconds)],
                                     check=True, capture_output=True, text=True).stdout.split()
                faults, median = float(out[-2]), float(out[-1])
                results.setdefault((case, convention), []).append((faults, median))
                print(f"{case:18} {convention:7} process {number + 1}: {faults:7.0f} faults/call  "
                      f"{median * 1e3:8.3f} ms", flush=True)
    print("\ncase               allocator  medians of the processes [ms]   faulting processes")
    for (case, convention), draws in results.items():
        medians = [median * 1e3 for _, median in draws]
        faulting = sum(faults >= 1 for faults, _ in draws)
        print(f"{case:18} {convention:9}  {min(medians):7.3f} - {max(medians):7.3f} "
              f"(median {statistics.median(medians):7.3f})   {faulting} of {len(draws)}")


if __name__ == "__main__":
    main()
