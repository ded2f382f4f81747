"""Figures beyond steady-state latency, per row: peak memory (checked against a stack whose
weights and activations are worked out by hand), cold start (build, first call, calls until the
latency settled; checked on a fake clock) and energy per inference (faked NVML and powercap
readings, and the real counters wherever this machine lets them be read)."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import flopsbench.cuda as cuda
from flopsbench import backends, energy, worker
from flopsbench.backends import Backend, Prepared
from flopsbench.exporters import frame, header_lines, render
from flopsbench.peak_memory import HostPeak
from flopsbench.report import Report, Row
from flopsbench.rounds import Case, measure
from flopsbench.sampling import RoundLog, noise_band, sample_round, settle_calls
from flopsbench.schema import ReportError
from flopsbench.spec import Execution, Shape, TimingBudget, Workload
from flopsbench.transport import FreshProcesses
from tests.conftest import conv_table1_row, make_report
from tests.fakes import ScriptedTransport
from tests.test_cuda import CPUasGPU, fake_gpu  # noqa: F401 -- fake_gpu is a fixture
from tests.test_gpu_state import FakeNvml, NVMLError_NotSupported, a_gpu, cuda_uuid

PW = Workload("pwconv", Shape(8, 4, 4), 1)


class FakeClock:
    """A clock that moves only when told to (``advance``)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def no_energy():
    return contextlib.nullcontext(energy.unreadable("energy not measured: a test"))


# --- peak memory ------------------------------------------------------------------------------------

def test_peak_memory_of_a_stack_of_known_size_in_a_real_worker(tiny_execution):
    """pwconv 4096 channels at 4x4, one layer, no bias: weights W = 4096·4096·4 B = 64 MiB, input and
    output A = 4096·4·4·4 B = 64 KiB each. The worker's resident set must rise by the weights at
    least, and by little more than weights and activations (slack: torch's first-call set-up, the
    build's temporaries). The small case of the same worker reads far below W: the peak is reset
    before each case, not the process's whole life."""
    weights, activation = 4096 * 4096 * 4, 4096 * 4 * 4 * 4
    big, small = Workload("pwconv", Shape(4096, 4, 4), 1), PW
    execution = replace(tiny_execution, budget=TimingBudget(warmup_s=0, warmup_runs=1, min_time_s=0, min_runs=1,
                                                            max_runs=4, exact_runs=4, rounds=2))
    report = Report("ops", execution, {})
    cases = [Case(Row(workload), {"workload": workload.to_dict()}) for workload in (big, small)]
    report.rows = [case.row for case in cases]
    measure(report, cases, FreshProcesses(("flopsbench.backends.torch_cpu",)))
    big_row, small_row = report.rows
    assert big_row.status == small_row.status == "ok", (big_row.error, small_row.error)
    for figures in big_row.peak_memory["rounds"]:  # each round: a new worker, and either case first
        assert weights <= figures["host_peak_bytes"] <= weights + 4 * activation + (16 << 20), figures
    assert all(figures["host_peak_bytes"] < weights / 4 for figures in small_row.peak_memory["rounds"])
    assert big_row.peak_memory["host_peak_bytes"] == max(r["host_peak_bytes"] for r in big_row.peak_memory["rounds"])
    assert "VmHWM" in big_row.peak_memory["method"] and len(big_row.peak_memory["rounds"]) == 2


def _status(path: Path, hwm_kb: int, rss_kb: int) -> None:
    path.write_text(f"Name:\tpython\nVmPeak:\t999999 kB\nVmHWM:\t{hwm_kb} kB\nVmRSS:\t{rss_kb} kB\n")


def test_a_peak_that_cannot_be_reset_is_the_cases_only_if_it_rose(tmp_path):
    """Without clear_refs (a directory here: the write fails), a mark above the one before the build
    was set by the case; one that did not rise may be an earlier case's, so it is not reported."""
    status, refused = tmp_path / "status", tmp_path / "clear_refs"
    refused.mkdir()
    _status(status, hwm_kb=500_000, rss_kb=100_000)
    probe = HostPeak(status, refused)
    probe.start()
    _status(status, hwm_kb=500_000, rss_kb=120_000)
    stopped = probe.stop()
    assert "host_peak_bytes" not in stopped and "could not be reset" in stopped["unavailable"]
    _status(status, hwm_kb=500_000, rss_kb=100_000)
    probe.start()
    _status(status, hwm_kb=600_000, rss_kb=110_000)
    assert probe.stop()["host_peak_bytes"] == 500_000 * 1024  # 600,000 kB peak less 100,000 kB before


def test_a_reset_peak_less_the_resident_set_before_the_build(tmp_path):
    status, clear_refs = tmp_path / "status", tmp_path / "clear_refs"
    _status(status, hwm_kb=900_000, rss_kb=200_000)
    probe = HostPeak(status, clear_refs)
    probe.start()
    assert clear_refs.read_text() == "5"  # what resets VmHWM
    _status(status, hwm_kb=265_536, rss_kb=210_000)
    assert probe.stop()["host_peak_bytes"] == 65_536 * 1024
    assert HostPeak(tmp_path / "missing", clear_refs).stop()["unavailable"].startswith("host peak memory not measured")
    missing = HostPeak(tmp_path / "missing", clear_refs)
    missing.start()
    assert "not Linux" in missing.stop()["unavailable"]


# --- cold start -------------------------------------------------------------------------------------

class SlowStart(Backend):
    """A case that takes 0.25 s to build and whose calls take 50, 4, 2, then 1 ms, on ``clock``."""

    def __init__(self, clock: FakeClock):
        self.clock, self.calls = clock, 0

    def prepare(self, case, execution):
        self.clock.advance(0.25)
        durations = iter([0.050, 0.004, 0.002])

        def call():
            self.calls += 1
            self.clock.advance(next(durations, 0.001))

        return Prepared(call=call, energy=no_energy)


def test_the_worker_times_the_build_and_the_first_call(monkeypatch, tiny_execution):
    clock = FakeClock()
    monkeypatch.setitem(backends.BACKENDS, ("cpu", "torch"), lambda: SlowStart(clock))
    budget = TimingBudget(warmup_s=0, warmup_runs=4, min_time_s=0, min_runs=1, max_runs=10, exact_runs=3, rounds=1)
    job = {"task": "time", "execution": tiny_execution.to_dict(), "budget": budget.__dict__,
           "cases": [{"id": 0, "workload": PW.to_dict()}, {"id": 1, "workload": PW.to_dict()}]}
    events = []
    worker.serve(job, events.append, clock)
    first, second = [event for event in events if event["event"] == "samples"]
    assert first["samples_s"] == pytest.approx([0.001] * 3)
    assert first["cold_start"] == {"build_s": pytest.approx(0.25), "first_call_s": pytest.approx(0.050),
                                   "warmup_s": pytest.approx([0.050, 0.004, 0.002, 0.001]), "case_in_worker": 0}
    assert second["cold_start"]["case_in_worker"] == 1 and "host_peak_bytes" in first["peak_memory"]
    assert first["energy"] == {"unavailable": "energy not measured: a test"}


def test_without_warm_up_the_first_call_is_the_first_sample(monkeypatch, tiny_execution):
    clock = FakeClock()
    backend = SlowStart(clock)
    prepared = backend.prepare({}, tiny_execution)
    events = []
    start = worker.CaseStart(0, HostPeak(), 0.25, clock)
    worker.time_case({"id": 3, "workload": PW.to_dict()}, prepared, backend, tiny_execution, tiny_execution.budget,
                     events.append, start)
    (event,) = events
    assert event["cold_start"]["first_call_s"] == pytest.approx(0.050) and event["cold_start"]["warmup_s"] == []


def test_settling_needs_three_calls_in_a_row_within_the_band():
    band = (0.9, 1.1)
    assert settle_calls([5.0, 1.0, 3.0, 1.0, 1.0, 1.0, 2.0], band) == 3  # one lucky call is not settled
    assert settle_calls([1.0, 1.0, 1.0], band) == 0
    assert settle_calls([5.0, 1.0], band) is None  # two calls: both must be in the band
    assert settle_calls([5.0, 4.0, 3.0, 2.0], band) is None
    assert noise_band([1.0] * 4) == pytest.approx((0.95, 1.05))  # 5 % of the median, when the IQR is smaller
    assert noise_band([1.0, 1.0, 1.2, 1.2]) == pytest.approx((1.1 - 0.4, 1.1 + 0.4))  # 2 × IQR (0.2)


def test_the_parent_settles_each_round_against_the_rows_band():
    """Three rounds, samples all 1 ms (band 0.95-1.05 ms): settled after 2, 1 and 2 calls; the medians
    over rounds of the build (0.2, 0.3, 0.1 s) and the first call."""
    warmups = [[0.050, 0.004, 0.001, 0.001], [0.010, 0.001], [0.001, 0.003, 0.001]]
    builds = [0.2, 0.3, 0.1]

    def script(job, number):
        (case,) = job["cases"]
        cold = {"build_s": builds[number - 1], "first_call_s": warmups[number - 1][0],
                "warmup_s": warmups[number - 1], "case_in_worker": 0}
        return [{"event": "start", "pid": number},
                {"event": "samples", "id": case["id"], "samples_s": [0.001] * 4, "complete": True,
                 "cold_start": cold}, {"event": "done"}], 0

    row = _measured(script, rounds=3)
    cold = row.cold_start
    assert [r["settle_calls"] for r in cold["rounds"]] == [2, 1, 2] and cold["settle_calls"] == 2
    assert cold["build_s"] == pytest.approx(0.2) and cold["first_call_s"] == pytest.approx(0.010)
    assert cold["settle_band_s"] == pytest.approx([0.00095, 0.00105]) and cold["unsettled_rounds"] == 0


def _measured(script, rounds: int = 1, flops: int | None = None) -> Row:
    execution = Execution(budget=TimingBudget(exact_runs=4 * rounds, rounds=rounds))
    case = Case(Row(PW, flops=flops), {"workload": {}})
    report = Report("ops", execution, {}, rows=[case.row])
    measure(report, [case], ScriptedTransport(script))
    return case.row


def test_a_gpu_case_times_its_first_call_before_the_timer_calibrates(fake_gpu, monkeypatch):
    """On a GPU, prepare calls the case to calibrate its timer (throughput mode): the first call
    is timed before that, on the wall clock with a synchronize, and the build on its own."""
    clock, log = FakeClock(), []

    class Slow(torch.nn.Module):
        def forward(self, x):
            clock.advance(0.5 if "call" not in log else 0.001)
            log.append("call")
            return x

    class SlowGPU(CPUasGPU):
        def build(self, case, execution):
            clock.advance(2.0)
            return Slow(), torch.zeros(1, 8, 4, 4)

    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: log.append("synchronize"))
    execution = Execution(device="cuda", runtime_options=(("mode", "throughput"),))
    prepared = SlowGPU().prepare({"workload": PW.to_dict()}, execution, clock)
    assert prepared.build_s == pytest.approx(2.0) and prepared.first_call_s == pytest.approx(0.5)
    assert log[:3] == ["synchronize", "call", "synchronize"] and log.count("call") > 1  # then calibrated


def test_cold_start_columns_sit_beside_the_median_and_say_the_paper_has_none():
    row = conv_table1_row()
    row.cold_start = {"build_s": 0.012, "first_call_s": 0.045, "settle_calls": 2.5}
    report = make_report([row])
    columns = list(frame(report).columns)
    at = columns.index("IQR [ms]")
    assert columns[at + 1:at + 4] == ["Cold start [ms]", "First call [ms]", "Settle [calls]"]
    assert frame(report).loc[0, "First call [ms]"] == pytest.approx(45.0)
    assert any("The paper reports only steady-state latency" in line for line in header_lines(report))
    plain = make_report([conv_table1_row()])
    assert "Cold start [ms]" not in frame(plain).columns  # no row has one: no column, no note
    assert not any("Cold start" in line for line in header_lines(plain))


# --- energy: RAPL through powercap ------------------------------------------------------------------

def _zone(root: Path, name: str, label: str, energy_uj: int, max_uj: int = 262_143_328_850) -> Path:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "name").write_text(label + "\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return zone


def test_rapl_counts_every_package_across_a_wrap_around(tmp_path):
    """package-0 wraps (its range is 1,000,000 µJ): 999,000 -> 500 µJ is 1,500 µJ; package-1 goes
    2,000 -> 4,000 µJ. The cores' subzone and psys would count the packages twice: not read."""
    zero = _zone(tmp_path, "intel-rapl:0", "package-0", 999_000, max_uj=1_000_000)
    one = _zone(tmp_path, "intel-rapl:2", "package-1", 2_000)
    _zone(tmp_path, "intel-rapl:0:0", "core", 7)
    _zone(tmp_path, "intel-rapl:1", "psys", 7)
    with energy.rapl_meter(tmp_path) as meter:
        assert meter.reason is None and "intel-rapl:0, intel-rapl:2" in meter.source
        start = meter.read()
        (zero / "energy_uj").write_text("500\n")
        (one / "energy_uj").write_text("4000\n")
        assert meter.used_j(start, meter.read()) == pytest.approx(3_500e-6)


def test_rapl_that_cannot_be_read_says_why(tmp_path):
    assert "has no RAPL zones" in energy.rapl_meter(tmp_path / "none").__enter__().reason
    _zone(tmp_path, "intel-rapl:0", "package-0", 1)

    def refused(path: Path) -> str:  # as for a user on Linux >= 5.10 (the tests may run as root)
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return path.read_text()

    with energy.rapl_meter(tmp_path, read=refused) as meter:
        assert meter.counters == [] and meter.reason.startswith(
            f"CPU energy not measured: no permission to read {tmp_path / 'intel-rapl:0' / 'energy_uj'}")
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("garbage\n")
    with energy.rapl_meter(tmp_path) as meter:
        assert meter.reason.startswith("CPU energy not measured: RAPL unreadable (ValueError")


def test_the_energy_window_lasts_a_second_past_the_samples(tiny_execution):
    """5 samples of 10 ms at 50 W: the window is held open with untimed calls until 1 s has passed;
    the joules are 50 W × the window, over every call in it, and the samples stay 5."""
    clock, calls = FakeClock(), []
    meter = energy.Meter("a 50 W test counter", [energy.Counter("test", lambda: 50.0 * clock())])

    def call():
        calls.append(1)
        clock.advance(0.010)

    row, log = Row(PW), RoundLog()
    budget = replace(tiny_execution.budget, exact_runs=5, max_runs=5)
    sample_round(row, call, tiny_execution, budget, clock, log=log, meter=meter)
    record = log.energy
    assert len(row.samples_s) == 5 and record["window_s"] == pytest.approx(1.0)
    assert record["calls"] == len(calls) == 100 and record["joules"] == pytest.approx(50.0)
    assert record["source"] == "a 50 W test counter"


def test_a_meter_that_cannot_be_read_is_a_reason_not_a_failed_round(tiny_execution):
    row, log = Row(PW), RoundLog()
    sample_round(row, lambda: None, tiny_execution, tiny_execution.budget, log=log,
                 meter=energy.unreadable("CPU energy not measured: no permission"))
    assert log.energy == {"unavailable": "CPU energy not measured: no permission"} and len(row.samples_s) == 2
    broken = energy.Meter("RAPL", [energy.Counter("package-0", lambda: 1 / 0)])
    sample_round(row, lambda: None, tiny_execution, tiny_execution.budget, log=log, meter=broken)
    assert log.energy["unavailable"].startswith("energy not measured: RAPL: ZeroDivisionError")


def test_energy_is_measured_for_real_where_rapl_can_be_read():
    with energy.rapl_meter() as meter:
        if meter.reason is not None:
            pytest.skip(meter.reason)
        started = energy.start_window(meter)
        record = energy.finish_window(meter, started, 0, lambda: sum(range(10_000)) * 0 + 1)
    assert record["window_s"] >= 1.0 and 0 < record["joules"] / record["window_s"] < 2_000  # watts of a CPU


# --- energy: NVML -----------------------------------------------------------------------------------

@pytest.fixture
def nvml(monkeypatch):
    fake = FakeNvml({"gpu": a_gpu(energy_mj=1_000_000)}, {"GPU-1111": "gpu"})
    fake.nvmlDeviceGetTotalEnergyConsumption = lambda handle: fake._read(handle, "energy_mj")
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cuda_uuid(monkeypatch, "1111")
    return fake


def test_nvml_energy_is_read_in_joules_and_nvml_is_shut_down(nvml):
    with cuda.energy_meter(0) as meter:
        start = meter.read()
        nvml.gpus["gpu"]["energy_mj"] = 1_250_500  # mJ since the driver loaded
        assert meter.used_j(start, meter.read()) == pytest.approx(250.5)
        assert meter.source == "NVML total energy counter of CUDA device 0"
    assert nvml.calls == ["init", "shutdown"]


def test_nvml_energy_that_cannot_be_read_says_why(nvml, monkeypatch):
    nvml.gpus["gpu"]["energy_mj"] = NVMLError_NotSupported()  # e.g. before Volta
    with cuda.energy_meter(0) as meter:
        assert meter.reason == ("GPU energy not measured: NVML's total energy counter: "
                                "NVMLError_NotSupported: Not Supported")
    assert nvml.calls == ["init", "shutdown"]
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with cuda.energy_meter(0) as meter:
        assert meter.reason == "GPU energy not measured: nvidia-ml-py is not installed"


@pytest.mark.cuda
def test_nvml_energy_is_measured_for_real_on_a_gpu():
    x = torch.randn(4096, 4096, device="cuda")
    with cuda.energy_meter(0) as meter:
        if meter.reason is not None:
            pytest.skip(meter.reason)
        started = energy.start_window(meter)
        record = energy.finish_window(meter, started, 0, lambda: (x @ x, torch.cuda.synchronize(), 1)[2])
    assert record["window_s"] >= 1.0 and 10 < record["joules"] / record["window_s"] < 2_000  # a busy GPU's watts


# --- energy and memory in the row, the views and saved reports -----------------------------------------

def test_rounds_are_summed_into_joules_per_inference_and_flops_per_watt():
    """Two rounds of 2 J over 1 s and 100 calls, 6 J over 2 s and 300 calls: 8 J / 400 calls = 20 mJ
    per inference; the row's 1e9 FLOPs over 20 mJ = 50 GFLOPS/W."""
    spent = [{"source": "NVML", "joules": 2.0, "window_s": 1.0, "calls": 100},
             {"source": "NVML", "joules": 6.0, "window_s": 2.0, "calls": 300}]

    def script(job, number):
        (case,) = job["cases"]
        return [{"event": "start", "pid": number},
                {"event": "samples", "id": case["id"], "samples_s": [0.001] * 4, "complete": True,
                 "energy": spent[number - 1], "peak_memory": {"host_peak_bytes": 1000 * number, "method": "m"}},
                {"event": "done"}], 0

    row = _measured(script, rounds=2, flops=10 ** 9)
    assert row.energy["j_per_call"] == pytest.approx(0.02) and row.energy["mean_power_w"] == pytest.approx(8 / 3)
    assert row.energy["rounds"] == [{key: r[key] for key in ("joules", "window_s", "calls")} for r in spent]
    assert row.peak_memory == {"rounds": [{"host_peak_bytes": 1000}, {"host_peak_bytes": 2000}],
                               "host_peak_bytes": 2000, "method": "m"}
    record = frame(Report("ops", Execution(), {}, rows=[row])).iloc[0]
    assert record["Energy [mJ/inf]"] == pytest.approx(20.0) and record["FLOPS/W [G/W]"] == pytest.approx(50.0)
    assert record["Peak mem [MB]"] == pytest.approx(0.002)


def test_what_a_worker_sends_is_checked_before_it_reaches_the_row():
    junk = {"cold_start": {"build_s": "0.1", "first_call_s": -1, "warmup_s": [0.1, "x", None, True],
                           "case_in_worker": -3},
            "peak_memory": {"host_peak_bytes": True, "gpu_peak_allocated_bytes": -5, "method": 7},
            "energy": {"source": "NVML", "joules": float("nan"), "window_s": 1.0, "calls": 10}}

    def script(job, number):
        (case,) = job["cases"]
        return [{"event": "samples", "id": case["id"], "samples_s": [0.001], "complete": True, **junk}], 0

    row = _measured(script)
    assert row.cold_start["rounds"] == [{"round": 0, "build_s": None, "first_call_s": None, "warmup_s": [0.1],
                                         "case_in_worker": None, "settle_calls": None}]
    assert row.peak_memory is None and row.energy is None  # nothing in them had the type it should


def test_why_energy_was_not_measured_is_said_once_per_report():
    rows = [conv_table1_row(), conv_table1_row()]
    for row in rows:
        row.energy = {"rounds": [], "unavailable": "CPU energy not measured: no permission to read X"}
    report = make_report(rows)
    lines = header_lines(report)
    assert lines.count("CPU energy not measured: no permission to read X.") == 1
    assert "Energy [mJ/inf]" not in frame(report).columns  # nothing measured: no empty column


def test_the_new_figures_survive_a_saved_report_and_are_checked_on_load():
    row = conv_table1_row()
    row.cold_start = {"rounds": [], "build_s": 0.012, "first_call_s": 0.045, "settle_calls": 2}
    row.peak_memory = {"rounds": [], "host_peak_bytes": 70_000_000, "method": "VmHWM"}
    row.energy = {"rounds": [], "source": "RAPL", "j_per_call": 0.5}
    data = json.loads(make_report([row]).to_json())
    loaded = Report.from_dict(data).rows[0]
    assert (loaded.cold_start, loaded.peak_memory, loaded.energy) == (row.cold_start, row.peak_memory, row.energy)
    assert "Peak mem [MB]" in render(Report.from_dict(data), "md")
    for field, key, value in [("energy", "j_per_call", "0.5"), ("peak_memory", "host_peak_bytes", -1),
                              ("cold_start", "settle_calls", float("inf")), ("energy", "unavailable", 3)]:
        bad = json.loads(json.dumps(data))
        bad["rows"][0][field][key] = value
        with pytest.raises(ReportError, match=rf"rows\[0\]\.{field}\.{key}"):
            Report.from_dict(bad)


def test_a_real_round_records_all_three(tiny_execution):
    """Through the real worker function on the real CPU backend: the build, the first call, the
    peak memory and, on a machine without readable RAPL, why there is no energy."""
    job = {"task": "time", "execution": tiny_execution.to_dict(), "budget": tiny_execution.budget.__dict__,
           "cases": [{"id": 0, "workload": PW.to_dict()}]}
    events = []
    started = time.perf_counter()
    worker.serve(job, events.append)
    (event,) = [e for e in events if e["event"] == "samples"]
    assert 0 < event["cold_start"]["build_s"] < time.perf_counter() - started
    assert event["cold_start"]["first_call_s"] == event["samples_s"][0]  # no warm-up: the first sample
    assert event["peak_memory"]["host_peak_bytes"] >= 0
    assert ("joules" in event["energy"]) != ("unavailable" in event["energy"])
