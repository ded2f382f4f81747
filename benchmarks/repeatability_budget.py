"""What would issue 9's repeatability goal (two runs back to back, every row >= 1 ms within 2 %)
take on this machine? For pairs of reports of the same command run back to back:

1. each pair's common shift (the median over its rows of run 2's median / run 1's) and how many
   rows agree within ``--within`` as reported, and with that shift divided out;
2. whether another statistic of the same samples would repeat better than the median;
3. how many rounds a row would need for all ``--rows`` rows to agree. From the pairs run with
   ``--stop-ci 0`` (every row takes every round: where rows may stop, the rows that go on are those
   whose rounds disagreed), the share of rows that agree with the shift divided out gives a row's
   spread between runs in units of ``--within``; each round is an independent worker process, so
   with k rounds that spread shrinks as 1/√k (normal approximation). Rows are taken as alike and
   independent, and the common shift is left out: no number of rounds takes it away.

    python benchmarks/repeatability_budget.py A1.json A2.json [B1.json B2.json ...]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from statistics import NormalDist

import numpy as np

from flopsbench.compare import pair_rows, split_rounds
from flopsbench.report import Report, Row, read_report_file

STATISTICS = {  # a row's samples and its rounds' samples -> one number
    "median (reported)": lambda samples, rounds: float(np.median(samples)),
    "median of the round medians": lambda samples, rounds: float(np.median([np.median(r) for r in rounds])),
    "10th percentile": lambda samples, rounds: float(np.percentile(samples, 10)),
    "minimum": lambda samples, rounds: float(np.min(samples)),
}
NORMAL = NormalDist()


def timed(row: Row | None, floor_s: float) -> bool:
    return bool(row and row.stats and row.samples_s and row.stats.median_s >= floor_s)


def every_round(report: Report) -> bool:
    return not report.execution.budget.stop_ci


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path, help="pairs of reports, each pair run back to back")
    parser.add_argument("--floor-ms", type=float, default=1.0)
    parser.add_argument("--within", type=float, default=0.02)
    parser.add_argument("--rows", type=int, default=18, help="rows >= the floor in one run")
    args = parser.parse_args()
    if len(args.reports) % 2:
        parser.error("reports come in pairs")
    floor_s = args.floor_ms / 1e3
    agree = {name: [0, 0] for name in STATISTICS}
    full = {"rounds": set(), "within": 0, "rows": 0}  # the --stop-ci 0 pairs, shift divided out
    print(f"1. each pair: common shift; rows within {args.within:.0%} as reported, then with the shift divided out")
    for first, second in zip(args.reports[::2], args.reports[1::2]):
        reports = read_report_file(first), read_report_file(second)
        pairs = [(a, b) for a, b in pair_rows(reports[0].rows, reports[1].rows) if timed(a, floor_s) and timed(b, floor_s)]
        if not pairs:
            print(f"  {first}: no rows in common")
            continue
        ratios = np.array([b.stats.median_s / a.stats.median_s for a, b in pairs])
        shift = float(np.median(ratios))
        raw = int(np.sum(np.abs(ratios - 1) <= args.within))
        level = int(np.sum(np.abs(ratios / shift - 1) <= args.within))
        print(f"  {first.parent.name}/{first.name} {second.name}: shift {shift - 1:+.2%}, "
              f"{raw} of {len(pairs)} within, {level} without the shift")
        if all(map(every_round, reports)):
            full["rounds"].add(reports[0].execution.budget.rounds)
            full["within"] += level
            full["rows"] += len(pairs)
        for a, b in pairs:
            rounds_a, rounds_b = split_rounds(a, "")[0], split_rounds(b, "")[0]
            for name, statistic in STATISTICS.items():
                x, y = statistic(a.samples_s, rounds_a), statistic(b.samples_s, rounds_b)
                agree[name][0] += abs(y / x - 1) <= args.within
                agree[name][1] += 1
    print(f"2. rows within {args.within:.0%} over every pair, by the statistic compared")
    for name, (hits, total) in agree.items():
        print(f"  {name}: {hits} of {total}")
    if len(full["rounds"]) != 1 or not 0 < full["within"] < full["rows"]:
        print("3. needs pairs run with --stop-ci 0, all with one --rounds, where some rows but not all agree")
        return
    rounds = full["rounds"].pop()
    # a row's two medians differ by within / z0 standard deviations' worth at ``rounds`` rounds
    z0 = NORMAL.inv_cdf(0.5 + full["within"] / full["rows"] / 2)
    print(f"3. --stop-ci 0 pairs: {full['within']} of {full['rows']} rows within with {rounds} rounds and the shift "
          f"divided out; with k rounds a row, expected:")
    for k in (2, 4, 8, 12, 16, 24, 32):
        share = 2 * NORMAL.cdf(z0 * math.sqrt(k / rounds)) - 1
        print(f"    k = {k:2d}: {share:.1%} of rows within, all {args.rows} in {share ** args.rows:.0%} of pairs")
    for pairs_share in (0.5, 0.95):
        z = NORMAL.inv_cdf(0.5 + pairs_share ** (1 / args.rows) / 2)
        print(f"  all {args.rows} within in {pairs_share:.0%} of pairs: k = {rounds * (z / z0) ** 2:.1f} rounds a row")


if __name__ == "__main__":
    main()
