"""torch on an NVIDIA GPU: CUDA-event timing, cudnn autotuning, CUDA graphs, L2 flushing, the
largest-batch search, the classification of CUDA faults (see ``flopsbench.cuda``), and a case's
cold start, peak GPU memory and energy (NVML's counter)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from typing import Callable

import torch

from flopsbench import cuda
from flopsbench.backends import Backend, Observed, Prepared
from flopsbench.build import bn_pairs_from, build_case
from flopsbench.cpu import pinned, set_interop_threads_once
from flopsbench.peak_memory import HostPeak
from flopsbench.report import error_line
from flopsbench.spec import Execution, Workload

# The CUDA knobs a row records (and their defaults).
CUDA_DEFAULTS = {"cudnn_benchmark": True, "cuda_graph": False, "l2_flush": False, "channels_last": False,
                 "tf32": False}


class TorchCUDA(Backend):
    preload = ("flopsbench.backends.torch_cuda",)  # and with it torch and the operators
    device = "cuda"  # where cases are built (a test's fake GPU builds them on the CPU)
    forks_cases = False  # the worker's environment() initialises CUDA, whose context no fork may share

    def prepare(self, case: dict, execution: Execution, clock: Callable[[], float] = time.perf_counter) -> Prepared:
        """Build the case, time its first call (before the timer's calibration or a CUDA graph's
        capture call it), and set up its timer; the build's seconds are its own, up to the GPU
        holding the module and input (in a fresh worker, CUDA's initialisation is in them)."""
        set_interop_threads_once(1)  # before any inter-op work in this fresh process
        precision = cuda.set_fp32_precision(execution.option("tf32", False))  # before anything runs
        started = clock()
        module, x = self.build(case, execution)
        torch.cuda.synchronize()
        build_s = clock() - started
        call: Callable[[], object] = lambda: module(x)
        with pinned(execution.threads, execution.cores, torch_threads=True), self.settings(execution)():
            first_call_s = cuda.first_call_s(call, clock)
        if execution.option("cuda_graph"):
            try:
                with self.settings(execution)():
                    call = cuda.graphed(call)
            except RuntimeError as exc:  # e.g. a forward that synchronises with the host cannot be captured
                raise RuntimeError(f"--cuda-graph could not capture this call ({error_line(exc)}); time it "
                                   "without --cuda-graph") from exc
        flush = cuda.l2_flusher(x.device) if execution.option("l2_flush") else None
        timer = self.gpu_timer(call, execution, before=flush, calls=case.get("earlier", {}).get("calls_per_sample"))
        runtime = {"timer": "cuda events", "calls_per_sample": timer.calls,
                   "gpu": torch.cuda.get_device_name(x.device),
                   **{key: execution.option(key, default) for key, default in CUDA_DEFAULTS.items()},
                   "fp32_precision": precision}
        device = x.device.index or 0
        return Prepared(call=call, time_once=timer, settings=self.settings(execution, monitor=True),
                        torch_threads=True, runtime=runtime, module=module, x=x,
                        energy=lambda: cuda.energy_meter(device), build_s=build_s, first_call_s=first_call_s)

    def build(self, case: dict, execution: Execution) -> tuple[torch.nn.Module, torch.Tensor]:
        """The case's module (BN fused if asked) and input, on this backend's device."""
        return build_case(Workload.from_dict(case["workload"]), execution, device=self.device,
                          bn_pairs=bn_pairs_from(case.get("bn_pairs")))

    @staticmethod
    def settings(execution: Execution, monitor: bool = False) -> Callable[[], contextlib.AbstractContextManager]:
        """Inference mode, and cudnn.benchmark as asked (its autotuning then falls in the warm-up).
        ``monitor`` (the timed round): meanwhile the GPU's clocks, power, temperature and clock-event
        reasons are sampled, and it yields an ``Observed``: ``gpu_during``
        (cuda.summarize_gpu_samples), and a warning if the GPU throttled."""
        @contextlib.contextmanager
        def entered():
            observed = Observed()
            sampler = cuda.GPUSampler() if monitor else contextlib.nullcontext()
            try:
                with sampler, torch.inference_mode(), cuda.cudnn_benchmark(execution.option("cudnn_benchmark", True)):
                    yield observed
            finally:
                if monitor:
                    observed.runtime["gpu_during"] = sampler.summary
                    observed.warnings.extend(sampler.warnings)
        return entered

    def gpu_timer(self, call: Callable[[], object], execution: Execution,
                  before: Callable[[], object] | None = None, calls: int | None = None) -> Callable[[], float]:
        """CUDA-event timer of ``call``. Throughput mode times back-to-back calls (about 1 ms of
        them per sample, the GPU's steady state, as the paper's 200 forwards in a row); latency mode
        and cold-cache timing (``before`` flushes the L2 before every call) time one call alone.
        ``calls`` given (what an earlier round found): every round's samples average as many calls."""
        if execution.option("mode") != "throughput" or before is not None:
            calls = 1
        elif not isinstance(calls, int) or calls < 1:
            # as timed: the host threads pinned and counted as in the rounds, cudnn as asked
            with pinned(execution.threads, execution.cores), self.settings(execution)():
                calls = cuda.calls_per_sample(call)
        return cuda.event_timer(call, before=before, calls=calls)

    def timer(self, call, execution):
        """A --breakdown part's timer, made as ``prepare`` makes the row's: the call graphed with
        --cuda-graph, the L2 flushed before each call with --l2-flush (one buffer for all parts),
        back-to-back calls in throughput mode. Made within the case's settings (``break_down``)."""
        if execution.option("cuda_graph"):
            try:
                call = cuda.graphed(call)
            except RuntimeError as exc:
                raise RuntimeError(f"--cuda-graph could not capture a part ({error_line(exc)})") from exc
        flush = None
        if execution.option("l2_flush"):
            if getattr(self, "part_flush", None) is None:
                self.part_flush = cuda.l2_flusher(torch.device(self.device))
            flush = self.part_flush
        return self.gpu_timer(call, execution, before=flush)

    def largest_batch(self, case: dict, execution: Execution, limit: int = 4096) -> tuple[int, list[str]]:
        """The largest batch whose forward pass runs on the GPU (doubling from the run's batch,
        then bisecting), with nothing else resident: the worker holds no other case, and the search
        builds its module and a one-image input itself (no timed batch, CUDA graph pool or flush
        buffer). A batch fails by running out of memory or by a non-fatal refusal (e.g. cuDNN's
        32-bit indexing limit on huge tensors); if the limit was not memory, the warning says what
        it was. A fatal fault, even one that surfaces only when the cache is freed, ends the search."""
        module, sample = self.build(case, replace(execution, batch=1))
        layout = torch.channels_last if execution.option("channels_last") else torch.contiguous_format
        refusals: dict[int, str] = {}

        def fits(batch: int) -> bool:
            try:
                # as timed: same layout, same cudnn settings (its algorithms' workspaces count too)
                with self.settings(execution)():
                    module(sample.expand(batch, *sample.shape[1:]).contiguous(memory_format=layout))
                    torch.cuda.synchronize()  # an asynchronous fault surfaces here, inside the try
                ran = True
            except Exception as exc:  # noqa: BLE001 -- classified below
                if cuda.is_fatal(exc):
                    raise  # the context is dead: no further CUDA call, not even to free the cache
                if not cuda.is_out_of_memory(exc):
                    refusals[batch] = error_line(exc)
                ran = False
            cuda.free_cache()  # raises only if the context turned out dead: then the search ends
            return ran

        largest = cuda.largest_fitting(fits, start=execution.batch, limit=limit)
        warnings = []
        if largest == limit:
            warnings.append(f"--find-max-batch: every batch up to the search limit {limit} fits")
        elif largest + 1 in refusals:
            warnings.append(f"--find-max-batch: batch {largest + 1} failed for a reason other than "
                            f"memory ({refusals[largest + 1]})")
        return largest, warnings

    def explain(self, exc: BaseException, execution: Execution) -> str:
        message = error_line(exc)
        if not cuda.is_out_of_memory(exc):
            return message
        return (f"out of GPU memory at batch {execution.batch}; try --batch {max(1, execution.batch // 2)}, "
                f"or --find-max-batch to find the largest that fits ({message})")

    def is_fatal(self, exc: BaseException) -> bool:
        return cuda.is_fatal(exc)

    def release(self) -> None:
        cuda.free_cache()

    def environment(self) -> dict:
        return cuda.gpu_environment()

    def peak_memory(self) -> "GPUPeak":
        return GPUPeak()


GPU_METHOD = ("GPU: torch.cuda.max_memory_allocated (tensors: weights, activations, cudnn workspaces, a CUDA "
              "graph's pool, the L2 flush buffer) and max_memory_reserved (torch's cache), from their peaks reset "
              "before the build, less their levels then")


class GPUPeak:
    """A case's peaks in torch's caching allocator on the GPU (and the host's resident set, as on the
    CPU), from the build to the end of its round. The cache is emptied first, so that the reserved
    peak is this case's, not what an earlier case left cached. In a fresh worker CUDA is not
    initialised yet: nothing is touched then (its initialisation belongs to the build's time)."""

    def __init__(self):
        self.host = HostPeak()
        self.allocated = self.reserved = 0

    def start(self) -> None:
        self.host.start()
        with contextlib.suppress(Exception):  # a context that died: the case's own error says so
            if torch.cuda.is_initialized():
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                self.allocated, self.reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()

    def stop(self) -> dict:
        host = self.host.stop()
        record = {key: value for key, value in host.items() if key == "host_peak_bytes"}
        reasons = [host["unavailable"]] if "unavailable" in host else []
        try:
            if not torch.cuda.is_initialized():
                raise RuntimeError("CUDA was never initialised in this worker")
            record.update(gpu_peak_allocated_bytes=max(0, torch.cuda.max_memory_allocated() - self.allocated),
                          gpu_peak_reserved_bytes=max(0, torch.cuda.max_memory_reserved() - self.reserved))
        except Exception as exc:  # noqa: BLE001 -- a dead context: the figure is missing, with the reason
            reasons.insert(0, f"GPU peak memory not measured: {error_line(exc)}")
        record["method"] = GPU_METHOD + "; " + host.get("method", "host: not measured")
        if reasons:
            record["unavailable"] = "; ".join(reasons)
        return record
