"""Count here, time there: the worker process, its transports, and the rounds loop's fault policy.

Real workers time tiny pwconv stacks (8x4x4, a few samples); the fault cases use a scripted
transport (tests/fakes.py), so no process has to be killed to test what a dead one costs."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, replace

import pytest

from flopsbench.report import Report, Row
from flopsbench.rounds import Case, measure
from flopsbench.runner import run_all
from flopsbench.sampling import finish_row, sample_round
from flopsbench.spec import Execution, Shape, Workload
from flopsbench.transport import FreshProcesses
from tests.fakes import ScriptedTransport
from tests.test_board import BLOCKED, PRELUDE, ROOT, pw_onnx  # noqa: F401 -- pw_onnx is a fixture

PW = Workload("pwconv", Shape(8, 4, 4), 1)


def _cases(n: int) -> list[Case]:
    return [Case(Row(Workload("pwconv", Shape(8 * (i + 1), 4, 4), 1)), {"workload": {}}) for i in range(n)]


# --- the worker itself ------------------------------------------------------------------------------

def _worker(job: str, blocked=BLOCKED) -> subprocess.CompletedProcess:
    """``python -m flopsbench.worker`` with ``blocked`` libraries refused by the import system."""
    prelude = PRELUDE.replace("flopsbench.board", "flopsbench.worker").format(
        blocked=blocked, args=["--preload", "flopsbench.backends.ort"])
    return subprocess.run([sys.executable, "-c", prelude], input=job, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_the_worker_times_an_onnx_job_without_torch_fvcore_typer_rich_or_pandas(pw_onnx, tiny_execution):
    execution = replace(tiny_execution, runtime="onnxruntime")
    job = {"task": "time", "execution": execution.to_dict(), "budget": asdict(execution.budget),
           "cases": [{"id": 7, "workload": PW.to_dict(), "onnx": str(pw_onnx)}]}
    result = _worker(json.dumps(job))
    assert result.returncode == 0, result.stderr
    assert result.stderr.rstrip().endswith("LOADED="), result.stderr  # none of BLOCKED was imported
    events = [json.loads(line) for line in result.stdout.splitlines()]  # every stdout line is an event
    assert [e["event"] for e in events] == ["ready", "start", "case", "samples", "done"]
    _, start, _, samples, _ = events
    assert start["pid"] != os.getpid() and samples["id"] == 7 and samples["complete"] is True
    assert len(samples["samples_s"]) == 2 and all(s > 0 for s in samples["samples_s"])
    assert samples["runtime"]["provider"] == "CPUExecutionProvider"


@pytest.mark.parametrize("job", ["not json", "[]", '{"task": "time"}', '{"task": "burn", "execution": {}}'])
def test_a_bad_job_is_one_line_and_exit_2(job):
    result = _worker(job)
    assert result.returncode == 2 and [json.loads(line)["event"] for line in result.stdout.splitlines()] == ["ready"]
    (line,) = [line for line in result.stderr.splitlines() if not line.startswith("LOADED=")]
    assert line.startswith("python -m flopsbench.worker: error: stdin: not a worker job")


@pytest.mark.parametrize("prefix", [(), ("env", "FLOPSBENCH_TEST=1")], ids=["local", "through-a-prefix"])
def test_every_round_is_a_new_interpreter_started_ahead(tiny_execution, prefix):
    """4 rounds: 4 worker processes, none of them this one, all started before counting ended;
    a command prefix (here ``env``, on a board ``ssh HOST``) carries the same jobs and events."""
    transport = FreshProcesses(("flopsbench.backends.torch_cpu",), prefix=prefix)
    report = Report("ops", replace(tiny_execution, budget=replace(tiny_execution.budget, exact_runs=4)), {})
    run_all(report, [PW], transport=transport)
    (row,) = report.rows
    assert row.status == "ok" and len(row.samples_s) == 4 and row.flops == 16 * 8 * 8
    pids = [worker["pid"] for worker in report.workers]
    assert row.worker_pids == pids and len(set(pids)) == 4 and os.getpid() not in pids
    assert all(worker["exit_code"] == 0 for worker in report.workers)
    assert transport.waiting == []  # every one started got a job


# --- the timing loop in a worker ----------------------------------------------------------------------

def test_the_garbage_collector_is_off_while_samples_are_taken(tiny_execution):
    seen = []
    row = Row(PW)
    sample_round(row, lambda: seen.append(gc.isenabled()), tiny_execution, tiny_execution.budget)
    assert seen == [False, False] and gc.isenabled()


def test_an_interrupted_round_keeps_the_samples_it_took(tiny_execution):
    calls = []

    def call():
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt

    row = Row(PW)
    budget = replace(tiny_execution.budget, exact_runs=6)
    with pytest.raises(KeyboardInterrupt):
        sample_round(row, call, tiny_execution, budget)
    assert len(row.samples_s) == 2 and row.round_sizes == [2]


def test_a_row_without_samples_is_never_ok(tiny_execution):
    row = Row(PW)
    finish_row(row, tiny_execution)
    assert row.status == "not timed" and row.error.startswith("the run ended before")


# --- the rounds loop's fault policy ---------------------------------------------------------------

def _samples(case_id, n=1):
    return {"event": "samples", "id": case_id, "samples_s": [0.001] * n, "complete": True}


def _measure(cases, script, rounds=1) -> tuple[Report, ScriptedTransport]:
    execution = Execution(budget=replace(Execution().budget, exact_runs=rounds, rounds=rounds))
    report = Report("ops", execution, {})
    report.rows = [case.row for case in cases]
    transport = ScriptedTransport(script)
    measure(report, cases, transport)
    return report, transport


def test_a_worker_that_dies_costs_only_the_case_it_was_on():
    def script(job, number):
        ids = [case["id"] for case in job["cases"]]
        if number == 1:  # times the first case, then dies (a segfault) inside the second
            return [{"event": "start", "pid": 100}, {"event": "case", "id": ids[0]}, _samples(ids[0]),
                    {"event": "case", "id": ids[1]}], -11
        return [{"event": "start", "pid": 101}, *[e for i in ids for e in ({"event": "case", "id": i}, _samples(i))],
                {"event": "done"}], 0

    report, transport = _measure(_cases(3), script)
    assert transport.jobs[1]["cases"] == transport.jobs[0]["cases"][2:]  # the rest went on in a fresh worker
    by_status = sorted((row.status, row.worker_pids, row.error or "") for row in report.rows)
    assert by_status[0][:2] == ("error", []) and "exit code -11" in by_status[0][2]
    assert [pids for status, pids, _ in by_status[1:]] == [[100], [101]]
    assert [w["exit_code"] for w in report.workers] == [-11, 0] and report.exit_status() == 1


def test_after_a_fatal_fault_the_rest_go_on_in_a_fresh_worker():
    def script(job, number):
        ids = [case["id"] for case in job["cases"]]
        if number == 1:
            return [{"event": "start", "pid": 1}, {"event": "case", "id": ids[0]},
                    {"event": "error", "id": ids[0], "error": "CUDA error: an illegal memory access", "fatal": True}], 0
        return [{"event": "start", "pid": 2}, *[_samples(i) for i in ids], {"event": "done"}], 0

    report, transport = _measure(_cases(3), script)
    assert len(transport.jobs) == 2 and len(transport.jobs[1]["cases"]) == 2
    assert sorted(row.status for row in report.rows) == ["error", "ok", "ok"]


def test_a_worker_that_answers_nothing_fails_its_cases_instead_of_looping():
    report, transport = _measure(_cases(2), lambda job, number: ([], 1))
    assert len(transport.jobs) == 1
    assert all(row.status == "error" and "exit code 1" in row.error for row in report.rows)


def test_events_from_a_worker_are_checked_not_trusted():
    hostile = [
        "not a dict", {"event": 3}, {"event": "start", "pid": "1; rm -rf /", "environment": ["x"]},
        {"event": "samples", "id": "0", "samples_s": [1.0]},  # an id of the wrong type
        {"event": "samples", "id": 99, "samples_s": [1.0]},  # a case the job does not have
        {"event": "samples", "id": 0, "samples_s": ["1", None, -1.0, True, 0.5], "warmup_runs": "3",
         "affinity": "all", "runtime": [1], "complete": True},
        {"event": "done"},
    ]
    report, _ = _measure(_cases(1), lambda job, number: (hostile, 0))
    (row,) = report.rows
    assert row.samples_s == [0.5] and row.warmup_runs == 0 and row.affinity is None and row.runtime is None
    assert report.workers[0]["pid"] is None and row.worker_pids == [] and report.environment == {}


# --- stopping a row once its median is known ---------------------------------------------------------

def _row(*rounds: list[float]) -> Row:
    row = Row(PW)
    for samples in rounds:
        row.samples_s.extend(samples)
        row.round_sizes.append(len(samples))
    return row


@pytest.mark.parametrize("rounds, budget, stops", [
    ([[1.0, 1.001] * 10, [1.0, 1.001] * 10], {}, True),  # two processes agree, CI ±0.05 %
    ([[1.0, 1.001] * 10], {}, False),  # one process says nothing of the others
    ([[1.0] * 20, [1.05] * 20], {}, False),  # the two processes differ by 5 %: keep sampling
    ([[1.0, 1.001] * 10, [1.0, 1.001] * 10], {"stop_ci": 0.0}, False),  # turned off
    ([[1.0, 1.001] * 10, [1.0, 1.001] * 10], {"exact_runs": 40}, False),  # the user asked for a count
    ([[1.0, 1.001] * 3, [1.0, 1.001] * 3], {"min_runs": 20}, False),  # fewer than --min-runs
    ([[1.0, 2.0] * 10, [1.0, 2.0] * 10], {}, False),  # a wide interval
    ([[1.0, 1.001] * 10] * 3, {"rounds": 8}, False),  # of eight rounds, three agreeing processes are too few
    ([[1.0, 1.001] * 10] * 4, {"rounds": 8}, True),  # half of them may stop it
    ([[1.0, 1.001] * 10] * 2, {"rounds": 3}, True),  # never fewer than two
])
def test_a_row_stops_only_when_its_median_is_known(rounds, budget, stops):
    from flopsbench.rounds import precise_enough
    from flopsbench.spec import TimingBudget

    assert precise_enough(_row(*rounds), replace(TimingBudget(), **budget)) is stops


def test_a_precise_row_takes_no_more_rounds():
    """Round 2 makes the rows' medians precise; rounds 3 and 4 have nothing left to time."""
    def script(job, number):
        return [{"event": "start", "pid": number},
                *[_samples(case["id"], n=20) for case in job["cases"]], {"event": "done"}], 0

    execution = Execution(budget=replace(Execution().budget, min_runs=10))
    report = Report("ops", execution, {})
    cases = _cases(2)
    report.rows = [case.row for case in cases]
    transport = ScriptedTransport(script)
    measure(report, cases, transport)
    assert len(transport.jobs) == 2 and all(row.stopped_after_round == 2 for row in report.rows)
    assert all(row.round_sizes == [20, 20] and row.status == "ok" for row in report.rows)


@pytest.mark.parametrize("precise, stop_ci, started", [
    (True, 0.01, [(2, 0)]),  # the two rounds every row takes; none of the rest was needed
    (False, 0.01, [(2, 0), (2, 2)]),  # the third round starts the last two at once
    (False, 0.0, [(4, 0)]),  # no row stops early: every round's worker imports while counting
])
@pytest.mark.parametrize("rounds", [4, 8])
def test_workers_are_started_ahead_for_the_rounds_that_will_run(precise, stop_ci, started, rounds):
    """Each worker imports torch (~1.5 s of CPU): four of them slowed a one-model count from 1.5 to
    4.4 s on 2 cores, for rounds that a precise row never runs."""
    samples = [0.001] * 20 if precise else [0.001, 0.002] * 10  # the second: a median known to ±50 %

    def script(job, number):
        return [{"event": "start", "pid": number},
                *[{"event": "samples", "id": case["id"], "samples_s": samples, "complete": True}
                  for case in job["cases"]], {"event": "done"}], 0

    execution = Execution(budget=replace(Execution().budget, min_runs=10, stop_ci=stop_ci, rounds=rounds))
    report = Report("ops", execution, {})
    cases = _cases(1)
    report.rows = [case.row for case in cases]
    transport = ScriptedTransport(script)
    measure(report, cases, transport)
    scale = rounds // 4  # eight rounds: four before a row may stop, then the other four at once
    assert transport.started == [(count * scale, index * scale) for count, index in started]
    assert len(transport.jobs) == (2 * scale if precise and stop_ci else rounds)


@pytest.mark.parametrize("rounds, started", [
    (12, [(12, 0), (4, 8)]),  # eight ahead; when they are spent, the last four at once
    (20, [(20, 0), (12, 8), (4, 16)]),  # eight at a time
])
def test_workers_beyond_those_started_ahead_start_together(rounds, started):
    """The transport starts at most eight workers ahead. With twelve rounds, rounds 9-12 each
    started its own worker and waited for its import (5.3-5.5 s a round against 3.9-4.1 s): the
    rest now start together, and import side by side."""
    def script(job, number):
        return [{"event": "start", "pid": number},
                *[{"event": "samples", "id": case["id"], "samples_s": [0.001] * 3, "complete": True}
                  for case in job["cases"]], {"event": "done"}], 0

    execution = Execution(budget=replace(Execution().budget, min_runs=1, stop_ci=0, rounds=rounds))
    report = Report("ops", execution, {})
    cases = _cases(1)
    report.rows = [case.row for case in cases]
    transport = ScriptedTransport(script, max_ahead=8)
    measure(report, cases, transport)
    assert transport.started == started
    assert len(transport.jobs) == rounds


# --- Ctrl-C, for real ---------------------------------------------------------------------------------

def _pinned_worker(session: int) -> int | None:
    """A worker of ``session`` with every thread pinned to core 0 (the default --cores), or None."""
    for entry in os.listdir("/proc"):
        try:
            pid = int(entry)
            if os.getsid(pid) != session or b"flopsbench.worker" not in open(f"/proc/{pid}/cmdline", "rb").read():
                continue
            threads = os.listdir(f"/proc/{pid}/task")
            if all(os.sched_getaffinity(int(tid)) == {0} != os.sched_getaffinity(0) for tid in threads):
                return pid
        except (ValueError, OSError):
            continue
    return None


def _timing_worker(session: int, polls: int = 3, interval_s: float = 0.15) -> bool:
    """Whether a worker of ``session`` is timing: it pins all its threads to core 0 then, and keeps
    them there. Seen on ``polls`` polls in a row, because something in torch's import pins the main
    thread alone to core 0 for ~10 ms while the worker still imports (a signal then finds no round
    to keep: the test failed under load for that)."""
    seen = set()
    for _ in range(polls):
        seen.add(_pinned_worker(session))
        time.sleep(interval_s)
    return len(seen) == 1 and None not in seen


@pytest.mark.parametrize("signame, to_group", [("SIGINT", True), ("SIGINT", False), ("SIGTERM", False),
                                               ("SIGHUP", True)],
                         ids=["ctrl-c-to-the-group", "sigint-to-flopsbench-only", "sigterm-like-timeout",
                              "sighup-terminal-closed"])
def test_a_signal_during_a_round_keeps_the_samples_it_took(tmp_path, signame, to_group):
    """A terminal's Ctrl-C (or its hang-up) reaches every process of the group (flopsbench and its
    workers); ``kill``, ``timeout`` or Slurm reach flopsbench only, which passes it on. Each way
    the round in progress ends with the samples it took, the view is written, and the report
    says it is incomplete (exit 128 + the signal: 130, 143, 129)."""
    import signal

    signum = getattr(signal, signame)

    results = tmp_path / "results"
    # ~1 ms a call: --min-time 60 over 2 rounds and 10 000 runs at most keep round 1 going for 5+ s
    process = subprocess.Popen([sys.executable, "-m", "flopsbench", "ops", "--op", "pwconv", "--shape", "64x56x56",
                                "--layers", "1", "--min-time", "60", "--rounds", "2", "--warmup", "0",
                                "--stop-ci", "0", "--save", "--results-dir", str(results), "--format", "json",
                                "-o", str(tmp_path / "out.json")],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _timing_worker(process.pid):
            time.sleep(0.1)
        time.sleep(1.0)  # round 1 has taken samples (~1 ms each), however loaded the machine
        if to_group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr and "incomplete" in stderr
    if signame != "SIGINT":
        assert f"interrupted ({signame})" in stderr
    data = json.loads((tmp_path / "out.json").read_text())
    (row,) = data["rows"]
    assert data["complete"] is False and row["round_sizes"] and row["round_sizes"][0] > 10  # the round cut short
    assert row["status"] == "ok" and len(row["samples_s"]) == sum(row["round_sizes"])


def test_a_reports_worker_records_are_checked_when_read(hand_report):
    data = hand_report.to_dict()
    for hostile, kept in (("not a list", []), ([{"pid": 1}, "x", 3], [{"pid": 1}])):
        data["workers"] = hostile
        assert Report.from_dict(data).workers == kept
    del data["workers"]  # a report from before the workers existed
    assert Report.from_dict(data).workers == []


def test_at_most_max_ahead_workers_are_started_ahead():
    from flopsbench.transport import MAX_AHEAD

    transport = FreshProcesses(prefix=("true",))  # 'true' ignores the rest: nothing is imported
    try:
        assert transport.start(50) == MAX_AHEAD  # how many it launched
        assert len(transport.waiting) == MAX_AHEAD
        assert transport.start(3) == 0
        assert len(transport.waiting) == MAX_AHEAD
    finally:
        transport.close()


def test_ctrl_c_while_starting_is_one_line():
    """The CLI's imports take seconds; Ctrl-C during them is one line and exit 130, not a traceback."""
    import signal
    import time

    process = subprocess.Popen([sys.executable, "-m", "flopsbench", "list"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)  # importing torch
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert stderr.strip() == "flopsbench: interrupted while starting; nothing was measured"


def test_a_signal_after_the_job_is_answered_changes_nothing(monkeypatch):
    """A worker's first ending signal raises KeyboardInterrupt (the round stops, its samples are
    sent) unless the job is answered: then it would land in the exit's clean-up (torch's
    finalizers) as a traceback on flopsbench's stderr. Later signals are dropped either way."""
    import signal

    from flopsbench import worker

    installed = []
    monkeypatch.setattr(worker.signal, "signal", lambda signum, handler: installed.append(handler))
    monkeypatch.setattr(worker, "_ANSWERED", [True])
    worker._interrupt_once(signal.SIGINT, None)
    assert installed and set(installed) == {worker._ignore}
    monkeypatch.setattr(worker, "_ANSWERED", [])
    with pytest.raises(KeyboardInterrupt):
        worker._interrupt_once(signal.SIGINT, None)
