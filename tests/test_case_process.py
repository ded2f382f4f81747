"""Each case of a worker's job in a process of its own, forked from the worker
(flopsbench.case_process): no case is built or timed in a process where another ran, a case
whose process dies costs only that case, and the timing environment variables are recorded."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from flopsbench import case_process, plugins
from flopsbench.case_process import in_own_process
from flopsbench.environment import timing_variables
from flopsbench.report import Report
from flopsbench.runner import run_all
from flopsbench.spec import Shape, Workload
from flopsbench.transport import FreshProcesses
from tests.test_plugins import own_registries  # noqa: F401 -- a fixture: the registries as they were

PROBE = Path(__file__).resolve().parent / "fixtures" / "probe_operator.py"


def _run(tmp_path, monkeypatch, execution, channels=(8, 16), die=None) -> tuple[Report, list[tuple[int, int, int]]]:
    """The report, and each build's (pid, builds in that process, blocks mapped for 64 MiB there)."""
    log = tmp_path / "builds.log"
    monkeypatch.setenv("PROBE_OPERATOR_LOG", str(log))
    if die is not None:
        monkeypatch.setenv("PROBE_OPERATOR_DIE", str(die))
        monkeypatch.setenv("PROBE_OPERATOR_PARENT", str(os.getpid()))  # it counts the case: it must not die
    plugins.load(str(PROBE))
    report = Report("ops", replace(execution, budget=replace(execution.budget, exact_runs=2, rounds=1)), {})
    workloads = [Workload("probeop", Shape(c, 4, 4), 1) for c in channels]
    run_all(report, workloads, transport=FreshProcesses(("flopsbench.backends.torch_cpu",), plugins=plugins.loaded()))
    builds = [tuple(map(int, line.split())) for line in log.read_text().splitlines()]
    return report, builds


def test_every_case_is_built_and_timed_in_a_process_where_no_other_ran(tmp_path, monkeypatch, tiny_execution,
                                                                       own_registries):  # noqa: F811
    report, builds = _run(tmp_path, monkeypatch, tiny_execution)
    assert [row.status for row in report.rows] == ["ok", "ok"]
    (worker,) = report.workers  # one worker for the round
    timed = [(pid, count) for pid, count, _ in builds if pid != os.getpid()]  # the parent counts
    assert len(timed) == 2 and len({pid for pid, _ in timed}) == 2  # two processes ...
    assert worker["pid"] not in {pid for pid, _ in timed}  # ... neither of them the worker
    assert [count for _, count in timed] == [1, 1]  # each the first build of its process


def test_a_case_whose_process_dies_costs_that_case_only(tmp_path, monkeypatch, tiny_execution,
                                                        own_registries):  # noqa: F811
    report, _ = _run(tmp_path, monkeypatch, tiny_execution, channels=(8, 16, 24), die=16)
    status = {row.workload.shape.c: (row.status, row.error) for row in report.rows}
    assert status[8][0] == status[24][0] == "ok"
    assert status[16][0] == "error" and status[16][1] == "the case's process ended (SIGKILL) before answering"
    (worker,) = report.workers  # the job went on in the same worker
    assert worker["exit_code"] == 0


def test_the_variables_that_change_timing_are_recorded():
    environ = {"LD_PRELOAD": "/usr/lib/libjemalloc.so.2", "MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "1",
               "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1", "HOME": "/root", "PATH": "/bin",
               "CUDA_VISIBLE_DEVICES": "0", "TORCH_HOME": "/cache"}
    assert timing_variables(environ) == {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1",
                                         "LD_PRELOAD": "/usr/lib/libjemalloc.so.2", "MALLOC_ARENA_MAX": "2",
                                         "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("code, says", [(-9, "SIGKILL"), (-11, "SIGSEGV"), (7, "exit code 7")])
def test_a_dead_case_process_is_described(code, says):
    from flopsbench.case_process import describe

    assert describe(code) == says


# --- the fork itself, with children that do next to nothing ------------------------------------------

def _kill_self():
    os.kill(os.getpid(), 9)


def _interrupted():
    raise KeyboardInterrupt


@pytest.mark.parametrize("work, outcome", [(lambda: True, True), (lambda: False, False), (_kill_self, "SIGKILL"),
                                           (_interrupted, KeyboardInterrupt)],
                         ids=["done", "fatal", "died", "interrupted"])
def test_a_childs_end_is_its_cases_outcome(work, outcome):
    deaths = []
    if outcome is KeyboardInterrupt:
        with pytest.raises(KeyboardInterrupt):
            in_own_process(work, deaths.append)
        return
    answer = in_own_process(work, deaths.append)
    if isinstance(outcome, bool):
        assert answer is outcome and deaths == []
    else:
        assert answer is True and deaths == [f"the case's process ended ({outcome}) before answering"]


def test_a_signal_handled_just_after_the_wait_reaped_the_child_is_still_an_interrupt(monkeypatch):
    """The signal's handler runs between bytecodes: the wait may have reaped the child already.
    The forwarding wait then has no child to wait for; that was a traceback (ChildProcessError)."""
    real_waitpid = os.waitpid
    calls = []

    def reaps_then_interrupted(pid, options):
        calls.append(pid)
        result = real_waitpid(pid, options)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(case_process.os, "waitpid", reaps_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        in_own_process(lambda: True, lambda why: None)
    assert len(calls) == 2


def test_a_child_interrupted_after_its_case_still_ends_there(monkeypatch):
    """A signal that lands after the case was answered (here: while the child flushes its streams)
    must not carry the child on into the worker's own code (it would send a second 'interrupted'
    and run the worker's exit): it ends where it is."""
    worker_pid = os.getpid()

    def interrupted_while_flushing():
        raise KeyboardInterrupt

    monkeypatch.setattr(case_process, "_flush", interrupted_while_flushing)
    deaths = []
    try:
        in_own_process(lambda: True, deaths.append)
    finally:
        if os.getpid() != worker_pid:
            os._exit(99)  # the child got out: end it here; the worker sees exit code 99
    assert not any("exit code 99" in death for death in deaths), deaths
