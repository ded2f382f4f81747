"""Statistics over raw timing samples: median is the headline, IQR the spread, p90 and p99 the
slow tail; MAD outliers are flagged, never dropped. Percentiles interpolate linearly (numpy's
default), so with fewer than 100 samples p99 lies between the two slowest.

The median's 95 % interval resamples the timing rounds where there are two or more (each a fresh
worker process: flopsbench.bootstrap), so that it carries the spread between processes; with one
round, or round sizes that do not fit the samples, it is the order statistics of the samples taken
as independent. ``ci_method`` says which."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from flopsbench.bootstrap import median_interval_over_rounds, rounds_of

NOISE_THRESHOLD = 0.10  # IQR / median above this earns a warning
OUTLIER_Z = 3.5  # modified z-score cut-off (Iglewicz and Hoaglin)
MAD_TO_SIGMA = 1 / 0.6745  # MAD -> standard deviation of a normal distribution (1.4826)
MEAN_AD_TO_SIGMA = 1.253314  # mean absolute deviation -> standard deviation of a normal distribution (√(π/2))
DRIFT_MIN_ROUND = 3  # samples a round needs for its median to count towards drift
CI_Z = 1.96  # normal quantile of the 95 % confidence interval of the median
OUTLIER_SHARE = 0.10  # more outliers than this share of >= 10 samples earns a warning
DRIFT_THRESHOLD = 0.05  # round medians spreading more than this (of the median) earn a warning
CI_MIN_SAMPLES = 8  # the fewest for an interval of the median (order statistics at 95 %: k >= 1)
CI_ROUNDS = "rounds"  # hierarchical bootstrap: the rounds resampled, then each one's samples
CI_SAMPLES = "samples"  # order statistics: the samples taken as independent


@dataclass(frozen=True)
class Stats:
    n: int
    median_s: float
    iqr_s: float
    q1_s: float
    q3_s: float
    p90_s: float
    p99_s: float
    mean_s: float
    min_s: float
    max_s: float
    stdev_s: float
    mad_s: float
    outliers: int
    ci_low_s: float | None = None  # 95 % confidence interval of the median (median_interval)
    ci_high_s: float | None = None
    ci_method: str | None = None  # CI_ROUNDS or CI_SAMPLES; None with no interval (too few samples)

    @property
    def relative_iqr(self) -> float:
        return self.iqr_s / self.median_s if self.median_s > 0 else float("inf")

    @property
    def noisy(self) -> bool:
        return self.relative_iqr > NOISE_THRESHOLD

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(samples: list[float], round_sizes: list[int] | None = None) -> Stats:
    """The statistics of ``samples``, taken in timing rounds of ``round_sizes`` (None: one round)."""
    if not samples:
        raise ValueError("no samples to summarize")
    x = np.asarray(samples, dtype=float)
    q1, median, q3, p90, p99 = np.percentile(x, [25, 50, 75, 90, 99])
    deviation = np.abs(x - median)
    mad = float(np.median(deviation))
    ci, ci_method = median_interval(samples, round_sizes)
    return Stats(
        n=len(x), median_s=float(median), iqr_s=float(q3 - q1), q1_s=float(q1), q3_s=float(q3),
        p90_s=float(p90), p99_s=float(p99), mean_s=float(x.mean()), min_s=float(x.min()), max_s=float(x.max()),
        stdev_s=statistics.stdev(samples) if len(x) > 1 else 0.0, mad_s=mad, outliers=count_outliers(deviation, mad),
        ci_low_s=ci[0] if ci else None, ci_high_s=ci[1] if ci else None, ci_method=ci_method,
    )


@lru_cache(maxsize=256)
def summarize_frozen(samples: tuple[float, ...], round_sizes: tuple[int, ...]) -> Stats:
    """summarize, remembered: a row's statistics are read for every column of every view, and its
    interval resamples the rounds 2,000 times."""
    return summarize(list(samples), list(round_sizes))


def median_interval(samples: list[float],
                    round_sizes: list[int] | None) -> tuple[tuple[float, float] | None, str | None]:
    """The median's 95 % interval and its method (CI_ROUNDS or CI_SAMPLES); (None, None) below
    CI_MIN_SAMPLES samples."""
    if len(samples) < CI_MIN_SAMPLES:
        return None, None
    rounds = rounds_of(samples, round_sizes)
    if rounds is not None and len(rounds) >= 2:
        return median_interval_over_rounds(rounds), CI_ROUNDS
    return median_ci(samples), CI_SAMPLES


def count_outliers(deviation: np.ndarray, mad: float) -> int:
    """The samples whose modified z-score exceeds OUTLIER_Z, given their absolute deviations from
    the median (Iglewicz and Hoaglin): z = |x - median| / (1.4826·MAD), or, where MAD is 0 (more
    than half the samples on one value, as a timer's ticks quantise them), z = |x - median| /
    (1.253314·mean absolute deviation); with that 0 too, all samples are equal and none is out."""
    scale = MAD_TO_SIGMA * mad if mad > 0 else MEAN_AD_TO_SIGMA * float(deviation.mean())
    return int(np.sum(deviation > OUTLIER_Z * scale)) if scale > 0 else 0


def median_ci(samples: list[float], z: float = CI_Z) -> tuple[float, float] | None:
    """Distribution-free confidence interval of the median: the k-th smallest and k-th largest
    sample, k = floor((n - z·√n) / 2) (the sign test's normal approximation, Conover); None when
    there are too few samples for one (k < 1: n < 8 at 95 %)."""
    n = len(samples)
    k = math.floor((n - z * math.sqrt(n)) / 2)
    if k < 1:
        return None
    ordered = sorted(samples)
    return ordered[k - 1], ordered[n - k]


def round_medians(samples: list[float], round_sizes: list[int], min_size: int = 1) -> list[float]:
    """The median of each timing round's samples (rounds of fewer than ``min_size`` are skipped)."""
    medians, start = [], 0
    for size in round_sizes:
        if size >= max(min_size, 1):
            medians.append(float(np.median(samples[start:start + size])))
        start += size
    return medians


def round_spread(samples: list[float], round_sizes: list[int]) -> float:
    """How far the farthest timing round's median lies from the median of all ``samples`` (seconds):
    the stop rule's check that the rounds agree (rounds.precise_enough)."""
    median = statistics.median(samples)
    return max(abs(m - median) for m in round_medians(samples, round_sizes))


def noise_warnings(stats: Stats, medians_by_round: list[float] = ()) -> list[str]:
    """Warnings that name the option that helps, as hyperfine does."""
    warnings = []
    if len(medians_by_round) > 1:
        spread = (max(medians_by_round) - min(medians_by_round)) / stats.median_s
        if spread > DRIFT_THRESHOLD:
            warnings.append(f"drift: the medians of the {len(medians_by_round)} timing rounds span "
                            f"{spread:.0%} of the median; the machine's speed changed during the run "
                            "(other load); rerun when it is quieter, or raise --min-time")
    if stats.noisy:
        warnings.append(f"noisy: IQR is {stats.relative_iqr:.0%} of the median; close other programs, "
                        "pin to an idle core with --cores, or collect longer with --min-time")
    if stats.n >= 10 and stats.outliers / stats.n > OUTLIER_SHARE:
        warnings.append(f"{stats.outliers} of {stats.n} samples are outliers (MAD rule); "
                        "other load on the machine likely interfered; rerun or raise --min-time")
    return warnings
