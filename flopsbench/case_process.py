"""Each case of a worker's job in a process of its own, forked from the worker.

The worker is a new interpreter per round (flopsbench.transport), so each round still draws an
address-space layout of its own; what the fork adds is that no case runs after another in the
same process. glibc's malloc raises its mmap threshold as large blocks are freed, so a case timed
after bigger ones gets its buffers from the heap, while alone it would map and unmap them (and
fault their pages in) on every call: on the development VM gconv 192x28x28 took 7.5 ms after other
cases and 10.0-10.8 ms alone in a fresh process (``Timer.blocked_autorange``), and its rounds
swung between the two with its place in the shuffled order. A child forked before the worker ran
anything starts from the allocator's state right after the imports, as a fresh process does.
(Under ``--allocator retain``, the default, nothing is mapped at all, flopsbench.allocator; the
fork still keeps each case's heap and caches apart from the others'.)

The worker never runs an operator itself, so no thread pool or device context crosses the fork
(CUDA cannot: its backend is not forked). The child's events go straight to the worker's event
stream; it ends with ``os._exit`` (the worker's exit handlers are not its own). A signal that
ends the run reaches the child (forwarded by the worker if only the worker got it), which sends
the samples it took, as a worker does; a child that dies is one case's error, and the job goes on.
POSIX only; on Linux the child dies with the worker (PR_SET_PDEATHSIG), so a killed worker leaves
no orphan timing on its core."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import traceback
from typing import Callable

from flopsbench.process_exit import PIPE_GONE
from flopsbench.signals import ENDING

DONE, FATAL, INTERRUPTED = 0, 3, 130  # a child's exit codes (and PIPE_GONE)
PR_SET_PDEATHSIG = 1


def available() -> bool:
    return hasattr(os, "fork")


def in_own_process(work: Callable[[], bool], on_death: Callable[[str], None]) -> bool:
    """``work()`` (True: the job may go on; False: a fatal fault) in a forked child, and its
    answer. KeyboardInterrupt when the child was interrupted (after it sent what it took),
    BrokenPipeError when the events' reader is gone; ``on_death(why)`` when the child died
    without finishing (then True: the other cases go on)."""
    parent = os.getpid()
    signal.pthread_sigmask(signal.SIG_BLOCK, ENDING)  # no signal between the fork and the wait below
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            status = _child(work, parent)
        finally:
            os._exit(status)  # whatever is raised: the child must never run on as the worker
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, ENDING)
        _, status = os.waitpid(pid, 0)
    except KeyboardInterrupt:  # the worker was signalled: the child ends its round and sends its samples
        try:
            os.kill(pid, signal.SIGINT)  # it drops this one if the terminal's signal reached it too
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)  # the worker's handler now drops further signals
        except ChildProcessError:
            pass  # the interrupted wait had reaped it: the signal was handled just after it returned
        raise
    code = os.waitstatus_to_exitcode(status)
    if code == INTERRUPTED:
        raise KeyboardInterrupt
    if code == PIPE_GONE:
        raise BrokenPipeError
    if code in (DONE, FATAL):
        return code == DONE
    on_death(f"the case's process ended ({describe(code)}) before answering")
    return True


def describe(code: int) -> str:
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _child(work: Callable[[], bool], parent: int) -> int:
    _die_with(parent)
    status = 1
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, ENDING)
        status = DONE if work() else FATAL
    except KeyboardInterrupt:
        status = INTERRUPTED
    except BrokenPipeError:
        status = PIPE_GONE
    except BaseException:  # noqa: BLE001 -- reported by the worker as this case's error
        traceback.print_exc()
    signal.pthread_sigmask(signal.SIG_BLOCK, ENDING)  # the case is answered: a signal now changes nothing
    _flush()
    return status


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _die_with(parent: int) -> None:
    """On Linux, SIGKILL this process when the worker dies; if it is gone already, exit now."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return  # not Linux: a killed worker's child ends when its next event finds no reader
    if os.getppid() != parent:
        os._exit(1)
