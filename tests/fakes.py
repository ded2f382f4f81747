"""Mock backends and transports for the orchestration's tests (no monkeypatching of private
functions): real cases, run in this process, with a hook on every timed call; and a transport
that replays a scripted worker."""

from __future__ import annotations

from flopsbench.backends import Prepared
from flopsbench.backends.ort import OnnxRuntime
from flopsbench.backends.torch_cpu import TorchCPU
from flopsbench.transport import InProcess, ended


class Interrupting:
    """Ctrl-C at the ``at``-th call of any case (counting from 1), as a user's key press
    would land in the middle of timing. ``calls`` lists the workload of each call."""

    def __init__(self, at: int):
        self.at, self.calls = at, []

    def wrap(self, case: dict, prepared: Prepared) -> Prepared:
        call, name = prepared.call, f"{case['workload']['name']} {'x'.join(map(str, case['workload']['shape']))}"

        def hooked():
            self.calls.append(name)
            if len(self.calls) == self.at:
                raise KeyboardInterrupt
            return call()
        prepared.call = hooked
        return prepared


def in_process(base: type, hook: Interrupting) -> type:
    """``base`` (a real backend) run in this process, its calls going through ``hook``."""

    class Hooked(base):
        def transport(self):
            return InProcess()

        def prepare(self, case, execution):
            return hook.wrap(case, super().prepare(case, execution))

    return Hooked


def interrupting_cpu(at: int) -> tuple[type, Interrupting]:
    hook = Interrupting(at)
    return in_process(TorchCPU, hook), hook


def interrupting_ort(at: int) -> tuple[type, Interrupting]:
    hook = Interrupting(at)
    return in_process(OnnxRuntime, hook), hook


class ScriptedTransport:
    """A worker that answers with ``script(job)``'s events, then exits with its exit code:
    lets a test make a worker die mid-case or end early, without killing anything."""

    def __init__(self, script, max_ahead: int | None = None):
        self.script, self.jobs, self.max_ahead = script, [], max_ahead
        self.started: list[tuple[int, int]] = []  # (workers asked for, jobs run before)
        self.waiting = 0  # started, no job yet

    def start(self, count: int = 1) -> int:
        self.started.append((count, len(self.jobs)))
        launched = count if self.max_ahead is None else max(0, min(count, self.max_ahead - self.waiting))
        self.waiting += launched
        return launched

    def close(self) -> None:
        pass

    def ended(self, exit_code):
        return ended(exit_code)

    def run(self, job, on_event):
        self.waiting = max(0, self.waiting - 1)
        self.jobs.append(job)
        events, exit_code = self.script(job, len(self.jobs))
        for event in events:
            on_event(event)
        return exit_code
