"""How many rounds does a row need to repeat? For pairs of reports of the same command run back to
back, each row's median from the first k rounds only, for every k, against the other run's: how
many rows >= ``--floor-ms`` agree within ``--within``. Only rows that took every round in both runs
count (a row that stopped early has no later rounds to leave out); the last line per pair compares
the medians as reported, whatever rounds each row took. At the end, the rows that stopped after two
rounds in both runs, by how closely their two rounds agreed: does that agreement predict the next
run's median?

    python benchmarks/rounds_needed.py A1.json A2.json [B1.json B2.json ...]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from flopsbench.compare import pair_rows, split_rounds
from flopsbench.report import Row, read_report_file
from flopsbench.stats import round_spread


def first_rounds_median(row: Row, k: int) -> float:
    rounds, _ = split_rounds(row, "")
    return float(np.median(np.concatenate(rounds[:k])))


def relative_round_spread(row: Row) -> float:
    """The stop rule's check that the rounds agree (stats.round_spread), as a fraction of the median."""
    return round_spread(row.samples_s, row.round_sizes) / row.stats.median_s


def agreement(deviations: list[float], within: float) -> str:
    if not deviations:
        return "no rows"
    return f"{sum(d <= within for d in deviations)}/{len(deviations)} within {within:.0%}, worst {max(deviations):.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path, help="pairs of reports, each pair run back to back")
    parser.add_argument("--floor-ms", type=float, default=1.0)
    parser.add_argument("--within", type=float, default=0.02)
    args = parser.parse_args()
    if len(args.reports) % 2:
        parser.error("reports come in pairs")
    totals: dict[int, list[float]] = {}
    stopped_at_two: list[tuple[float, float]] = []  # (the wider of the two runs' round spreads, deviation)
    for first, second in zip(args.reports[::2], args.reports[1::2]):
        base = read_report_file(first)
        rounds = base.execution.budget.rounds
        common = [(a, b) for a, b in pair_rows(base.rows, read_report_file(second).rows)
                  if a and b and a.stats and b.stats and a.stats.median_s * 1e3 >= args.floor_ms]
        full = [(a, b) for a, b in common if len(a.round_sizes) == len(b.round_sizes) == rounds]
        print(f"{first.name} / {second.name}")
        for k in range(1, rounds + 1):
            deviations = [abs(first_rounds_median(b, k) / first_rounds_median(a, k) - 1) for a, b in full]
            totals.setdefault(k, []).extend(deviations)
            print(f"  first {k} round(s), the {len(full)} rows that took every round: {agreement(deviations, args.within)}")
        reported = [abs(b.stats.median_s / a.stats.median_s - 1) for a, b in common]
        stopped_at_two += [(max(relative_round_spread(a), relative_round_spread(b)), abs(b.stats.median_s / a.stats.median_s - 1))
                           for a, b in common if len(a.round_sizes) == len(b.round_sizes) == 2]
        print(f"  as reported, all {len(common)} rows: {agreement(reported, args.within)}")
    for k, deviations in sorted(totals.items()):
        print(f"all pairs, first {k} round(s): {agreement(deviations, args.within)}, "
              f"median deviation {statistics.median(deviations):.2%}")
    print(f"rows that stopped after two rounds in both runs: {len(stopped_at_two)}")
    for low, high in ((0, 0.005), (0.005, 0.01), (0.01, 0.02), (0.02, 1.0)):
        deviations = [d for spread, d in stopped_at_two if low < spread <= high or (low == 0 and spread == 0)]
        print(f"  both runs' rounds within {low:.1%}-{high:.1%} of their medians: {agreement(deviations, args.within)}")


if __name__ == "__main__":
    main()
