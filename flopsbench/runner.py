"""Runs workloads (operators or models) on the CPU: build → count (FLOPs, params, memory) →
time → result rows.

Timing is interleaved: every case is built and counted first, then sampled in ``rounds`` that
visit all cases in turn (see TimingBudget). A failure inside one case becomes an error row;
Ctrl-C (KeyboardInterrupt) passes through so that the caller keeps what is done."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

import operators
from flopsbench.breakdown import module_breakdown
from flopsbench.counting import count_flops, count_params, count_params_without_bn
from flopsbench.memory import count_memory_access
from flopsbench.onnx_export import cached_export, export_metadata
from flopsbench.ort_runtime import check_outputs, make_session
from flopsbench.report import Report, Row, utc_now
from flopsbench.spec import Execution, TimingBudget, Workload
from flopsbench.sampling import finish_row, sample_round
from operators.baselines import resolve_model
from operators.fusion import fuse_bn
from operators.weights import load_official_weights

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# onnxruntime's output must match PyTorch's within rtol, and atol × the output's largest magnitude.
ORT_RTOL, ORT_ATOL = 1e-3, 1e-4
# Fused and unfused outputs must agree this closely (absolute and relative) to time the fused model.
FUSION_TOLERANCE = {torch.float32: 1e-3, torch.float16: 5e-2, torch.bfloat16: 1e-1}


@dataclass
class Case:
    """A row and what it needs to be timed: the built module, its input, and the call to time
    (the module itself, or an onnxruntime session running its export)."""

    row: Row
    module: torch.nn.Module | None = None
    x: torch.Tensor | None = None
    call: Callable[[], object] | None = None


def build_case(workload: Workload, execution: Execution) -> tuple[torch.nn.Module, torch.Tensor]:
    """The module in eval mode and its input, deterministic for a given seed."""
    torch.manual_seed(execution.seed)
    if workload.kind == "model":
        module = resolve_model(workload.name).create(**workload.param_dict).eval()
        if workload.weights:
            load_official_weights(module, workload.weights)
    else:
        op = operators.get_operator(workload.name)
        module = op.build_stack(workload.shape.c, workload.layers, **workload.param_dict).eval()
    shape = workload.shape
    x = torch.randn(execution.batch, shape.c, shape.h, shape.w)
    dtype = TORCH_DTYPES[execution.dtype]
    return module.to(dtype=dtype), x.to(dtype=dtype)


def count_case(row: Row, module: torch.nn.Module, x: torch.Tensor, execution: Execution) -> torch.nn.Module:
    """Fill in FLOPs, params and memory access; return the module to time (BN-fused models
    are counted both ways: the paper's Table 3 counts the unfused model, Table 8 the fused)."""
    flops = count_flops(module, x)
    row.flops, row.flops_by_operator, row.unsupported_ops = flops.total, flops.by_operator, flops.unsupported_ops
    row.params = count_params(module)
    if row.workload.kind == "model":
        row.params_without_bn = count_params_without_bn(module)
        row.flops_unfused = flops.total
        if row.workload.fuse_bn:
            module = fused_checked(module, x)
            row.flops = row.flops_fused = count_flops(module, x).total
    else:
        op = operators.get_operator(row.workload.name)
        shape, params, layers = row.workload.shape, row.workload.param_dict, row.workload.layers
        row.flops_analytic = layers * execution.batch * op.macs(shape.c, shape.h, shape.w, **params)
        row.memory_ideal_elements = layers * op.memory_elements(shape.c, shape.h, shape.w, execution.batch, **params)
        row.memory_ideal_bytes = row.memory_ideal_elements * x.element_size()
    row.memory_impl = count_memory_access(module, x).to_dict()
    return module


def fused_checked(module: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """BN folded into the preceding convs, refusing a fusion that changes the outputs."""
    fused = fuse_bn(module)
    with torch.inference_mode():
        expected, got = module(x), fused(x)
    tolerance = FUSION_TOLERANCE[x.dtype]
    if not torch.allclose(got, expected, rtol=tolerance, atol=tolerance):
        worst = (got - expected).abs().max().item()
        raise RuntimeError(f"BN fusion changed the outputs (max abs diff {worst:.3g} > {tolerance}); "
                           "time it with --no-fuse-bn")
    return fused


def prepare_case(workload: Workload, execution: Execution) -> Case:
    case = Case(Row(workload))
    try:
        module, case.x = build_case(workload, execution)
        case.module = count_case(case.row, module, case.x, execution)
        case.call = runtime_call(case, execution)
    except Exception as exc:  # noqa: BLE001 -- a failing case is data, not a crash
        fail(case, exc)
    return case


def runtime_call(case: Case, execution: Execution) -> Callable[[], object]:
    """What gets timed: ``module(x)`` with torch; with onnxruntime, a session on the cached
    ONNX export, whose output must first match PyTorch's."""
    module, x = case.module, case.x
    if execution.runtime == "torch":
        return lambda: module(x)
    row = case.row
    metadata = export_metadata(row, execution)
    path, cached = cached_export(module, x, metadata)
    options = dict(execution.runtime_options)
    session, record = make_session(path, execution.threads, execution.cores,
                                   options.get("opt_level", "all"), options.get("spinning", True))
    feeds = {session.get_inputs()[0].name: x.numpy()}
    worst = compare_with_torch(session, feeds, module, x)
    row.runtime = {**record, "onnx_file": str(path), "export_cached": cached, "pconv_exported_as": "split_cat",
                   "max_abs_diff_vs_torch": worst}
    return lambda: session.run(None, feeds)


def compare_with_torch(session, feeds: dict, module: torch.nn.Module, x: torch.Tensor) -> float:
    """onnxruntime's output against PyTorch's on the same input: the largest absolute
    difference, or an error beyond rtol ORT_RTOL and atol ORT_ATOL × the output's magnitude."""
    with torch.inference_mode():
        expected = module(x).numpy()
    scale = float(abs(expected).max()) or 1.0  # relative to the output, however small it is
    return check_outputs(session.run(None, feeds)[0], expected, rtol=ORT_RTOL, atol=ORT_ATOL * scale)


def time_round(row: Row, call: Callable[[], object], execution: Execution, budget: TimingBudget,
               clock: Callable[[], float] = time.perf_counter) -> None:
    """One round of samples for ``row`` (see sampling.sample_round), under inference mode."""
    with torch.inference_mode():
        sample_round(row, call, execution, budget, clock, torch_threads=execution.runtime == "torch")


def fail(case: Case, exc: Exception) -> None:
    case.row.status, case.row.error = "error", f"{type(exc).__name__}: {exc}".splitlines()[0]
    case.module = case.x = case.call = None  # free the memory of a case that will not be timed


def run_case(workload: Workload, execution: Execution) -> Row:
    """One case on its own: count, then all rounds back to back."""
    return run_all(Report("case", execution, {}), [workload]).rows[0]


def run_all(report: Report, workloads: Iterable[Workload],
            on_step: Callable[[Report, str], None] = lambda report, label: None) -> Report:
    """Prepare every workload (rows appear as they are counted), then time the rounds.
    ``on_step`` runs after each counted case and each timed (case, round), e.g. to save
    partial results; ``report.complete`` stays False if interrupted."""
    execution = report.execution
    cases = []
    for workload in workloads:
        case = prepare_case(workload, execution)
        cases.append(case)
        report.rows.append(case.row)
        on_step(report, f"counted {workload.name} {workload.shape}")
    rounds = execution.budget.rounds
    for index in range(rounds):
        budget = execution.budget.round_share(index)
        for case in cases:
            if case.row.status != "ok":
                continue
            try:
                time_round(case.row, case.call, execution, budget)
            except Exception as exc:  # noqa: BLE001
                fail(case, exc)
            on_step(report, f"round {index + 1}/{rounds} {case.row.workload.name} {case.row.workload.shape}")
    if execution.breakdown_depth > 0:
        part_budget = TimingBudget(warmup_s=0.05, min_time_s=execution.breakdown_time_s, min_runs=3, rounds=1)
        for case in cases:
            if case.row.status == "ok" and case.row.workload.kind == "model":
                try:
                    case.row.breakdown = module_breakdown(case.module, case.x, execution.breakdown_depth,
                                                          execution, part_budget)
                except Exception as exc:  # noqa: BLE001 -- the row's own numbers still stand
                    case.row.warnings.append(f"breakdown failed: {type(exc).__name__}: {exc}".splitlines()[0])
            on_step(report, f"breakdown {case.row.workload.name}")
    for case in cases:
        finish_row(case.row, execution)
    report.complete = True
    report.finished_utc = utc_now()
    return report
