"""One timing round of one row, and the warnings that need all of a row's samples.

Torch-free (the onnxruntime board runner uses it): torch is imported only when its intra-op
thread count is to be set (``torch_threads=True``), through ``cpu.pinned``."""

from __future__ import annotations

import time
from typing import Callable

from flopsbench.cpu import audit_affinity, pinned
from flopsbench.report import Row
from flopsbench.spec import Execution, TimingBudget
from flopsbench.stats import DRIFT_MIN_ROUND, noise_warnings, round_medians, summarize
from flopsbench.timing import collect, warm_up


def sample_round(row: Row, call: Callable[[], object], execution: Execution, budget: TimingBudget,
                 clock: Callable[[], float] = time.perf_counter, torch_threads: bool = False,
                 time_once: Callable[[], float] | None = None, keep_workers: bool = False) -> None:
    """Pin every thread to ``execution.cores`` (``keep_workers``: but those the runtime pinned
    itself, see cpu.pinned), warm up, then append one round of samples to
    ``row``; only ``call()`` is timed (by ``time_once`` if given, e.g. CUDA events; else the
    wall clock). The affinity of every thread, as in force, is read once per row, while the
    case's threads are alive. Interrupted (Ctrl-C), the row keeps the samples this round took."""
    if budget.exact_runs == 0:
        return  # fewer exact runs than rounds: this round has no share
    samples: list[float] = []
    try:
        with pinned(execution.threads, execution.cores, torch_threads=torch_threads, keep_workers=keep_workers):
            # With a timer (CUDA events) each warm-up call also waits for the GPU, so the warm-up
            # cannot queue up far more work than it has time for.
            row.warmup_runs += warm_up(time_once or call, budget, clock)
            if row.affinity is None:
                row.affinity = audit_affinity(execution.cores)
            collect(call, budget, clock, time_once, samples)
    finally:
        row.samples_s.extend(samples)
        row.round_sizes.append(len(samples))


def finish_row(row: Row, execution: Execution) -> None:
    """Warnings that need every sample: noise, drift, and threads found outside the pinned cores;
    a note where the rounds were too short to check drift. A row that was never timed is not 'ok'."""
    if row.affinity is not None and not row.affinity["all_within_cores"]:
        row.warnings.append(f"some threads ran outside the pinned cores {list(execution.cores)}")
    if row.samples_s:
        # Round medians say something about drift only with a few samples each.
        medians = round_medians(row.samples_s, row.round_sizes, min_size=DRIFT_MIN_ROUND)
        timed = [size for size in row.round_sizes if size]
        if len(timed) > 1 and len(medians) < 2:
            per_round = f"{min(timed)}" if min(timed) == max(timed) else f"{min(timed)} to {max(timed)}"
            row.notes.append(f"drift not checked: rounds of fewer than {DRIFT_MIN_ROUND} samples ({per_round} "
                             "per round); raise --min-runs or --runs")
        row.warnings.extend(noise_warnings(summarize(row.samples_s), medians))
    elif row.status == "ok":
        row.status, row.error = "not timed", "the run ended before this row's first sample"
