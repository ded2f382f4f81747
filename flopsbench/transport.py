"""How a job reaches a worker process and its events come back.

``FreshProcesses`` is the default: every job runs in a new interpreter, ``python -m
flopsbench.worker`` (flopsbench.remote's SshWorkers starts it on another machine, over ssh). A
new interpreter, not a fork of one: a forked process inherits its parent's address-space layout,
and on the development VM layout alone moved pwconv 96x56x56 between 6.6 and 10-13 ms, so rounds
forked from one parent all drew the same layout instead of sampling it. Importing torch takes
~2 s, so ``start(count)`` launches workers of a run ahead (rounds.workers_ahead), to import while
the parent counts; a job is handed over only once no worker is still importing, so that nothing
else runs while one times. ``InProcess`` runs the job in this very process, for tests of
the orchestration with mock backends only: it is not isolated.

``run(job, on_event)`` returns the worker's exit code (None if it could not be started).
Ctrl-C, SIGTERM or SIGHUP in the parent is passed on to the worker (``flopsbench.signals``),
whose ``interrupted`` event (after the samples it took) still reaches ``on_event``; then
KeyboardInterrupt is raised."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Callable, Sequence

from flopsbench import signals, worker

OnEvent = Callable[[dict], None]
MAX_AHEAD = 8  # workers started ahead of their jobs (each holds an imported torch, ~0.3 GB)


class FreshProcesses:
    def __init__(self, preload: Sequence[str] = (), prefix: Sequence[str] = (), python: str = sys.executable,
                 plugins: Sequence[str] = ()):
        self.command = [*prefix, python, "-m", "flopsbench.worker", *worker_arguments(preload, plugins)]
        self.waiting: list[subprocess.Popen] = []  # started, importing or ready, no job yet
        self.ready: dict[subprocess.Popen, int | None] = {}  # ready -> the worker's pid, as it said
        self.popen_options: dict = {}

    def start(self, count: int = 1) -> int:
        """Launch ``count`` workers now (each imports its modules, then waits for a job), at most
        MAX_AHEAD at a time: a run of 50 rounds must not start 50 interpreters at once. Returns
        how many it launched; the caller starts the rest when these are spent."""
        launched = max(0, min(count, MAX_AHEAD - len(self.waiting)))
        for _ in range(launched):
            self.waiting.append(subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                 text=True, **self.popen_options))
        return launched

    def run(self, job: dict, on_event: OnEvent) -> int | None:
        if not self.waiting:
            self.start(1)
        for process in self.waiting:  # none may still be importing while one times
            if process not in self.ready:
                event = _event(process.stdout)
                if event is not None:
                    self.ready[process] = event.get("pid") if type(event.get("pid")) is int else None
        process = self.waiting.pop(0)
        try:
            process.stdin.write(json.dumps(job))
            process.stdin.close()
        except OSError:  # it died before its job: the caller fails the job's cases
            process.wait()
            return None
        try:
            with signals.passed_on_to(lambda: self.interrupt(process), lambda: self.kill(process)):
                pump(lambda: _event(process.stdout), on_event, lambda: self.interrupt(process))  # never cut mid-line
                return process.wait()  # in the block: a worker that ends as asked is not killed
        finally:
            if process.poll() is None:  # a second Ctrl-C: stop waiting for it
                self.kill(process)
                process.wait()
            process.stdout.close()
            self.ready.pop(process, None)

    def interrupt(self, process: subprocess.Popen) -> None:
        """Ask the worker to end its round (it sends the samples it took)."""
        try:
            process.send_signal(signal.SIGINT)
        except ProcessLookupError:
            pass

    def kill(self, process: subprocess.Popen) -> None:
        process.kill()

    def ended(self, exit_code: int | None) -> str:
        """Why a worker that stopped answering stopped, for its cases' errors."""
        return ended(exit_code)

    def close(self) -> None:
        """Stop the workers that got no job (they only wait for one)."""
        for process in self.waiting:
            process.kill()
            process.wait()
            process.stdin.close()
            process.stdout.close()
        self.waiting, self.ready = [], {}


def ended(exit_code: int | None) -> str:
    return f"the worker process ended (exit code {exit_code}) before answering"


def worker_arguments(preload: Sequence[str] = (), plugins: Sequence[str] = ()) -> list[str]:
    """``python -m flopsbench.worker``'s arguments: the modules to import ahead, the plugins to load."""
    return ["--preload", ",".join(preload), *(argument for plugin in plugins for argument in ("--plugin", plugin))]


def _event(stream) -> dict | None:
    """The next event on a worker's stdout; None at its end. Lines that are not events are skipped:
    nothing a worker writes, so not ours to act on."""
    for line in stream:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            return event
    return None


class InProcess:
    """The worker's code in this process: for tests with mock backends, not for measuring."""

    def start(self, count: int = 1) -> int:
        return count  # no process: every worker asked for is at hand

    def run(self, job: dict, on_event: OnEvent) -> int:
        return worker.run(job, on_event)

    def ended(self, exit_code: int | None) -> str:
        return ended(exit_code)

    def close(self) -> None:
        pass


def pump(receive: Callable[[], dict | None], on_event: OnEvent, interrupt: Callable[[], None]) -> None:
    """Hand every event to ``on_event`` until the worker is done (``receive`` -> None). Ctrl-C
    is forwarded once with ``interrupt`` and re-raised after the worker's last events."""
    interrupted = False
    while True:
        try:
            event = receive()
        except KeyboardInterrupt:
            if interrupted:
                raise  # a second Ctrl-C: stop waiting
            interrupted = True
            interrupt()
            continue
        if event is None:
            break
        on_event(event)
    if interrupted:
        raise KeyboardInterrupt
