"""Machine ceilings (``flopsbench ceilings``): the kernels' counts by hand, the record from scripted
and fake-clock workers, one real small measurement in fresh processes, the cache and its lookup,
hostile records, and the "% of peak" and "Bound by" columns reports gain from them."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from flopsbench import ceilings
from flopsbench.ceilings import Ceilings, Kernel, Sizes
from flopsbench.columns import View
from flopsbench.exporters import render
from flopsbench.spec import Execution, TimingBudget
from flopsbench.stats import median_ci
from tests.conftest import ENVIRONMENT, conv_table1_row, make_report, pconv_custom_row, tiny_budget
from tests.test_cli import _assert_one_line_error, invoke, stderr_lines
from tests.test_cuda import fake_gpu, torch_default_precision  # noqa: F401 -- fixtures

TINY = Sizes(gemm=32, conv=(1, 8, 6, 6), stream_bytes=64 << 10)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Every test with an empty cache of its own."""
    monkeypatch.setenv("FLOPSBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _execution(runtime: str = "torch", **changes) -> Execution:
    options = (("opt_level", "all"), ("spinning", True)) if runtime == "onnxruntime" else ()
    return Execution(**{"runtime": runtime, "runtime_options": options, "budget": tiny_budget(3), **changes})


def _record(peak: float = 100e9, bandwidth: float = 10e9, environment: dict = ENVIRONMENT,
            execution: Execution | None = None) -> dict:
    """A record whose gemm reaches ``peak`` and whose copy reaches ``bandwidth`` in its best sample."""
    listed = ceilings.kernels(Sizes(gemm=1000, conv=(1, 10, 10, 10), stream_bytes=10 ** 9), "fp32")
    samples = {"gemm": [1e9 / peak, 2e9 / peak], "conv": [0.1, 0.2], "copy": [2e9 / bandwidth, 3e9 / bandwidth],
               "read": [1.0]}
    return ceilings.make_record(execution or _execution(), dict(environment), listed, samples, {}, [])


# --- what is counted and computed -----------------------------------------------------------------

def test_kernel_counts_by_hand():
    """gemm 4×4×4: 64 multiply-adds, reads A and B and writes C (3·16 elements); conv 3×3, 3→3
    channels at 5×7, batch 2: 2·5·7·9·3·3 = 5,670 multiply-adds, input + output 2·(2·3·5·7) elements +
    81 weights; copy of 64 bytes reads and writes them; read only reads."""
    by_name = {k.name: k for k in ceilings.kernels(Sizes(gemm=4, conv=(2, 3, 5, 7), stream_bytes=64), "fp32")}
    assert (by_name["gemm"].flops, by_name["gemm"].bytes) == (64, 192)
    assert (by_name["conv"].flops, by_name["conv"].bytes) == (5_670, 4 * (420 + 81))
    assert (by_name["copy"].flops, by_name["copy"].bytes, by_name["copy"].size) == (0, 128, {"elements": 16})
    assert (by_name["read"].flops, by_name["read"].bytes) == (0, 64)
    half = {k.name: k for k in ceilings.kernels(Sizes(gemm=4, conv=(2, 3, 5, 7), stream_bytes=64), "bf16")}
    assert half["gemm"].bytes == 96 and half["copy"].size == {"elements": 32}


def test_record_takes_each_kernels_best_sample_and_states_the_convention():
    record = _record(peak=100e9, bandwidth=10e9)
    assert record["peak_flops_per_s"] == pytest.approx(100e9) and record["peak_kernel"] == "gemm"
    assert record["bandwidth_bytes_per_s"] == pytest.approx(10e9) and record["bandwidth_kernel"] == "copy"
    assert record["ridge_flop_per_byte"] == pytest.approx(10)
    gemm = record["kernels"][0]
    assert gemm["median_flops_per_s"] == pytest.approx(1e9 / 1.5e-2)  # the median is kept beside the best
    convention = record["flop_convention"]
    assert "1 multiply-add = 1 FLOP" in convention and "half the usual 2·M·N·K" in convention
    assert record["key"] == {"hostname": "testhost", "cpu_model": "Test CPU @ 3.00GHz", "gpu_name": None,
                             "device": "cpu", "runtime": "torch", "threads": 1, "cores": [0], "dtype": "fp32",
                             "method": ceilings.METHOD}


def test_default_sizes_stream_beyond_the_largest_cache(tmp_path):
    for index, size in enumerate(("32K", "1024K", "512M")):
        folder = tmp_path / f"devices/system/cpu/cpu0/cache/index{index}"
        folder.mkdir(parents=True)
        (folder / "size").write_text(size + "\n")
    assert ceilings.largest_cache_bytes(tmp_path) == 512 << 20
    assert ceilings.largest_cache_bytes(tmp_path / "nothing") is None
    sizes = ceilings.default_sizes("cpu")
    assert sizes.stream_bytes >= max(128 << 20, 4 * (ceilings.largest_cache_bytes() or 0))


def test_rounds_go_to_the_worker_and_hostile_results_are_read_past():
    """Each round is one job with its share of the budget; values another process sends are checked."""
    jobs = []

    def worker(job):
        jobs.append(job)
        return {"pid": 4242, "environment": {"gpu_name": "X"}, "kernels": [
            {"name": "gemm", "samples_s": [0.5, "0.1", True, float("nan"), -1, 1.0]},
            {"name": "conv", "samples_s": "not a list"},
            {"name": "copy", "samples_s": [0.25]},
            {"name": "read", "samples_s": [0.5], "all_within_cores": False},
            {"name": "__class__", "samples_s": [1e-9]}, "not a kernel", 7]}

    execution = _execution(budget=TimingBudget(min_time_s=1.0, min_runs=4, rounds=2))
    record = ceilings.measure(execution, TINY, run=worker, environment={"hostname": "h", "cpu_model": "c"})
    assert len(jobs) == 2 and [job["budget"]["min_time_s"] for job in jobs] == [0.5, 0.5]
    assert [k["name"] for k in jobs[0]["kernels"]] == ["gemm", "conv", "copy", "read"] and jobs[0]["onnx"] == {}
    gemm = record["kernels"][0]
    assert gemm["samples_s"] == [0.5, 1.0, 0.5, 1.0]  # two rounds; strings, booleans, NaN and negatives dropped
    assert gemm["round_sizes"] == [2, 2] and record["kernels"][1]["round_sizes"] == [0, 0]
    assert record["peak_flops_per_s"] == pytest.approx(32 ** 3 / 0.5)
    assert record["kernels"][1]["stats"] is None and record["kernels"][1]["flops_per_s"] is None
    assert "outside the pinned cores" in record["kernels"][3]["problem"]
    assert [w["pid"] for w in record["workers"]] == [4242, 4242]
    assert record["key"]["gpu_name"] is None  # a CPU's record is not keyed by a GPU


def test_a_kernels_interval_resamples_its_rounds():
    """Three rounds, each a fresh process: two ran at 1 ms, one at 2 ms. The samples taken as
    independent pin the median to 1 ms within 0.5 %; resampling the rounds, the interval reaches 2 ms."""
    fast, slow = [1e-3 * (1 + 0.0001 * i) for i in range(30)], [2e-3 * (1 + 0.0001 * i) for i in range(30)]
    rounds = iter([fast, fast, slow])

    def worker(job):
        taken = next(rounds)
        return {"kernels": [{"name": name, "samples_s": taken} for name in ("gemm", "copy")]}

    execution = _execution(budget=TimingBudget(min_time_s=1.0, min_runs=4, rounds=3))
    gemm = ceilings.measure(execution, TINY, run=worker)["kernels"][0]
    assert gemm["round_sizes"] == [30, 30, 30] and gemm["stats"]["ci_method"] == "rounds"
    assert gemm["stats"]["ci_low_s"] < 1.005e-3 and gemm["stats"]["ci_high_s"] > 1.99e-3
    assert median_ci(gemm["samples_s"])[1] < 1.005e-3


def test_no_compute_kernel_timed_is_an_error_naming_why():
    def failing(job):
        return {"kernels": [{"name": "gemm", "samples_s": [], "error": "RuntimeError: no BLAS"},
                            {"name": "copy", "samples_s": [0.1]}]}

    with pytest.raises(RuntimeError, match="no compute kernel could be timed .*gemm: RuntimeError: no BLAS"):
        ceilings.measure(_execution(), TINY, run=failing)


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_a_worker_times_every_kernel_pinned_on_a_fake_clock(runtime, tmp_path):
    """In this process (the worker's own code), with a clock that moves 1 ms per reading: each kernel
    warms up, is pinned to the cores, and takes its exact runs; onnxruntime through its ONNX models."""
    execution = _execution(runtime)
    listed = ceilings.kernels(TINY, "fp32", runtime)
    models = ceilings.write_onnx_models(listed, tmp_path, 0) if runtime == "onnxruntime" else {}
    now = [0.0]

    def clock():
        now[0] += 1e-3
        return now[0]

    job = {"execution": execution.to_dict(), "budget": vars(execution.budget), "kernels": [vars(k) for k in listed],
           "onnx": models}
    result = ceilings.serve(json.loads(json.dumps(job)), clock=clock)
    assert [item["name"] for item in result["kernels"]] == ["gemm", "conv", "copy", "read"]
    for item in result["kernels"]:
        assert "error" not in item, item
        assert item["samples_s"] == pytest.approx([1e-3] * 3) and item["all_within_cores"] is True
    assert result["pid"] == os.getpid()
    if runtime == "onnxruntime":
        assert result["runtime"]["io_binding"] is True and result["runtime"]["intra_op_num_threads"] == 1


def test_on_a_gpu_kernels_are_timed_by_cuda_events_in_ieee_fp32(fake_gpu, torch_default_precision):  # noqa: F811
    """The CUDA path on the fake GPU of test_cuda (tensors on the CPU, CUDA events on the wall
    clock): event timing, IEEE fp32 set as for the rows, and the record keyed by the GPU's name."""
    execution = Execution(device="cuda", budget=tiny_budget(2))
    record = ceilings.measure(execution, TINY, run=lambda job: ceilings.serve(job, tensor_device="cpu"),
                              environment={"hostname": "h", "cpu_model": "c"})
    assert [len(kernel["samples_s"]) for kernel in record["kernels"]] == [2, 2, 2, 2]
    assert record["workers"][0]["runtime"] == {"timer": "cuda events",
                                               "fp32_precision": {"cudnn_conv": "ieee", "matmul": "ieee"}}
    assert record["key"]["gpu_name"] == "Fake GPU" and record["environment"]["gpu_name"] == "Fake GPU"
    assert ceilings.default_sizes("cuda").stream_bytes == 1 << 30


def test_a_failing_kernel_is_data_not_a_crash():
    execution = _execution()
    broken = Kernel("gemm", "compute", {"n": -1}, 0, 0, "negative size")
    job = {"execution": execution.to_dict(), "budget": vars(execution.budget), "kernels": [vars(broken)]}
    (item,) = ceilings.serve(job)["kernels"]
    assert item["samples_s"] == [] and item["error"].startswith("RuntimeError")


def test_one_real_measurement_in_fresh_processes():
    """The default path: each round a new interpreter (not this process), real samples, a sane roof.
    With onnxruntime, whose worker imports no torch (so this test takes a second, not ten)."""
    execution = _execution("onnxruntime", budget=TimingBudget(warmup_s=0, warmup_runs=1, min_time_s=0, min_runs=1,
                                                              exact_runs=6, rounds=2))
    record = ceilings.measure(execution, TINY, environment={"hostname": "h", "cpu_model": "c"})
    pids = [worker["pid"] for worker in record["workers"]]
    assert len(set(pids)) == 2 and os.getpid() not in pids
    for kernel in record["kernels"]:
        assert len(kernel["samples_s"]) == 6 and kernel["problem"] is None, kernel
    assert 1e6 < record["peak_flops_per_s"] < 1e14 and 1e6 < record["bandwidth_bytes_per_s"] < 1e13


def test_the_worker_needs_no_torch_and_refuses_what_is_not_a_job():
    done = subprocess.run([sys.executable, "-c", "import sys, flopsbench.ceilings; print('torch' in sys.modules)"],
                          capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr
    done = subprocess.run([sys.executable, "-m", "flopsbench.ceilings"], input="{not json", text=True,
                          capture_output=True)
    assert done.returncode == 2 and "not a ceilings job" in done.stderr and done.stdout == ""


# --- the cache, hostile records, and what a report is held against ----------------------------------

def test_cached_record_is_found_for_exactly_its_key(cache):
    record = _record()
    path = ceilings.save(record)
    assert path.parent == cache / "ceilings" and path.name.startswith("testhost-cpu-torch-fp32-1t-")
    found = ceilings.for_report(ENVIRONMENT, _execution())
    assert found.peak_flops_per_s == pytest.approx(100e9) and found.source == ""
    for other in ({"threads": 2, "cores": (0, 1)}, {"cores": (1,)}, {"dtype": "bf16"}):
        assert ceilings.for_report(ENVIRONMENT, _execution(**other)) is None, other
    assert ceilings.for_report({**ENVIRONMENT, "hostname": "elsewhere"}, _execution()) is None
    assert ceilings.for_report(ENVIRONMENT, _execution("onnxruntime")) is None
    path.write_text("{damaged")
    assert ceilings.for_report(ENVIRONMENT, _execution()) is None  # no columns, no crash


def test_a_record_timed_before_the_method_is_never_served_from_the_cache(cache):
    """Records from before METHOD 2 timed conv with its output's pages taken afresh every call (the
    system's allocator), so their peak reads low: the cache must not hold a report against one."""
    old = _record()
    del old["key"]["method"]
    ceilings.save(old)
    assert ceilings.for_report(ENVIRONMENT, _execution()) is None
    ceilings.save(_record())
    assert ceilings.for_report(ENVIRONMENT, _execution()).key["method"] == ceilings.METHOD
    given = Ceilings.from_record(old, "old.json")  # given by hand, it is used, and the difference said
    assert given.differences(ceilings.key_for(ENVIRONMENT, _execution())) == [
        f"method None (the report: {ceilings.METHOD})"]


@pytest.mark.parametrize("change, says", [
    ({"schema": "flopsbench.report"}, "not a flopsbench.ceilings record"),
    ({"peak_flops_per_s": "1e11"}, "peak_flops_per_s"),
    ({"peak_flops_per_s": True}, "peak_flops_per_s"),
    ({"bandwidth_bytes_per_s": 0}, "bandwidth_bytes_per_s"),
    ({"bandwidth_bytes_per_s": 1e400}, "bandwidth_bytes_per_s"),
    ({"key": []}, "key"),
    ({"key": {"device": "tpu"}}, "key.device"),
    ({"key": {**_record()["key"], "method": "2; rm -rf /"}}, "key.method"),
    ({"created_utc": 5}, "created_utc"),
])
def test_hostile_records_are_refused(change, says):
    data = {**_record(), **change}
    with pytest.raises(ValueError, match=says):
        Ceilings.from_record(json.loads(json.dumps(data)))


def test_bound_by_the_ridge_point():
    roof = Ceilings.from_record(_record(peak=100e9, bandwidth=10e9))
    assert [roof.bound_by(i) for i in (1.0, 9.99, 10.0, 500.0, None, 0.0, float("nan"))] == \
        ["memory", "memory", "compute", "compute", None, None, None]
    assert roof.roof(2.0) == pytest.approx(20e9) and roof.roof(50.0) == pytest.approx(100e9)


def _csv(report):
    return list(csv.DictReader(io.StringIO(render(report, "csv"))))


def test_reports_gain_percent_of_peak_and_bound_by_once_ceilings_are_known():
    """Conv 96x56x56: 2,601,123,840 FLOPs in a 32 ms median = 81.3 GFLOPS, 81.3 % of a 100 GFLOPS peak;
    intensity 2,601,123,840 / 27,402,240 B = 94.9 FLOP/B, right of the ridge (10): compute. PConv 16x8x8:
    73,728 FLOPs / 29,184 B = 2.53 FLOP/B: memory."""
    report = make_report([conv_table1_row(), pconv_custom_row()])
    assert "% of peak" not in _csv(report)[0] and "roofline" not in render(report, "md")
    ceilings.save(_record(peak=100e9, bandwidth=10e9))
    conv, pconv = _csv(report)
    assert float(conv["% of peak"]) == pytest.approx(100 * 2_601_123_840 / 0.032 / 100e9)
    assert (conv["Bound by"], pconv["Bound by"]) == ("compute", "memory")
    assert list(conv).index("% of peak") == list(conv).index("FLOPS [G/s]") + 1
    markdown = render(report, "md", view=View(columns=("flops-per-s", "peak-share", "bound-by")))
    header = next(line for line in markdown.splitlines() if line.startswith("| Operator"))
    assert [cell.strip() for cell in header.strip("|").split("|")][-3:] == ["FLOPS [G/s]", "% of peak", "Bound by"]
    assert "| compute" in markdown and "| memory" in markdown
    assert "100 GFLOPS (multiply-adds, gemm)" in markdown
    assert "ridge point 10 FLOP/B" in markdown and "Williams, Waterman and Patterson" in markdown
    assert "above the measured peak" not in markdown
    ceilings.save(_record(peak=50e9, bandwidth=10e9))  # conv's 81.3 GFLOPS is above it: the peak is suspect
    assert "1 row(s) ran above the measured peak" in render(report, "md")


def test_onnxruntime_reports_get_percent_of_peak_but_no_bound_by():
    """Their intensity is PyTorch eager's bytes, not what onnxruntime's graph moves: left out, as the
    intensity column is."""
    execution = _execution("onnxruntime")
    ceilings.save(_record(execution=execution))
    report = make_report([conv_table1_row()])
    report = replace(report, execution=replace(report.execution, runtime="onnxruntime",
                                               runtime_options=execution.runtime_options))
    (conv,) = _csv(report)
    assert "% of peak" in conv and "Bound by" not in conv


def test_given_ceilings_come_before_the_cache_and_say_how_they_differ(tmp_path):
    ceilings.save(_record(peak=100e9))
    given = Ceilings.from_record(_record(peak=200e9, execution=_execution(threads=2, cores=(0, 1))), "other.json")
    report = make_report([conv_table1_row()])
    with ceilings.given(given):
        (conv,) = _csv(report)
        markdown = render(report, "md")
    assert float(conv["% of peak"]) == pytest.approx(100 * 2_601_123_840 / 0.032 / 200e9)
    assert "(other.json)" in markdown and "differ from this run in threads 2 (the report: 1)" in markdown
    assert float(_csv(report)[0]["% of peak"]) == pytest.approx(100 * 2_601_123_840 / 0.032 / 100e9)


# --- the command line -------------------------------------------------------------------------------

def test_ceilings_command_measures_caches_and_feeds_report(tmp_path, monkeypatch, hand_report):
    """Tiny kernels, timed in this process (fresh processes are tested above)."""
    monkeypatch.setattr(ceilings, "default_sizes", lambda device: TINY)
    monkeypatch.setattr(ceilings, "run_fresh", lambda job: ceilings.serve(json.loads(json.dumps(job))))
    fast = ["--min-time", "0.05", "--rounds", "1", "--warmup", "0"]
    out = tmp_path / "ceilings.json"
    first = invoke(["ceilings", *fast, "-o", out])
    assert first.exit_code == 0, first.output
    assert "Peak compute" in first.stdout and "half the usual 2·M·N·K" in first.stdout
    assert "cached in" in first.stderr
    record = json.loads(out.read_text())
    assert record["key"]["runtime"] == "torch" and record["key"]["threads"] == 1
    again = invoke(["ceilings", *fast, "--format", "json"])
    assert again.exit_code == 0 and "cached record of" in again.stderr
    assert json.loads(again.stdout)["created_utc"] == record["created_utc"]
    refreshed = invoke(["ceilings", *fast, "--refresh", "--format", "json"])
    assert refreshed.exit_code == 0 and "cached record" not in refreshed.stderr
    saved = tmp_path / "ops.json"
    saved.write_text(hand_report.to_json())
    shown = invoke(["report", saved, "--format", "csv", "--ceilings", out])
    assert shown.exit_code == 0, shown.output
    assert "% of peak" in shown.stdout.splitlines()[0] and "Bound by" in shown.stdout.splitlines()[0]


def test_report_refuses_ceilings_of_another_runtime(tmp_path, hand_report):
    other = tmp_path / "ort.json"
    other.write_text(json.dumps(_record(execution=_execution("onnxruntime"))))
    saved = tmp_path / "ops.json"
    saved.write_text(hand_report.to_json())
    result = invoke(["report", saved, "--ceilings", other])
    _assert_one_line_error(result, "--ceilings")
    assert "cpu with onnxruntime" in stderr_lines(result)[0]
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema": "flopsbench.ceilings", "schema_version": 1}')
    _assert_one_line_error(invoke(["report", saved, "--ceilings", broken]), "--ceilings")
    _assert_one_line_error(invoke(["report", saved, "--ceilings", tmp_path / "missing.json"]), "--ceilings")


def test_ceilings_command_validates_before_measuring(monkeypatch):
    monkeypatch.setattr(ceilings, "measure", lambda *a, **k: pytest.fail("measured despite a bad option"))
    _assert_one_line_error(invoke(["ceilings", "--format", "csv"]), "--format")
    _assert_one_line_error(invoke(["ceilings", "--threads", "999"]), "--threads")
    _assert_one_line_error(invoke(["ceilings", "--runtime", "onnxruntime", "--dtype", "bf16"]), "--dtype")
