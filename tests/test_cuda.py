"""The GPU path. Without a GPU: option parsing, error paths, the event timer against fake events,
the largest-batch search, fault handling and report fields. With one (marker ``cuda``): real
CUDA-event timing, its agreement with the wall clock, CUDA graphs, L2 flushing and OOM rows."""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import flopsbench.cuda as cuda
import flopsbench.runner as runner
from flopsbench import backends
from flopsbench.backends import Prepared
from flopsbench.backends.torch_cuda import TorchCUDA
from flopsbench.cli.options import run_settings
from flopsbench.report import Report, Row
from flopsbench.sampling import sample_round
from flopsbench.spec import Execution, Shape, TimingBudget, Workload
from flopsbench.transport import InProcess
from tests.test_cli import _assert_one_line_error, invoke

NO_GPU = not torch.cuda.is_available()
TINY = TimingBudget(warmup_s=0, warmup_runs=0, min_time_s=0, min_runs=1, max_runs=2, exact_runs=2, rounds=2)
SETTINGS = dict(runtime=None, ort_opt_level="all", ort_spinning=True, mode=None, batch=None, cuda_graph=False,
                l2_flush=False, channels_last=False, cudnn_benchmark=True, find_max_batch=False, tf32=False, threads=1,
                cores=None, dtype="fp32", warmup=0.2, min_time=2.0, min_runs=10, max_runs=10_000, runs=None,
                rounds=4, stop_ci=0.01, fmt="json", output=None, save=False, results_dir=Path("results"), paper=False, seed=0)
ILLEGAL_ACCESS = "CUDA error: an illegal memory access was encountered"  # fatal: the CUDA context is lost


# --- without a GPU -----------------------------------------------------------------------------------

@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU, so --device cuda is valid")
def test_device_cuda_without_a_gpu_is_one_line():
    result = invoke(["ops", "--device", "cuda"])
    _assert_one_line_error(result, "--device")
    assert "sees no CUDA GPU" in result.stderr and "--device cpu" in result.stderr


@pytest.mark.parametrize("args, option", [
    ("--cuda-graph", "--cuda-graph"), ("--l2-flush", "--l2-flush"), ("--find-max-batch", "--find-max-batch"),
    ("--no-cudnn-benchmark", "--no-cudnn-benchmark"), ("--mode fastest", "--mode"),
    ("--runtime onnxruntime --channels-last", "--channels-last"), ("--tf32", "--tf32"),
])
def test_gpu_options_are_checked_before_measuring(args, option):
    _assert_one_line_error(invoke(["ops", *args.split()]), option)


def test_cuda_defaults_follow_the_paper(monkeypatch):
    """On a GPU the paper measures throughput at batch 32; the knobs are recorded."""
    monkeypatch.setattr(cuda, "available", lambda: True)
    settings = run_settings("ops", device="cuda", **SETTINGS)
    ex = settings.execution
    assert (ex.runtime, ex.batch, ex.option("mode")) == ("torch", 32, "throughput")
    assert ex.to_dict()["runtime_options"] == {"cudnn_benchmark": True, "cuda_graph": False, "l2_flush": False,
                                               "channels_last": False, "find_max_batch": False,
                                               "mode": "throughput", "tf32": False}
    latency = run_settings("ops", device="cuda", **{**SETTINGS, "mode": "latency"}).execution
    assert latency.batch == 1
    assert run_settings("ops", device="cpu", **SETTINGS).execution.batch == 1


class FakeEvent:
    """Records when it was recorded on a fake GPU timeline."""

    def __init__(self, log, clock):
        self.log, self.clock, self.at = log, clock, None

    def record(self):
        self.log.append("record")
        self.at = self.clock[0]

    def synchronize(self):
        self.log.append("synchronize")

    def elapsed_time(self, end):
        return (end.at - self.at) * 1e3  # CUDA reports milliseconds


def test_event_timer_times_only_the_call():
    log, clock = [], [0.0]

    def fn():
        log.append("fn")
        clock[0] += 0.004

    def flush():
        log.append("flush")
        clock[0] += 1.0  # a slow flush must not be timed

    time_once = cuda.event_timer(fn, before=flush, event_factory=lambda: FakeEvent(log, clock),
                                 synchronize=lambda: log.append("wait for the flush"))
    assert time_once() == pytest.approx(0.004)
    # the host waits for the flush before the start event, so the call's launches are timed
    assert log == ["flush", "wait for the flush", "record", "fn", "record", "synchronize"]


def test_event_timer_averages_back_to_back_calls():
    log, clock = [], [0.0]

    def fn():
        log.append("fn")
        clock[0] += 0.001

    time_once = cuda.event_timer(fn, calls=3, event_factory=lambda: FakeEvent(log, clock))
    assert time_once() == pytest.approx(0.001) and time_once.calls == 3
    assert log == ["record", "fn", "fn", "fn", "record", "synchronize"]  # one pair of events, no sync between


def test_warm_up_goes_through_the_synchronous_timer(tiny_execution):
    """On a GPU the warm-up must wait for each call, or it would queue far more work than it has
    time for: sample_round warms up through the timer when there is one."""
    calls = []
    budget = replace(tiny_execution.budget, warmup_runs=3, exact_runs=2, max_runs=10)
    sample_round(Row(Workload("pwconv", Shape(8, 4, 4), 1)), lambda: calls.append("call"), tiny_execution,
                 budget, time_once=lambda: calls.append("timed") or 0.001)
    assert calls == ["timed"] * 5  # 3 warm-up + 2 samples, all through the timer


def test_calls_per_sample_fill_a_millisecond_after_the_first_calls():
    clock = [0.0]
    durations = iter([1.0, 1.0] + [1e-4] * 10)  # two slow first calls (cudnn autotuning), then 0.1 ms

    def fn():
        clock[0] += next(durations)

    events = lambda: FakeEvent([], clock)  # noqa: E731
    assert cuda.calls_per_sample(fn, target_s=1e-3, event_factory=events) == 10
    instant = lambda: None  # noqa: E731 -- no measurable time: as many calls as allowed
    assert cuda.calls_per_sample(instant, max_calls=50, event_factory=lambda: FakeEvent([], [0.0])) == 50
    slow = lambda: clock.__setitem__(0, clock[0] + 0.01)  # noqa: E731 -- 10 ms: one call is enough
    assert cuda.calls_per_sample(slow, event_factory=events) == 1


@pytest.mark.parametrize("start, expected", [(1, 37), (32, 37), (64, 37), (37, 37)])
def test_largest_fitting_batch(start, expected):
    calls = []

    def fits(n):
        calls.append(n)
        return n <= 37

    assert cuda.largest_fitting(fits, start=start, limit=4096) == expected
    assert len(calls) < 20


def test_largest_fitting_batch_edges():
    assert cuda.largest_fitting(lambda n: False) == 0
    assert cuda.largest_fitting(lambda n: True, limit=100) == 100


def test_fault_classification():
    assert cuda.is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert cuda.is_fatal(RuntimeError(ILLEGAL_ACCESS))
    assert not cuda.is_fatal(RuntimeError("CUDA out of memory"))
    assert cuda.is_fatal(RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"))
    assert cuda.is_fatal(RuntimeError("CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( ... )`"))
    assert cuda.is_fatal(RuntimeError("CUDA error: the launch timed out and was terminated"))
    assert cuda.is_fatal(RuntimeError("CUDA error: uncorrectable ECC error encountered"))


class FakeGPU(TorchCUDA):
    """TorchCUDA's fault handling (is_fatal, explain, largest_batch) around a trivial call, with
    its workers in this process, so no GPU is touched: the row with ``fails_at`` channels raises
    ``failure`` when timed; ``modules`` (by channels: 8, 16, ...) stand in for the built modules
    of the largest-batch search. ``released`` counts release() calls, ``built`` the batch of each
    case the search built, ``prepared`` each case prepared for timing."""

    def __init__(self, fails_at=None, failure=None, modules=(), release_fails=False):
        self.fails_at, self.failure, self.modules, self.released = fails_at, failure, modules, 0
        self.release_fails, self.built, self.prepared = release_fails, [], []

    def build(self, case, execution):
        channels = Workload.from_dict(case["workload"]).shape.c
        self.built.append(execution.batch)
        return self.modules[channels // 8 - 1], torch.zeros(execution.batch, channels, 4, 4)

    def transport(self):
        return InProcess()

    def prepare(self, case, execution):
        channels = Workload.from_dict(case["workload"]).shape.c
        self.prepared.append(channels)

        def call():
            if channels == self.fails_at:
                raise self.failure

        def time_once():
            call()
            return 0.001

        return Prepared(call=call, time_once=time_once)

    def release(self):
        self.released += 1
        if self.release_fails:  # the fault surfaces only when the cache is freed
            raise RuntimeError("CUDA error: an illegal memory access was encountered")


def _run_on(monkeypatch, gpu, rows=3, runtime_options=()) -> Report:
    """run_all on 'cuda' served by ``gpu``: pwconv rows of 8, 16, ... channels, counted on the CPU
    (the largest-batch search synchronises and frees the cache: no-ops here)."""
    monkeypatch.setitem(backends.BACKENDS, ("cuda", "torch"), lambda: gpu)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    report = Report("ops", Execution(device="cuda", batch=32, budget=TINY, runtime_options=runtime_options), {})
    return runner.run_all(report, [Workload("pwconv", Shape(8 * (i + 1), 4, 4), 1) for i in range(rows)])


def test_a_fatal_cuda_error_costs_only_its_row(monkeypatch):
    """A dead CUDA context dies with its worker: the row that hit it is an error, and the rows
    after it go on in a fresh worker (a context of its own) and keep all their samples."""
    report = _run_on(monkeypatch, FakeGPU(fails_at=8, failure=RuntimeError(ILLEGAL_ACCESS)))
    rows = report.rows
    assert [r.status for r in rows] == ["error", "ok", "ok"]
    assert rows[0].error == f"RuntimeError: {ILLEGAL_ACCESS}"
    assert [(len(r.samples_s), r.round_sizes, r.warnings) for r in rows[1:]] == [(2, [1, 1], [])] * 2
    # round 1 (seed 0) times pwconv 8 first: its worker stops there, a fresh one times the others
    assert [w["cases"] for w in report.workers if w["round"] == 1] == [
        ["pwconv 8x4x4", "pwconv 24x4x4", "pwconv 16x4x4"], ["pwconv 24x4x4", "pwconv 16x4x4"]]


def test_a_dead_context_is_not_touched_again(monkeypatch):
    """After an illegal memory access every CUDA call fails, freeing the cache too: the worker
    must not release() after the fatal error (it would crash instead of reporting the row)."""
    gpu = FakeGPU(fails_at=8, failure=RuntimeError(ILLEGAL_ACCESS))
    rows = _run_on(monkeypatch, gpu).rows
    assert [r.status for r in rows] == ["error", "ok", "ok"]
    assert gpu.released == 0


def test_out_of_memory_is_a_row_error_that_suggests_a_batch(monkeypatch):
    gpu = FakeGPU(fails_at=16, failure=torch.cuda.OutOfMemoryError("CUDA out of memory."))
    rows = _run_on(monkeypatch, gpu).rows
    assert [r.status for r in rows] == ["ok", "error", "ok"]  # not fatal: the others go on
    assert "out of GPU memory at batch 32; try --batch 16" in rows[1].error and "--find-max-batch" in rows[1].error
    assert gpu.released == 1  # the failed case's memory is given back


class RefusesLargeBatches(torch.nn.Module):
    """Runs up to ``fits`` images; beyond that fails as a GPU would: out of memory, or (from
    ``refuses``) cuDNN's 32-bit indexing limit, or a fatal error."""

    def __init__(self, fits, refuses=None, fatal=False):
        super().__init__()
        self.fits, self.refuses, self.fatal, self.batches = fits, refuses, fatal, []

    def forward(self, x):
        self.batches.append(len(x))
        if self.fatal:
            raise RuntimeError(ILLEGAL_ACCESS)
        if self.refuses is not None and len(x) >= self.refuses:
            raise RuntimeError("Expected canUse32BitIndexMath(input) to be true, but got false.")
        if len(x) > self.fits:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return x


def _largest_batch(monkeypatch, module, **limit) -> tuple[int, list[str]]:
    """TorchCUDA's search from batch 32 on ``module``; CUDA's synchronize and empty_cache, which it
    calls after every try, are no-ops here."""
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    gpu = FakeGPU(modules=[module])
    case = {"workload": Workload("pwconv", Shape(8, 4, 4), 1).to_dict()}
    found = gpu.largest_batch(case, Execution(device="cuda", batch=32, budget=TINY), **limit)
    assert set(gpu.built) == {1}  # the search holds a one-image input, not the timed batch
    return found


def test_largest_batch_stops_at_out_of_memory(monkeypatch):
    module = RefusesLargeBatches(fits=100)
    assert _largest_batch(monkeypatch, module) == (100, [])  # memory was the limit: nothing to explain
    assert module.batches[:3] == [32, 64, 128]  # doubling from the run's batch, then bisecting
    assert _largest_batch(monkeypatch, module, limit=64) == (
        64, ["--find-max-batch: every batch up to the search limit 64 fits"])


def test_largest_batch_names_a_limit_that_is_not_memory(monkeypatch):
    largest, (warning,) = _largest_batch(monkeypatch, RefusesLargeBatches(fits=100, refuses=70))
    assert largest == 69
    assert "batch 70 failed for a reason other than memory" in warning and "canUse32BitIndexMath" in warning


def test_a_fatal_error_while_finding_the_largest_batch_keeps_the_timing(monkeypatch):
    """The search runs after timing, each row's in a worker of its own: a fatal CUDA error there
    warns and keeps the samples, and the next row's search still runs, on a fresh context."""
    modules = [RefusesLargeBatches(fits=100, fatal=True), RefusesLargeBatches(fits=100)]
    report = _run_on(monkeypatch, FakeGPU(modules=modules), rows=2, runtime_options=(("find_max_batch", True),))
    rows = report.rows
    assert [r.status for r in rows] == ["ok", "ok"] and [len(r.samples_s) for r in rows] == [2, 2]
    assert rows[0].max_batch is None and any(w.startswith(f"--find-max-batch failed: RuntimeError: {ILLEGAL_ACCESS}")
                                             for w in rows[0].warnings)
    assert (rows[1].max_batch, rows[1].warnings) == (100, [])
    assert modules[1].batches[:3] == [32, 64, 128]
    assert [w["cases"] for w in report.workers if w["task"] == "max_batch"] == [["pwconv 8x4x4"], ["pwconv 16x4x4"]]


def test_the_largest_batch_search_holds_nothing_of_the_timed_case(monkeypatch):
    """Each search is a worker of its own that builds a one-image case: no timed batch, graph
    pool or flush buffer of any case (its own included) is resident while it searches."""
    gpu = FakeGPU(modules=[RefusesLargeBatches(fits=100)])
    report = _run_on(monkeypatch, gpu, rows=1, runtime_options=(("find_max_batch", True), ("cuda_graph", True)))
    assert report.rows[0].max_batch == 100
    assert gpu.prepared == [8, 8] and gpu.built == [1]  # prepared for the two rounds only


def test_a_fault_that_surfaces_when_the_cache_is_freed_ends_the_search_not_the_run(monkeypatch):
    """An error the search did not know to be fatal, then freeing the cache fails: that is a
    dead context, reported as the row's --find-max-batch warning; the timing is kept."""
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)

    def broken_empty_cache():
        raise RuntimeError("CUDA error: an unspecified fault")  # not a known fatal marker

    monkeypatch.setattr(torch.cuda, "empty_cache", broken_empty_cache)
    with pytest.raises(RuntimeError, match="CUDA context unusable") as raised:
        FakeGPU(modules=[RefusesLargeBatches(fits=8)]).largest_batch(
            {"workload": Workload("pwconv", Shape(8, 4, 4), 1).to_dict()}, Execution(device="cuda", batch=32))
    assert cuda.is_fatal(raised.value)


def test_a_failed_release_ends_the_worker_and_the_rows_left_go_on(monkeypatch):
    """After a row's non-fatal error, freeing its memory fails (the context died after all): the
    worker stops without crashing the run, and the rows after it are timed in a fresh one."""
    gpu = FakeGPU(fails_at=8, failure=torch.cuda.OutOfMemoryError("CUDA out of memory."), release_fails=True)
    rows = _run_on(monkeypatch, gpu).rows
    assert [r.status for r in rows] == ["error", "ok", "ok"]
    assert [len(r.samples_s) for r in rows[1:]] == [2, 2]


def test_cudnn_and_cublas_allocation_failures_count_as_out_of_memory():
    assert cuda.is_out_of_memory(RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"))
    assert cuda.is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate"))
    assert not cuda.is_out_of_memory(RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED"))


def test_gpu_environment_is_empty_without_a_gpu(monkeypatch):
    monkeypatch.setattr(cuda, "available", lambda: False)
    assert cuda.gpu_environment() == {}
    assert isinstance(cuda.gpu_state(), dict)  # no driver here: a reason, not a crash


class FakeNvml(SimpleNamespace):
    """pynvml's stand-in: two GPUs in PCI order; the CUDA device is the second one."""

    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 0, 1, 0

    def __init__(self):
        super().__init__(calls=[])
        self.nvmlInit = lambda: self.calls.append("init")
        self.nvmlShutdown = lambda: self.calls.append("shutdown")
        self.nvmlDeviceGetHandleByUUID = lambda uuid: {"GPU-1111": "second"}[uuid]
        self.nvmlDeviceGetHandleByIndex = lambda index: ["first", "second"][index]
        self.nvmlDeviceGetClockInfo = lambda handle, kind: {"first": 100, "second": 1980}[handle]
        self.nvmlDeviceGetMaxClockInfo = lambda handle, kind: 1980
        self.nvmlDeviceGetPowerUsage = lambda handle: 350_000
        self.nvmlDeviceGetTemperature = lambda handle, kind: 40
        self.nvmlSystemGetDriverVersion = lambda: b"580.159.04"


def test_gpu_state_reads_the_cuda_device_not_nvml_index_0(monkeypatch):
    """With CUDA_VISIBLE_DEVICES=1, CUDA device 0 is NVML's GPU 1: it is found by UUID."""
    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index=None: SimpleNamespace(uuid="1111"))
    state = cuda.gpu_state(0)
    assert (state["sm_clock_mhz"], state["power_w"], state["driver"]) == (1980, 350.0, "580.159.04")
    assert nvml.calls == ["init", "shutdown"]
    nvml.nvmlDeviceGetClockInfo = lambda handle, kind: 1 / 0  # a sensor that cannot be read: the others are kept
    state = cuda.gpu_state(0)
    assert state["sm_clock_mhz"] is None and state["power_w"] == 350.0
    assert state["unreadable"]["sm_clock_mhz"] == "ZeroDivisionError: division by zero"
    assert nvml.calls[-1] == "shutdown"


class WallClockEvent:
    """torch.cuda.Event's stand-in without a GPU: it records the wall clock."""

    def __init__(self, enable_timing=True):
        self.at = None

    def record(self, stream=None):
        self.at = time.perf_counter()

    def synchronize(self):
        pass

    def elapsed_time(self, end):
        return (end.at - self.at) * 1e3


class CPUasGPU(TorchCUDA):
    """The GPU backend with its cases built on the CPU and its worker in this process (the fakes
    of torch.cuda would not reach another process)."""

    device = "cpu"

    def transport(self):
        return InProcess()


@pytest.fixture
def fake_gpu(monkeypatch):
    """``--device cuda`` end to end on the CPU: torch's CUDA queries answer for a fake GPU, CUDA
    events read the wall clock, and cases are built on the CPU. Everything else (options,
    counting, the worker, the event timer and L2 flush wiring, cudnn settings, report fields,
    views) is the real GPU path."""
    props = SimpleNamespace(name="Fake GPU", major=9, minor=0, total_memory=80 << 30, L2_cache_size=1 << 20)
    monkeypatch.setattr(cuda, "available", lambda: True)
    monkeypatch.setattr(torch.cuda, "Event", WallClockEvent)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: props.name)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: props)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setitem(backends.BACKENDS, ("cuda", "torch"), CPUasGPU)


@pytest.fixture
def gpu_timeline(monkeypatch):
    """A fake GPU's clock on which every module's forward takes 10 µs, read by its CUDA events:
    a call's time is known, however loaded the CPU is (on the wall clock, a tiny conv on a busy
    2-core machine can take tens of ms while torch's threads wait for a core)."""
    clock = [0.0]
    monkeypatch.setattr(torch.cuda, "Event", lambda enable_timing=True: FakeEvent([], clock))
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, output: clock.__setitem__(0, clock[0] + 1e-5))
    yield clock
    hook.remove()


def test_ops_on_a_fake_gpu_reports_throughput_and_the_gpu(fake_gpu):
    result = invoke(["ops", "--device", "cuda", "--op", "pconv,dwconv", "--shape", "96x56x56", "--batch", "2",
                     "--runs", "2", "--warmup", "0", "--l2-flush", "--no-cudnn-benchmark", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    env = data["environment"]
    assert (env["gpu_name"], env["gpu_compute_capability"], env["gpu_l2_cache_bytes"]) == ("Fake GPU", "9.0", 1 << 20)
    assert "gpu_before" in env and "gpu_after" in env
    assert data["execution"]["runtime_options"]["mode"] == "throughput"
    for row in data["rows"]:
        assert row["status"] == "ok", row["error"]
        assert row["runtime"]["timer"] == "cuda events" and row["runtime"]["gpu"] == "Fake GPU"
        assert row["runtime"]["l2_flush"] is True and row["runtime"]["cudnn_benchmark"] is False
        assert row["runtime"]["calls_per_sample"] == 1  # a cold cache for every call
        assert len(row["samples_s"]) == 2 and all(t > 0 for t in row["samples_s"])
    table = invoke(["ops", "--device", "cuda", "--op", "pconv", "--shape", "96x56x56", "--batch", "2", "--runs", "1",
                    "--warmup", "0", "--l2-flush", "--paper", "--format", "md"])
    assert table.exit_code == 0, table.output
    assert table.stdout.startswith("flopsbench ops on cuda: Fake GPU (throughput; l2 flush)")
    assert "Throughput [1/s]" in table.stdout and "Paper cuda FLOPS [G/s]" in table.stdout


@pytest.mark.parametrize("mode, back_to_back", [("throughput", True), ("latency", False)])
def test_throughput_times_back_to_back_calls_latency_one_call(fake_gpu, gpu_timeline, mode, back_to_back):
    """A tiny operator takes far less than the 1 ms a throughput sample lasts: several calls
    per sample there; latency is one call alone. Timed on ``gpu_timeline``, not the wall clock."""
    result = invoke(["ops", "--device", "cuda", "--mode", mode, "--op", "pwconv", "--shape", "8x4x4", "--runs", "3",
                     "--warmup", "0", "--format", "json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["rows"]
    assert (row["runtime"]["calls_per_sample"] > 1) is back_to_back
    assert len(row["samples_s"]) == 3


def test_model_on_a_fake_gpu_with_a_breakdown(fake_gpu):
    result = invoke(["model", "fasternet_t0", "--device", "cuda", "--batch", "1", "--runs", "2", "--warmup", "0",
                     "--breakdown", "2", "--breakdown-time", "0.01", "--format", "json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["rows"]
    assert row["status"] == "ok" and not [w for w in row["warnings"] if "failed" in w], row["warnings"]
    assert row["runtime"]["timer"] == "cuda events" and row["runtime"]["cudnn_benchmark"] is True
    assert row["flops_fused"] < row["flops_unfused"]  # BN fusion checked and applied
    parts = [part["part"] for part in row["breakdown"]]
    assert parts[0] == "patch_embed.proj" and "stages.0" in parts and all(p["samples_s"] for p in row["breakdown"])


def test_a_call_that_cannot_be_graphed_is_a_clear_row_error(fake_gpu, monkeypatch):
    def graphed(fn):
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    monkeypatch.setattr(cuda, "graphed", graphed)
    result = invoke(["ops", "--device", "cuda", "--op", "pwconv,dwconv", "--shape", "8x4x4", "--runs", "1",
                     "--warmup", "0", "--cuda-graph", "--format", "json"])
    rows = json.loads(result.stdout)["rows"]
    assert [row["status"] for row in rows] == ["error", "error"]  # not fatal: each row tries and says why
    assert rows[0]["error"].startswith("RuntimeError: --cuda-graph could not capture this call (RuntimeError: "
                                       "CUDA error: operation not permitted when stream is capturing); time it "
                                       "without --cuda-graph")


def test_paper_ratios_need_the_papers_gpu_protocol(fake_gpu):
    """The paper's GPU column is throughput at batch 32: at batch 1 the ratio to it is left out, and said so."""
    md = invoke(["model", "fasternet_t0", "--device", "cuda", "--batch", "1", "--runs", "1", "--warmup", "0",
                 "--paper", "--format", "md"])
    assert md.exit_code == 0, md.output
    assert "Throughput / paper" in md.stdout and "Paper cuda throughput [img/s]" in md.stdout
    assert ("Paper ratios left out: the paper measured cuda at batch 32, fp32 (IEEE); this run used batch 1, "
            "fp32 (IEEE, no TF32).") in md.stdout
    (record,) = csv.DictReader(io.StringIO(invoke(["model", "fasternet_t0", "--device", "cuda", "--batch", "1",
                                                   "--runs", "1", "--warmup", "0", "--paper", "--format",
                                                   "csv"]).stdout))
    assert record["Throughput / paper"] == "" and float(record["Paper cuda throughput [img/s]"]) > 0


@pytest.fixture
def torch_default_precision():
    """torch's default fp32 precisions (cuDNN convs in TF32), put back after the test."""
    flags = (torch.backends.cudnn.conv, torch.backends.cudnn.rnn, torch.backends.cuda.matmul)
    saved = [flag.fp32_precision for flag in flags]
    torch.backends.cudnn.conv.fp32_precision = torch.backends.cudnn.rnn.fp32_precision = "tf32"
    yield
    for flag, value in zip(flags, saved):
        flag.fp32_precision = value


def test_fp32_on_a_gpu_is_ieee_unless_tf32_is_asked_for(fake_gpu, torch_default_precision):
    """cuDNN convolutions default to TF32 in torch 2.x: a run labelled fp32 sets IEEE fp32 itself,
    records it, and says so in the header; --tf32 is a protocol the paper's ratios do not cover."""
    args = ["ops", "--device", "cuda", "--op", "pwconv", "--shape", "8x4x4", "--runs", "1", "--warmup", "0", "--paper"]
    (row,) = json.loads(invoke(args + ["--format", "json"]).stdout)["rows"]
    assert row["runtime"]["fp32_precision"] == {"cudnn_conv": "ieee", "matmul": "ieee"}
    md = invoke(args + ["--format", "md"]).stdout
    assert "batch 32, fp32 (IEEE, no TF32)" in md.splitlines()[0] and "Paper ratios left out" not in md

    (row,) = json.loads(invoke(args + ["--tf32", "--format", "json"]).stdout)["rows"]
    assert row["runtime"]["fp32_precision"] == {"cudnn_conv": "tf32", "matmul": "tf32"} and row["runtime"]["tf32"]
    md = invoke(args + ["--tf32", "--format", "md"]).stdout
    assert "batch 32, fp32 with TF32 convs and matmuls" in md.splitlines()[0]
    assert ("Paper ratios left out: the paper measured cuda at batch 32, fp32 (IEEE); this run used batch 32, "
            "fp32 with TF32 convs and matmuls.") in md
    _assert_one_line_error(invoke(args + ["--tf32", "--dtype", "fp16"]), "--tf32")


# --- on a GPU ----------------------------------------------------------------------------------------

@pytest.mark.cuda
def test_cuda_events_agree_with_the_wall_clock_for_a_long_operator():
    """Within 2 %: one long synchronised block timed both ways."""
    torch.manual_seed(0)
    # 4.7 T multiply-adds: tens of ms even at an H100's TF32 rate, so launch and sync are small beside it
    model = torch.nn.Sequential(*[torch.nn.Conv2d(256, 256, 3, padding=1) for _ in range(20)]).cuda().eval()
    x = torch.randn(128, 256, 56, 56, device="cuda")
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        torch.cuda.synchronize()
        events = cuda.event_timer(lambda: model(x))
        by_events, by_wall = [], []
        for _ in range(5):
            by_events.append(events())
            start = time.perf_counter()
            model(x)
            torch.cuda.synchronize()
            by_wall.append(time.perf_counter() - start)
    a, b = sorted(by_events)[2], sorted(by_wall)[2]
    assert b > 0.01  # a long operator: launch and sync overheads are small next to it
    assert abs(a - b) / b < 0.02, (a, b)


@pytest.mark.cuda
def test_cuda_run_with_graphs_and_l2_flush():
    result = invoke(["ops", "--device", "cuda", "--op", "pconv,dwconv", "--shape", "96x56x56", "--runs", "5",
                     "--warmup", "0.05", "--cuda-graph", "--l2-flush", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["execution"]["batch"] == 32 and data["environment"]["gpu_name"]
    assert "gpu_before" in data["environment"] and "gpu_after" in data["environment"]
    for row in data["rows"]:
        assert row["status"] == "ok", row["error"]
        assert row["runtime"]["timer"] == "cuda events" and row["runtime"]["cuda_graph"] is True
        assert len(row["samples_s"]) == 5


@pytest.mark.cuda
def test_out_of_memory_on_a_real_gpu():
    """The input alone (1024 x 768 x 224 x 224 fp32, 158 GB) exceeds an H100's and an H200's memory."""
    # one 1x1 layer: the parent counts batches 1 and 2 on the CPU, a second or so even at this size
    result = invoke(["ops", "--device", "cuda", "--op", "pwconv", "--layers", "1", "--shape", "768x224x224",
                     "--batch", "1024", "--runs", "1", "--format", "json"])
    (row,) = json.loads(result.stdout)["rows"]
    assert row["status"] == "error" and "out of GPU memory at batch 1024; try --batch 512" in row["error"]


def test_later_rounds_average_as_many_calls_as_the_first_found(monkeypatch):
    """A throughput worker given the count an earlier round calibrated uses it as is (no new
    calibration), so every round's samples are means of the same number of calls."""
    monkeypatch.setattr(torch.cuda, "Event", lambda enable_timing=True: SimpleNamespace(
        record=lambda: None, synchronize=lambda: None, elapsed_time=lambda end: 1.0))
    calls = []
    execution = Execution(device="cuda", batch=32, budget=TINY, runtime_options=(("mode", "throughput"),))
    timer = TorchCUDA().gpu_timer(lambda: calls.append(1), execution, calls=7)
    assert timer.calls == 7 and calls == []  # nothing ran: no calibration
    assert TorchCUDA().gpu_timer(lambda: calls.append(1), execution).calls >= 1 and calls  # calibrated
