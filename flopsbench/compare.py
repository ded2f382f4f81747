"""Two reports of one protocol compared row by row (``flopsbench compare BASE NEW``).

Rows pair by workload identity (flopsbench.identity), never by position; a row of one report
only is listed as such, and a row either side could not time is listed with its status. Reports
of different protocols (device, runtime, batch, threads, precision, speed options, the layers
stacked per operator, ops against model) are refused, the differences named. For each pair:

- **the ratio of medians** NEW / BASE (below 1: NEW is faster), with a 95 % bootstrap percentile
  interval: each side's raw samples resampled 2,000 times, the ratio of the two resampled medians
  taken each time (Efron and Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13; they
  ask for 1,000 or more resamples for percentile intervals), each resampled median drawn from its
  order-statistic distribution rather than from a built resample (_resampled_medians). It assumes
  nothing of the samples' distribution, which for timings is skewed, with a slow tail. numpy's
  generator is seeded (0), so the same two reports always give the same interval.
- **the Mann-Whitney U test** on the raw samples, two-sided (Mann and Whitney, 1947), in its normal
  approximation with the corrections for ties (timers quantise) and for continuity, as
  scipy.stats.mannwhitneyu's 'asymptotic' method computes it (here in numpy: flopsbench does not
  depend on scipy). It compares ranks, so the outliers a busy machine adds do not sway it as they
  sway a t-test on means (pyperf's compare_to), and it asks no normal distribution of timings.
- **the verdict**: faster or slower only when the test gives p < 0.05 *and* the ratio's interval
  excludes 1: the test alone also answers to a change in the spread or the tail that leaves the
  medians where they were, and the percentile interval alone is only approximate where samples
  are few or tied (the resampled median then takes few values). Otherwise 'no significant
  change'. Both need 8 samples a side: below that the normal approximation is coarse, and the
  median's own interval (stats.median_ci) needs 8 as well.

Neither sees more than the spread within each run. A run's samples share its processes' memory
layouts and the machine's state at the time, which move a row from one run to the next (README,
'Performance of the harness'), so a change of a few per cent is worth a repeated pair of runs.
A regression for ``--fail-above`` follows asv's rule (``asv continuous --factor``): significantly
slower, and slower by more than the threshold (ratio > 1 + threshold)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from flopsbench.escaping import plain_text
from flopsbench.identity import protocol_differences, workload_identity
from flopsbench.report import Report, Row
from flopsbench.spec import Workload

ALPHA = 0.05  # significance level of the test
CONFIDENCE = 0.95  # of the ratio's interval
RESAMPLES = 2_000
SEED = 0
MIN_SAMPLES = 8  # a side, for the test and the interval

FASTER, SLOWER, NO_CHANGE = "faster", "slower", "no significant change"
TOO_FEW, NOT_COMPARED, ONLY_BASE, ONLY_NEW = "too few samples", "not compared", "only in BASE", "only in NEW"


class ProtocolError(ValueError):
    """The two reports are not runs of one protocol; the message names each difference."""


@dataclass(frozen=True)
class Pair:
    """A workload of BASE, NEW or both, and what comparing its rows found; ``reason`` says why a
    pair has no verdict of faster, slower or no significant change."""

    base: Row | None
    new: Row | None
    verdict: str
    reason: str | None = None
    ratio: float | None = None  # NEW median / BASE median
    ratio_ci: tuple[float, float] | None = None
    p_value: float | None = None

    @property
    def workload(self) -> Workload:
        return (self.base or self.new).workload

    def slower_by_more_than(self, threshold: float) -> bool:
        """A regression for --fail-above: significantly slower, by more than ``threshold`` (0.05: 5 %)."""
        return self.verdict == SLOWER and self.ratio > 1 + threshold


@dataclass(frozen=True)
class Comparison:
    base: Report
    new: Report
    pairs: list[Pair]
    base_name: str = "BASE"  # the files, as the views name them
    new_name: str = "NEW"

    def regressions(self, threshold: float) -> list[Pair]:
        return [pair for pair in self.pairs if pair.slower_by_more_than(threshold)]


def compare_reports(base: Report, new: Report, base_name: str = "BASE", new_name: str = "NEW") -> Comparison:
    """Every row of both reports, paired and compared; ProtocolError if they are runs of different protocols."""
    pairs = pair_rows(base.rows, new.rows)
    differences = protocol_differences(base, new) + layer_differences(pairs)
    if differences:
        raise ProtocolError("; ".join(differences))
    return Comparison(base, new, [compare_rows(b, n) for b, n in pairs], base_name, new_name)


def pair_rows(base: list[Row], new: list[Row]) -> list[tuple[Row | None, Row | None]]:
    """(BASE row, NEW row) of each workload identity, in BASE's order, then NEW's rows of workloads
    BASE lacks; None for the side without one. A workload a report holds twice pairs its first
    row with the other's first, its second with the second."""
    def keyed(rows: list[Row]) -> dict:
        seen: Counter = Counter()
        found = {}
        for row in rows:
            identity = workload_identity(row.workload)
            found[identity, seen[identity]] = row
            seen[identity] += 1
        return found

    base_rows, new_rows = keyed(base), keyed(new)
    return ([(row, new_rows.get(key)) for key, row in base_rows.items()]
            + [(None, row) for key, row in new_rows.items() if key not in base_rows])


def layer_differences(pairs: list[tuple[Row | None, Row | None]]) -> list[str]:
    """An operator at another layer count is another protocol, not another row: the first one found
    (and how many more), as 'BASE stacks 10 layers of conv 96x56x56, NEW 5'."""
    only_base = {workload_identity(b.workload, layers=False): b for b, n in pairs if n is None}
    clashes = [(only_base[key], n) for b, n in pairs
               if b is None and (key := workload_identity(n.workload, layers=False)) in only_base]
    if not clashes:
        return []
    b, n = clashes[0]
    more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
    return [f"BASE stacks {b.workload.layers} layers of {plain_text(b.workload.name)} {plain_text(b.workload.shape)}, "
            f"NEW {n.workload.layers}{more}"]


def compare_rows(base: Row | None, new: Row | None) -> Pair:
    """The ratio of the medians, its interval, the test and the verdict, where both rows were timed."""
    if base is None or new is None:
        return Pair(base, new, ONLY_NEW if base is None else ONLY_BASE)
    untimed = [_untimed(side, row) for side, row in (("BASE", base), ("NEW", new)) if _untimed(side, row)]
    if untimed:
        return Pair(base, new, NOT_COMPARED, "; ".join(untimed))
    base_median, new_median = base.stats.median_s, new.stats.median_s
    if base_median <= 0:
        return Pair(base, new, NOT_COMPARED, "BASE's median is 0 s")
    ratio = new_median / base_median
    fewest = min(len(base.samples_s), len(new.samples_s))
    if fewest < MIN_SAMPLES:
        return Pair(base, new, TOO_FEW, f"{fewest} samples; the test and the interval need {MIN_SAMPLES} a side",
                    ratio=ratio)
    interval = ratio_interval(base.samples_s, new.samples_s)
    p_value = mann_whitney_p(base.samples_s, new.samples_s)
    verdict = NO_CHANGE
    if p_value < ALPHA and interval is not None and not interval[0] <= 1 <= interval[1]:
        verdict = SLOWER if interval[0] > 1 else FASTER
    reason = None if interval is not None else "no interval: BASE's median is 0 s in some resamples"
    return Pair(base, new, verdict, reason, ratio, interval, p_value)


def _untimed(side: str, row: Row) -> str | None:
    """Why ``row`` has nothing to compare ('NEW error: RuntimeError: boom'), or None if it has samples."""
    if row.status != "ok":
        return f"{side} {row.status}" + (f": {row.error}" if row.error else "")
    return None if row.samples_s else f"{side} has no samples"


def ratio_interval(base: list[float], new: list[float], confidence: float = CONFIDENCE,
                   resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float] | None:
    """The bootstrap percentile interval of median(new) / median(base): the two sides resampled
    independently ``resamples`` times; None if a resampled BASE median is 0."""
    rng = np.random.default_rng(seed)
    base_medians = _resampled_medians(np.asarray(base, dtype=float), resamples, rng)
    new_medians = _resampled_medians(np.asarray(new, dtype=float), resamples, rng)
    if not (base_medians > 0).all():
        return None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(new_medians / base_medians, [tail, 100 - tail])
    return float(low), float(high)


def _resampled_medians(samples: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """The medians of ``resamples`` bootstrap resamples of ``samples``, drawn without building the
    resamples: the k-th smallest of a resample is the sorted samples' entry floor(n·U), U the k-th
    smallest of n uniform numbers, which follows Beta(k, n - k + 1); the next one up is
    U + (1 - U)·Beta(1, n - k), the smallest of the n - k above it. The same distribution as the
    np.median of resamples drawn index by index, at a cost that does not grow with n."""
    ordered = np.sort(samples)
    n = len(ordered)
    k = (n + 1) // 2  # the median's rank; for an even n the lower of the middle two

    def entry(u: np.ndarray) -> np.ndarray:
        return ordered[np.minimum((n * u).astype(np.int64), n - 1)]

    lower = rng.beta(k, n - k + 1, resamples)
    if n % 2:
        return entry(lower)
    return (entry(lower) + entry(lower + (1 - lower) * rng.beta(1, n - k, resamples))) / 2


def mann_whitney_p(x: list[float], y: list[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test of x against y: U = R - n1(n1 + 1)/2 from the
    rank sum R of x (tied values take their mean rank), compared with its mean n1·n2/2 under the
    normal approximation, variance n1·n2/12 · (n + 1 - Σ(t³ - t) / (n(n - 1))) over the groups of
    t tied values, and a continuity correction of 1/2. 1 when every value is the same."""
    n1, n2 = len(x), len(y)
    if not n1 or not n2:
        raise ValueError("the test needs a sample on each side")
    _, group, ties = np.unique(np.concatenate([np.asarray(x, float), np.asarray(y, float)]),
                               return_inverse=True, return_counts=True)
    ties = ties.astype(float)
    mean_rank = np.cumsum(ties) - (ties - 1) / 2  # of each distinct value, ranks from 1
    u = float(mean_rank[group[:n1]].sum()) - n1 * (n1 + 1) / 2
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - float(np.sum(ties ** 3 - ties)) / (n * (n - 1)))
    if variance <= 0:
        return 1.0
    z = max(abs(u - n1 * n2 / 2) - 0.5, 0.0) / math.sqrt(variance)
    return math.erfc(z / math.sqrt(2))
