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
from flopsbench.cli.options import run_settings
from flopsbench.report import Report
from flopsbench.spec import Execution, Shape, TimingBudget, Workload
from tests.test_cli import _assert_one_line_error, invoke

NO_GPU = not torch.cuda.is_available()
TINY = TimingBudget(warmup_s=0, warmup_runs=0, min_time_s=0, min_runs=1, max_runs=2, exact_runs=2, rounds=2)
SETTINGS = dict(runtime=None, ort_opt_level="all", ort_spinning=True, mode=None, batch=None, cuda_graph=False,
                l2_flush=False, channels_last=False, cudnn_benchmark=True, find_max_batch=False, threads=1,
                cores=None, dtype="fp32", warmup=0.2, min_time=2.0, min_runs=10, max_runs=10_000, runs=None,
                rounds=4, fmt="json", output=None, save=False, results_dir=Path("results"), paper=False, seed=0)


# --- without a GPU -----------------------------------------------------------------------------------

@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU, so --device cuda is valid")
def test_device_cuda_without_a_gpu_is_one_line():
    result = invoke(["ops", "--device", "cuda"])
    _assert_one_line_error(result, "--device")
    assert "sees no CUDA GPU" in result.stderr and "--device cpu" in result.stderr


@pytest.mark.parametrize("args, option", [
    ("--cuda-graph", "--cuda-graph"), ("--l2-flush", "--l2-flush"), ("--find-max-batch", "--find-max-batch"),
    ("--no-cudnn-benchmark", "--no-cudnn-benchmark"), ("--mode fastest", "--mode"),
    ("--runtime onnxruntime --channels-last", "--channels-last"),
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
                                               "mode": "throughput"}
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

    time_once = cuda.event_timer(fn, before=flush, event_factory=lambda: FakeEvent(log, clock))
    assert time_once() == pytest.approx(0.004)
    assert log == ["flush", "record", "fn", "record", "synchronize"]



def test_event_timer_averages_back_to_back_calls():
    log, clock = [], [0.0]

    def fn():
        log.append("fn")
        clock[0] += 0.001

    time_once = cuda.event_timer(fn, calls=3, event_factory=lambda: FakeEvent(log, clock))
    assert time_once() == pytest.approx(0.001) and time_once.calls == 3
    assert log == ["record", "fn", "fn", "fn", "record", "synchronize"]  # one pair of events, no sync between


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
    assert cuda.is_fatal(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert not cuda.is_fatal(RuntimeError("CUDA out of memory"))


def _fake_gpu_case(monkeypatch, failure_on=(None, None), empty_cache=lambda: None, modules=None,
                   runtime_options=()):
    """run_all on 'cuda' with preparation faked (no GPU here): one pwconv row per module (three
    without), timing failing for the row of ``failure_on``'s channel count."""
    def prepare(case, execution):
        case.call = lambda: None
        if modules:
            case.module, case.x = modules[case.row.workload.shape.c // 8 - 1], torch.zeros(32, 8, 4, 4)

    def time_round(row, call, execution, budget, clock=None, time_once=None):
        if row.workload.shape.c == failure_on[0]:
            raise failure_on[1]
        row.samples_s.append(0.001)
        row.round_sizes.append(1)

    monkeypatch.setattr(runner, "_prepare", prepare)
    monkeypatch.setattr(runner, "time_round", time_round)
    monkeypatch.setattr(runner.torch.cuda, "empty_cache", empty_cache)
    report = Report("ops", Execution(device="cuda", batch=32, budget=TINY, runtime_options=runtime_options), {})
    count = len(modules) if modules else 3
    workloads = [Workload("pwconv", Shape(8 * (i + 1), 4, 4), 1) for i in range(count)]
    return runner.run_all(report, workloads).rows


def test_illegal_memory_access_skips_the_remaining_cuda_rows(monkeypatch):
    rows = _fake_gpu_case(monkeypatch, (16, RuntimeError("CUDA error: an illegal memory access was encountered")))
    assert [r.status for r in rows] == ["ok", "error", "skipped"]
    assert "illegal memory access" in rows[1].error
    assert rows[2].error.startswith("skipped: the CUDA context was lost") and not rows[2].samples_s
    # the first row keeps its round-1 sample; its round 2, after the fault, did not run
    assert len(rows[0].samples_s) == 1
    assert sum(w.startswith("CUDA context lost after 1 timing round") for w in rows[0].warnings) == 1


def test_a_dead_context_is_not_touched_again(monkeypatch):
    """After an illegal memory access every CUDA call fails, freeing the cache too: the row error
    must not call it (the run would crash and lose every table)."""
    def dead_context():
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    failure = RuntimeError("CUDA error: an illegal memory access was encountered")
    rows = _fake_gpu_case(monkeypatch, (16, failure), empty_cache=dead_context)
    assert [r.status for r in rows] == ["ok", "error", "skipped"]


def test_out_of_memory_is_a_row_error_that_suggests_a_batch(monkeypatch):
    rows = _fake_gpu_case(monkeypatch, (16, torch.cuda.OutOfMemoryError("CUDA out of memory.")))
    assert [r.status for r in rows] == ["ok", "error", "ok"]  # not fatal: the others go on
    assert "out of GPU memory at batch 32; try --batch 16" in rows[1].error and "--find-max-batch" in rows[1].error


class RefusesLargeBatches(torch.nn.Module):
    """Runs up to ``fits`` images; beyond that fails as a GPU would: out of memory, or (from
    ``refuses``) cuDNN's 32-bit indexing limit, or a fatal error."""

    def __init__(self, fits, refuses=None, fatal=False):
        super().__init__()
        self.fits, self.refuses, self.fatal, self.batches = fits, refuses, fatal, []

    def forward(self, x):
        self.batches.append(len(x))
        if self.fatal:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if self.refuses is not None and len(x) >= self.refuses:
            raise RuntimeError("Expected canUse32BitIndexMath(input) to be true, but got false.")
        if len(x) > self.fits:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return x


def _case_for(module):
    case = runner.Case(runner.Row(Workload("pwconv", Shape(8, 4, 4), 1)), module=module, x=torch.zeros(32, 8, 4, 4))
    return case, Execution(device="cuda", batch=32, budget=TINY)


def test_largest_batch_stops_at_out_of_memory(monkeypatch):
    monkeypatch.setattr(runner.torch.cuda, "empty_cache", lambda: None)
    case, execution = _case_for(RefusesLargeBatches(fits=100))
    assert runner.largest_batch(case, execution) == 100
    assert case.module.batches[:3] == [32, 64, 128]  # doubling from the run's batch, then bisecting
    assert case.row.warnings == []  # memory was the limit: nothing to explain
    assert runner.largest_batch(case, execution, limit=64) == 64
    assert case.row.warnings == ["--find-max-batch: every batch up to the search limit 64 fits"]


def test_largest_batch_names_a_limit_that_is_not_memory(monkeypatch):
    monkeypatch.setattr(runner.torch.cuda, "empty_cache", lambda: None)
    case, execution = _case_for(RefusesLargeBatches(fits=100, refuses=70))
    assert runner.largest_batch(case, execution) == 69
    (warning,) = case.row.warnings
    assert "batch 70 failed for a reason other than memory" in warning and "canUse32BitIndexMath" in warning


def test_a_fatal_error_while_finding_the_largest_batch_keeps_the_timing(monkeypatch):
    """The search runs after timing: a fatal CUDA error there warns, keeps the samples, and
    later rows' searches are skipped rather than run on a dead context."""
    modules = [RefusesLargeBatches(fits=100, fatal=True), RefusesLargeBatches(fits=100)]
    rows = _fake_gpu_case(monkeypatch, modules=modules, runtime_options=(("find_max_batch", True),))
    assert [r.status for r in rows] == ["ok", "ok"] and [len(r.samples_s) for r in rows] == [2, 2]
    assert rows[0].max_batch is None and any(w.startswith("--find-max-batch failed: RuntimeError: CUDA error: "
                                                          "an illegal memory access") for w in rows[0].warnings)
    assert modules[1].batches == []  # not searched on a lost context
    assert any(w.startswith("CUDA context lost after 2 timing round(s)") for w in rows[1].warnings)


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
    nvml.nvmlDeviceGetClockInfo = lambda handle, kind: 1 / 0  # a sensor that cannot be read
    assert cuda.gpu_state(0) == {"nvml": "ZeroDivisionError: division by zero"}
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


@pytest.fixture
def fake_gpu(monkeypatch):
    """``--device cuda`` end to end on the CPU: torch's CUDA queries answer for a fake GPU, CUDA
    events read the wall clock, and cases are built on the CPU. Everything else (options,
    counting, the event timer and L2 flush wiring, cudnn settings, report fields, views) is
    the real GPU path."""
    real_build = runner.build_case
    props = SimpleNamespace(name="Fake GPU", major=9, minor=0, total_memory=80 << 30, L2_cache_size=1 << 20)
    monkeypatch.setattr(cuda, "available", lambda: True)
    monkeypatch.setattr(torch.cuda, "Event", WallClockEvent)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: props.name)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: props)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(runner, "build_case", lambda workload, ex: real_build(workload, replace(ex, device="cpu")))


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
def test_throughput_times_back_to_back_calls_latency_one_call(fake_gpu, mode, back_to_back):
    """A tiny operator takes far less than the 1 ms a throughput sample lasts: several calls
    per sample there; latency is one call alone."""
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
    assert "Paper ratios left out: the paper measured cuda at batch 32, fp32; this run used batch 1, fp32." in md.stdout
    (record,) = csv.DictReader(io.StringIO(invoke(["model", "fasternet_t0", "--device", "cuda", "--batch", "1",
                                                   "--runs", "1", "--warmup", "0", "--paper", "--format",
                                                   "csv"]).stdout))
    assert record["Throughput / paper"] == "" and float(record["Paper cuda throughput [img/s]"]) > 0


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
    result = invoke(["ops", "--device", "cuda", "--op", "conv", "--shape", "768x224x224", "--batch", "1024",
                     "--runs", "1", "--format", "json"])
    (row,) = json.loads(result.stdout)["rows"]
    assert row["status"] == "error" and "out of GPU memory at batch 1024; try --batch 512" in row["error"]


def test_warm_up_goes_through_the_synchronous_timer(tiny_execution):
    """On a GPU the warm-up must wait for each call, or it would queue far more work than it has
    time for: sample_round warms up through the timer when there is one."""
    from dataclasses import replace

    from flopsbench.report import Row
    from flopsbench.sampling import sample_round

    calls = []
    budget = replace(tiny_execution.budget, warmup_runs=3, exact_runs=2, max_runs=10)
    sample_round(Row(Workload("pwconv", Shape(8, 4, 4), 1)), lambda: calls.append("call"), tiny_execution,
                 budget, time_once=lambda: calls.append("timed") or 0.001)
    assert calls == ["timed"] * 5  # 3 warm-up + 2 samples, all through the timer
