"""The timing loop: warm-up, then one sample per call until the budget is met. The clock is a
parameter so that the loop can be tested against a fake one."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from flopsbench.spec import TimingBudget

Clock = Callable[[], float]


@dataclass(frozen=True)
class Timed:
    samples_s: list[float]
    warmup_runs: int


def warm_up(fn: Callable[[], object], budget: TimingBudget, clock: Clock = time.perf_counter) -> int:
    """Call ``fn`` until both the warm-up time and run count are reached; returns the count."""
    runs, start = 0, clock()
    while runs < budget.warmup_runs or clock() - start < budget.warmup_s:
        fn()
        runs += 1
        if runs >= budget.max_runs:
            break
    return runs


def collect(fn: Callable[[], object], budget: TimingBudget, clock: Clock = time.perf_counter) -> list[float]:
    """Time one call per sample; only ``fn()`` sits between the two clock reads."""
    samples: list[float] = []
    total = 0.0
    while True:
        if budget.exact_runs is not None:
            if len(samples) >= budget.exact_runs:
                break
        elif len(samples) >= budget.max_runs or (len(samples) >= budget.min_runs and total >= budget.min_time_s):
            break
        start = clock()
        fn()
        elapsed = clock() - start
        samples.append(elapsed)
        total += elapsed
    return samples
