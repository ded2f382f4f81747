"""Round workers forked from one server that imported torch once (flopsbench.fork_server), under
``--allocator retain``; new interpreters under ``system``; a server that is gone costs nothing but
the time it saved."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import asdict, replace

import pytest

from flopsbench import fork_server
from flopsbench.backends import backend_for
from flopsbench.fork_server import ForkServer
from flopsbench.report import Report
from flopsbench.runner import run_all
from flopsbench.transport import FreshProcesses
from tests.test_worker import PW

pytestmark = pytest.mark.skipif(not fork_server.available(), reason="the fork server needs Linux")
PRELOAD = ("flopsbench.backends.torch_cpu",)


def _report(execution, rounds: int = 3) -> Report:
    return Report("ops", replace(execution, budget=replace(execution.budget, exact_runs=rounds, rounds=rounds)), {})


@pytest.mark.parametrize("allocator", ["retain", "system"])
def test_rounds_are_forked_from_one_server_under_retain_and_new_interpreters_under_system(tiny_execution,
                                                                                            allocator):
    report = _report(replace(tiny_execution, allocator=allocator))
    transport = backend_for(report.execution).transport(report.execution)
    assert transport.fork_server is (allocator == "retain")
    run_all(report, [PW], transport=transport)
    (row,) = report.rows
    assert row.status == "ok" and len(row.samples_s) == 3
    pids = [worker["pid"] for worker in report.workers]
    parents = {worker["parent_pid"] for worker in report.workers}
    assert len(set(pids)) == 3 and os.getpid() not in pids  # a process of its own per round
    assert all(worker["exit_code"] == 0 for worker in report.workers)
    if allocator == "retain":
        (server,) = parents
        assert server != os.getpid()
    else:
        assert parents == {os.getpid()}
    assert transport.server is None and transport.waiting == []


def test_a_workers_exit_code_comes_through_the_server_and_a_kill_reaches_it():
    server = ForkServer(FreshProcesses(PRELOAD).command)
    try:
        bad, waiting = server.fork(), server.fork()
        assert json.loads(bad.stdout.readline())["event"] == "ready"
        assert json.loads(waiting.stdout.readline()) == {"event": "ready", "pid": waiting.pid}
        bad.stdin.write("not a job")
        bad.stdin.close()
        assert bad.wait() == 2  # the worker's own answer to a bad job
        assert waiting.poll() is None  # still waiting for its job
        waiting.kill()
        assert waiting.wait() == -signal.SIGKILL
        waiting.kill()  # reaped: the pid is no longer its, nothing is sent
        for worker in (bad, waiting):
            worker.stdin.close()
            worker.stdout.close()
    finally:
        server.close()
    assert server.process.returncode == 0  # it ended when its socket closed


def test_a_server_that_is_gone_leaves_new_interpreters_to_do_the_work(tiny_execution):
    transport = FreshProcesses(PRELOAD, fork_server=True)
    transport.server = ForkServer(transport.command)
    transport.server.process.kill()
    transport.server.process.wait()
    report = _report(tiny_execution, rounds=2)
    run_all(report, [PW], transport=transport)
    (row,) = report.rows
    assert row.status == "ok" and len(row.samples_s) == 2
    assert {worker["parent_pid"] for worker in report.workers} == {os.getpid()}


def test_a_server_ignores_requests_it_does_not_know(tiny_execution):
    server = ForkServer(FreshProcesses(PRELOAD).command)
    try:
        server.control.send(b"format c:")  # no answer is owed: the next request still gets its own
        server.control.send(b"wait 1")  # not its child
        assert server._receive() == ["exit", "1", "unknown"]
        worker = server.fork()
        job = {"task": "time", "execution": tiny_execution.to_dict(), "budget": asdict(tiny_execution.budget),
               "cases": [{"id": 0, "workload": PW.to_dict()}]}
        worker.stdin.write(json.dumps(job))
        worker.stdin.close()
        events = [json.loads(line)["event"] for line in worker.stdout]
        assert events == ["ready", "start", "case", "samples", "done"] and worker.wait() == 0
        worker.stdout.close()
    finally:
        server.close()
