"""Can a plain harness repeat on this machine? Table 1's 20 cases timed with
``torch.utils.benchmark.Timer.blocked_autorange`` (each in a fresh process, pinned, one thread,
inference mode, the allocator convention of ``--allocator``: benchmarks/fidelity.py's Timer side),
twice back to back in the same order, then how many cases >= ``--floor-ms`` agree within
``--within``: issue 9's repeatability goal held against a harness that is not flopsbench.

    python benchmarks/timer_repeatability.py
"""

from __future__ import annotations

import argparse

import flopsbench_zoo
from fidelity import timer_median
from flopsbench.spec import TABLE1_SHAPES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-run-time", type=float, default=2.0, help="Timer's blocked_autorange budget (s)")
    parser.add_argument("--core", type=int, default=0)
    parser.add_argument("--allocator", default="retain", choices=("retain", "system"))
    parser.add_argument("--floor-ms", type=float, default=1.0)
    parser.add_argument("--within", type=float, default=0.02)
    args = parser.parse_args()
    cases = [(op, str(shape)) for op in flopsbench_zoo.list_operators() for shape in TABLE1_SHAPES]  # as `ops`
    runs = []
    for run in range(2):
        runs.append({case: timer_median(*case, args.core, args.min_run_time, args.allocator) for case in cases})
        print(f"run {run + 1} done", flush=True)
    agree = total = 0
    for case in cases:
        first, second = runs[0][case], runs[1][case]
        if first * 1e3 < args.floor_ms:
            continue
        change = second / first - 1
        total += 1
        agree += abs(change) <= args.within
        print(f"{case[0]:7s} {case[1]:10s} {first * 1e3:9.3f} {second * 1e3:9.3f} ms  {change:+.1%}")
    print(f"{agree} of {total} cases >= {args.floor_ms:g} ms within {args.within:.0%}")


if __name__ == "__main__":
    main()
