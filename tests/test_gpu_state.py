"""The GPU's state (nvidia-ml-py) without a GPU: a fake pynvml module stands in for NVML. Each
sensor is read on its own, a MIG device is never mistaken for NVML's GPU 0, the clock-event
(throttle) reasons are decoded, and a sampler watches the GPU while it is timed and warns when
it throttled."""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from types import SimpleNamespace

import pytest
import torch

import flopsbench.cuda as cuda
from flopsbench import worker
from flopsbench.backends import Observed, Prepared
from flopsbench.backends.torch_cuda import TorchCUDA
from flopsbench.spec import Shape, Workload
from tests.test_worker import _cases, _measure, _samples

MIG_UUID = uuid.UUID("8c7a1d3e-0b5f-5d2a-9e44-1f2a3b4c5d6e")  # torch's uuid: no "GPU-"/"MIG-" prefix
BITS = {"GpuIdle": 0x1, "ApplicationsClocksSetting": 0x2, "SwPowerCap": 0x4, "HwSlowdown": 0x8, "SyncBoost": 0x10,
        "SwThermalSlowdown": 0x20, "HwThermalSlowdown": 0x40, "HwPowerBrakeSlowdown": 0x80,
        "DisplayClockSetting": 0x100}


class NVMLError(Exception):
    """pynvml's errors: a class per return code, whose text is NVML's."""

    text = "Unknown Error"

    def __str__(self):
        return self.text


class NVMLError_NotSupported(NVMLError):  # noqa: N801 -- pynvml's name
    text = "Not Supported"


class NVMLError_NotFound(NVMLError):  # noqa: N801
    text = "Not Found"


class NVMLError_FunctionNotFound(NVMLError):  # noqa: N801
    text = "Function Not Found"


def a_gpu(**readings) -> dict:
    """A GPU's sensors: a value, a callable (a sensor that changes between reads) or an exception."""
    return {"sm": 1980, "mem": 2619, "max_sm": 1980, "power_mw": 350_000, "temp": 40, "reasons": 0, **readings}


class FakeNvml(SimpleNamespace):
    """pynvml's stand-in: ``gpus`` by NVML index (in PCI order), ``uuids`` names some of them.
    ``reads`` logs the GPU of every sensor read."""

    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 0, 1, 0

    def __init__(self, gpus: dict[str, dict], uuids: dict[str, str], prefix: str = "nvmlClocksEventReason"):
        super().__init__(gpus=gpus, uuids=uuids, calls=[], reads=[])
        for name, bit in BITS.items():
            setattr(self, prefix + name, bit)

    def _read(self, handle, key):
        self.reads.append(handle)
        value = self.gpus[handle][key]
        if isinstance(value, Exception):
            raise value
        return value() if callable(value) else value

    def nvmlInit(self):
        self.calls.append("init")

    def nvmlShutdown(self):
        self.calls.append("shutdown")

    def nvmlDeviceGetHandleByUUID(self, uuid):
        if uuid not in self.uuids:
            raise NVMLError_NotFound()
        return self.uuids[uuid]

    def nvmlDeviceGetHandleByIndex(self, index):
        return list(self.gpus)[index]

    def nvmlDeviceGetClockInfo(self, handle, kind):
        return self._read(handle, "sm" if kind == self.NVML_CLOCK_SM else "mem")

    def nvmlDeviceGetMaxClockInfo(self, handle, kind):
        return self._read(handle, "max_sm")

    def nvmlDeviceGetPowerUsage(self, handle):
        return self._read(handle, "power_mw")

    def nvmlDeviceGetTemperature(self, handle, kind):
        return self._read(handle, "temp")

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
        return self._read(handle, "reasons")

    def nvmlSystemGetDriverVersion(self):
        return b"580.159.04"


@pytest.fixture
def nvml(monkeypatch):
    """Two GPUs in PCI order; CUDA's device 0 is NVML's second one (CUDA_VISIBLE_DEVICES=1)."""
    fake = FakeNvml({"first": a_gpu(sm=100), "second": a_gpu()}, {"GPU-1111": "second"})
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cuda_uuid(monkeypatch, "1111")
    return fake


def cuda_uuid(monkeypatch, value) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index=None: SimpleNamespace(uuid=value))


# --- gpu_state ------------------------------------------------------------------------------------

def test_an_unsupported_sensor_keeps_the_others(nvml):
    """Power is not readable on a MIG slice: the clocks and temperature still are."""
    nvml.gpus["second"]["power_mw"] = NVMLError_NotSupported()
    state = cuda.gpu_state(0)
    assert state["power_w"] is None and state["unreadable"] == {"power_w": "NVMLError_NotSupported: Not Supported"}
    assert (state["sm_clock_mhz"], state["temperature_c"], state["driver"]) == (1980, 40, "580.159.04")
    assert nvml.calls == ["init", "shutdown"]


def test_clock_event_reasons_are_decoded(nvml):
    nvml.gpus["second"]["reasons"] = BITS["GpuIdle"] | BITS["SwPowerCap"] | BITS["HwThermalSlowdown"] | 0x4000
    assert cuda.gpu_state(0)["clock_event_reasons"] == ["GPU idle", "SW power cap", "HW thermal slowdown", "0x4000"]
    nvml.gpus["second"]["reasons"] = 0
    assert cuda.gpu_state(0)["clock_event_reasons"] == []


@pytest.mark.parametrize("newer", ["missing", "not in the driver"])
def test_clock_event_reasons_fall_back_to_the_throttle_reasons(monkeypatch, newer):
    """Older pynvml (or drivers) know only nvmlDeviceGetCurrentClocksThrottleReasons."""
    fake = FakeNvml({"gpu": a_gpu()}, {"GPU-1111": "gpu"}, prefix="nvmlClocksThrottleReason")
    fake.nvmlDeviceGetCurrentClocksThrottleReasons = lambda handle: BITS["HwSlowdown"] | BITS["SyncBoost"]
    if newer == "missing":
        monkeypatch.delattr(FakeNvml, "nvmlDeviceGetCurrentClocksEventReasons")
    else:
        fake.gpus["gpu"]["reasons"] = NVMLError_FunctionNotFound()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    cuda_uuid(monkeypatch, "1111")
    assert cuda.gpu_state(0)["clock_event_reasons"] == ["HW slowdown", "sync boost"]


def test_a_mig_device_is_found_by_its_mig_uuid(nvml, monkeypatch):
    """torch gives a MIG slice's UUID without prefix: NVML knows it as "MIG-..."."""
    nvml.uuids[f"MIG-{MIG_UUID}"] = "second"
    cuda_uuid(monkeypatch, MIG_UUID)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"MIG-{MIG_UUID}")
    assert cuda.gpu_state(0)["sm_clock_mhz"] == 1980 and set(nvml.reads) == {"second"}


@pytest.mark.parametrize("visible, torch_uuid", [(f"MIG-{MIG_UUID}", MIG_UUID), (None, f"MIG-{MIG_UUID}")])
def test_a_mig_device_nvml_cannot_find_is_not_read_as_gpu_0(nvml, monkeypatch, visible, torch_uuid):
    if visible:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    cuda_uuid(monkeypatch, torch_uuid)
    state = cuda.gpu_state(0)
    assert state["nvml"].startswith("could not identify the MIG device") and str(MIG_UUID) in state["nvml"]
    assert "sm_clock_mhz" not in state and nvml.reads == []  # no sensor of another GPU
    assert nvml.calls == ["init", "shutdown"]


def test_a_gpu_nvml_cannot_find_by_uuid_falls_back_to_its_index(nvml, monkeypatch):
    cuda_uuid(monkeypatch, "2222")  # e.g. a driver that cannot look UUIDs up: same index, as a last resort
    assert cuda.gpu_state(0)["sm_clock_mhz"] == 100 and set(nvml.reads) == {"first"}


# --- the sampler ------------------------------------------------------------------------------------

def sample_until(sampler: cuda.GPUSampler, count: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(sampler.samples) < count and time.monotonic() < deadline:
        time.sleep(0.001)
    assert len(sampler.samples) >= count


def test_the_sampler_summarises_and_warns_when_the_gpu_throttled(nvml):
    clocks = iter([1980, 1200, 1500])
    nvml.gpus["second"].update(sm=lambda: next(clocks, 1500), power_mw=lambda: 300_000 + 100_000 * len(nvml.reads),
                               reasons=BITS["SwPowerCap"] | BITS["HwThermalSlowdown"] | BITS["GpuIdle"]
                               | BITS["ApplicationsClocksSetting"])
    with cuda.GPUSampler(0, interval_s=0.001) as sampler:
        sample_until(sampler, 3)
    summary = sampler.summary
    assert summary["samples"] >= 3 and summary["sm_clock_mhz_min"] == 1200 and summary["sm_clock_mhz_max"] == 1980
    assert summary["temperature_c_max"] == 40 and summary["power_w_max"] > summary["power_w_mean"] > 300
    assert summary["clock_event_reasons"] == ["SW power cap", "HW thermal slowdown"]  # not idle, not app clocks
    assert sampler.warnings == ["the GPU throttled during timing (SW power cap, HW thermal slowdown); "
                                "the SM clock ranged 1200–1980 MHz"]
    assert nvml.calls == ["init", "shutdown"]  # NVML set up once for the sampler's life


def test_the_summary_of_samples():
    samples = [{"sm_clock_mhz": 1980, "power_w": 100.0, "temperature_c": 50, "clock_event_reasons": []},
               {"sm_clock_mhz": 1700, "power_w": 300.0, "temperature_c": 70, "clock_event_reasons": ["sync boost"]},
               {"sm_clock_mhz": 1800, "power_w": None, "temperature_c": 60, "clock_event_reasons": None,
                "unreadable": {"power_w": "NVMLError_NotSupported: Not Supported"}}]
    assert cuda.summarize_gpu_samples(samples) == {
        "samples": 3, "sm_clock_mhz_min": 1700, "sm_clock_mhz_median": 1800, "sm_clock_mhz_max": 1980,
        "temperature_c_max": 70, "power_w_mean": 200.0, "power_w_max": 300.0, "clock_event_reasons": ["sync boost"],
        "unreadable": {"power_w": "NVMLError_NotSupported: Not Supported"}}
    assert cuda.throttling_warning(cuda.summarize_gpu_samples(samples)) is None  # sync boost is no throttling


def test_a_steady_gpu_gives_no_warning(nvml):
    with cuda.GPUSampler(0, interval_s=0.001) as sampler:
        sample_until(sampler, 2)
    assert sampler.warnings == [] and sampler.summary["clock_event_reasons"] == []


def test_the_sampler_never_raises_into_the_timing(nvml, monkeypatch):
    nvml.nvmlDeviceGetClockInfo = lambda handle, kind: 1 / 0
    with cuda.GPUSampler(0, interval_s=0.001) as sampler:
        sample_until(sampler, 1)
    assert sampler.summary["unreadable"]["sm_clock_mhz"] == "ZeroDivisionError: division by zero"
    nvml.nvmlInit = lambda: 1 / 0
    with cuda.GPUSampler(0, interval_s=0.001) as sampler:
        pass
    assert sampler.summary == {"samples": 0, "nvml": "ZeroDivisionError: division by zero"}
    monkeypatch.setitem(sys.modules, "pynvml", None)  # nvidia-ml-py not installed
    with pytest.raises(KeyError, match="the timing's own"):  # the block's errors go through untouched
        with cuda.GPUSampler(0) as sampler:
            raise KeyError("the timing's own")
    assert sampler.summary == {"samples": 0, "nvml": "nvidia-ml-py is not installed"} and sampler.warnings == []


# --- from the worker's settings to the row ------------------------------------------------------------

def test_the_cuda_settings_observe_the_gpu_during_the_block(nvml, tiny_execution):
    nvml.gpus["second"]["reasons"] = BITS["HwPowerBrakeSlowdown"]
    with TorchCUDA.settings(tiny_execution, monitor=True)() as observed:
        assert torch.is_inference_mode_enabled()
    assert isinstance(observed, Observed) and observed.runtime["gpu_during"]["samples"] >= 1
    assert observed.warnings[0].startswith("the GPU throttled during timing (HW power brake slowdown)")


def test_the_worker_sends_what_the_settings_observed(tiny_execution):
    def settings():
        observed = Observed()
        yield observed
        observed.runtime["gpu_during"] = {"samples": 3}
        observed.warnings.append("the GPU throttled")

    prepared = Prepared(call=lambda: None, settings=contextlib.contextmanager(settings), runtime={"timer": "t"})
    events = []
    case = {"id": 0, "workload": Workload("pwconv", Shape(8, 4, 4), 1).to_dict()}
    worker.time_case(case, prepared, None, tiny_execution, tiny_execution.budget, events.append)
    (event,) = events
    assert event["runtime"] == {"timer": "t", "gpu_during": {"samples": 3}}
    assert event["warnings"] == ["the GPU throttled"]


def test_warnings_travel_to_the_row_once():
    warning = "the GPU throttled during timing (SW power cap); the SM clock ranged 1200–1980 MHz"

    def script(job, number):
        (case_id,) = [case["id"] for case in job["cases"]]
        return [{"event": "start", "pid": number}, {**_samples(case_id), "warnings": [warning, 7, None]},
                {"event": "done"}], 0

    report, _ = _measure(_cases(1), script, rounds=3)
    (row,) = report.rows
    assert row.warnings.count(warning) == 1 and all(isinstance(w, str) for w in row.warnings)
