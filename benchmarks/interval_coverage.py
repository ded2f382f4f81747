"""What does a row's interval say about the next run? For pairs of reports of the same command run
back to back, how often the second run's median falls inside the first run's 95 % interval of its
median, for rows >= ``--floor-ms``: the interval rows report (flopsbench.stats: the rounds resampled,
then the samples in each, where a row has two or more rounds) and the order statistics of the
samples taken as independent (what rows reported before), by how many rounds the row took. Were an
interval right about everything that moves a median between runs, two like runs' medians would fall
inside each other's ~83 % of the time (the difference of two estimates has √2 times the spread of
one: P(|Z| < 1.96/√2)).

    python benchmarks/interval_coverage.py A1.json A2.json [B1.json B2.json ...]
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

from flopsbench.compare import pair_rows, split_rounds
from flopsbench.report import read_report_file
from flopsbench.stats import median_ci

KINDS = {"reported": "the interval rows report (rounds resampled where there are 2 or more)",
         "samples": "the samples taken as independent (order statistics)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path, help="pairs of reports, each pair run back to back")
    parser.add_argument("--floor-ms", type=float, default=1.0)
    args = parser.parse_args()
    if len(args.reports) % 2:
        parser.error("reports come in pairs")
    inside: dict[tuple[str, int | None], list[bool]] = defaultdict(list)
    widths: dict[str, list[float]] = defaultdict(list)
    for first, second in zip(args.reports[::2], args.reports[1::2]):
        for row, other in pair_rows(read_report_file(first).rows, read_report_file(second).rows):
            stats, next_stats = row and row.stats, other and other.stats
            if not stats or not next_stats or stats.median_s * 1e3 < args.floor_ms or stats.ci_low_s is None:
                continue
            rounds = len(split_rounds(row, "this run")[0])
            for kind, (low, high) in {"reported": (stats.ci_low_s, stats.ci_high_s),
                                      "samples": median_ci(row.samples_s)}.items():
                hit = low <= next_stats.median_s <= high
                inside[kind, None].append(hit)
                inside[kind, rounds].append(hit)
                widths[kind].append((high - low) / 2 / stats.median_s)
    total = len(inside["reported", None])
    print(f"{total} rows >= {args.floor_ms:g} ms in {len(args.reports) // 2} pairs: the next run's median fell inside")
    for kind, title in KINDS.items():
        hits = inside[kind, None]
        print(f"  {title}: {sum(hits)} ({sum(hits) / total:.0%}), median half-width {statistics.median(widths[kind]):.2%}")
        for rounds in sorted(key[1] for key in inside if key[0] == kind and key[1] is not None):
            hits = inside[kind, rounds]
            print(f"    rows of {rounds} round(s): {sum(hits)} of {len(hits)} ({sum(hits) / len(hits):.0%})")


if __name__ == "__main__":
    main()
