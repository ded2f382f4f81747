"""Shared fixtures: a deterministic hand-built report, tiny execution specs, golden-file helper."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from flopsbench.report import Report, Row
from flopsbench.spec import Execution, Shape, TimingBudget, Workload

GOLDEN_DIR = Path(__file__).parent / "golden"

# The tests' own cache (ONNX exports, machine ceilings), for this session and every process it
# starts: the user's cached ceilings would otherwise add "% of peak" columns to the views tested.
_CACHE = tempfile.mkdtemp(prefix="flopsbench-test-cache-")
os.environ["FLOPSBENCH_CACHE"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

# A fixed environment: no hostname, CPU or library version of the machine running the tests.
ENVIRONMENT = {
    "hostname": "testhost",
    "cpu_model": "Test CPU @ 3.00GHz",
    "logical_cores": 2,
    "allowed_cores": [0, 1],
    "libraries": {"torch": "2.14.1", "fvcore": "0.1.5.post20221221"},
    "flopsbench": "0.1.0",
    "git": {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": False},
}


def tiny_budget(runs: int = 2) -> TimingBudget:
    """No warm-up, a fixed small number of samples: the cheapest real timing there is."""
    return TimingBudget(warmup_s=0.0, warmup_runs=0, min_time_s=0.0, min_runs=1, max_runs=runs, exact_runs=runs)


@pytest.fixture
def tiny_execution() -> Execution:
    return Execution(device="cpu", dtype="fp32", batch=1, threads=1, cores=(0,), budget=tiny_budget(2), seed=0)


def conv_table1_row() -> Row:
    """Conv 3x3 ×10 at 96x56x56, counts worked out by hand:
    FLOPs = 10·56·56·9·96·96 = 2,601,123,840; params = 10·9·96·96 = 829,440;
    ideal memory = 10·(56·56·2·96 + 9·96·96) = 6,850,560 elements = 27,402,240 bytes;
    impl: each layer reads input 1,204,224 B + weights 331,776 B and writes 1,204,224 B."""
    return Row(
        workload=Workload("conv", Shape(96, 56, 56), 10, (("kernel_size", 3),)),
        params=829_440,
        flops=2_601_123_840,
        flops_analytic=2_601_123_840,
        flops_by_operator={"conv": 2_601_123_840},
        memory_ideal_elements=6_850_560,
        memory_ideal_bytes=27_402_240,
        memory_impl={"read_bytes": 15_360_000, "write_bytes": 12_042_240,
                     "by_op": {"aten::conv2d": {"calls": 10, "read_bytes": 15_360_000,
                                                "write_bytes": 12_042_240}}},
        samples_s=[0.030, 0.031, 0.032, 0.033, 0.034],
        warmup_runs=3,
        affinity={"threads_seen": 1, "all_within_cores": True, "per_thread": {"1000": [0]}},
    )


def pconv_custom_row() -> Row:
    """PConv at a non-default ratio (so the Options column shows), with a warning (status 'warn').
    c_p = 8, FLOPs = 2·64·9·8·8 = 73,728, params = 2·9·64 = 1,152; ideal = 2·(64·2·8 + 9·64) elements;
    impl per layer: conv reads (8·64 + 576)·4, writes 8·64·4; cat reads and writes 16·64·4."""
    return Row(
        workload=Workload("pconv", Shape(16, 8, 8), 2,
                          (("kernel_size", 3), ("ratio", 0.5), ("forward_mode", "split_cat"))),
        params=1_152,
        flops=73_728,
        flops_analytic=73_728,
        flops_by_operator={"conv": 73_728},
        memory_ideal_elements=3_200,
        memory_ideal_bytes=12_800,
        memory_impl={"read_bytes": 16_896, "write_bytes": 12_288, "by_op": {}},
        samples_s=[0.001, 0.002, 0.003, 0.004, 0.100],
        warmup_runs=3,
        affinity={"threads_seen": 1, "all_within_cores": True, "per_thread": {"1000": [0]}},
        warnings=["noisy: IQR is 67% of the median; pin to an idle core with --cores"],
    )


def error_row() -> Row:
    return Row(workload=Workload("gconv", Shape(16, 8, 8), 2, (("kernel_size", 3), ("groups", 16))),
               status="error", error="RuntimeError: boom")


def make_report(rows: list[Row], complete: bool = True) -> Report:
    execution = Execution(device="cpu", dtype="fp32", batch=1, threads=1, cores=(0,),
                          budget=TimingBudget(warmup_s=0.2, warmup_runs=3, min_time_s=1.0, min_runs=10,
                                              max_runs=10_000, exact_runs=5), seed=0)
    return Report(command="ops", execution=execution, environment=dict(ENVIRONMENT),
                  argv=["flopsbench", "ops", "--runs", "5"], rows=rows, complete=complete,
                  created_utc="2024-01-02T03:04:05+00:00",
                  finished_utc="2024-01-02T03:05:06+00:00" if complete else None,
                  tool_version="0.1.0")


@pytest.fixture
def hand_report() -> Report:
    """Two ok rows (one a Table 1 row, one with non-default options and a warning)."""
    return make_report([conv_table1_row(), pconv_custom_row()])


@pytest.fixture
def golden():
    """``golden(name, text)`` compares text with tests/golden/<name>; UPDATE_GOLDEN=1 rewrites it."""

    def check(name: str, text: str) -> None:
        path = GOLDEN_DIR / name
        if os.environ.get("UPDATE_GOLDEN") == "1":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1 to create it"
        expected = path.read_text(encoding="utf-8")
        assert text == expected, f"{name} differs from its golden file (UPDATE_GOLDEN=1 regenerates it)"

    return check


def pytest_collection_modifyitems(config, items):
    """Skip, saying why, the tests marked ``cuda`` where torch sees no GPU, and those marked
    ``baselines`` where timm or torchvision (the baselines extra) is missing."""
    import torch

    from flopsbench_zoo.baselines import LIBRARY_NEEDS, missing_extra

    reasons = {"baselines": missing_extra(LIBRARY_NEEDS["timm"])}
    if not torch.cuda.is_available():
        reasons["cuda"] = (f"needs an NVIDIA GPU: torch {torch.__version__} sees none here "
                           f"(run scripts/gpu_check.sh on one)")
    for item in items:
        for marker, reason in reasons.items():
            if reason and item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=reason))
