"""The timing loop against a fake clock: only the function under test advances time."""

from __future__ import annotations

import itertools
import random

import pytest

from flopsbench.report import Report, Row
from flopsbench.rounds import Case, measure, round_seed, rounds_with_samples
from flopsbench.sampling import sample_round
from flopsbench.spec import Execution, Shape, TimingBudget, Workload
from flopsbench.timing import collect, warm_up
from tests.fakes import ScriptedTransport


class FakeClock:
    """clock() returns the current fake time; fn() advances it by the next step. Counts both."""

    def __init__(self, steps):
        self.now = 0
        self.reads = 0
        self.calls = 0
        self._steps = itertools.cycle(steps) if isinstance(steps, (list, tuple)) else itertools.repeat(steps)

    def __call__(self):
        self.reads += 1
        return self.now

    def fn(self):
        self.calls += 1
        self.now += next(self._steps)


def budget(**kwargs) -> TimingBudget:
    base = dict(warmup_s=0, warmup_runs=0, min_time_s=0, min_runs=1, max_runs=10_000, exact_runs=None)
    base.update(kwargs)
    return TimingBudget(**base)


# --- collect --------------------------------------------------------------------------------------

def test_samples_are_exactly_the_time_fn_took():
    clock = FakeClock([3, 1, 4, 1, 5])
    samples = collect(clock.fn, budget(exact_runs=5), clock)
    assert samples == [3, 1, 4, 1, 5]
    assert clock.calls == 5
    assert clock.reads == 10  # two reads per sample, nothing else in between


def test_fractional_steps_are_exact():
    clock = FakeClock(0.25)
    assert collect(clock.fn, budget(min_time_s=1.0, min_runs=1), clock) == [0.25] * 4


@pytest.mark.parametrize("min_runs, min_time_s, expected", [
    (3, 10, 10),   # time is the binding condition
    (10, 2, 10),   # runs are the binding condition
    (3, 2, 3),
    (1, 0, 1),
    (4, 4, 4),     # both met at once
])
def test_min_time_and_min_runs_are_both_required(min_runs, min_time_s, expected):
    clock = FakeClock(1)
    samples = collect(clock.fn, budget(min_runs=min_runs, min_time_s=min_time_s), clock)
    assert samples == [1] * expected


def test_min_time_counts_only_timed_calls():
    """The budget is the sum of the samples: steps 2, 1, 2 reach 5 s after 3 calls (>=, not >)."""
    clock = FakeClock([2, 1])
    assert collect(clock.fn, budget(min_runs=1, min_time_s=5), clock) == [2, 1, 2]
    clock = FakeClock([2, 1])
    assert collect(clock.fn, budget(min_runs=1, min_time_s=5.5), clock) == [2, 1, 2, 1]



def test_a_sample_of_several_calls_counts_them_all_towards_the_time():
    """A GPU sample may be the mean of back-to-back calls (the timer's ``calls``): 125 ms per
    call × 2 calls is 250 ms of timing, so 1 s takes 4 samples, not 8."""
    def per_call():
        return 0.125
    per_call.calls = 2
    budget = TimingBudget(warmup_s=0, warmup_runs=0, min_time_s=1.0, min_runs=1, max_runs=1000)
    assert len(collect(lambda: None, budget, time_once=per_call)) == 4

def test_max_runs_caps_the_samples():
    clock = FakeClock(1)
    assert len(collect(clock.fn, budget(min_runs=3, min_time_s=1e9, max_runs=7), clock)) == 7
    clock = FakeClock(1)
    assert len(collect(clock.fn, budget(min_runs=50, min_time_s=0, max_runs=7), clock)) == 7


def test_exact_runs_replaces_min_time_min_runs_and_max_runs():
    clock = FakeClock(1)
    assert collect(clock.fn, budget(exact_runs=12, min_runs=100, min_time_s=1e9, max_runs=5), clock) == [1] * 12
    clock = FakeClock(1000)
    assert collect(clock.fn, budget(exact_runs=2, min_runs=1, min_time_s=0), clock) == [1000, 1000]


# --- warm_up --------------------------------------------------------------------------------------

@pytest.mark.parametrize("warmup_runs, warmup_s, expected", [
    (3, 5, 5),     # time binds: 5 calls of 1 s
    (6, 2, 6),     # count binds
    (0, 0, 0),     # no warm-up at all
    (2, 0, 2),
    (0, 3, 3),
])
def test_warm_up_needs_both_time_and_count(warmup_runs, warmup_s, expected):
    clock = FakeClock(1)
    runs = warm_up(clock.fn, budget(warmup_runs=warmup_runs, warmup_s=warmup_s), clock)
    assert runs == expected == clock.calls


def test_warm_up_is_capped_by_max_runs():
    clock = FakeClock(1)
    assert warm_up(clock.fn, budget(warmup_runs=3, warmup_s=100, max_runs=4), clock) == 4
    assert clock.calls == 4


def test_default_budget_values():
    b = TimingBudget()
    assert (b.warmup_s, b.warmup_runs, b.min_time_s, b.min_runs, b.max_runs, b.exact_runs, b.rounds) == (
        0.2, 3, 2.0, 10, 10_000, None, 4)


# --- rounds ------------------------------------------------------------------------------------------

def test_round_share_splits_time_and_counts():
    budget = TimingBudget(warmup_s=0.2, warmup_runs=3, min_time_s=1.5, min_runs=10, max_runs=100, rounds=3)
    share = budget.round_share(0)
    assert share.min_time_s == pytest.approx(0.5)
    assert (share.min_runs, share.max_runs, share.rounds) == (4, 34, 1)  # ceil(10/3), ceil(100/3)
    # every round is a fresh process, as cold as the first: each warms up alike
    assert [(budget.round_share(i).warmup_s, budget.round_share(i).warmup_runs) for i in range(3)] == [
        (pytest.approx(0.2 / 3), 3)] * 3


def test_round_share_distributes_exact_runs():
    budget = TimingBudget(exact_runs=7, rounds=3)
    assert [budget.round_share(i).exact_runs for i in range(3)] == [3, 2, 2]
    assert [TimingBudget(exact_runs=2, rounds=3).round_share(i).exact_runs for i in range(3)] == [1, 1, 0]


def test_rounds_interleave_cases_each_round_in_a_fresh_worker(tiny_execution):
    """Every case gets a share of every round; each round is one new worker process that times
    every case, in an order shuffled with the recorded seed."""
    import os
    import random
    from dataclasses import replace

    import flopsbench.runner as runner
    from flopsbench.report import Report
    from flopsbench.rounds import round_seed
    from flopsbench.spec import Shape, Workload

    execution = replace(tiny_execution, budget=replace(tiny_execution.budget, exact_runs=6, rounds=3))
    report = Report("ops", execution, {})
    workloads = [Workload("pwconv", Shape(8, 4, 4), 1), Workload("pwconv", Shape(4, 4, 4), 1),
                 Workload("pwconv", Shape(2, 4, 4), 1)]
    runner.run_all(report, workloads)  # the real transport: processes forked from a fresh server
    assert [row.round_sizes for row in report.rows] == [[2, 2, 2]] * 3
    pids = [worker["pid"] for worker in report.workers]
    assert len(report.workers) == 3 and len(set(pids)) == 3 and os.getpid() not in pids
    assert all(row.worker_pids == pids for row in report.rows)
    for index, worker in enumerate(report.workers):
        order = [f"pwconv {w.shape}" for w in workloads]
        random.Random(round_seed(execution.seed, index)).shuffle(order)
        assert (worker["round"], worker["order_seed"], worker["cases"]) == (index + 1, round_seed(0, index), order)
        assert worker["task"] == "time" and worker["exit_code"] == 0


@pytest.mark.parametrize("max_runs, rounds, shares", [
    (10, 4, [3, 3, 2, 2]),
    (100, 3, [34, 33, 33]),
    (2, 4, [1, 1, 0, 0]),  # fewer runs than rounds: the last rounds take none
    (8, 4, [2, 2, 2, 2]),
])
def test_round_shares_of_max_runs_sum_to_max_runs(max_runs, rounds, shares):
    budget = TimingBudget(min_runs=1, max_runs=max_runs, rounds=rounds)
    split = [budget.round_share(index) for index in range(rounds)]
    assert [share.max_runs for share in split] == shares and sum(shares) == max_runs
    assert all(share.min_runs <= share.max_runs for share in split)  # ceil(min_runs / rounds) is capped
    # a round whose share is 0 takes no samples, and none of the rounds loop's workers
    assert [share.exact_runs == 0 for share in split] == [share == 0 for share in shares]
    assert rounds_with_samples(budget) == sum(share > 0 for share in shares)


def test_max_runs_over_four_rounds_takes_at_most_max_runs_samples(tiny_execution):
    """--max-runs 10 over 4 rounds (--min-runs 10 and a long --min-time: max_runs binds) takes
    3 + 3 + 2 + 2 samples, not 4 × ceil(10 / 4) = 12."""
    budget = TimingBudget(warmup_s=0, warmup_runs=0, min_time_s=1e9, min_runs=10, max_runs=10, rounds=4)
    row = Row(Workload("pwconv", Shape(8, 4, 4), 1))
    for index in range(budget.rounds):
        sample_round(row, lambda: None, tiny_execution, budget.round_share(index))
    assert len(row.samples_s) == 10 and row.round_sizes == [3, 3, 2, 2]


def test_each_round_visits_the_cases_in_its_own_recorded_order():
    """The order of a round's cases is shuffled with a seed recorded in report.workers, and a
    different one each round (a case never always first, or always after the same one)."""
    def script(job, number):
        return [{"event": "samples", "id": case["id"], "samples_s": [0.001], "complete": True}
                for case in job["cases"]], 0

    cases = [Case(Row(Workload("pwconv", Shape(8 * (i + 1), 4, 4), 1)), {"workload": {}}) for i in range(6)]
    execution = Execution(budget=TimingBudget(exact_runs=4, rounds=4), seed=7)
    report = Report("ops", execution, {}, rows=[case.row for case in cases])
    measure(report, cases, ScriptedTransport(script))
    labels = [case.label for case in cases]
    orders = [worker["cases"] for worker in report.workers]
    assert [worker["order_seed"] for worker in report.workers] == [round_seed(7, index) for index in range(4)]
    for worker in report.workers:
        expected = list(labels)
        random.Random(worker["order_seed"]).shuffle(expected)
        assert worker["cases"] == expected
    assert len({tuple(order) for order in orders}) == 4  # four rounds, four orders
    assert all(row.round_sizes == [1, 1, 1, 1] for row in report.rows)
