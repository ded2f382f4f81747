"""The timing loop: warm-up, then one sample per call until the budget is met. The clock is a
parameter so that the loop can be tested against a fake one; ``time_once`` replaces the
wall-clock sample where another timer is the truth (CUDA events on a GPU)."""

from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from typing import Callable, Iterator

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
            time_once: Callable[[], float] | None = None, samples: list[float] | None = None) -> list[float]:
    """One sample per call of ``time_once`` (the wall clock around ``fn`` by default) until the
    budget is met, appended to ``samples`` as they come (so an interrupted loop keeps them). A
    timer whose sample is the mean of several calls (attribute ``calls``) counts all of them
    towards the budget's time. The garbage collector is off meanwhile: a full collection of a
    torch process takes ~200 ms, which would land in one sample."""
    time_once = time_once or wall_timer(fn, clock)
    calls = getattr(time_once, "calls", 1)
    samples = [] if samples is None else samples
    total = 0.0
    with gc_paused():
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


@contextmanager
def gc_paused() -> Iterator[None]:
    """The garbage collector off for the block (restored as it was)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
