"""The signals that end a run: Ctrl-C (SIGINT), SIGTERM (what ``timeout``, Slurm and ``docker
stop`` send) and SIGHUP (the terminal went away). Each ends a run as Ctrl-C does: the round in
progress stops with the samples it took, the rows are kept, and the report is written marked
incomplete; the exit status is 128 + the signal's number (130, 143, 129).

While the parent waits on a worker, a signal is not raised as an exception at all: it is passed
on to the worker, which ends its round and sends what it took, and the parent goes on reading
until the worker is done. (An exception raised in the middle of reading a long event line drops
the part already read: the round's samples were lost about one time in two.) A second signal
stops waiting: the worker is killed. Torch-free: the board runner uses it too."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

ENDING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_received: list[int] = []  # the ending signals this process got, in order


def ending_signal() -> int | None:
    """The first signal that ended (part of) this run, or None."""
    return _received[0] if _received else None


def describe() -> str:
    """' (SIGTERM)' for the signal that ended the run, '' if none did."""
    return f" ({signal.Signals(ending_signal()).name})" if ending_signal() else ""


def exit_status(status: int) -> int:
    """``status`` (a Report's: 130 when interrupted) with the signal that did it: 128 + its number."""
    return 128 + ending_signal() if status == 130 and ending_signal() else status


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def _handlers(handler: Callable) -> Iterator[None]:
    """``handler`` for every ending signal inside the block (Python allows it in the main thread only)."""
    if not _in_main_thread():
        yield
        return
    saved = {signum: signal.signal(signum, handler) for signum in ENDING}
    try:
        yield
    finally:
        for signum, previous in saved.items():
            signal.signal(signum, previous)


@contextmanager
def ending_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt inside the block, as Ctrl-C does, so that one
    code path keeps the rows whichever signal ended the run."""
    def interrupt(signum, frame):
        _received.append(signum)
        raise KeyboardInterrupt

    with _handlers(interrupt):
        yield


@contextmanager
def passed_on_to(send_interrupt: Callable[[], None], kill: Callable[[], None]) -> Iterator[None]:
    """While a worker is waited on: the first ending signal is passed on (``send_interrupt``), the
    second kills it; neither interrupts the reading. KeyboardInterrupt is raised at the end of the
    block if a signal came."""
    came: list[int] = []

    def pass_on(signum, frame):
        came.append(signum)
        _received.append(signum)
        (send_interrupt if len(came) == 1 else kill)()

    with _handlers(pass_on):
        yield
    if came:
        raise KeyboardInterrupt
