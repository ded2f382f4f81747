"""Thread count and core pinning: set for a block, every thread of the process pinned, restored."""

from __future__ import annotations

import os
import threading

import pytest
import torch

from flopsbench.cpu import allowed_cores, audit_affinity, pinned, thread_affinities, thread_ids

CORES = allowed_cores()
needs_two_cores = pytest.mark.skipif(len(CORES) < 2, reason="pinning is only observable with 2+ allowed cores")


@pytest.fixture
def torch_threads():
    """Start from 2 intra-op threads (so that pinned(1, ...) is a change), restore after."""
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(saved)


@pytest.fixture
def helper_thread():
    """A Python thread alive before, during and after the pinned block."""
    stop = threading.Event()
    ready = threading.Event()
    native = {}

    def run():
        native["id"] = threading.get_native_id()
        ready.set()
        stop.wait()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    ready.wait()
    yield native["id"]
    stop.set()
    t.join()


def test_allowed_cores_is_the_process_affinity():
    assert CORES == sorted(os.sched_getaffinity(0))
    assert threading.get_native_id() in thread_ids()


@needs_two_cores
def test_pinned_sets_threads_and_pins_every_thread(torch_threads, helper_thread):
    core = CORES[-1]
    before = thread_affinities()
    assert before[helper_thread] == CORES
    with pinned(1, (core,)):
        assert torch.get_num_threads() == 1
        inside = thread_affinities()
        assert helper_thread in inside and threading.get_native_id() in inside
        assert all(cpus == [core] for cpus in inside.values()), inside
        audit = audit_affinity((core,))
        assert audit["all_within_cores"] is True
        assert audit["threads_seen"] == len(inside)
        assert audit["per_thread"][str(helper_thread)] == [core]
    assert torch.get_num_threads() == torch_threads
    after = thread_affinities()
    for tid, cpus in before.items():
        if tid in after:
            assert after[tid] == cpus, f"thread {tid} not restored"


@needs_two_cores
def test_thread_born_inside_gets_the_callers_affinity_back(torch_threads):
    core = CORES[0]
    stop, ready = threading.Event(), threading.Event()
    native = {}

    def run():
        native["id"] = threading.get_native_id()
        ready.set()
        stop.wait()

    with pinned(1, (core,)):
        t = threading.Thread(target=run, daemon=True)
        t.start()
        ready.wait()
        assert sorted(os.sched_getaffinity(native["id"])) == [core]  # inherited the pinning
    try:
        assert sorted(os.sched_getaffinity(native["id"])) == CORES
    finally:
        stop.set()
        t.join()


@needs_two_cores
def test_restored_after_an_exception(torch_threads):
    with pytest.raises(RuntimeError):
        with pinned(1, (CORES[0],)):
            raise RuntimeError("inside")
    assert torch.get_num_threads() == torch_threads
    assert sorted(os.sched_getaffinity(0)) == CORES


def test_restored_when_pinning_itself_fails(torch_threads):
    with pytest.raises(OSError):
        with pinned(1, (max(CORES) + 4096,)):
            pass
    assert torch.get_num_threads() == torch_threads


@needs_two_cores
def test_audit_affinity_detects_threads_outside_the_cores():
    # Unpinned, this process may run on every allowed core, so it is not within just one.
    audit = audit_affinity((CORES[0],))
    assert audit["all_within_cores"] is False
    assert audit_affinity(tuple(CORES))["all_within_cores"] is True
    assert audit["threads_seen"] == len(audit["per_thread"]) >= 1
