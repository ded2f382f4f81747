"""CPU execution knobs: intra-op threads and core pinning, set for a block and restored after.
torch is imported only when its thread count is set, so the onnxruntime board runner can use
the pinning without it.

os.sched_setaffinity(0, ...) only pins the calling thread, and torch's worker threads may
already exist, so every thread of the process is pinned, and the affinity actually in force
is read back per thread while a case runs."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Iterator


def allowed_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def thread_ids() -> list[int]:
    return sorted(int(tid) for tid in os.listdir("/proc/self/task"))


def thread_affinities() -> dict[int, list[int]]:
    """Allowed CPUs of each live thread of this process."""
    result = {}
    for tid in thread_ids():
        try:
            result[tid] = sorted(os.sched_getaffinity(tid))
        except (ProcessLookupError, PermissionError):
            pass  # the thread ended meanwhile
    return result


def audit_affinity(cores: tuple[int, ...]) -> dict:
    """Read every thread's allowed CPUs now; record whether all are within ``cores``."""
    per_thread = thread_affinities()
    return {
        "threads_seen": len(per_thread),
        "all_within_cores": all(set(cpus) <= set(cores) for cpus in per_thread.values()),
        "per_thread": {str(tid): cpus for tid, cpus in per_thread.items()},
    }


def set_interop_threads_once(n: int = 1) -> int:
    """torch allows this only before inter-op work starts; it cannot be restored afterwards."""
    import torch

    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:
        pass
    return torch.get_num_interop_threads()


@contextmanager
def pinned(threads: int, cores: tuple[int, ...], torch_threads: bool = True,
           keep_workers: bool = False) -> Iterator[None]:
    """Every thread pinned to ``cores`` and (``torch_threads``) torch intra-op threads =
    ``threads``; both restored. onnxruntime takes its thread count from its session instead, and
    pins each of its workers to a core of its own (``keep_workers``): then a thread already pinned
    within ``cores`` keeps its affinity, and the calling thread takes the first core, the one
    onnxruntime leaves it."""
    if torch_threads:
        import torch
    saved_threads = torch.get_num_threads() if torch_threads else None
    caller = threading.get_native_id()
    saved_affinity = thread_affinities()
    targets = {tid: cores for tid in saved_affinity}
    if keep_workers:
        targets = {tid: cores for tid, cpus in saved_affinity.items() if not set(cpus) <= set(cores)}
        targets[caller] = cores[:1]
    # Threads born while pinned get the affinity the caller had before.
    fallback = saved_affinity.get(caller, allowed_cores())
    try:
        if torch_threads:
            torch.set_num_threads(threads)
        for tid, cpus in targets.items():
            try:
                os.sched_setaffinity(tid, cpus)
            except (ProcessLookupError, PermissionError):
                pass
        yield
    finally:
        if torch_threads:
            torch.set_num_threads(saved_threads)
        for tid in thread_ids():
            try:
                os.sched_setaffinity(tid, saved_affinity.get(tid, fallback))
            except (ProcessLookupError, PermissionError):
                pass
