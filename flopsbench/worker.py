"""The timing worker: a fresh process that only times.

It gets a job (the cases' specs, the execution settings, the budget, the task, and for each case
what earlier rounds recorded of how it ran, ``earlier``), builds each case from its spec and seed
through its backend (or opens the case's ONNX file), pins itself, warms up, times, and streams
events back: ``ready``, ``start`` (pid, the device's environment), then per case ``case`` (begun)
and its result (``samples``, ``max_batch`` or ``breakdown``) or ``error``, and ``done`` (or
``interrupted``). A ``samples`` event also says how the case started in this process (its cold
start: the build's seconds, the first call's, every warm-up call's), how far its memory rose
(flopsbench.peak_memory) and the energy its calls took (flopsbench.energy). Events are JSON lines
on stdout::

    python -m flopsbench.worker --preload torch,flopsbench_zoo [--plugin my_ops.py] < job.json

Each worker is a new interpreter that times one job and exits (``flopsbench.transport``): a
process forked from another inherits its address-space layout, and on the development VM under
glibc's default allocator that layout alone moved pwconv 96x56x56 between 6.3 and 9.5 ms, so
rounds forked from one parent would all draw the same layout instead of sampling it (under
``--allocator retain`` too, rounds forked from one server once shared a 40 % slower gconv
384x14x14: docs/performance.md). Within the job, each case runs in a child
forked from the worker before it ran anything (``flopsbench.case_process``; not on CUDA), so no
case inherits the allocator state another left behind; the allocator's convention (``--allocator``,
flopsbench.allocator) is set before the first case.

It never counts, traces or exports: fvcore, the memory counter, fusion checks and ONNX export
perturb the speed of whatever runs after them in the same process (one forward pass under a
TorchDispatchMode made a conv stack 11-16 % faster), so they happen in the parent. Importable
without torch, fvcore, typer, rich or pandas: an ONNX job needs only onnxruntime and numpy.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

from flopsbench import allocator, case_process, plugins
from flopsbench.backends import Backend, Observed, Prepared, backend_for
from flopsbench.process_exit import PIPE_GONE, exit_now
from flopsbench.report import Row, error_line
from flopsbench.sampling import RoundLog, sample_round
from flopsbench.signals import ENDING
from flopsbench.spec import Execution, TimingBudget, Workload

PROG = "python -m flopsbench.worker"
Send = Callable[[dict], None]


@dataclass
class CaseStart:
    """How a case began in this worker: its place in the job (0: the process's first), the probe
    of its peak memory (started before the build), the seconds ``backend.prepare`` took, and the
    clock that timed them."""

    position: int
    memory: Any
    prepare_s: float | None
    clock: Callable[[], float] = time.perf_counter


def serve(job: dict, send: Send, clock: Callable[[], float] = time.perf_counter, *,
          setup_error: Exception | None = None, fork_cases: bool = False) -> None:
    """Run ``job``, sending its events. A fatal fault (a dead CUDA context) ends the job early:
    the parent starts a fresh worker for the cases left. ``setup_error``: why this process cannot
    time as asked (a plugin of the parent's did not load here, the allocator's convention cannot be
    had), the error of every case.
    ``fork_cases``: each case in a child forked from this process, where the backend allows
    (flopsbench.case_process; the worker's command line asks for it, in-process tests do not)."""
    execution = Execution.from_dict(job["execution"])
    budget = TimingBudget(**job["budget"])
    backend = backend_for(execution)
    send({"event": "start", "pid": os.getpid(), "environment": backend.environment()})
    task = TASKS[job["task"]]
    forked = fork_cases and backend.forks_cases and case_process.available()
    for position, case in enumerate(job["cases"]):
        send({"event": "case", "id": case["id"]})

        def run_case(case=case, position=position) -> bool:
            return serve_case(case, position, task, backend, execution, budget, send, clock, setup_error)

        def died(why: str, case=case) -> None:
            send({"event": "error", "id": case["id"], "error": why, "fatal": False})

        if not (case_process.in_own_process(run_case, died) if forked else run_case()):
            return  # nothing more can run in this process
    send({"event": "done"})


def serve_case(case: dict, position: int, task, backend: Backend, execution: Execution, budget: TimingBudget,
               send: Send, clock: Callable[[], float], setup_error: Exception | None) -> bool:
    """One case of the job; False after a fatal fault (nothing more can run in this process)."""
    failed = False
    try:
        if setup_error is not None:
            raise setup_error.with_traceback(None)
        prepared = None  # the last case gone before this one's memory is measured and it is built
        memory = backend.peak_memory()
        memory.start()
        started = clock()
        # the largest-batch search builds its own case: nothing of the timed one may stay resident
        prepared = None if task is find_max_batch else backend.prepare(case, execution)
        start = CaseStart(position, memory, clock() - started, clock)
        task(case, prepared, backend, execution, budget, send, start)
    except Exception as exc:  # noqa: BLE001 -- a failing case is data, not a crash
        fatal = backend.is_fatal(exc)
        send({"event": "error", "id": case["id"], "error": backend.explain(exc, execution), "fatal": fatal})
        if fatal:
            return False
        failed = True
    if failed:
        try:
            backend.release()  # after the except block, whose traceback held the case
        except Exception:  # noqa: BLE001 -- the context died after all: the cases left go on in a fresh worker
            return False
    return True


def time_case(case: dict, prepared: Prepared, backend: Backend, execution: Execution, budget: TimingBudget,
              send: Send, start: CaseStart | None = None) -> None:
    """One round of samples; sent even when interrupted or failing midway (the samples taken,
    with ``complete`` false), with what the settings observed meanwhile (e.g. the GPU's clocks),
    the case's cold start, its peak memory since ``start`` and the energy of its calls."""
    row = Row(Workload.from_dict(case["workload"]))
    log = RoundLog()
    complete, observed = False, None
    clock = start.clock if start else time.perf_counter
    try:
        with prepared.energy() as meter, prepared.settings() as observed:
            sample_round(row, prepared.call, execution, budget, clock, torch_threads=prepared.torch_threads,
                         time_once=prepared.time_once, keep_workers=prepared.pins_own_workers, log=log, meter=meter)
        complete = True
    finally:
        seen = observed if isinstance(observed, Observed) else Observed()
        send({"event": "samples", "id": case["id"], "samples_s": row.samples_s, "warmup_runs": row.warmup_runs,
              "affinity": row.affinity, "runtime": {**prepared.runtime, **seen.runtime}, "warnings": seen.warnings,
              "complete": complete, "cold_start": cold_start(prepared, start, log, row.samples_s),
              "peak_memory": start.memory.stop() if start else None, "energy": log.energy})


def cold_start(prepared: Prepared, start: CaseStart | None, log: RoundLog, samples: list[float]) -> dict:
    """The round's cold-start record: the build's seconds (the backend's own figure, else all of
    ``prepare``), the first call's (the backend's, else the round's first call: its first warm-up
    call, or its first sample without warm-up), every warm-up call's, and the case's place in the job."""
    build_s, first_call_s = prepared.build_s, prepared.first_call_s
    if build_s is None and start is not None:
        build_s = start.prepare_s
    if first_call_s is None and log.warmup_s + samples:
        first_call_s = (log.warmup_s + samples)[0]
    return {"build_s": build_s, "first_call_s": first_call_s, "warmup_s": log.warmup_s,
            "case_in_worker": start.position if start is not None else None}


def find_max_batch(case: dict, prepared: None, backend: Backend, execution: Execution, budget: TimingBudget,
                   send: Send, start: CaseStart | None = None) -> None:
    batch, warnings = backend.largest_batch(case, execution)
    send({"event": "max_batch", "id": case["id"], "max_batch": batch, "warnings": warnings})


def break_down(case: dict, prepared: Prepared, backend: Backend, execution: Execution, budget: TimingBudget,
               send: Send, start: CaseStart | None = None) -> None:
    """The whole model, timed as its rows were, in passes interleaved with each part at
    ``execution.breakdown_depth``, each part timed the same way (``backend.timer``)."""
    from flopsbench.breakdown import time_parts

    with prepared.settings():
        whole, parts = time_parts(prepared.module, prepared.x, execution.breakdown_depth, execution, budget,
                                  lambda call: backend.timer(call, execution), prepared.call, prepared.time_once)
    send({"event": "breakdown", "id": case["id"], "whole": whole, "parts": parts})


TASKS = {"time": time_case, "max_batch": find_max_batch, "breakdown": break_down}


def run(job: dict, send: Send, setup_error: Exception | None = None, fork_cases: bool = False) -> int:
    """``serve``, ending with ``interrupted`` on Ctrl-C, SIGTERM or SIGHUP (after the samples taken)."""
    try:
        serve(job, send, setup_error=setup_error, fork_cases=fork_cases)
        return 0
    except KeyboardInterrupt:
        send({"event": "interrupted"})
        return 130


def _interrupt_once(signum, frame) -> None:
    """The first ending signal interrupts the timing; later ones must not cut the report short.
    They are dropped by a handler, not SIG_IGN: one already caught but not yet handled (a terminal's
    SIGHUP and the parent's SIGINT arrive together) would otherwise print a "race condition" error.
    Once the job is answered (``_ANSWERED``), none raises: it would land in the exit's clean-up."""
    for sig in ENDING:
        signal.signal(sig, _ignore)
    if not _ANSWERED:
        raise KeyboardInterrupt


_ANSWERED: list[bool] = []  # not empty once main has its exit status: a signal then changes nothing


def _ignore(signum, frame) -> None:
    pass


def _own_process() -> None:
    for sig in ENDING:
        signal.signal(sig, _interrupt_once)


def parse_job(text: str) -> dict:
    """A job as read from a pipe, its structure checked before anything is built (ValueError)."""
    try:
        job = json.loads(text)
        Execution.from_dict(job["execution"]), TimingBudget(**job["budget"]), TASKS[job["task"]]
        [Workload.from_dict(case["workload"]) for case in job["cases"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a worker job ({error_line(exc)}); jobs are written by flopsbench's transports") from None
    return job


def main(argv: list[str] | None = None) -> int:
    """The command line: import ``--preload``, say ``ready``, then read one JSON job from stdin
    (to its end) and send its events, one JSON line each, on stdout."""
    parser = argparse.ArgumentParser(prog=PROG, description="Time a flopsbench job; events as JSON lines.")
    parser.add_argument("--preload", default="", help="comma list of modules to import before reading the job")
    parser.add_argument("--plugin", action="append", default=[],
                        help="a plugin the parent loaded, to load before reading the job (repeatable, in order)")
    args = parser.parse_args(argv)
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the events
    _own_process()

    def send(event: dict) -> None:
        protocol.write(json.dumps(event) + "\n")
        protocol.flush()

    try:
        status = _serve_stdin(args, send)
        _ANSWERED.append(True)  # a signal before this line is an interrupt; after it, nothing
    except KeyboardInterrupt:
        status = 130  # before the job began or after it was answered: nothing was measured, or all is sent
    return status


def _serve_stdin(args: argparse.Namespace, send: Send) -> int:
    for module in filter(None, args.preload.split(",")):
        try:
            importlib.import_module(module)
        except ImportError:
            pass  # e.g. torch on a board: a job that needs it fails and says why
    setup_error: Exception | None = None
    try:
        plugins.load_all(args.plugin)  # the parent's own operators and models, before any case is built
    except plugins.PluginError as exc:
        setup_error = exc
    send({"event": "ready", "pid": os.getpid()})
    text = sys.stdin.read()
    try:
        job = parse_job(text)
    except ValueError as exc:
        print(f"{PROG}: error: stdin: {exc}", file=sys.stderr)
        return 2
    try:
        allocator.apply(Execution.from_dict(job["execution"]).allocator)  # before any case is built: forks inherit it
    except allocator.AllocatorError as exc:
        setup_error = setup_error or exc
    try:
        return run(job, send, setup_error, fork_cases=True)
    except BrokenPipeError:  # the parent, or the connection to it, is gone: there is no one to tell
        os._exit(PIPE_GONE)  # not sys.exit: flushing the dead pipe at exit would print a traceback


if __name__ == "__main__":
    exit_now(main())  # its parent waits for the exit: no teardown of torch (~0.9 s a round)
