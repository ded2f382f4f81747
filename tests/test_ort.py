"""The onnxruntime path: outputs match PyTorch for every operator and FasterNet-T0, the export
cache, session settings, and the CLI's runtime and device errors."""

from __future__ import annotations

import json
import os
import platform

import pytest
import torch

import flopsbench_zoo
from flopsbench.onnx_export import cached_export, content_key, read_metadata
from flopsbench.ort_runtime import make_session
from flopsbench.report import Report
from flopsbench.runner import run_all
from flopsbench.spec import Execution, Shape, TimingBudget, Workload
from tests.test_cli import _assert_one_line_error, invoke

ORT = dict(runtime="onnxruntime", runtime_options=(("opt_level", "all"), ("spinning", True)))
TINY = TimingBudget(warmup_s=0, warmup_runs=0, min_time_s=0, min_runs=1, max_runs=2, exact_runs=2, rounds=1)


@pytest.fixture(autouse=True)
def onnx_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOPSBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


def _run(workloads, **execution):
    report = Report("ops", Execution(budget=TINY, **{**ORT, **execution}), {})
    return run_all(report, workloads).rows


@pytest.mark.parametrize("name", flopsbench_zoo.list_operators())
def test_every_operator_matches_torch_under_onnxruntime(name):
    params = tuple(flopsbench_zoo.get_operator(name).defaults.items())
    (row,) = _run([Workload(name, Shape(32, 12, 12), 2, params)])
    assert row.status == "ok", row.error
    assert row.runtime["max_abs_diff_vs_torch"] < 1e-4
    assert row.runtime["provider"] == "CPUExecutionProvider" and len(row.samples_s) == 2


def test_slicing_pconv_is_exported_as_split_cat():
    params = (("kernel_size", 3), ("ratio", 0.25), ("forward_mode", "slicing"))
    (row,) = _run([Workload("pconv", Shape(32, 12, 12), 2, params)])
    assert row.status == "ok" and row.runtime["pconv_exported_as"] == "split_cat"


def test_fasternet_t0_matches_torch_under_onnxruntime():
    workload = Workload("fasternet_t0", Shape(3, 224, 224), 1,
                        tuple(flopsbench_zoo.get_model("fasternet_t0").defaults.items()), kind="model", fuse_bn=True)
    (row,) = _run([workload])
    assert row.status == "ok", row.error
    assert row.runtime["max_abs_diff_vs_torch"] < 1e-3
    meta = read_metadata(row.runtime["onnx_file"])
    assert meta["workload"]["name"] == "fasternet_t0" and meta["counts"]["flops_fused"] == row.flops_fused


def test_export_is_cached_by_content(onnx_cache):
    params = (("kernel_size", 3),)
    first, second = _run([Workload("dwconv", Shape(16, 8, 8), 1, params)] * 2)
    assert (first.runtime["export_cached"], second.runtime["export_cached"]) == (False, True)
    assert first.runtime["onnx_file"] == second.runtime["onnx_file"]
    assert len(list(onnx_cache.glob("*.onnx"))) == 1
    # other weights (another seed) are other content: a new file
    (third,) = _run([Workload("dwconv", Shape(16, 8, 8), 1, params)], seed=1)
    assert third.runtime["export_cached"] is False and len(list(onnx_cache.glob("*.onnx"))) == 2


def test_content_key_sees_weights_and_shapes():
    module = torch.nn.Conv2d(4, 4, 3, padding=1).eval()
    x = torch.zeros(1, 4, 8, 8)
    key = content_key(module, x)
    assert key == content_key(module, x)
    assert key != content_key(module, torch.zeros(1, 4, 9, 9))
    with torch.no_grad():
        module.weight[0, 0, 0, 0] += 1
    assert key != content_key(module, x)


def test_thread_and_optimisation_options_reach_the_session(tmp_path):
    module = torch.nn.Conv2d(4, 4, 3, padding=1).eval()
    path = cached_export(module, torch.zeros(1, 4, 8, 8)).path
    session, record = make_session(path, threads=2, cores=(0, 1), opt_level="basic", spinning=False)
    options = session.get_session_options()
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1
    assert str(options.execution_mode).endswith("ORT_SEQUENTIAL")
    assert str(options.graph_optimization_level).endswith("ORT_ENABLE_BASIC")
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.intra_op_thread_affinities") == "2"  # core 1, 1-based
    assert record["intra_op_thread_affinities"] == "2" and record["graph_optimization_level"] == "basic"


def test_mismatch_against_torch_fails_the_row_loudly(monkeypatch):
    import flopsbench.backends.ort as ort_backend

    real = ort_backend.make_session

    class Wrong:
        def __init__(self, session):
            self.session = session

        def get_inputs(self):
            return self.session.get_inputs()

        def run(self, outputs, feeds):
            return [o + 1.0 for o in self.session.run(outputs, feeds)]

    monkeypatch.setattr(ort_backend, "make_session", lambda *a, **k: (Wrong(real(*a, **k)[0]), real(*a, **k)[1]))
    (row,) = _run([Workload("pwconv", Shape(8, 4, 4), 1)])
    assert row.status == "error" and "differs from PyTorch" in row.error


# --- CLI ---------------------------------------------------------------------------------------------

def test_cli_runtime_onnxruntime_records_the_session():
    result = invoke(["ops", "--runtime", "onnxruntime", "--op", "pconv", "--shape", "16x8x8", "--layers", "1",
                     "--runs", "2", "--warmup", "0", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["execution"]["runtime"] == "onnxruntime"
    assert data["execution"]["runtime_options"] == {"opt_level": "all", "spinning": True}
    assert data["rows"][0]["runtime"]["intra_op_num_threads"] == 1
    assert data["environment"]["onnxruntime_providers"]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two allowed cores")
def test_onnxruntime_keeps_the_cores_it_pinned_its_workers_to():
    """onnxruntime pins its intra-op worker to core 1; the timing pins the calling thread to core 0
    and leaves the worker as onnxruntime set it, and the row records what was in force."""
    result = invoke(["ops", "--runtime", "onnxruntime", "--op", "pwconv", "--shape", "16x8x8", "--layers", "1",
                     "--runs", "2", "--rounds", "1", "--warmup", "0", "--threads", "2", "--cores", "0,1",
                     "--format", "json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["rows"]
    affinities = sorted(row["affinity"]["per_thread"].values())
    assert [0] in affinities and [1] in affinities, affinities
    assert row["affinity"]["all_within_cores"] is True


def test_onnxruntime_tables_leave_out_torch_traffic_and_name_the_runtime_beside_the_paper():
    """PyTorch eager's bytes are not onnxruntime's: no 'Mem impl' (nor intensity) beside its
    latency; and the paper's columns, all PyTorch, carry the runtime caveat in the table's notes."""
    result = invoke(["ops", "--runtime", "onnxruntime", "--op", "pwconv", "--shape", "96x56x56", "--layers", "1",
                     "--runs", "1", "--warmup", "0", "--paper", "--format", "md"])
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if line.startswith("| Operator"))
    assert "Mem impl" not in header and "Intensity" not in header and "Mem ideal" in header
    assert "the paper timed PyTorch on every device; this run timed onnxruntime" in result.stdout
    assert "onnxruntime: memory access of its graph is not measured" in result.stdout


def test_onnxruntime_beyond_batch_2_exports_and_times_the_runs_batch():
    """Counted at batches 1 and 2 (and extended), but exported, checked and timed at batch 4."""
    result = invoke(["ops", "--runtime", "onnxruntime", "--op", "pwconv", "--shape", "8x4x4", "--layers", "1",
                     "--batch", "4", "--runs", "2", "--warmup", "0", "--format", "json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["rows"]
    assert row["status"] == "ok" and row["flops"] == 4 * 16 * 8 * 8 and len(row["samples_s"]) == 2
    assert row["runtime"]["max_abs_diff_vs_torch"] < 1e-4


@pytest.mark.skipif(platform.machine() in ("aarch64", "arm64"), reason="on an ARM host --device arm is valid")
def test_device_arm_on_this_host_says_how_to_go_on():
    result = invoke(["ops", "--device", "arm"])
    _assert_one_line_error(result, "--device")
    line = result.stderr.strip()
    assert platform.machine() in line and "flopsbench export" in line and "--runtime onnxruntime" in line


@pytest.mark.parametrize("args, option", [
    ("--runtime tvm", "--runtime"),
    ("--runtime onnxruntime --dtype fp16", "--dtype"),
    ("--runtime onnxruntime --ort-opt-level max", "--ort-opt-level"),
])
def test_runtime_errors_are_one_line(args, option):
    _assert_one_line_error(invoke(["ops", *args.split()]), option)


def test_breakdown_needs_the_torch_runtime():
    _assert_one_line_error(invoke(["model", "fasternet_t0", "--runtime", "onnxruntime", "--breakdown", "2"]),
                           "--breakdown")


def test_device_arm_on_an_aarch64_host_runs_onnxruntime(monkeypatch):
    """What --device arm does on a board with torch (simulated: this host claims to be aarch64)."""
    import flopsbench.cli.options as options

    monkeypatch.setattr(options.platform, "machine", lambda: "aarch64")
    result = invoke(["ops", "--device", "arm", "--op", "pwconv", "--shape", "8x4x4", "--layers", "1",
                     "--runs", "2", "--warmup", "0", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["execution"]["device"], data["execution"]["runtime"], data["execution"]["batch"]) == (
        "arm", "onnxruntime", 1)
    assert "not PyTorch" in data["rows"][0]["runtime"]["note"]
