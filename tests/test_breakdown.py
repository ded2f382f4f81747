"""--breakdown: parts timed as the row was (CUDA graphs, L2 flushes), side by side with the whole
model in one worker, their sum checked against the whole, noisy parts named, and each part's
share of time taken of the whole model's median."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

import flopsbench.cuda as cuda
from flopsbench.breakdown import modules_at_depth, time_parts
from flopsbench.build import build_case
from flopsbench.exporters import breakdown_frame, export_markdown
from flopsbench.report import Report, Row
from flopsbench.rounds import BREAKDOWN_PASSES, Case, measure
from flopsbench.spec import Execution, Shape, TimingBudget, Workload
from flopsbench.transport import InProcess
from flopsbench_zoo.baselines import resolve_model
from tests.conftest import tiny_budget
from tests.fakes import ScriptedTransport
from tests.test_cuda import fake_gpu  # noqa: F401 -- a fixture

T0 = Workload("fasternet_t0", Shape(3, 32, 32), 1, tuple(resolve_model("fasternet_t0").resolve({}).items()),
              kind="model")  # unfused: folding BN would take longer than the timing


def _part(name: str, flops: int = 1_000_000, type_: str = "Conv2d") -> dict:
    """A part as the parent counts it, before its worker times it."""
    return {"part": name, "type": type_, "flops": flops, "memory_bytes": 1_000, "samples_s": [], "median_s": None}


# --- the worker's side: whole and parts interleaved, in passes -----------------------------------------

def test_the_whole_model_is_timed_in_every_pass_between_its_parts():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).eval()
    log: list[str] = []

    def timer(name: str):
        return lambda: log.append(name) or 0.001

    timers = iter(["0", "1", "2"])  # parts get their timers in forward order
    budget = TimingBudget(warmup_s=0, warmup_runs=0, min_time_s=0, min_runs=3, rounds=3)
    whole, parts = time_parts(model, torch.randn(1, 4), 1, Execution(), budget, lambda call: timer(next(timers)),
                              whole_call=lambda: None, whole_timer=timer("whole"))
    assert log == ["whole", "0", "1", "2", "2", "1", "0", "whole", "whole", "0", "1", "2"]  # every other reversed
    assert whole == {"samples_s": [0.001] * 3, "pass_sizes": [1, 1, 1]}
    assert [p["part"] for p in parts] == ["0", "1", "2"] and all(p["pass_sizes"] == [1, 1, 1] for p in parts)


# --- the parent's side: the ratio, the warnings --------------------------------------------------------

def _broken_down(whole_s: list[float], parts_s: dict[str, list[float]], pass_sizes=None) -> Row:
    """A row timed, then broken down by a scripted worker that answers ``whole_s`` and ``parts_s``."""
    row = Row(T0, flops=3_000_000, breakdown=[_part(name) for name in parts_s])

    def script(job, number):
        if job["task"] == "time":
            return [{"event": "samples", "id": 0, "samples_s": [0.01] * 3, "complete": True}], 0
        parts = [{"part": name, "samples_s": samples, "pass_sizes": pass_sizes or [len(samples)]}
                 for name, samples in parts_s.items()]
        return [{"event": "breakdown", "id": 0, "whole": {"samples_s": whole_s, "pass_sizes": [len(whole_s)]},
                 "parts": parts}], 0

    execution = Execution(budget=tiny_budget(3), breakdown_depth=2)
    report = Report("model", execution, {}, rows=[row])
    measure(report, [Case(row, {"workload": T0.to_dict()})], ScriptedTransport(script))
    return row


def test_parts_that_sum_to_less_than_the_whole_earn_a_warning():
    row = _broken_down([0.010] * 5, {"a": [0.005] * 5, "b": [0.003] * 5})
    assert row.breakdown_whole["median_s"] == 0.010
    assert row.breakdown_whole["parts_sum_ratio"] == pytest.approx(0.8)
    (warning,) = [w for w in row.warnings if w.startswith("breakdown")]
    assert "sum to 0.80 × the whole model's" in warning


def test_parts_that_add_up_earn_no_warning():
    row = _broken_down([0.010] * 5, {"a": [0.006] * 5, "b": [0.0035] * 5})
    assert row.breakdown_whole["parts_sum_ratio"] == pytest.approx(0.95)
    assert not [w for w in row.warnings if w.startswith("breakdown")]


def test_noisy_parts_are_named_in_one_warning():
    noisy = [0.001, 0.002, 0.001, 0.002, 0.001, 0.002]  # IQR 100 % of the median
    row = _broken_down([0.010] * 6, {"a": noisy, "b": noisy, "c": [0.0085] * 6})
    (warning,) = [w for w in row.warnings if "noisy" in w]
    assert warning.startswith("breakdown: noisy timings of a, b;")
    assert row.breakdown[0]["warnings"] and not row.breakdown[2]["warnings"]  # each part's own checks


def test_a_hostile_breakdown_event_is_checked():
    row = _broken_down(["x", -1.0, True], {"a": [0.005, None, "1"]}, pass_sizes=["3", 1])
    assert row.breakdown_whole["median_s"] is None and row.breakdown_whole["parts_sum_ratio"] is None
    assert row.breakdown[0]["samples_s"] == [0.005] and row.breakdown[0]["pass_sizes"] == []


# --- the view ------------------------------------------------------------------------------------------

def test_time_shares_are_of_the_whole_model_with_the_parts_sum_beside_it():
    parts = [_part("a"), _part("b"), _part("bn", 0, "Identity")]
    for part, median in zip(parts, (0.004, 0.004, 0.0)):
        part.update(samples_s=[median], median_s=median)
    row = Row(T0, flops=2_000_000, breakdown=parts, breakdown_whole={"samples_s": [0.01], "median_s": 0.01})
    df = breakdown_frame(row).set_index("Part")
    assert list(df.index) == ["a", "b", "sum of parts", "whole model"]  # the folded BN is left out
    assert df.loc["a", "Time [%]"] == pytest.approx(40) and df.loc["sum of parts", "Time [%]"] == pytest.approx(80)
    assert df.loc["whole model", "Median [ms]"] == pytest.approx(10) and df.loc["whole model", "Time [%]"] == 100


# --- end to end: a tiny model, its worker in this process ----------------------------------------------

def _measured(execution: Execution) -> Row:
    """T0 at 32x32 timed, then broken down at depth 1 (4 parts), its workers in this process; the
    parent's counting is skipped (the parts named as count_parts names them)."""
    model, _ = build_case(T0, execution)
    row = Row(T0, flops=1, breakdown=[_part(name) for name, _ in modules_at_depth(model, 1)])
    report = Report("model", execution, {}, rows=[row])
    measure(report, [Case(row, {"workload": T0.to_dict()})], InProcess())
    assert row.status == "ok", row.error
    assert not [w for w in row.warnings if "failed" in w], row.warnings
    return row


def test_a_tiny_model_records_its_parts_against_the_whole():
    row = _measured(Execution(budget=replace(tiny_budget(2), rounds=1), breakdown_depth=1, breakdown_time_s=0.01))
    whole = row.breakdown_whole
    medians = [part["median_s"] for part in row.breakdown]
    assert whole["median_s"] > 0 and len(whole["pass_sizes"]) == BREAKDOWN_PASSES and all(medians)
    assert whole["parts_sum_ratio"] == pytest.approx(sum(medians) / whole["median_s"])
    apart = abs(whole["parts_sum_ratio"] - 1) > 0.10
    assert apart == any("the whole model's" in w for w in row.warnings)
    assert json.loads(json.dumps(row.to_dict(1)))["breakdown_whole"]["parts_sum_ratio"] == whole["parts_sum_ratio"]


def test_the_markdown_breakdown_says_shares_are_of_the_whole(tmp_path):
    row = Row(T0, flops=1_000_000, breakdown=[{**_part("a"), "samples_s": [0.002], "median_s": 0.002}],
              breakdown_whole={"samples_s": [0.004], "median_s": 0.004, "parts_sum_ratio": 0.5})
    report = Report("model", Execution(breakdown_depth=2), {"libraries": {}}, rows=[row], complete=True)
    path = tmp_path / "r.md"
    with path.open("w") as stream:
        export_markdown(report, stream)
    text = path.read_text()
    assert "Time [%] is of the whole model's median" in text and "| sum of parts " in text


# --- on a GPU: parts timed as the row was ----------------------------------------------------------------

def test_a_graphed_flushed_rows_parts_are_graphed_and_flushed(fake_gpu, monkeypatch):  # noqa: F811
    log: list[str] = []

    def graphed(fn):
        log.append("capture")

        def replay():
            log.append("replay")
            fn()
        return replay

    monkeypatch.setattr(cuda, "graphed", graphed)
    monkeypatch.setattr(cuda, "l2_flusher", lambda device=None: lambda: log.append("flush"))
    options = (("mode", "throughput"), ("cuda_graph", True), ("l2_flush", True))
    row = _measured(Execution(device="cuda", runtime_options=options, budget=replace(tiny_budget(2), rounds=1),
                              breakdown_depth=1, breakdown_time_s=0.01))
    assert log.count("capture") == 2 + len(row.breakdown)  # the whole in each job (prepare), and each part
    replays = [i for i, entry in enumerate(log) if entry == "replay"]
    assert len(replays) > 2 + len(row.breakdown) and all(log[i - 1] == "flush" for i in replays)
    assert row.breakdown_whole["median_s"] > 0
