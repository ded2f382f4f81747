"""Compare the medians of two flopsbench JSON reports row by row (repeatability check).

    python benchmarks/compare_runs.py results/a.json results/b.json --min-ms 1
"""

from __future__ import annotations

import argparse
import json

from flopsbench.report import Report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--min-ms", type=float, default=1.0, help="only rows slower than this count")
    args = parser.parse_args()
    a, b = (Report.from_dict(json.load(open(p))) for p in (args.first, args.second))
    worst = 0.0
    for ra, rb in zip(a.rows, b.rows):
        ma, mb = ra.stats.median_s * 1e3, rb.stats.median_s * 1e3
        diff = abs(ma - mb) / min(ma, mb)
        counted = min(ma, mb) > args.min_ms
        worst = max(worst, diff) if counted else worst
        print(f"{ra.workload.name:7} {str(ra.workload.shape):10} {ma:9.3f} ms {mb:9.3f} ms  {diff:6.2%}"
              + ("" if counted else "  (below --min-ms, not counted)"))
    print(f"largest difference among rows slower than {args.min_ms} ms: {worst:.2%}")


if __name__ == "__main__":
    main()
