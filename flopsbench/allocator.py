"""How the timing process's C allocator handles freed memory (``--allocator``): part of a run's protocol.

glibc's malloc serves a large block (128 KiB at first) with a fresh ``mmap`` whose pages fault in
on first touch, and returns it with ``munmap``; it raises that threshold as such blocks are freed,
and gives the top of the heap back to the system once more than twice the threshold lies free
there. Whether a case's activations then come from pages already faulted in is a matter of where
the heap's top happens to lie, which the address-space layout moves from process to process. On the
development VM (results/allocator/draws.txt), pwconv 96x56x56 faulted 1,668 pages a call and took
9.3-9.5 ms in 2 of 6 fresh processes, none and 6.3-6.5 ms in the others (with ASLR off, every
process was alike); dwconv 96x56x56 faulted 3,074-3,768 pages a call and took 8.4-10.1 ms in every
one, 2.1-2.2 ms without the faults. A median over a few processes is then a draw from two speeds,
not a property of the operator.

``retain`` (the default) makes malloc keep what it got: no block is served by ``mmap`` and the heap
is never trimmed, so after the warm-up every call reuses pages already faulted in, the steady state
of a long-running program, and what PyTorch's performance tuning guide gets from jemalloc or tcmalloc.
``system`` leaves the allocator as the environment configured it (glibc's defaults, or whatever
``LD_PRELOAD``, ``MALLOC_*`` and ``GLIBC_TUNABLES`` set, which reports record): what an untuned
program sees, page faults and draws included. ``retain`` needs glibc (``mallopt``); the worker sets
it before it builds any case, and every case's process, forked from it, inherits it."""

from __future__ import annotations

import ctypes
import os

ALLOCATORS = ("retain", "system")
DEFAULT = "retain"

# mallopt(3) parameters of glibc's <malloc.h>, and the values of ``retain``
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
RETAIN = {"M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": -1}  # no block mapped; -1: never trim the heap
_PARAMETERS = {"M_MMAP_MAX": M_MMAP_MAX, "M_TRIM_THRESHOLD": M_TRIM_THRESHOLD}
NEEDS_GLIBC = "retain needs glibc's malloc, which this machine's Python does not use; use --allocator system"


class AllocatorError(RuntimeError):
    """The convention asked for cannot be had in this process."""


def glibc_version() -> str | None:
    """'glibc 2.36' where this process runs on glibc, else None (musl, macOS, Windows)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return None


def available(convention: str) -> bool:
    """Whether ``convention`` can be had on this machine (``retain``: glibc's mallopt)."""
    return convention == "system" or glibc_version() is not None


def apply(convention: str) -> None:
    """Set this process's allocator to ``convention`` before anything is built (``system``: leave it);
    AllocatorError, naming the option and the fix, where it cannot be."""
    if convention == "system":
        return
    if convention != "retain":
        raise AllocatorError(f"--allocator: {str(convention)[:40]!r} is not one of {', '.join(ALLOCATORS)}")
    if glibc_version() is None:
        raise AllocatorError(f"--allocator {NEEDS_GLIBC}")
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    for name, value in RETAIN.items():
        if mallopt(_PARAMETERS[name], value) != 1:
            raise AllocatorError(f"--allocator retain: glibc refused mallopt({name}, {value}); use --allocator system")
