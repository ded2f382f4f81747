"""Under ``--allocator retain``, does a worker forked from an interpreter that already imported torch
time like a fresh interpreter? For each case, ``--processes`` pairs, alternating: a child forked
from this process (which imported torch and flopsbench_zoo and set ``retain`` first) and a fresh
``python benchmarks/allocator_draws.py --one`` process; each times the case as allocator_draws does.

    python benchmarks/forked_vs_fresh.py --processes 6

A fork inherits the parent's address-space layout; under glibc's defaults that layout decided
whether a case faulted its pages in (benchmarks/allocator_draws.py). If, under ``retain``, forked
and fresh processes agree, rounds could be forked from one imported interpreter instead of each
importing torch (~2 s of CPU a round on the development VM). That was tried and dropped: rounds
forked from one server shared its state (docs/performance.md)."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

import allocator_draws

DRAWS = Path(__file__).resolve().parent / "allocator_draws.py"


def forked(op: str, shape: str, core: int) -> tuple[float, float]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            faults, median = allocator_draws.one_process(op, shape, "retain", core, 1.0)
            os.write(write, f"{faults} {median}".encode())
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    faults, median = map(float, answer.split())
    return faults, median


def fresh(op: str, shape: str, core: int) -> tuple[float, float]:
    out = subprocess.run([sys.executable, str(DRAWS), "--one", op, shape, "retain", "--core", str(core)],
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[-2]), float(out[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", help="OP:CxHxW (repeatable; default: allocator_draws's three)")
    parser.add_argument("--processes", type=int, default=6)
    parser.add_argument("--core", type=int, default=0)
    args = parser.parse_args()
    from flopsbench import allocator

    allocator.apply("retain")
    import torch  # noqa: F401 -- imported before the forks, as a fork server would
    import flopsbench_zoo  # noqa: F401

    medians: dict[tuple[str, str], list[float]] = {}
    for case in args.case or allocator_draws.CASES:
        op, shape = case.split(":")
        for number in range(args.processes):
            line = []
            for kind, time_it in (("forked", forked), ("fresh", fresh)):
                faults, median = time_it(op, shape, args.core)
                medians.setdefault((case, kind), []).append(median * 1e3)
                line.append(f"{kind} {median * 1e3:8.3f} ms ({faults:.0f} faults/call)")
            print(f"{case:18} pair {number + 1}: " + "   ".join(line), flush=True)
    print("\ncase               kind    medians of the processes [ms]")
    for (case, kind), values in medians.items():
        print(f"{case:18} {kind:6}  {min(values):8.3f} - {max(values):8.3f} (median {statistics.median(values):8.3f}, "
              f"spread {max(values) / min(values) - 1:.1%})")


if __name__ == "__main__":
    main()
