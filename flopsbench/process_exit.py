"""Ending a process that imported torch. The interpreter's own teardown (freeing every module and
object) took ~0.9 s there on the development VM and does nothing for us: a worker's parent waits
for it at the end of every round, a user at the end of every command. So the exit handlers run,
the standard streams are flushed, and the process ends at once. Torch-free: the worker uses it."""

from __future__ import annotations

import atexit
import os
import signal
import sys
from typing import NoReturn


PIPE_GONE = 128 + signal.SIGPIPE  # as a shell reports a writer whose reader left (141)


def exit_now(status: int) -> NoReturn:
    atexit._run_exitfuncs()  # what a normal exit runs first (logging's flush, Ray's shutdown, ...)
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: the descriptor was closed before Python started
                stream.flush()
        except (OSError, ValueError):  # a reader gone, or a stream closed: nothing more to say
            pass
    os._exit(status)


def exit_status(exit: SystemExit) -> int:
    """The status ``sys.exit`` would give: None is 0, an integer itself, anything else is printed and 1."""
    if exit.code is None:
        return 0
    if isinstance(exit.code, int):
        return exit.code
    print(exit.code, file=sys.stderr)
    return 1
