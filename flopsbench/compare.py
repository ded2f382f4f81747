"""Two reports of one protocol compared row by row (``flopsbench compare BASE NEW``).

Rows pair by workload identity (flopsbench.identity), never by position; a row of one report
only is listed as such, and a row either side could not time is listed with its status. Reports
of different protocols (device, runtime, batch, threads, precision, speed options, the layers
stacked per operator, ops against model) are refused, the differences named.

A row's samples are not independent of each other: those of one timing round share its fresh
worker process (memory layout, the machine's state at the time), which moves them together, so
their spread within a round understates the spread from one process, or one run, to the next.
The rounds (``row.round_sizes``) are the independent units, and both the interval and the test
work on them (Kalibera and Jones, "Rigorous benchmarking in reasonable time", ISMM 2013: resample
at every level of the experiment, process runs first). For each pair:

- **the ratio of medians** NEW / BASE (below 1: NEW is faster), with a 95 % percentile interval
  from a **hierarchical bootstrap** (Saravanan, Berman and Sober, "Application of the hierarchical
  bootstrap to multi-level data in neuroscience", NBDT 2020): 2,000 times, each side's rounds are
  drawn with replacement, then each drawn round's samples with replacement, and the ratio of the
  two sides' pooled medians is taken (bootstrap.hierarchical_medians draws each pooled median without
  building the resample). Resampling within rounds as well counts the within-round spread twice,
  so the interval errs wide, towards no verdict (Davison and Hinkley, *Bootstrap Methods and their
  Application*, 1997, sec. 3.8; Saravanan et al. found it conservative). It assumes nothing of the
  distribution, which for timings is skewed, with a slow tail. numpy's generator is seeded (0), so
  the same two reports always give the same interval.
- **the Mann-Whitney U test on the rounds' medians**, two-sided (Mann and Whitney, 1947): one value
  per round, so its error rate holds where rounds are independent, however alike the samples of a
  round are. Exact (every split of the pooled medians into the two sides' counts, ties at their mean
  rank) up to 50 rounds in all; beyond, the normal approximation with the corrections for ties and
  continuity, as scipy.stats.mannwhitneyu's 'asymptotic' method (here in numpy: flopsbench does not
  depend on scipy). Ranks, so a round a busy machine slowed sways it no more than any other.
- **the verdict**: faster or slower only when the test gives p < 0.05 *and* the interval excludes 1:
  the test alone also answers to a change in the rounds' spread that leaves the medians where they
  were, and the percentile interval alone is too narrow where rounds are few. Otherwise 'no
  significant change'. A verdict needs 8 samples a side (fewer: the resampled median takes few
  values) and 4 rounds a side: the exact test of 3 rounds against 3 (or 4) cannot reach p < 0.05
  (its smallest p is 2/20, or 2/35); 4 against 4 can (2/70). A row with fewer rounds ('too few
  rounds') shows the ratio alone. A row whose round sizes are missing (an older report) or unusable
  (not counts adding up to its samples) counts its samples as one round, and its reason says so.

Each row's test errs at most ALPHA of the time where nothing changed, so among many rows a few
verdicts may be chance alone; the views say how many (``Comparison.chance_verdicts``).

The rounds of one run spread over that run's time only: a machine slower on the whole, from one
run to the next, looks like a change, so a change of a few per cent is worth a repeated pair of
runs. A regression for ``--fail-above`` follows asv's rule (``asv continuous --factor``):
significantly slower, and slower by more than the threshold (ratio > 1 + threshold)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from flopsbench.bootstrap import CONFIDENCE, RESAMPLES, SEED, hierarchical_medians, percentile_interval, rounds_of
from flopsbench.escaping import plain_text
from flopsbench.identity import protocol_differences, workload_identity
from flopsbench.report import Report, Row
from flopsbench.spec import Workload

ALPHA = 0.05  # significance level of the test
MIN_SAMPLES = 8  # a side, for a verdict: with fewer, the resampled median takes few values
MIN_ROUNDS = 4  # a side, for a verdict: the fewest with which the exact test can reach p < ALPHA (2/70)
EXACT_MAX_ROUNDS = 50  # in all; the exact test above them would be slow, the normal approximation is close

FASTER, SLOWER, NO_CHANGE = "faster", "slower", "no significant change"
TOO_FEW, TOO_FEW_ROUNDS = "too few samples", "too few rounds"
NOT_COMPARED, ONLY_BASE, ONLY_NEW = "not compared", "only in BASE", "only in NEW"


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
    p_value: float | None = None  # of the test on the rounds' medians

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

    def tested(self) -> list[Pair]:
        """The pairs the test ran on (a verdict of faster, slower or no significant change)."""
        return [pair for pair in self.pairs if pair.verdict in (FASTER, SLOWER, NO_CHANGE)]

    def verdicts(self) -> list[Pair]:
        """The pairs found faster or slower."""
        return [pair for pair in self.pairs if pair.verdict in (FASTER, SLOWER)]

    def chance_verdicts(self) -> float:
        """How many verdicts of faster or slower the tested rows would give at most by chance alone,
        were nothing changed: each test errs at most ALPHA of the time (the exact test less, its
        p-values being discrete), and the interval must agree as well. Two same-code runs of 20 rows
        back to back on the development VM (--stop-ci 0) gave 2 such verdicts (results/stop-rule/)."""
        return len(self.tested()) * ALPHA


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
    """The ratio of the medians, its hierarchical interval, the test on the rounds' medians and the
    verdict, where both rows were timed with enough samples and rounds."""
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
    (base_rounds, base_note), (new_rounds, new_note) = split_rounds(base, "BASE"), split_rounds(new, "NEW")
    notes = [note for note in (base_note, new_note) if note]
    if min(len(base_rounds), len(new_rounds)) < MIN_ROUNDS:
        counts = f"{_rounds_text(len(base_rounds))} in BASE, {_rounds_text(len(new_rounds))} in NEW"
        return Pair(base, new, TOO_FEW_ROUNDS, "; ".join(notes + [
            f"{counts}; the test on the rounds' medians needs {MIN_ROUNDS} a side (--rounds {MIN_ROUNDS} or more, "
            "and --stop-ci 0 so that no row stops after 2)"]), ratio=ratio)
    interval = hierarchical_ratio_interval(base_rounds, new_rounds)
    p_value = rank_test_p([float(np.median(r)) for r in base_rounds], [float(np.median(r)) for r in new_rounds])
    verdict = NO_CHANGE
    if p_value < ALPHA and interval is not None and not interval[0] <= 1 <= interval[1]:
        verdict = SLOWER if interval[0] > 1 else FASTER
    reason = None if interval is not None else "no interval: BASE's median is 0 s in some resamples"
    return Pair(base, new, verdict, reason, ratio, interval, p_value)


def _rounds_text(count: int) -> str:
    return f"{count} round{'s' * (count != 1)}"


def _untimed(side: str, row: Row) -> str | None:
    """Why ``row`` has nothing to compare ('NEW error: RuntimeError: boom'), or None if it has samples."""
    if row.status != "ok":
        return f"{side} {row.status}" + (f": {row.error}" if row.error else "")
    return None if row.samples_s else f"{side} has no samples"


def split_rounds(row: Row, side: str) -> tuple[list[np.ndarray], str | None]:
    """The row's samples by timing round (rounds that timed none left out), and None; or, where its
    round sizes are missing or are not counts adding up to its samples, all of them as one round
    and a note that says so."""
    rounds = rounds_of(row.samples_s, row.round_sizes)
    if rounds is not None:
        return rounds, None
    samples, sizes = np.asarray(row.samples_s, dtype=float), row.round_sizes
    why = "no round sizes (an older report?)" if isinstance(sizes, (list, tuple)) and not sizes else (
        f"round sizes that are not counts adding up to its {len(samples)} samples")
    return [samples], f"{side} has {why}: its samples count as one round"


def hierarchical_ratio_interval(base: list[np.ndarray], new: list[np.ndarray], confidence: float = CONFIDENCE,
                                resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float] | None:
    """The hierarchical bootstrap percentile interval of median(new) / median(base), each side given
    as its rounds' samples: the sides resampled independently ``resamples`` times (hierarchical_medians);
    None if a resampled BASE median is 0."""
    rng = np.random.default_rng(seed)
    base_medians = hierarchical_medians(base, resamples, rng)
    new_medians = hierarchical_medians(new, resamples, rng)
    if not (base_medians > 0).all():
        return None
    return percentile_interval(new_medians / base_medians, confidence)


def rank_test_p(x: list[float], y: list[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test of x against y, exact for up to EXACT_MAX_ROUNDS
    values in all: the share of the splits of the pooled values into groups of len(x) and len(y)
    whose rank sum (tied values at their mean rank) lies as far from its mean as x's or farther,
    counted by a knapsack over the values (Mann and Whitney, 1947). Beyond, mann_whitney_p."""
    if len(x) + len(y) > EXACT_MAX_ROUNDS:
        return mann_whitney_p(x, y)
    if not len(x) or not len(y):
        raise ValueError("the test needs a sample on each side")
    m, n = len(x), len(x) + len(y)
    _, group, ties = np.unique(np.concatenate([np.asarray(x, float), np.asarray(y, float)]),
                               return_inverse=True, return_counts=True)
    doubled = (2 * np.cumsum(ties) - ties + 1)[group]  # twice each value's mean rank: integers
    top = int(doubled.sum())
    ways = np.zeros((m + 1, top + 1))  # ways[k, s]: groups of k values whose doubled ranks sum to s
    ways[0, 0] = 1
    for r in doubled:
        ways[1:, r:] = ways[1:, r:] + ways[:-1, :top + 1 - r]
    distance = np.abs(np.arange(top + 1) - m * (n + 1))  # from the mean doubled rank sum, m(n + 1)
    observed = abs(int(doubled[:m].sum()) - m * (n + 1))
    return float(ways[m, distance >= observed].sum() / ways[m].sum())


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
