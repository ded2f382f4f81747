"""How many rounds does a row need to repeat? For pairs of reports of the same command run back to
back, each row's median from the first k rounds only, for every k, against the other run's: how
many rows >= ``--floor-ms`` agree within ``--within``. Only rows that took every round in both runs
count (a row that stopped early has no later rounds to leave out); the last line per pair compares
the medians as reported, whatever rounds each row took.

    python benchmarks/rounds_needed.py A1.json A2.json [B1.json B2.json ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def rows(report: Path) -> tuple[int, dict[str, tuple[list[float], list[int], float]]]:
    """The report's rounds, and each timed row's samples, rounds' sizes and reported median [s]."""
    data = json.loads(report.read_text())
    found = {}
    for row in data["rows"]:
        if row.get("stats") and row.get("samples_s"):
            name = f"{row['workload']['name']} {'x'.join(map(str, row['workload']['shape']))}"
            found[name] = (row["samples_s"], row["round_sizes"], row["stats"]["median_s"])
    return data["execution"]["budget"]["rounds"], found


def first_rounds_median(samples: list[float], sizes: list[int], k: int) -> float:
    return statistics.median(samples[:sum(sizes[:k])])


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
    for first, second in zip(args.reports[::2], args.reports[1::2]):
        (rounds, a), (_, b) = rows(first), rows(second)
        common = [name for name in a if name in b and a[name][2] * 1e3 >= args.floor_ms]
        full = [name for name in common if len(a[name][1]) == len(b[name][1]) == rounds]
        print(f"{first.name} / {second.name}")
        for k in range(1, rounds + 1):
            deviations = [abs(first_rounds_median(*b[n][:2], k) / first_rounds_median(*a[n][:2], k) - 1) for n in full]
            totals.setdefault(k, []).extend(deviations)
            print(f"  first {k} round(s), the {len(full)} rows that took every round: {agreement(deviations, args.within)}")
        print(f"  as reported, all {len(common)} rows: {agreement([abs(b[n][2] / a[n][2] - 1) for n in common], args.within)}")
    for k, deviations in sorted(totals.items()):
        print(f"all pairs, first {k} round(s): {agreement(deviations, args.within)}, "
              f"median deviation {statistics.median(deviations):.2%}")


if __name__ == "__main__":
    main()
