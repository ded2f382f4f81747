"""One timing round of one row, and what needs all of a row's samples: its warnings, and when its
latency settled in each round (its cold start).

Torch-free (the onnxruntime board runner uses it): torch is imported only when its intra-op
thread count is to be set (``torch_threads=True``), through ``cpu.pinned``."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

from flopsbench.cpu import audit_affinity, pinned
from flopsbench.energy import Meter, finish_window, start_window
from flopsbench.report import Row
from flopsbench.spec import Execution, TimingBudget
from flopsbench.stats import DRIFT_MIN_ROUND, noise_warnings, round_medians, summarize
from flopsbench.timing import collect, wall_timer, warm_up

# A round's latency has settled at the first of SETTLE_RUN calls in a row within the row's noise
# band: its median ± max(SETTLE_IQRS × IQR, SETTLE_FLOOR × median) over all its samples.
SETTLE_RUN = 3
SETTLE_IQRS = 2.0
SETTLE_FLOOR = 0.05


@dataclass
class RoundLog:
    """What a round saw besides its samples: every warm-up call's seconds, by the round's timer (the
    first is the case's first call in its worker, unless its backend made that call already), and
    the energy record of its window (flopsbench.energy), if a meter was given."""

    warmup_s: list[float] = field(default_factory=list)
    energy: dict | None = None


def sample_round(row: Row, call: Callable[[], object], execution: Execution, budget: TimingBudget,
                 clock: Callable[[], float] = time.perf_counter, torch_threads: bool = False,
                 time_once: Callable[[], float] | None = None, keep_workers: bool = False,
                 log: RoundLog | None = None, meter: Meter | None = None) -> None:
    """Pin every thread to ``execution.cores`` (``keep_workers``: but those the runtime pinned
    itself, see cpu.pinned), warm up, then append one round of samples to
    ``row``; only ``call()`` is timed (by ``time_once`` if given, e.g. CUDA events; else the
    wall clock). The affinity of every thread, as in force, is read once per row, while the
    case's threads are alive. Interrupted (Ctrl-C), the row keeps the samples this round took.
    ``log`` gets the warm-up calls' seconds; with a ``meter``, the energy of the samples' calls,
    and of untimed calls after them until the window lasts a second (energy.MIN_WINDOW_S)."""
    if budget.exact_runs == 0:
        return  # fewer exact runs than rounds: this round has no share
    log = log if log is not None else RoundLog()
    samples: list[float] = []
    timer = time_once or wall_timer(call, clock)
    inferences = getattr(timer, "calls", 1)  # a throughput sample is the mean of several calls

    def untimed() -> int:
        timer()
        return inferences

    try:
        with pinned(execution.threads, execution.cores, torch_threads=torch_threads, keep_workers=keep_workers):
            # With a timer (CUDA events) each warm-up call also waits for the GPU, so the warm-up
            # cannot queue up far more work than it has time for.
            row.warmup_runs += warm_up(lambda: log.warmup_s.append(timer()), budget, clock)
            if row.affinity is None:
                row.affinity = audit_affinity(execution.cores)
            window = start_window(meter, clock) if meter is not None else None
            collect(call, budget, clock, time_once, samples)
            if isinstance(window, str):
                log.energy = {"unavailable": window}
            elif window is not None:
                log.energy = finish_window(meter, window, len(samples) * inferences, untimed, clock)
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
    summarize_cold_start(row)


def noise_band(samples: list[float]) -> tuple[float, float]:
    """The latencies a settled call falls within: the median ± max(2 × IQR, 5 % of the median)."""
    stats = summarize(samples)
    half = max(SETTLE_IQRS * stats.iqr_s, SETTLE_FLOOR * stats.median_s)
    return stats.median_s - half, stats.median_s + half


def settle_calls(calls: list[float], band: tuple[float, float], run: int = SETTLE_RUN) -> int | None:
    """How many of a round's calls (its warm-up, then its samples, in order) came before the first
    of ``run`` in a row within ``band`` (of all of them, if there are fewer); None if none did."""
    run = min(run, len(calls))
    low, high = band
    inside = [low <= seconds <= high for seconds in calls]
    for start in range(len(calls) - run + 1):
        if all(inside[start:start + run]):
            return start
    return None


def summarize_cold_start(row: Row) -> None:
    """The row's cold start from its rounds' records (``row.cold_start["rounds"]``, checked by the
    parent, each naming its ``round``: an index into ``round_sizes``): each round's settle count
    against the noise band of all the row's samples, and the medians over rounds of the build's
    seconds, the first call's and the settle count (over the rounds that settled)."""
    if not row.cold_start or not row.samples_s:
        return
    band = noise_band(row.samples_s)
    starts = [sum(row.round_sizes[:index]) for index in range(len(row.round_sizes))]
    rounds = row.cold_start["rounds"]
    for record in rounds:
        index = record["round"]
        samples = row.samples_s[starts[index]:starts[index] + row.round_sizes[index]]
        record["settle_calls"] = settle_calls(record["warmup_s"] + samples, band)

    def median(key: str):
        values = [record[key] for record in rounds if record.get(key) is not None]
        return statistics.median(values) if values else None

    row.cold_start.update(build_s=median("build_s"), first_call_s=median("first_call_s"),
                          settle_calls=median("settle_calls"), settle_band_s=list(band),
                          unsettled_rounds=sum(record["settle_calls"] is None for record in rounds))
