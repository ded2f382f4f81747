"""What does a row's interval say about the next run? For pairs of reports of the same command run
back to back, how often the second run's median falls inside the first run's 95 % interval of its
median, for rows >= ``--floor-ms``: the interval the reports carry (order statistics of the samples,
taken as independent) and a hierarchical bootstrap one (the rounds resampled, then the samples in
each, as ``flopsbench compare`` does). Were an interval right about everything that moves a median
between runs, two like runs' medians would fall inside each other's ~83 % of the time (the
difference of two estimates has √2 times the spread of one: P(|Z| < 1.96/√2)).

    python benchmarks/interval_coverage.py A1.json A2.json [B1.json B2.json ...]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from flopsbench.compare import hierarchical_medians, pair_rows, split_rounds
from flopsbench.report import read_report_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path, help="pairs of reports, each pair run back to back")
    parser.add_argument("--floor-ms", type=float, default=1.0)
    args = parser.parse_args()
    if len(args.reports) % 2:
        parser.error("reports come in pairs")
    rng = np.random.default_rng(0)
    inside = {"samples": 0, "rounds": 0}
    widths: dict[str, list[float]] = {"samples": [], "rounds": []}
    total = 0
    for first, second in zip(args.reports[::2], args.reports[1::2]):
        for row, other in pair_rows(read_report_file(first).rows, read_report_file(second).rows):
            stats, next_stats = row and row.stats, other and other.stats
            if not stats or not next_stats or stats.median_s * 1e3 < args.floor_ms or stats.ci_low_s is None:
                continue
            rounds, _ = split_rounds(row, "this run")
            intervals = {"samples": (stats.ci_low_s, stats.ci_high_s),
                         "rounds": tuple(np.percentile(hierarchical_medians(rounds, 2000, rng), [2.5, 97.5]))}
            total += 1
            for kind, (low, high) in intervals.items():
                inside[kind] += low <= next_stats.median_s <= high
                widths[kind].append((high - low) / 2 / stats.median_s)
    print(f"{total} rows >= {args.floor_ms:g} ms in {len(args.reports) // 2} pairs: the next run's median fell inside")
    print(f"  the reports' interval (samples as independent): {inside['samples']} "
          f"({inside['samples'] / total:.0%}), median half-width {statistics.median(widths['samples']):.2%}")
    print(f"  a hierarchical bootstrap interval (rounds, then samples): {inside['rounds']} "
          f"({inside['rounds'] / total:.0%}), median half-width {statistics.median(widths['rounds']):.2%}")


if __name__ == "__main__":
    main()
