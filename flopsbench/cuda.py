"""GPU execution: CUDA-event timing, cudnn autotuning, L2 flushing, CUDA-graph replay, fault
classification, the GPU's environment and its energy counter (nvidia-ml-py).

Only the computation sits between the two events: inputs and weights are on the GPU before
timing, cudnn.benchmark autotunes during the warm-up, an L2 flush (if asked) runs before the
start event, and the host waits on the end event before reading the elapsed time."""

from __future__ import annotations

import math
import os
import statistics
import threading
import time
from contextlib import contextmanager, suppress
from typing import Callable, Iterator

import torch

from flopsbench.energy import Counter, Meter, unreadable

# Errors after which the CUDA context is unusable (sticky errors, and library calls that failed to
# execute on the device): the worker process stops, and the cases left go on in a fresh one.
FATAL_CUDA_ERRORS = ("illegal memory access", "unspecified launch failure", "device-side assert",
                     "misaligned address", "an illegal instruction", "illegal address", "launch timed out",
                     "uncorrectable ecc error", "hardware stack error", "invalid program counter",
                     "unknown error", "cudnn_status_execution_failed", "cublas_status_execution_failed",
                     "cusolver_status_execution_failed", "cufft_exec_failed", "cudaerrorlaunchfailure",
                     "cuda driver is shutting down", "context is destroyed", "cuda context unusable")


def available() -> bool:
    return torch.cuda.is_available()


def unavailable_reason() -> str:
    build = torch.version.cuda
    return (f"torch {torch.__version__} sees no CUDA GPU" + (f" (built for CUDA {build})" if build else
            " (a CPU-only build)"))


# Messages of a failed GPU allocation that is not torch's own OutOfMemoryError (cuDNN, cuBLAS).
OUT_OF_MEMORY_MARKERS = ("out of memory", "cudnn_status_alloc_failed", "cublas_status_alloc_failed")


def is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, torch.cuda.OutOfMemoryError) or any(marker in text for marker in OUT_OF_MEMORY_MARKERS)


def is_fatal(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in FATAL_CUDA_ERRORS)


def free_cache() -> None:
    """Give cached GPU memory back. If the context died (a fault that surfaced only now), raise a
    fatal error naming the cause, so that the caller stops using CUDA instead of crashing later."""
    try:
        torch.cuda.empty_cache()
    except Exception as exc:  # noqa: BLE001 -- reclassified: any failure here means a dead context
        if is_fatal(exc):
            raise
        first_line = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise RuntimeError(f"CUDA context unusable: freeing the cache failed ({first_line})") from exc


def largest_fitting(fits: Callable[[int], bool], start: int = 1, limit: int = 4096) -> int:
    """The largest n in [1, limit] with ``fits(n)``, assuming fits is monotone: double from
    ``start`` while it fits, then bisect. 0 if not even 1 fits."""
    low, n = 0, max(1, start)  # fits(low) holds (0 trivially)
    while n <= limit and fits(n):
        low, n = n, n * 2
    high = min(n, limit + 1)  # fits(high) fails, or high is past the limit
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def event_timer(fn: Callable[[], object], before: Callable[[], object] | None = None,
                event_factory: Callable[[], object] | None = None, calls: int = 1,
                synchronize: Callable[[], object] | None = None) -> Callable[[], float]:
    """Seconds per call of ``fn``: two CUDA events on the current stream around ``calls``
    back-to-back calls. ``before`` (an L2 flush) runs ahead of the start event and the host waits
    for it: otherwise the host would queue ``fn``'s kernels while the GPU is still flushing, and
    their launch cost would fall outside the events (cold-cache timing could then come out faster
    than warm). The timer's ``calls`` attribute says how many calls one sample stands for."""
    make = event_factory or (lambda: torch.cuda.Event(enable_timing=True))
    wait = synchronize or torch.cuda.synchronize
    start, end = make(), make()

    def time_once() -> float:
        if before is not None:
            before()
            wait()  # the flush is done before the start event: the launches are timed
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()  # the host waits for the GPU before reading the events
        return start.elapsed_time(end) / 1e3 / calls  # ms -> s, per call
    time_once.calls = calls
    return time_once


def calls_per_sample(fn: Callable[[], object], target_s: float = 1e-3, max_calls: int = 1000,
                     event_factory: Callable[[], object] | None = None) -> int:
    """How many back-to-back calls of ``fn`` fill ``target_s`` of GPU time. Throughput is the
    steady state of a GPU kept busy (the paper times 200 forwards in a row): one call alone
    would also time the idle gaps while the host launches each kernel, which for small kernels
    is as long as the kernels themselves. The first calls (cudnn autotuning, allocations) are
    not counted."""
    time_once = event_timer(fn, event_factory=event_factory)
    for _ in range(2):
        time_once()
    one_call = min(time_once() for _ in range(3))
    return max(1, min(max_calls, math.ceil(target_s / one_call))) if one_call > 0 else max_calls


def first_call_s(fn: Callable[[], object], clock: Callable[[], float] = time.perf_counter,
                 synchronize: Callable[[], object] | None = None) -> float:
    """Seconds of one call of ``fn`` as its caller waits for it: the wall clock around the call
    and a synchronize (lazy initialisations on the host, cudnn's autotuning, and the kernels)."""
    wait = synchronize or torch.cuda.synchronize
    started = clock()
    fn()
    wait()
    return clock() - started


def l2_flusher(device: torch.device | None = None) -> Callable[[], None]:
    """Overwrite a buffer twice the size of the GPU's L2 cache, for cold-cache timing."""
    props = torch.cuda.get_device_properties(device)
    size = max(2 * getattr(props, "L2_cache_size", 0), 64 << 20)
    buffer = torch.empty(size // 4, dtype=torch.float32, device=device)
    return lambda: buffer.zero_()


def graphed(fn: Callable[[], object], warmup_calls: int = 3) -> Callable[[], object]:
    """``fn`` captured into a CUDA graph (after a few eager calls on a side stream, as PyTorch
    requires); calling the result replays it, without per-kernel launch overhead."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup_calls):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def set_fp32_precision(tf32: bool) -> dict:
    """How fp32 convolutions and matmuls compute, set explicitly for this process: IEEE fp32, or
    rounded to TF32 (cuDNN convolutions default to TF32 in torch 2.x, so an unset run labelled
    fp32 is not the paper's fp32). Set through the fp32_precision API only: after it, reading the
    legacy ``allow_tf32`` flags raises. Returns what is in force, for the row's record."""
    precision = "tf32" if tf32 else "ieee"
    torch.backends.cudnn.conv.fp32_precision = precision
    torch.backends.cudnn.rnn.fp32_precision = precision
    torch.backends.cuda.matmul.fp32_precision = precision
    return {"cudnn_conv": torch.backends.cudnn.conv.fp32_precision,
            "matmul": torch.backends.cuda.matmul.fp32_precision}


@contextmanager
def cudnn_benchmark(enabled: bool = True) -> Iterator[None]:
    """cudnn.benchmark set for the block (its autotuning then happens in the warm-up), restored."""
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


# NVML's clock-event reasons ("throttle reasons" before driver 535): pynvml's constant's suffix, NVML's
# bit (for a pynvml without the constant), and the reason's name.
CLOCK_EVENT_REASONS = (
    ("GpuIdle", 0x1, "GPU idle"),
    ("ApplicationsClocksSetting", 0x2, "applications clocks setting"),
    ("SwPowerCap", 0x4, "SW power cap"),
    ("HwSlowdown", 0x8, "HW slowdown"),
    ("SyncBoost", 0x10, "sync boost"),
    ("SwThermalSlowdown", 0x20, "SW thermal slowdown"),
    ("HwThermalSlowdown", 0x40, "HW thermal slowdown"),
    ("HwPowerBrakeSlowdown", 0x80, "HW power brake slowdown"),
    ("DisplayClockSetting", 0x100, "display clock setting"),
)
# Reasons that say nothing of the timed work: idle gaps between launches, clocks someone set.
BENIGN_CLOCK_EVENTS = frozenset({"GPU idle", "applications clocks setting", "display clock setting"})
# Reasons that mean the GPU ran slower than it can: samples taken then are not its steady speed.
THROTTLING_CLOCK_EVENTS = frozenset({"SW power cap", "HW slowdown", "SW thermal slowdown", "HW thermal slowdown",
                                     "HW power brake slowdown"})


class UnidentifiedGPU(LookupError):
    """NVML has no device that is surely CUDA's: another GPU's sensors would be read in its place."""


def cuda_uuid(index: int) -> str | None:
    """CUDA device ``index``'s UUID as torch gives it (without NVML's "GPU-"/"MIG-" prefix), if it does."""
    try:
        return str(torch.cuda.get_device_properties(index).uuid)
    except Exception:  # noqa: BLE001 -- a torch or driver without UUIDs
        return None


def _nvml_handle(pynvml, index: int, uuid: str | None):
    """NVML's handle of CUDA device ``index``, found by UUID: NVML numbers every GPU of the host in
    PCI order, CUDA only the visible ones (CUDA_VISIBLE_DEVICES), fastest first. A MIG device is
    known to NVML by a "MIG-" UUID (recent drivers look those up too). If the UUID is not found, a
    GPU falls back to NVML's same index; a MIG device does not (UnidentifiedGPU): NVML's device
    ``index`` is a whole GPU, perhaps another one."""
    if uuid:
        for candidate in [uuid] if uuid.startswith(("GPU-", "MIG-")) else [f"GPU-{uuid}", f"MIG-{uuid}"]:
            with suppress(Exception):
                return pynvml.nvmlDeviceGetHandleByUUID(candidate)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if (uuid or "").startswith("MIG-") or any(name.strip().startswith("MIG-") for name in visible.split(",")):
        raise UnidentifiedGPU(f"could not identify the MIG device {uuid or '(torch gives no UUID)'} (CUDA device "
                              f"{index}, CUDA_VISIBLE_DEVICES={visible}) in NVML; its sensors are not read")
    return pynvml.nvmlDeviceGetHandleByIndex(index)


def clock_event_names(pynvml, bits: int) -> list[str]:
    """The reasons set in NVML's clock-event bitmask ``bits``; a bit this code does not know, in hex."""
    names, known = [], 0
    for suffix, default, name in CLOCK_EVENT_REASONS:
        bit = getattr(pynvml, f"nvmlClocksEventReason{suffix}", getattr(pynvml, f"nvmlClocksThrottleReason{suffix}",
                                                                          default))
        known |= bit
        if bits & bit:
            names.append(name)
    unknown = bits & ~known
    return names + [hex(1 << i) for i in range(unknown.bit_length()) if unknown >> i & 1]


def _clock_event_bits(pynvml, handle) -> int:
    """The clock-event bitmask: NVML's newer call (driver 535+), else its older name for the same."""
    newer = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
    if newer is not None:
        with suppress(Exception):  # e.g. NVMLError_FunctionNotFound from an older driver
            return newer(handle)
    return pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle)


# What the sampler reads while timing (cheap), name -> reader of (pynvml, handle); gpu_state reads more.
SAMPLED_SENSORS = {
    "sm_clock_mhz": lambda nvml, gpu: nvml.nvmlDeviceGetClockInfo(gpu, nvml.NVML_CLOCK_SM),
    "memory_clock_mhz": lambda nvml, gpu: nvml.nvmlDeviceGetClockInfo(gpu, nvml.NVML_CLOCK_MEM),
    "power_w": lambda nvml, gpu: nvml.nvmlDeviceGetPowerUsage(gpu) / 1e3,
    "temperature_c": lambda nvml, gpu: nvml.nvmlDeviceGetTemperature(gpu, nvml.NVML_TEMPERATURE_GPU),
    "clock_event_reasons": lambda nvml, gpu: clock_event_names(nvml, _clock_event_bits(nvml, gpu)),
}
STATE_SENSORS = {
    **SAMPLED_SENSORS,
    "max_sm_clock_mhz": lambda nvml, gpu: nvml.nvmlDeviceGetMaxClockInfo(gpu, nvml.NVML_CLOCK_SM),
    "driver": lambda nvml, gpu: nvml.nvmlSystemGetDriverVersion(),
}


def _error(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, UnidentifiedGPU) else f"{type(exc).__name__}: {exc}"


def _read_sensors(pynvml, handle, sensors: dict) -> dict:
    """Each sensor read on its own: one NVML cannot read (e.g. power on a MIG device) is None, its
    error under ``unreadable``, and the others are kept."""
    state, unreadable = {}, {}
    for name, read in sensors.items():
        try:
            value = read(pynvml, handle)
            state[name] = value.decode() if isinstance(value, bytes) else value
        except Exception as exc:  # noqa: BLE001 -- an unreadable sensor must not stop a benchmark
            state[name], unreadable[name] = None, _error(exc)
    return {**state, "unreadable": unreadable} if unreadable else state


def _open_nvml():
    """(pynvml initialised, None), or (None, why not). NVML counts its inits: shut down once each."""
    try:
        import pynvml
    except ImportError:
        return None, "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 -- no driver, no GPU: a reason, not a crash
        return None, _error(exc)
    return pynvml, None


def gpu_state(index: int = 0) -> dict:
    """Clocks, power, temperature and clock-event reasons of CUDA device ``index`` now
    (nvidia-ml-py), or why they cannot be read."""
    pynvml, why = _open_nvml()
    if pynvml is None:
        return {"nvml": why}
    try:
        return _read_sensors(pynvml, _nvml_handle(pynvml, index, cuda_uuid(index)), STATE_SENSORS)
    except Exception as exc:  # noqa: BLE001 -- no handle: nothing to read
        return {"nvml": _error(exc)}
    finally:
        with suppress(Exception):
            pynvml.nvmlShutdown()


def summarize_gpu_samples(samples: list[dict], failure: str | None = None) -> dict:
    """A round's ``gpu_during``: how many samples, the SM clock's range and median, the highest
    temperature, the mean and highest power, the clock-event reasons seen (less the benign ones),
    the sensors that could not be read and why, and why there are no samples (``nvml``)."""
    def values(name: str) -> list[float]:
        return [s[name] for s in samples if isinstance(s.get(name), (int, float)) and not isinstance(s[name], bool)]

    summary: dict = {"samples": len(samples)}
    if failure:
        summary["nvml"] = failure
    clocks, temperatures, powers = values("sm_clock_mhz"), values("temperature_c"), values("power_w")
    if clocks:
        summary.update(sm_clock_mhz_min=min(clocks), sm_clock_mhz_median=statistics.median(clocks),
                       sm_clock_mhz_max=max(clocks))
    if temperatures:
        summary["temperature_c_max"] = max(temperatures)
    if powers:
        summary.update(power_w_mean=statistics.fmean(powers), power_w_max=max(powers))
    reasons = [s["clock_event_reasons"] for s in samples if isinstance(s.get("clock_event_reasons"), list)]
    if reasons:
        summary["clock_event_reasons"] = list(dict.fromkeys(
            name for seen in reasons for name in seen if name not in BENIGN_CLOCK_EVENTS))
    unreadable = {name: error for s in reversed(samples) for name, error in s.get("unreadable", {}).items()}
    if unreadable:
        summary["unreadable"] = unreadable
    return summary


def throttling_warning(summary: dict) -> str | None:
    """The row's warning if ``summary`` (summarize_gpu_samples) saw the GPU throttle."""
    reasons = [name for name in summary.get("clock_event_reasons", []) if name in THROTTLING_CLOCK_EVENTS]
    if not reasons:
        return None
    warning = f"the GPU throttled during timing ({', '.join(reasons)})"
    low, high = summary.get("sm_clock_mhz_min"), summary.get("sm_clock_mhz_max")
    if low is not None:
        warning += f"; the SM clock ranged {low}–{high} MHz" if low != high else f"; the SM clock was {low} MHz"
    return warning


class GPUSampler:
    """A context manager: while its block runs (the warm-up and the samples), a daemon thread reads
    CUDA device ``index``'s clocks, power, temperature and clock-event reasons every
    ``interval_s``, sleeping in between, so the timed calls never wait on it. On exit ``summary``
    holds ``summarize_gpu_samples`` of what it read, and ``warnings`` a warning if the GPU
    throttled. It never raises into the block: what it could not read, it records."""

    def __init__(self, index: int = 0, interval_s: float = 0.1):
        self.index, self.interval_s = index, interval_s
        self.samples: list[dict] = []
        self.failure: str | None = None
        self.summary: dict = {}
        self.warnings: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(cuda_uuid(index),), name="gpu-sampler", daemon=True)

    def __enter__(self) -> "GPUSampler":
        try:
            self._thread.start()
        except RuntimeError as exc:  # no thread to be had: the timing goes on unwatched
            self.failure = _error(exc)
        return self

    def __exit__(self, *exc_info) -> bool:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=max(1.0, 10 * self.interval_s))  # a hung driver call must not hang the worker
            if self._thread.is_alive() and not self.samples and self.failure is None:
                self.failure = "NVML gave no reading before the timing ended"
        self.summary = summarize_gpu_samples(list(self.samples), self.failure)
        warning = throttling_warning(self.summary)
        self.warnings = [warning] if warning else []
        return False  # the block's own exceptions go through

    def _run(self, uuid: str | None) -> None:
        pynvml, self.failure = _open_nvml()
        if pynvml is None:
            return
        try:  # NVML set up once for the sampler's life
            handle = _nvml_handle(pynvml, self.index, uuid)
            while True:
                self.samples.append(_read_sensors(pynvml, handle, SAMPLED_SENSORS))
                if self._stop.wait(self.interval_s):
                    break
        except Exception as exc:  # noqa: BLE001 -- recorded, never raised into the timing
            self.failure = _error(exc)
        finally:
            with suppress(Exception):
                pynvml.nvmlShutdown()


@contextmanager
def energy_meter(index: int = 0) -> Iterator[Meter]:
    """CUDA device ``index``'s energy counter: NVML's total energy since the driver loaded
    (nvmlDeviceGetTotalEnergyConsumption, mJ; Volta and later), of the whole board: another
    process's work on the same GPU counts too. Or why it cannot be read."""
    pynvml, why = _open_nvml()
    if pynvml is None:
        yield unreadable(f"GPU energy not measured: {why}")
        return
    try:
        try:
            handle = _nvml_handle(pynvml, index, cuda_uuid(index))
            counter = Counter(f"gpu{index}", lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1e3)
            counter.read()
            meter = Meter(f"NVML total energy counter of CUDA device {index}", [counter])
        except Exception as exc:  # noqa: BLE001 -- e.g. NVMLError_NotSupported before Volta, or on a MIG slice
            meter = unreadable(f"GPU energy not measured: NVML's total energy counter: {_error(exc)}")
        yield meter
    finally:
        with suppress(Exception):
            pynvml.nvmlShutdown()


def gpu_environment(index: int = 0) -> dict:
    """The GPU a report was measured on; nothing if there is none. ``gpu_before`` is its state when
    the first worker started, idle (the state while timing is each row's ``runtime.gpu_during``)."""
    if not available():
        return {}
    props = torch.cuda.get_device_properties(index)
    return {
        "gpu_name": props.name,
        "gpu_compute_capability": f"{props.major}.{props.minor}",
        "gpu_memory_bytes": props.total_memory,
        "gpu_l2_cache_bytes": getattr(props, "L2_cache_size", None),
        "gpu_count": torch.cuda.device_count(),
        "cuda_runtime": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "gpu_before": gpu_state(index),
    }
