"""How a job reaches a worker process and its events come back.

``ForkServer`` is the default: one ``python -m flopsbench.worker --serve`` process that imports
the backend's modules (torch takes ~2 s to import here) and never runs anything, and forks a
fresh child for every job, so each worker starts as fresh as a new interpreter at the cost of a
fork. Its command can be prefixed (e.g. ``ssh board``) to reach a worker on another machine; jobs
and events are JSON lines on its pipes. ``InProcess`` runs the job in this very process, for
tests of the orchestration with mock backends only: it is not isolated.

``run(job, on_event)`` returns the worker's exit code (None if the server itself is gone).
Ctrl-C in the parent is passed on to the worker, whose ``interrupted`` event (after the samples
it took) still reaches ``on_event``; then KeyboardInterrupt is raised again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Callable, Sequence

from flopsbench import worker

OnEvent = Callable[[dict], None]


class ForkServer:
    def __init__(self, preload: Sequence[str] = (), prefix: Sequence[str] = (), python: str = sys.executable):
        self.command = [*prefix, python, "-m", "flopsbench.worker", "--serve", "--preload", ",".join(preload)]
        self.server: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the server now: it imports while this process counts."""
        if self.server is None or self.server.poll() is not None:
            self.server = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, job: dict, on_event: OnEvent) -> int | None:
        self.start()
        server, child = self.server, {}
        try:
            server.stdin.write(json.dumps(job) + "\n")
            server.stdin.flush()
        except OSError:
            return None  # the server is gone; the caller fails the job's cases
        exit_code: list[int | None] = [None]

        def receive() -> dict | None:
            for line in server.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # not an event: nothing a worker writes, so not ours to act on
                if not isinstance(event, dict):
                    continue
                if event.get("event") == "start" and isinstance(event.get("pid"), int):
                    child["pid"] = event["pid"]
                if event.get("event") == "exit":
                    code = event.get("code")
                    exit_code[0] = code if isinstance(code, int) else None
                    return None
                return event
            return None  # the server ended

        def interrupt() -> None:
            if "pid" in child:
                try:
                    os.kill(child["pid"], signal.SIGINT)
                except ProcessLookupError:
                    pass

        pump(receive, on_event, interrupt)
        return exit_code[0]

    def close(self) -> None:
        """Stop the server. Between jobs it only waits for the next line, so it is killed rather
        than left to tear torch down (~1 s)."""
        if self.server is not None:
            self.server.kill()
            self.server.wait()
            self.server.stdin.close()
            self.server.stdout.close()
            self.server = None


class InProcess:
    """The worker's code in this process: for tests with mock backends, not for measuring."""

    def start(self) -> None:
        pass

    def run(self, job: dict, on_event: OnEvent) -> int:
        return worker.run(job, on_event)

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
