"""One protocol for every way a case executes: torch on the CPU, torch on a GPU, onnxruntime.

A backend has two sides. In the parent, which counts, ``stage`` makes what the worker needs
besides the spec (an ONNX file, say) from the counted module. In a worker, a fresh process that
only times, ``prepare`` builds the case from its spec into a ``Prepared`` call with its timer and
settings, ``explain`` words a fault and ``is_fatal`` says whether the process can go on; ``peak_memory``
and ``Prepared.energy`` say what the case's memory and energy are measured with. Backends are found by
(device, runtime) and imported only when asked for, so a worker timing ONNX files never imports
torch. Tests and plugins add their own with ``register_backend`` (a mock backend's ``transport``
may run its worker in-process)."""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager

from flopsbench.energy import Meter, rapl_meter
from flopsbench.peak_memory import HostPeak
from flopsbench.report import error_line
from flopsbench.spec import Execution

# (device, runtime) -> "module:class", imported on first use
BACKENDS: dict[tuple[str, str], str | Callable[[], "Backend"]] = {
    ("cpu", "torch"): "flopsbench.backends.torch_cpu:TorchCPU",
    ("arm", "torch"): "flopsbench.backends.torch_cpu:TorchCPU",
    ("cuda", "torch"): "flopsbench.backends.torch_cuda:TorchCUDA",
    ("cpu", "onnxruntime"): "flopsbench.backends.ort:OnnxRuntime",
    ("arm", "onnxruntime"): "flopsbench.backends.ort:OnnxRuntime",
}


@dataclass
class Prepared:
    """A case ready to time in a worker: only ``call()`` sits in the timed region."""

    call: Callable[[], object]
    time_once: Callable[[], float] | None = None  # one sample (CUDA events); None: the wall clock
    # entered around warm-up and samples; it may yield an ``Observed``, filled in when it exits
    settings: Callable[[], ContextManager] = contextlib.nullcontext
    torch_threads: bool = False  # set torch's intra-op threads while timing (onnxruntime sets its own)
    pins_own_workers: bool = False  # the runtime pinned its worker threads (onnxruntime): pin only the caller
    runtime: dict = field(default_factory=dict)  # how it ran, for the row's ``runtime`` record
    module: Any = None  # the torch module and input (for --breakdown)
    x: Any = None
    # the counters of the energy a call takes, entered around the round (see flopsbench.energy)
    energy: Callable[[], ContextManager[Meter]] = rapl_meter
    # Cold start, for a backend whose ``prepare`` does more than build the case (e.g. calibrates
    # its timer, and so calls the case): the build's own seconds, and the first call's, timed by
    # it before any other call. None: the worker times the whole of ``prepare``, and the first call.
    build_s: float | None = None
    first_call_s: float | None = None


@dataclass
class Observed:
    """What a case's settings saw while they were entered (e.g. the GPU's clocks), filled in when
    they exit: entries for the row's ``runtime``, and the row's warnings."""

    runtime: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class Backend:
    """The protocol, with defaults for the parts most backends do not need."""

    preload: tuple[str, ...] = ()  # modules a worker imports while it waits for its job
    builds_from_spec: bool = True  # its workers build cases from their specs (and so need the parent's plugins)
    forks_cases: bool = True  # each case in a child forked from its worker (flopsbench.case_process)

    def transport(self):
        """How this backend's workers are reached: by default, a new interpreter per job that
        imports ``preload`` ahead of it and, if it builds cases from their specs, loads the plugins
        this process loaded (flopsbench.plugins), so that it knows their operators and models (see
        flopsbench.transport)."""
        from flopsbench import plugins
        from flopsbench.transport import FreshProcesses

        return FreshProcesses(self.preload, plugins=plugins.loaded() if self.builds_from_spec else ())

    def stage(self, row, module, x, execution: Execution) -> dict:
        """Parent side, after counting: extra fields of the case's job (may fill ``row.runtime``)."""
        return {}

    def prepare(self, case: dict, execution: Execution) -> Prepared:
        """Worker side: build the case of ``case`` (its job entry) ready to time."""
        raise NotImplementedError

    def timer(self, call: Callable[[], object], execution: Execution) -> Callable[[], float] | None:
        """The timer of another call on this backend (a --breakdown part); None: the wall clock."""
        return None

    def largest_batch(self, case: dict, execution: Execution) -> tuple[int, list[str]]:
        """--find-max-batch: the largest batch of ``case`` that runs, and warnings (built by the
        search itself, in a worker that holds nothing else)."""
        raise RuntimeError("--find-max-batch needs --device cuda")

    def explain(self, exc: BaseException, execution: Execution) -> str:
        """A failed case's one-line error (e.g. out of memory, with the option that helps)."""
        return error_line(exc)

    def is_fatal(self, exc: BaseException) -> bool:
        """True when nothing more can run in this process (a dead CUDA context)."""
        return False

    def release(self) -> None:
        """Give memory back after a failed case (never called after a fatal fault)."""

    def environment(self) -> dict:
        """What the report's environment records of the device, read in the worker."""
        return {}

    def peak_memory(self):
        """A probe of a case's peak memory: ``start()`` before it is built, ``stop()`` after its
        round returns its record (by default the worker's resident set, flopsbench.peak_memory)."""
        return HostPeak()


def register_backend(device: str, runtime: str, factory: str | Callable[[], Backend]) -> None:
    """Serve (device, runtime) with ``factory``: a "module:class" path or a callable."""
    BACKENDS[(device, runtime)] = factory


def backend_for(execution: Execution) -> Backend:
    try:
        factory = BACKENDS[(execution.device, execution.runtime)]
    except KeyError:
        raise ValueError(f"no backend runs runtime {execution.runtime!r} on device {execution.device!r}") from None
    if isinstance(factory, str):
        module, name = factory.split(":")
        factory = getattr(importlib.import_module(module), name)
    return factory()
