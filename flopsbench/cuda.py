"""GPU execution: CUDA-event timing, cudnn autotuning, L2 flushing, CUDA-graph replay, fault
classification and the GPU's environment (nvidia-ml-py).

Only the computation sits between the two events: inputs and weights are on the GPU before
timing, cudnn.benchmark autotunes during the warm-up, an L2 flush (if asked) runs before the
start event, and the host waits on the end event before reading the elapsed time."""

from __future__ import annotations

import math
from contextlib import contextmanager, suppress
from typing import Callable, Iterator

import torch

# Errors after which the CUDA context is unusable: the worker process stops, and the cases left
# go on in a fresh one (with a context of its own).
FATAL_CUDA_ERRORS = ("illegal memory access", "unspecified launch failure", "device-side assert",
                     "misaligned address", "an illegal instruction")


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
                event_factory: Callable[[], object] | None = None, calls: int = 1) -> Callable[[], float]:
    """Seconds per call of ``fn``: two CUDA events on the current stream around ``calls``
    back-to-back calls. ``before`` (an L2 flush) is queued ahead of the start event, so it is not
    timed. The timer's ``calls`` attribute says how many calls one sample stands for."""
    make = event_factory or (lambda: torch.cuda.Event(enable_timing=True))
    start, end = make(), make()

    def time_once() -> float:
        if before is not None:
            before()
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


@contextmanager
def cudnn_benchmark(enabled: bool = True) -> Iterator[None]:
    """cudnn.benchmark set for the block (its autotuning then happens in the warm-up), restored."""
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def _nvml_handle(pynvml, index: int):
    """NVML's handle of CUDA device ``index``, found by UUID: NVML numbers every GPU of the host in
    PCI order, CUDA only the visible ones (CUDA_VISIBLE_DEVICES), fastest first."""
    try:
        uuid = str(torch.cuda.get_device_properties(index).uuid)
        return pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
    except Exception:  # noqa: BLE001 -- no UUID from this torch or driver: same index, as a last resort
        return pynvml.nvmlDeviceGetHandleByIndex(index)


def gpu_state(index: int = 0) -> dict:
    """Clocks, power and temperature of CUDA device ``index`` now (nvidia-ml-py), or why they
    cannot be read."""
    try:
        import pynvml
    except ImportError:
        return {"nvml": "nvidia-ml-py is not installed"}
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 -- an unreadable sensor must not stop a benchmark
        return {"nvml": f"{type(exc).__name__}: {exc}"}
    try:
        handle = _nvml_handle(pynvml, index)
        state = {
            "sm_clock_mhz": pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
            "memory_clock_mhz": pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM),
            "max_sm_clock_mhz": pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM),
            "power_w": pynvml.nvmlDeviceGetPowerUsage(handle) / 1e3,
            "temperature_c": pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU),
            "driver": pynvml.nvmlSystemGetDriverVersion(),
        }
        return {key: value.decode() if isinstance(value, bytes) else value for key, value in state.items()}
    except Exception as exc:  # noqa: BLE001 -- an unreadable sensor must not stop a benchmark
        return {"nvml": f"{type(exc).__name__}: {exc}"}
    finally:
        with suppress(Exception):
            pynvml.nvmlShutdown()


def gpu_environment(index: int = 0) -> dict:
    """The GPU a report was measured on; nothing if there is none."""
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
