"""The timing loop: warm-up, then one sample per call until the budget is met. The clock is a
parameter so that the loop can be tested against a fake one; ``time_once`` replaces the
wall-clock sample where another timer is the truth (CUDA events on a GPU)."""

from __future__ import annotations

import time
from typing import Callable

from flopsbench.spec import TimingBudget

Clock = Callable[[], float]


def warm_up(fn: Callable[[], object], budget: TimingBudget, clock: Clock = time.perf_counter) -> int:
    """Call ``fn`` until both the warm-up time and run count are reached; returns the count."""
    runs, start = 0, clock()
    while runs < budget.warmup_runs or clock() - start < budget.warmup_s:
        fn()
        runs += 1
        if runs >= budget.max_runs:
            break
    return runs


def wall_timer(fn: Callable[[], object], clock: Clock = time.perf_counter) -> Callable[[], float]:
    """Seconds of one call of ``fn``; only ``fn()`` sits between the two clock reads."""
    def time_once() -> float:
        start = clock()
        fn()
        return clock() - start
    return time_once


def collect(fn: Callable[[], object], budget: TimingBudget, clock: Clock = time.perf_counter,
            time_once: Callable[[], float] | None = None) -> list[float]:
    """One sample per call of ``time_once`` (the wall clock around ``fn`` by default) until the
    budget is met. A timer whose sample is the mean of several calls (attribute ``calls``)
    counts all of them towards the budget's time."""
    time_once = time_once or wall_timer(fn, clock)
    calls = getattr(time_once, "calls", 1)
    samples: list[float] = []
    total = 0.0
    while True:
        if budget.exact_runs is not None:
            if len(samples) >= budget.exact_runs:
                break
        elif len(samples) >= budget.max_runs or (len(samples) >= budget.min_runs and total >= budget.min_time_s):
            break
        elapsed = time_once()
        samples.append(elapsed)
        total += elapsed * calls
    return samples
