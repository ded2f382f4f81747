"""The rounds loop every measuring command shares (``ops``, ``model``, the board runner).

Sampling is split into ``budget.rounds`` rounds. Each round is one job for one new worker
process, which times every case still ok (and not yet known to --stop-ci), in an order shuffled
with a recorded seed, so that the per-round medians carry the variation between processes (and
between positions in a round), and the drift and noise warnings see it. Then, if asked, each
case's largest batch and its per-module breakdown are found, each in a worker of its own that
holds no other case.

A failing case becomes an error row; a worker that dies, or ends early after a fatal fault (a
dead CUDA context), costs only the case it was on: the rest go on in a fresh worker. Events
come from other processes (and machines), so their fields are checked, not trusted.
Torch-free."""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

from flopsbench import energy, peak_memory
from flopsbench.breakdown import check_times
from flopsbench.report import Report, Row, utc_now
from flopsbench.sampling import finish_row, summarize_cold_start
from flopsbench.spec import TimingBudget
from flopsbench.stats import median_ci, round_spread

OnStep = Callable[[Report, str], None]
BREAKDOWN_WARMUP_S = 0.05
BREAKDOWN_PASSES = 3  # passes over the whole model and its parts in a --breakdown job, each a share of the time
RESULT = {"time": "samples", "max_batch": "max_batch", "breakdown": "breakdown"}  # the event that answers a task
TASK_OPTION = {"max_batch": "--find-max-batch", "breakdown": "--breakdown"}  # steps after timing


@dataclass
class Case:
    """A row to time and its entry in a worker's job: the workload, plus what the backend staged
    for it in the parent (e.g. the ONNX file)."""

    row: Row
    job: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.row.workload.name} {self.row.workload.shape}"


def rounds_with_samples(budget: TimingBudget) -> int:
    """The rounds that take samples (with ``exact_runs`` below ``rounds``, the last ones take none)."""
    return sum(budget.round_share(index).exact_runs != 0 for index in range(budget.rounds))


def rounds_before_stop(budget: TimingBudget) -> int:
    """The rounds a row takes before it may stop (``stop_ci``): half of them, at least two. Each
    round is one draw of a worker process, and processes differ (pwconv 384x14x14 6.7-7.1 ms over
    eight), so two rounds that happen to agree say little about the next run's median."""
    return max(2, -(-budget.rounds // 2))


def workers_ahead(budget: TimingBudget) -> int:
    """The workers started while the cases are counted: one per round, except where rows may stop
    early (``stop_ci``): then those the rows take before they may. Each imports torch (~1.5 s of
    CPU); on a 2-core machine four imports stretched a one-model count from 1.5 to 4.4 s, for
    rounds often not run. The rest start together when the first round after those started begins
    (time_cases): the transport may start fewer than asked (transport.MAX_AHEAD)."""
    rounds = rounds_with_samples(budget)
    return min(rounds, rounds_before_stop(budget)) if budget.stop_ci and budget.exact_runs is None else rounds


def round_seed(seed: int, index: int) -> int:
    """The seed that shuffles round ``index`` (recorded in the report's ``workers``)."""
    return seed * 1000 + index


def measure(report: Report, cases: Iterable[Case], transport, on_step: OnStep = lambda report, label: None) -> None:
    """Take ``cases`` (an iterable, so a caller may count them as they are taken), time them
    through ``transport`` (closed at the end), and mark the report complete; the rows are
    finished (noise warnings, never-timed rows not 'ok') even when interrupted."""
    started = transport.start(workers_ahead(report.execution.budget))  # they import while ``cases`` are counted
    try:
        time_cases(report, list(cases), transport, started, on_step)
        report.complete = True
        report.finished_utc = utc_now()
    finally:
        transport.close()
        for row in report.rows:
            finish_row(row, report.execution)


def time_cases(report: Report, cases: list[Case], transport, started: int,
               on_step: OnStep = lambda report, label: None) -> None:
    """Every round, then --find-max-batch and --breakdown where asked. ``started``: the workers
    started so far."""
    execution = report.execution
    rounds = execution.budget.rounds
    for index in range(rounds):
        budget = execution.budget.round_share(index)
        if budget.exact_runs == 0:
            continue  # --runs smaller than --rounds: this round has no share
        due = [case for case in cases if case.row.status == "ok" and case.row.stopped_after_round is None]
        if due and index == started:  # the workers started are spent: the rest start at once, to
            started += transport.start(rounds - index)  # import side by side, not one a round
        seed = round_seed(execution.seed, index)
        random.Random(seed).shuffle(due)
        run_job(report, due, "time", budget, transport,
                lambda case: on_step(report, f"round {index + 1}/{rounds} {case.label}"),
                round_index=index, seed=seed)
        for case in due:
            if index + 1 < rounds and precise_enough(case.row, execution.budget):
                case.row.stopped_after_round = index + 1
    if execution.option("find_max_batch"):
        for case in [case for case in cases if case.row.status == "ok"]:
            run_job(report, [case], "max_batch", execution.budget, transport,
                    lambda case: on_step(report, f"largest batch {case.label}"))
    if execution.breakdown_depth > 0:
        # --breakdown-time in all per part (and for the whole), shared among the passes
        budget = TimingBudget(warmup_s=BREAKDOWN_WARMUP_S, min_time_s=execution.breakdown_time_s,
                              min_runs=BREAKDOWN_PASSES, rounds=BREAKDOWN_PASSES)
        for case in [case for case in cases if case.row.status == "ok" and case.row.breakdown is not None]:
            run_job(report, [case], "breakdown", budget, transport,
                    lambda case: on_step(report, f"breakdown {case.label}"))


def precise_enough(row: Row, budget: TimingBudget) -> bool:
    """Whether a row may stop before its budget is spent: at least ``rounds_before_stop`` rounds
    (worker processes) and ``min_runs`` samples, the samples' 95 % confidence interval of the
    median (order statistics: this run's precision, not the rounds-resampled interval the row
    reports) within ± ``stop_ci`` of it, and every round's median within ± 2·``stop_ci`` of it
    (so that a difference between processes, or drift, keeps it sampling). Never with
    ``exact_runs``."""
    if not budget.stop_ci or budget.exact_runs is not None or len(row.round_sizes) < rounds_before_stop(budget):
        return False
    if len(row.samples_s) < budget.min_runs or min(row.round_sizes) < 1:
        return False
    ci = median_ci(row.samples_s)
    if ci is None:
        return False
    median = statistics.median(row.samples_s)
    return ((ci[1] - ci[0]) / 2 <= budget.stop_ci * median
            and round_spread(row.samples_s, row.round_sizes) <= 2 * budget.stop_ci * median)


def run_job(report: Report, cases: list[Case], task: str, budget: TimingBudget, transport,
            on_result: Callable[[Case], None], round_index: int | None = None, seed: int | None = None) -> None:
    """``task`` for ``cases`` in worker processes: one, and a fresh one for the cases left
    whenever a worker ends early."""
    pending = {index: case for index, case in enumerate(cases)}
    while pending:
        record = {"task": task, "round": None if round_index is None else round_index + 1, "order_seed": seed,
                  "cases": [case.label for case in pending.values()], "pid": None, "exit_code": None}
        report.workers.append(record)
        job = {"task": task, "execution": report.execution.to_dict(), "budget": asdict(budget),
               "cases": [{"id": index, **case.job, "earlier": case.row.runtime or {}} for index, case in pending.items()]}
        events = WorkerEvents(report, record, pending, task, on_result)
        record["exit_code"] = transport.run(job, events.apply)
        if events.interrupted:
            raise KeyboardInterrupt
        events.settle(transport.ended(record["exit_code"]))


class WorkerEvents:
    """Applies one worker's events to the rows of its job."""

    def __init__(self, report: Report, record: dict, pending: dict[int, Case], task: str,
                 on_result: Callable[[Case], None]):
        self.report, self.record, self.pending, self.task, self.on_result = report, record, pending, task, on_result
        self.cases = dict(pending)
        self.current: int | None = None  # the case begun and not yet answered
        self.answered = 0
        self.interrupted = False

    def apply(self, event: dict) -> None:
        kind = event.get("event") if isinstance(event, dict) else None
        if kind == "start":
            self.record["pid"] = _int(event.get("pid"))
            environment = event.get("environment")
            if isinstance(environment, dict):
                for key, value in environment.items():
                    self.report.environment.setdefault(str(key), value)
        elif kind == "case":
            self.current = self._case_id(event)
        elif kind == "interrupted":
            self.interrupted = True
        elif kind in ("samples", "max_batch", "breakdown", "error"):
            case_id = self._case_id(event)
            if case_id is None:
                return
            getattr(self, f"_{kind}")(self.cases[case_id].row, event)
            answered = kind == "error" or (kind == RESULT[self.task] and event.get("complete", True) is True)
            if case_id in self.pending and answered:
                case = self.pending.pop(case_id)
                self.current, self.answered = None, self.answered + 1
                if kind != "error":
                    self.on_result(case)

    def _case_id(self, event: dict) -> int | None:
        case_id = event.get("id")
        return case_id if isinstance(case_id, int) and case_id in self.cases else None

    def _samples(self, row: Row, event: dict) -> None:
        samples = _seconds(event.get("samples_s"))
        row.samples_s.extend(samples)
        row.round_sizes.append(len(samples))
        row.warmup_runs += _int(event.get("warmup_runs")) or 0
        if row.affinity is None and isinstance(event.get("affinity"), dict):
            row.affinity = event["affinity"]
        if isinstance(event.get("runtime"), dict):
            row.runtime = {**(row.runtime or {}), **event["runtime"]}
        for warning in _list(event.get("warnings")):  # e.g. the GPU throttled: said once, however many rounds
            if isinstance(warning, str) and warning not in row.warnings:
                row.warnings.append(warning)
        pid = self.record["pid"]
        if samples and pid is not None and pid not in row.worker_pids:
            row.worker_pids.append(pid)
        self._round_records(row, event)

    @staticmethod
    def _round_records(row: Row, event: dict) -> None:
        """The round's cold start, peak memory and energy, each kept if it has the fields it should,
        and the row's summaries of them brought up to date."""
        cold = _cold_start_round(event.get("cold_start"), len(row.round_sizes) - 1)
        if cold is not None:
            row.cold_start = row.cold_start or {"rounds": []}
            row.cold_start["rounds"].append(cold)
            summarize_cold_start(row)
        memory = _peak_memory_round(event.get("peak_memory"))
        if memory is not None:
            row.peak_memory = peak_memory.with_round(row.peak_memory, memory)
        spent = _energy_round(event.get("energy"))
        if spent is not None:
            row.energy = energy.with_round(row.energy, spent)

    def _max_batch(self, row: Row, event: dict) -> None:
        row.max_batch = _int(event.get("max_batch"))
        row.warnings.extend(str(w) for w in _list(event.get("warnings")))

    def _breakdown(self, row: Row, event: dict) -> None:
        timed = {str(part.get("part")): part for part in _list(event.get("parts")) if isinstance(part, dict)}
        for part in row.breakdown or []:
            part.update(_timed(timed.get(part["part"])))
        row.breakdown_whole = _timed(event.get("whole"))
        row.warnings.extend(check_times(row.breakdown or [], row.breakdown_whole))

    def _error(self, row: Row, event: dict) -> None:
        message = str(event.get("error") or "the worker reported an error without a message")
        if self.task == "time":
            row.status, row.error = "error", message
        else:  # a step after timing that fails never costs the row its timing
            row.warnings.append(f"{TASK_OPTION[self.task]} failed: {message}")

    def settle(self, why: str) -> None:
        """After the worker ended (``why``: how, e.g. its exit code): the case it died on is an error;
        if it answered nothing at all, no fresh worker would do better, so every case left is."""
        stuck = [self.current] if self.current in self.pending else []
        if not stuck and self.answered == 0:
            stuck = list(self.pending)
        for case_id in stuck:
            self._error(self.pending.pop(case_id).row, {"error": why})


def _timed(item) -> dict:
    """One timed item of a breakdown event: its samples, their median, and the samples each pass
    took (dropped unless they count the samples)."""
    item = item if isinstance(item, dict) else {}
    samples = _seconds(item.get("samples_s"))
    sizes = _list(item.get("pass_sizes"))
    counted = all(_int(size) is not None and size >= 0 for size in sizes) and sum(sizes) == len(samples)
    return {"samples_s": samples, "pass_sizes": sizes if counted else [],
            "median_s": statistics.median(samples) if samples else None}


def _cold_start_round(value, round_index: int) -> dict | None:
    """A round's cold-start record as a worker sent it, checked: durations or None, the warm-up
    calls' durations, the case's place in its job; ``round`` is the index of its samples' round."""
    if not isinstance(value, dict):
        return None
    position = _int(value.get("case_in_worker"))
    return {"round": round_index, "build_s": _second(value.get("build_s")),
            "first_call_s": _second(value.get("first_call_s")), "warmup_s": _seconds(value.get("warmup_s")),
            "case_in_worker": position if position is not None and position >= 0 else None}


def _peak_memory_round(value) -> dict | None:
    """A round's peak-memory record, checked: byte counts, how they were measured, why one is missing."""
    if not isinstance(value, dict):
        return None
    record = {key: value[key] for key in peak_memory.FIGURES if _int(value.get(key)) is not None and value[key] >= 0}
    record.update({key: value[key] for key in ("method", "unavailable") if isinstance(value.get(key), str)})
    return record or None


def _energy_round(value) -> dict | None:
    """A round's energy record, checked: joules over a window's seconds and its inferences, with
    their source; or why none was measured."""
    if not isinstance(value, dict):
        return None
    joules, seconds, calls = _second(value.get("joules")), _second(value.get("window_s")), _int(value.get("calls"))
    if isinstance(value.get("source"), str) and joules is not None and seconds and calls and calls > 0:
        return {"source": value["source"], "joules": joules, "window_s": seconds, "calls": calls}
    if isinstance(value.get("unavailable"), str):
        return {"unavailable": value["unavailable"]}
    return None


def _second(value) -> float | None:
    """One finite non-negative number (not a boolean), else None."""
    checked = _seconds([value])
    return checked[0] if checked else None


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _seconds(values) -> list[float]:
    """The durations in ``values``: finite non-negative numbers (not booleans), others dropped."""
    return [float(v) for v in _list(values) if isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v) and v >= 0]


def _list(value) -> list:
    return value if isinstance(value, list) else []
