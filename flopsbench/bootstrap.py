"""The interval of a median whose samples come in timing rounds, each round a fresh worker process.

A round's samples share its process (memory layout, the machine's state at the time), which moves
them together, so their spread understates the spread from one process, or run, to the next: the
rounds are the independent units. The **hierarchical bootstrap** (Saravanan, Berman and Sober,
"Application of the hierarchical bootstrap to multi-level data in neuroscience", NBDT 2020;
Kalibera and Jones, "Rigorous benchmarking in reasonable time", ISMM 2013: resample at every level,
process runs first) draws the rounds with replacement, then each drawn round's samples, and takes
the pooled median; its percentiles over RESAMPLES draws bound the median. numpy's generator is
seeded (SEED), so the same samples always give the same interval. Torch-free: numpy only."""

from __future__ import annotations

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2_000
SEED = 0


def usable_round_sizes(samples, round_sizes) -> bool:
    """Whether ``round_sizes`` are counts adding up to the samples (not so: missing, from an older
    report, or wrong, from a foreign one)."""
    return bool(isinstance(round_sizes, (list, tuple)) and round_sizes
                and all(isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in round_sizes)
                and sum(round_sizes) == len(samples))


def rounds_of(samples, round_sizes) -> list[np.ndarray] | None:
    """``samples`` split by timing round (rounds that timed none left out); None where the round
    sizes are not usable."""
    if not usable_round_sizes(samples, round_sizes):
        return None
    values = np.asarray(samples, dtype=float)
    return [part for part in np.split(values, np.cumsum(round_sizes)[:-1]) if len(part)]


def median_interval_over_rounds(rounds: list[np.ndarray], confidence: float = CONFIDENCE,
                                resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float]:
    """The hierarchical bootstrap percentile interval of the pooled median of ``rounds``."""
    return percentile_interval(hierarchical_medians(rounds, resamples, np.random.default_rng(seed)), confidence)


def percentile_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The bootstrap percentile interval: the central ``confidence`` share of ``values``."""
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def hierarchical_medians(rounds: list[np.ndarray], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """The pooled medians of ``resamples`` two-level bootstrap resamples of ``rounds`` (non-empty
    arrays): as many rounds as there are drawn with replacement, then each drawn round's size in
    samples drawn from it with replacement. Drawn without building the resamples, at a cost that
    grows with log(samples), not samples: a round drawn c times gives c·size uniform draws of its
    samples, and the k-th smallest of all draws is found by halving the sorted samples' ranks,
    splitting each round's draws in the current range between its halves by a binomial draw
    (given how many fell in the range, each falls in the lower half with the share of the round's
    samples there). An even count's median, the mean of the middle two, follows both ranks, one
    split while they share a range. The same distribution as np.median of resamples drawn index by index."""
    sizes = np.array([len(part) for part in rounds])
    values = np.concatenate(rounds)
    order = np.argsort(values, kind="stable")
    ordered, n, count = values[order], len(values), len(rounds)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    # each sample as round·n + its rank, sorted: searching for r·n + i counts round r's samples ranked below i
    keys, starts = np.sort(np.repeat(np.arange(count), sizes) * n + rank), np.cumsum(sizes) - sizes

    draws = rng.multinomial(count, np.full(count, 1 / count), size=resamples) * sizes  # (resamples, count)
    total = draws.sum(axis=1)
    # the two middle ranks (from 1; one for an odd total), each with its range of ranks [low, high), each
    # round's samples ranked below low and high, and each round's draws in the range
    target = np.stack([(total + 1) // 2, total // 2 + 1])
    low, high = np.zeros((2, resamples), np.int64), np.full((2, resamples), n)
    at_low, at_high = np.zeros((2, resamples, count), np.int64), np.broadcast_to(sizes, (2, resamples, count))
    inside = np.stack([draws, draws])

    def split(which: int, rows, mid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each round's samples ranked below mid, and how many of its draws in the range fall there."""
        at_mid = np.searchsorted(keys, np.arange(count) * n + mid[which, rows, None]) - starts
        span = at_high[which, rows] - at_low[which, rows]
        share = np.divide(at_mid - at_low[which, rows], span, out=np.zeros(span.shape), where=span > 0)
        return at_mid, rng.binomial(inside[which, rows], share)

    for _ in range((n - 1).bit_length()):
        mid = (low + high) // 2
        at_mid, lower = np.empty_like(at_low), np.empty_like(inside)
        at_mid[0], lower[0] = split(0, slice(None), mid)
        at_mid[1], lower[1] = at_mid[0], lower[0]  # one split of the draws while both ranks share a range
        apart = (low[0] != low[1]) | (high[0] != high[1])
        if apart.any():
            at_mid[1, apart], lower[1, apart] = split(1, apart, mid)
        in_lower = lower.sum(axis=-1)
        go_low = target <= in_lower
        low, high = np.where(go_low, low, mid), np.where(go_low, mid, high)
        at_low, at_high = np.where(go_low[..., None], at_low, at_mid), np.where(go_low[..., None], at_mid, at_high)
        inside = np.where(go_low[..., None], lower, inside - lower)
        target = np.where(go_low, target, target - in_lower)
    return (ordered[low[0]] + ordered[low[1]]) / 2
