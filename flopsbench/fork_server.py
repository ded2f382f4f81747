"""Round workers forked from one interpreter that imported torch once, instead of a new interpreter
per round (``--allocator retain`` on Linux; flopsbench.transport).

A new interpreter per round costs an import of torch, ~1.4 s of CPU on the development VM, four
times a run on a machine of two cores that also counts. A worker forked from an interpreter that
has imported everything is ready at once. Forking used to be ruled out: a fork inherits its parent's
address-space layout, and under glibc's default allocator that layout decided whether a case
faulted its pages in on every call (flopsbench.allocator). Under ``retain`` nothing is mapped per
call, and children forked from one interpreter time as fresh interpreters do
(``benchmarks/forked_vs_fresh.py``: medians within 0.2-1.2 %, spreads alike). Under ``system`` the
rounds stay new interpreters, so that they sample the layouts.

The server is ``python -m flopsbench.worker --fork-server FD``: it imports the preload and plugins,
then answers requests on the Unix socket FD (SOCK_SEQPACKET, one request, one answer). ``fork``
carries two descriptors, the read end of the job's pipe and the write end of the events' pipe; the
server forks a worker on them. ``wait``/``poll`` a worker reap it, as Popen's do. It never runs
an operator, so no thread pool or device context crosses a fork; it ignores the ending signals
(the terminal's Ctrl-C reaches it too: the run's parent decides), dies with the run's parent
(PR_SET_PDEATHSIG) and ends when the socket closes. ``ForkServer`` and ``ForkedWorker`` are the
parent's side: a ForkedWorker has the part of ``subprocess.Popen`` that flopsbench.transport uses."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
from typing import Callable, Sequence

from flopsbench.signals import ENDING

MESSAGE_BYTES = 64


def available() -> bool:
    """Linux (SOCK_SEQPACKET, descriptors over a socket, PR_SET_PDEATHSIG), with fork."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") and hasattr(socket, "send_fds")


# --- the server ------------------------------------------------------------------------------------------

def serve(control_fd: int, run_worker: Callable[[int, int], int]) -> int:
    """Answer requests on ``control_fd`` until it closes: ``fork`` (with the job's and the events'
    descriptors) starts a worker that runs ``run_worker(job_fd, events_fd)`` and exits with what it
    returns; ``wait PID`` and ``poll PID`` answer its exit code (``exit PID CODE``, or ``running PID``).
    Workers are reaped only when asked, as ``subprocess.Popen`` does: until then a pid cannot be
    reused, so a signal the parent sends reaches the worker or nothing."""
    from flopsbench.case_process import die_with

    die_with(os.getppid())
    for sig in ENDING:
        signal.signal(sig, signal.SIG_IGN)
    control = socket.socket(fileno=control_fd)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, MESSAGE_BYTES, 2)
        except OSError:
            return 0
        if not message:  # the parent closed its end: the run is over
            return 0
        words = message.decode(errors="replace").split()
        if words == ["fork"] and len(fds) == 2:
            _send(control, f"forked {_fork(control, fds, run_worker)}")
            continue
        for fd in fds:
            os.close(fd)
        if len(words) == 2 and words[0] in ("wait", "poll") and words[1].isdigit():
            _send(control, _exit_of(int(words[1]), block=words[0] == "wait"))


def _fork(control: socket.socket, fds: list[int], run_worker: Callable[[int, int], int]) -> int:
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            control.close()
            status = run_worker(*fds)  # it installs its own signal handlers first; until then they stay ignored
        finally:
            os._exit(status)  # whatever happens, a worker never returns into the server's loop
    for fd in fds:
        os.close(fd)
    return pid


def _exit_of(pid: int, block: bool) -> str:
    try:
        reaped, status = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return f"exit {pid} unknown"
    if reaped == 0:
        return f"running {pid}"
    return f"exit {pid} {os.waitstatus_to_exitcode(status)}"


def _send(control: socket.socket, text: str) -> None:
    try:
        control.send(text.encode())
    except OSError:
        pass  # the parent is gone; the next receive ends the server


# --- the parent's side -------------------------------------------------------------------------------------

class ForkServer:
    """A running fork server, started with ``command`` (the worker's, with ``--fork-server``). Asking
    for a worker does not wait for the server's imports: the answers (the workers' pids) are read
    when first needed, in the order asked."""

    def __init__(self, command: Sequence[str]):
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = subprocess.Popen([*command, "--fork-server", str(theirs.fileno())], stdin=subprocess.DEVNULL,
                                            pass_fds=(theirs.fileno(),))
        finally:
            theirs.close()
        self.unanswered: list[ForkedWorker] = []  # asked for, their pids not read yet
        self.gone = False  # the server ended: no more forks, no more answers

    def fork(self) -> "ForkedWorker | None":
        """A new worker that will wait for its job, or None if the server is gone."""
        job_read, job_write = os.pipe()
        events_read, events_write = os.pipe()
        try:
            socket.send_fds(self.control, [b"fork"], [job_read, events_write])
        except OSError:
            self.gone = True
        finally:
            os.close(job_read)  # the worker's ends: the server and the worker hold them now
            os.close(events_write)
        if self.gone:
            os.close(job_write)
            os.close(events_read)
            return None
        worker = ForkedWorker(self, io.open(job_write, "w"), io.open(events_read, "r"))
        self.unanswered.append(worker)
        return worker

    def answer_forks(self) -> None:
        """Read the pids of the workers asked for (None for one the server could not fork)."""
        while self.unanswered:
            answer = self._receive()
            worker = self.unanswered.pop(0)
            worker.forked = True
            if answer is not None and answer[0] == "forked" and _integer(answer[1]):
                worker.known_pid = int(answer[1])

    def exit_code(self, pid: int, block: bool) -> tuple[bool, int | None]:
        """(ended, exit code): (False, None) while ``pid`` runs (``block`` False); (True, None) when
        its code cannot be had (the server is gone)."""
        self.answer_forks()
        answer = None
        if not self.gone:
            try:
                self.control.send(f"{'wait' if block else 'poll'} {pid}".encode())
            except OSError:
                self.gone = True
            answer = self._receive()
        if answer is not None and answer[0] == "running":
            return False, None
        if answer is not None and answer[0] == "exit" and _integer(answer[2]):
            return True, int(answer[2])
        return True, None

    def _receive(self) -> list[str] | None:
        if self.gone:
            return None
        try:
            answer = self.control.recv(MESSAGE_BYTES)
        except OSError:
            answer = b""
        if not answer:
            self.gone = True
            return None
        return answer.decode(errors="replace").split()

    def close(self) -> None:
        self.control.close()  # the server ends at its next receive
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _integer(text: str) -> bool:
    return text.lstrip("-").isdigit()


class ForkedWorker:
    """A worker forked by a ForkServer, as flopsbench.transport uses a ``subprocess.Popen``."""

    def __init__(self, server: ForkServer, stdin, stdout):
        self.server, self.stdin, self.stdout = server, stdin, stdout
        self.forked, self.known_pid = False, None  # whether the server answered, and the pid it gave
        self.ended, self.returncode = False, None

    @property
    def pid(self) -> int | None:
        if not self.forked:
            self.server.answer_forks()
        return self.known_pid

    def poll(self) -> int | None:
        if not self.ended and self.pid is not None:
            self.ended, self.returncode = self.server.exit_code(self.pid, block=False)
        return self.returncode

    def wait(self) -> int | None:
        """Its exit code (None if it was never forked, or the server went away with the answer)."""
        if not self.ended and self.pid is not None:
            self.ended, self.returncode = self.server.exit_code(self.pid, block=True)
        self.ended = True
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if not self.ended and self.pid is not None:  # not reaped yet: the pid is still this worker's
            os.kill(self.pid, sig)  # ProcessLookupError only if the server is gone

    def kill(self) -> None:
        try:
            self.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
