"""Why counting sped up later timing in the same process (issue 9): conv 192x28x28's median and
page faults per call before and after one forward pass under a ``TorchDispatchMode`` (what the
memory counter does), in one fresh process per ``--allocator`` convention, alternating.

    python benchmarks/dispatch_mode_effect.py --repeats 3

Each process pins itself to ``--core``, one thread, inference mode, sets the convention, warms up
5 calls, times 25 calls, runs one forward under a pass-through dispatch mode, and times 25 more."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

from stack import pinned_stack


def one_process(convention: str, core: int) -> str:
    import resource
    import time

    module, x = pinned_stack("conv", "192x28x28", core, convention)
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class PassThrough(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    def timed(calls: int = 25) -> str:
        samples, faults = [], resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(calls):
            start = time.perf_counter()
            module(x)
            samples.append(time.perf_counter() - start)
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / calls
        return f"{statistics.median(samples) * 1e3:6.1f} ms, {faults:5.0f} faults/call"

    with torch.inference_mode():
        for _ in range(5):
            module(x)
        before = timed()
        with PassThrough():
            module(x)
        after = timed()
    return f"--allocator {convention:6}  before: {before}   after one pass under a dispatch mode: {after}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--core", type=int, default=0)
    parser.add_argument("--one", metavar="CONVENTION", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(one_process(args.one, args.core))
        return
    for _ in range(args.repeats):
        for convention in ("system", "retain"):
            print(subprocess.run([sys.executable, __file__, "--one", convention, "--core", str(args.core)],
                                 check=True, capture_output=True, text=True).stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
