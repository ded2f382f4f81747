"""How a job reaches a worker process and its events come back.

``Forkserver`` is the default: every job runs in a new process forked from a server that has
only imported the backend's modules (torch takes ~2 s to import here) and never ran anything,
so each worker starts as fresh as a new interpreter, at the cost of a fork. ``Subprocess`` runs
the worker's command line (``python -m flopsbench.worker``, or a command reaching one on another
machine) with JSON lines on a pipe. ``InProcess`` runs the job in this very process, for tests
of the orchestration with mock backends only: it is not isolated.

``run(job, on_event)`` returns the worker's exit code. Ctrl-C in the parent is passed on to the
worker, whose ``interrupted`` event (after the samples it took) still reaches ``on_event``;
then KeyboardInterrupt is raised again."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
from typing import Callable, Sequence

from flopsbench import worker

OnEvent = Callable[[dict], None]


def pump(receive: Callable[[], dict | None], on_event: OnEvent, interrupt: Callable[[], None]) -> None:
    """Hand every event to ``on_event`` until the worker closes its end (``receive`` -> None).
    Ctrl-C is forwarded once with ``interrupt`` and re-raised after the worker's last events."""
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


class Forkserver:
    def __init__(self, preload: Sequence[str] = ()):
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(["flopsbench.worker", *preload])

    def start(self) -> None:
        """Start the server now (it imports in the background while the parent counts)."""
        from multiprocessing import forkserver

        forkserver.ensure_running()

    def run(self, job: dict, on_event: OnEvent) -> int | None:
        receiver, sender = self.context.Pipe(duplex=False)
        process = self.context.Process(target=worker.serve_pipe, args=(job, sender), name="flopsbench-worker")
        process.start()
        sender.close()

        def receive() -> dict | None:
            try:
                return receiver.recv()
            except (EOFError, OSError):
                return None

        try:
            pump(receive, on_event, interrupt=lambda: process.pid and _signal(process.pid))
            process.join()
        finally:
            if process.is_alive():
                process.kill()
                process.join()
            receiver.close()
        return process.exitcode


class Subprocess:
    def __init__(self, command: Sequence[str] = (sys.executable, "-m", "flopsbench.worker")):
        self.command = list(command)

    def start(self) -> None:
        pass

    def run(self, job: dict, on_event: OnEvent) -> int | None:
        process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            process.stdin.write(json.dumps(job))
            process.stdin.close()

            def receive() -> dict | None:
                while True:
                    line = process.stdout.readline()
                    if not line:
                        return None
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue  # not an event: nothing a worker writes, so not ours to act on
                    if isinstance(event, dict):
                        return event

            pump(receive, on_event, interrupt=lambda: process.send_signal(signal.SIGINT))
            return process.wait()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


class InProcess:
    """The worker's code in this process: for tests with mock backends, not for measuring."""

    def start(self) -> None:
        pass

    def run(self, job: dict, on_event: OnEvent) -> int:
        return worker.run(job, on_event)


def _signal(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        pass
