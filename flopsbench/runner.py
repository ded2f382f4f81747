"""Runs a workload on the CPU: build → count (FLOPs, params, memory) → time → a result row.

A failure inside one case becomes an error row; Ctrl-C (KeyboardInterrupt) passes through so the
caller can keep what is done."""

from __future__ import annotations

import time
from typing import Callable, Iterable

import torch

import operators
from flopsbench.counting import count_flops, count_params
from flopsbench.cpu import audit_affinity, pinned
from flopsbench.memory import count_memory_access
from flopsbench.report import Report, Row, utc_now
from flopsbench.spec import Execution, Workload
from flopsbench.stats import noise_warnings, summarize
from flopsbench.timing import collect, warm_up

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def build_case(workload: Workload, execution: Execution) -> tuple[torch.nn.Module, torch.Tensor]:
    """The module in eval mode and its input, deterministic for a given seed."""
    op = operators.get_operator(workload.name)
    torch.manual_seed(execution.seed)
    module = op.build_stack(workload.shape.c, workload.layers, **workload.param_dict).eval()
    shape = workload.shape
    x = torch.randn(execution.batch, shape.c, shape.h, shape.w)
    dtype = TORCH_DTYPES[execution.dtype]
    return module.to(dtype=dtype), x.to(dtype=dtype)


def count_case(row: Row, module: torch.nn.Module, x: torch.Tensor, execution: Execution) -> None:
    op = operators.get_operator(row.workload.name)
    shape, params, layers = row.workload.shape, row.workload.param_dict, row.workload.layers
    flops = count_flops(module, x)
    row.flops, row.flops_by_operator, row.unsupported_ops = flops.total, flops.by_operator, flops.unsupported_ops
    row.flops_analytic = layers * execution.batch * op.macs(shape.c, shape.h, shape.w, **params)
    row.params = count_params(module)
    row.memory_ideal_elements = layers * op.memory_elements(shape.c, shape.h, shape.w, execution.batch, **params)
    row.memory_ideal_bytes = row.memory_ideal_elements * x.element_size()
    row.memory_impl = count_memory_access(module, x).to_dict()


def time_case(row: Row, module: torch.nn.Module, x: torch.Tensor, execution: Execution,
              clock: Callable[[], float] = time.perf_counter) -> None:
    def call() -> None:
        module(x)

    with pinned(execution.threads, execution.cores), torch.inference_mode():
        row.warmup_runs = warm_up(call, execution.budget, clock)
        row.affinity = audit_affinity(execution.cores)  # while the case's threads are alive
        row.samples_s = collect(call, execution.budget, clock)
    if not row.affinity["all_within_cores"]:
        row.warnings.append(f"some threads ran outside the pinned cores {list(execution.cores)}")
    row.warnings.extend(noise_warnings(summarize(row.samples_s)))


def run_case(workload: Workload, execution: Execution) -> Row:
    row = Row(workload)
    try:
        module, x = build_case(workload, execution)
        count_case(row, module, x, execution)
        time_case(row, module, x, execution)
    except Exception as exc:  # noqa: BLE001 -- a failing case is data, not a crash
        row.status, row.error = "error", f"{type(exc).__name__}: {exc}".splitlines()[0]
    return row


def run_all(report: Report, workloads: Iterable[Workload],
            on_row: Callable[[Report, Row], None] = lambda report, row: None,
            on_start: Callable[[Workload], None] = lambda workload: None) -> Report:
    """Measure each workload in turn, appending rows to ``report`` and calling ``on_row`` after
    each one (to save partial results). Leaves ``report.complete`` False if interrupted."""
    for workload in workloads:
        on_start(workload)
        row = run_case(workload, report.execution)
        report.rows.append(row)
        on_row(report, row)
    report.complete = True
    report.finished_utc = utc_now()
    return report
