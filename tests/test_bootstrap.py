"""The hierarchical bootstrap of a median over timing rounds, and the interval every row reports."""

from __future__ import annotations

import numpy as np
import pytest

from flopsbench.bootstrap import hierarchical_medians, median_interval_over_rounds, rounds_of
from flopsbench.merge import merge
from flopsbench.report import Row
from flopsbench.spec import Shape, Workload
from flopsbench.stats import CI_ROUNDS, CI_SAMPLES, median_ci, summarize
from tests.conftest import make_report

ROUNDS = {"one": [[1.0, 4.0, 9.0, 16.0]], "uneven": [[1.0, 4.0], [9.0], [16.0, 25.0, 36.0], [2.0, 49.0]],
          "tied": [[1.0, 1.0, 2.0], [2.0, 3.0], [1.0, 5.0, 5.0]]}


@pytest.mark.parametrize("rounds", ROUNDS.values(), ids=ROUNDS.keys())
def test_hierarchical_medians_follow_the_two_level_bootstrap(rounds):
    """Drawn by halving ranks, they take each value as often as the pooled medians of resamples
    built draw by draw: rounds drawn with replacement, then each one's samples (binomial standard
    error below 0.0016 at 200,000 resamples)."""
    rounds = [np.asarray(part) for part in rounds]
    fast = hierarchical_medians(rounds, 200_000, np.random.default_rng(1))
    rng, count, widest = np.random.default_rng(2), len(rounds), max(map(len, rounds))
    drawn = rng.integers(0, count, (200_000, count))
    pooled = np.full((200_000, count, widest), np.nan)
    for index, part in enumerate(rounds):
        picked = (drawn == index)[..., None] & (np.arange(widest) < len(part))
        pooled[picked] = part[rng.integers(0, len(part), pooled.shape)][picked]
    direct = np.nanmedian(pooled.reshape(200_000, -1), axis=1)
    for value in np.union1d(fast, direct):
        assert (fast == value).mean() == pytest.approx((direct == value).mean(), abs=0.008)


def _row(samples: list[float], round_sizes) -> Row:
    row = Row(workload=Workload("conv", Shape(96, 56, 56), 10, (("kernel_size", 3),)))
    row.samples_s, row.round_sizes = samples, round_sizes
    return row


# three rounds of 30 samples: two processes ran at 1.00 ms, one at 1.20 ms
SLOW_PROCESS = [1e-3 * (1 + 0.001 * (i % 5)) for i in range(60)] + [1.2e-3 * (1 + 0.001 * (i % 5)) for i in range(30)]


def test_a_rows_interval_resamples_its_rounds():
    """The samples as independent, the pooled median (1.00 ms) is known to 0.1 %; but one process
    of three ran 20 % slower, and a next run's processes could too: a resample that draws it twice
    of three (7 of 27 draws) has its median at 1.20 ms, so the interval reaches it."""
    stats = _row(SLOW_PROCESS, [30, 30, 30]).stats
    assert stats.ci_method == CI_ROUNDS
    assert (stats.ci_low_s, stats.ci_high_s) == median_interval_over_rounds(rounds_of(SLOW_PROCESS, [30, 30, 30]))
    assert stats.ci_low_s <= stats.median_s < 1.01e-3 and stats.ci_high_s > 1.19e-3
    low, high = median_ci(SLOW_PROCESS)
    assert high < 1.01e-3 and low >= 1e-3


def test_the_same_samples_always_give_the_same_interval():
    first = summarize(SLOW_PROCESS, [30, 30, 30])
    assert summarize(list(SLOW_PROCESS), [30, 30, 30]) == first
    assert _row(list(SLOW_PROCESS), [30, 30, 30]).stats == first


@pytest.mark.parametrize("sizes", [[90], [], [30, 30], [30, 30, 31], [-30, 60, 60], [30.0, 30.0, 30.0],
                                   [True] * 90, None], ids=str)
def test_one_round_or_unusable_round_sizes_take_the_samples_as_independent(sizes):
    stats = _row(SLOW_PROCESS, sizes).stats
    assert stats.ci_method == CI_SAMPLES
    assert (stats.ci_low_s, stats.ci_high_s) == median_ci(SLOW_PROCESS)


def test_rounds_that_timed_nothing_are_left_out():
    """[0, 90, 0] is one round that timed: the samples as independent."""
    assert _row(SLOW_PROCESS, [0, 90, 0]).stats.ci_method == CI_SAMPLES
    assert _row(SLOW_PROCESS, [0, 60, 0, 30]).stats.ci_method == CI_ROUNDS


def test_fewer_than_eight_samples_have_no_interval():
    stats = _row(SLOW_PROCESS[:7], [3, 4]).stats
    assert (stats.ci_low_s, stats.ci_high_s, stats.ci_method) == (None, None, None)
    assert _row(SLOW_PROCESS[:8], [4, 4]).stats.ci_method == CI_ROUNDS


def test_a_pooled_cell_resamples_every_runs_rounds():
    """Two runs of one round each, pooled: two rounds; a run whose round sizes are unusable is one."""
    a, b = make_report([_row(SLOW_PROCESS[:60], [60])]), make_report([_row(SLOW_PROCESS[60:], [10, 10])])
    a.created_utc = "2024-01-01T00:00:00+00:00"  # two runs, not one report given twice
    (cell,) = merge_reports_cells(a, b)
    assert cell.round_sizes == [60, 30]
    assert cell.stats.ci_method == CI_ROUNDS
    assert (cell.stats.ci_low_s, cell.stats.ci_high_s) == median_interval_over_rounds(
        [np.asarray(SLOW_PROCESS[:60]), np.asarray(SLOW_PROCESS[60:])])


def merge_reports_cells(*reports):
    merged = merge([(f"run{index}.json", report) for index, report in enumerate(reports)])
    return [cell for row in merged.rows for cell in row.cells.values()]
