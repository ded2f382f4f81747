"""CPU execution knobs: intra-op threads and core pinning, set for a block and restored after.
torch is imported only when its thread count is set, so the onnxruntime board runner can use
the pinning without it.

os.sched_setaffinity(0, ...) only pins the calling thread, and torch's worker threads may
already exist, so every thread of the process is pinned, and the affinity actually in force
is read back per thread while a case runs."""

from __future__ import annotations

import os
import re
import threading
from contextlib import contextmanager
from typing import Iterator


class OptionError(ValueError):
    """A bad --threads or --cores value; ``option`` names it (each CLI words the error itself)."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


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
def pinned(threads: int, cores: tuple[int, ...], torch_threads: bool = True) -> Iterator[None]:
    """Every thread pinned to ``cores`` and (``torch_threads``) torch intra-op threads =
    ``threads``; both restored. onnxruntime takes its thread count from its session instead."""
    if torch_threads:
        import torch
    saved_threads = torch.get_num_threads() if torch_threads else None
    saved_affinity = thread_affinities()
    # Threads born while pinned get the affinity the caller had before.
    fallback = saved_affinity.get(threading.get_native_id(), allowed_cores())
    try:
        if torch_threads:
            torch.set_num_threads(threads)
        for tid in saved_affinity:
            try:
                os.sched_setaffinity(tid, cores)
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


def parse_cores(text: str | None, threads: int) -> tuple[int, ...]:
    """'0,2-3' -> (0, 2, 3); default: the first ``threads`` cores this process may use."""
    allowed = allowed_cores()
    if threads < 1:
        raise OptionError("--threads", f"{threads} must be at least 1")
    if threads > len(allowed):
        raise OptionError("--threads", f"{threads} is more than the {len(allowed)} core(s) this process may use "
                                     f"({_join(allowed)}); use --threads {len(allowed)} or fewer")
    if text is None:
        return tuple(allowed[:threads])
    cores: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise OptionError("--cores", f"{text!r} is not a core list; use e.g. 0 or 0,2-3")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first:
            raise OptionError("--cores", f"range {part.strip()!r} runs backwards; write it low-high, e.g. 0-3")
        cores.update(range(first, last + 1))
    unknown = sorted(cores - set(allowed))
    if unknown:
        raise OptionError("--cores", f"core(s) {_join(unknown)} not available to this process; "
                                   f"choose among {_join(allowed)}")
    if threads > len(cores):
        raise OptionError("--threads", f"{threads} threads need at least as many cores, but --cores gives "
                                     f"{len(cores)}; add cores or lower --threads")
    return tuple(sorted(cores))


def _join(cores: list[int]) -> str:
    return ",".join(str(c) for c in cores)
