"""`flopsbench ops`: the paper's Table 1 (operator FLOPs, memory access, latency, FLOPS)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

import operators
from flopsbench.cli import app
from flopsbench.cli.options import (Batch, ChannelsLast, CudaGraph, CudnnBenchmark, FindMaxBatch, L2Flush, Tf32,
                                    Mode, OrtOptLevel, OrtSpinning, Runtime, Cores, Device, Dtype, Format, MaxRuns, MinRuns, MinTime, Output,
                                    Paper, ResultsDir, Rounds, Runs, Save, Seed, StopCi, Threads, Warmup, bad,
                                    check_choice, parse_names, parse_ratio, parse_shapes,
                                    host_batch, run_and_report, run_settings, shared_options, validated)
from flopsbench import validation
from flopsbench.spec import TABLE1_SHAPES, Shape, Workload
from operators.pconv import FORWARD_MODES

# Operator parameter -> the option that sets it (for error messages).
PARAM_OPTIONS = {"kernel_size": "--kernel", "groups": "--groups", "ratio": "--ratio",
                 "forward_mode": "--pconv-mode"}
FP32_BYTES = 4


@app.command("ops")
def ops_command(
    op: Optional[str] = typer.Option(None, "--op", help="Comma list of operators (default: all; see 'flopsbench list')."),
    shape: Optional[list[str]] = typer.Option(None, "--shape", help="Feature map CxHxW, repeatable "
                                              "(default: Table 1's 96x56x56 192x28x28 384x14x14 768x7x7)."),
    layers: int = typer.Option(10, help=f"Identical layers stacked per operator (1 to {validation.MAX_LAYERS})."),
    kernel: Optional[int] = typer.Option(None, help="Kernel size for conv, gconv, dwconv, pconv (default 3)."),
    groups: Optional[int] = typer.Option(None, help="GConv groups (default 16)."),
    ratio: Optional[str] = typer.Option(None, help="PConv partial ratio r = c_p/c, e.g. 1/4 (default)."),
    pconv_mode: Optional[str] = typer.Option(None, help="PConv forward: split_cat (default) or slicing (inference only)."),
    device: Device = "cpu", runtime: Runtime = None, ort_opt_level: OrtOptLevel = "all",
    ort_spinning: OrtSpinning = True, mode: Mode = None, batch: Batch = None, cuda_graph: CudaGraph = False,
    l2_flush: L2Flush = False, channels_last: ChannelsLast = False, cudnn_benchmark: CudnnBenchmark = True,
    find_max_batch: FindMaxBatch = False, tf32: Tf32 = False, threads: Threads = 1, cores: Cores = None, dtype: Dtype = "fp32",
    warmup: Warmup = 0.2, min_time: MinTime = 2.0, min_runs: MinRuns = 10, max_runs: MaxRuns = 10_000,
    runs: Runs = None, rounds: Rounds = 4, stop_ci: StopCi = 0.01, fmt: Format = "table", output: Output = None, save: Save = False,
    results_dir: ResultsDir = Path("results"), paper: Paper = False, seed: Seed = 0,
) -> None:
    """Measure operators: FLOPs, memory access, latency and FLOPS (the paper's Table 1)."""
    settings = run_settings("ops", **shared_options(locals()))
    check_choice(pconv_mode, FORWARD_MODES, "--pconv-mode")
    validated(validation.check_range, layers, "--layers", 1, validation.MAX_LAYERS)
    names = parse_names(op, operators.list_operators(), "--op")
    shapes = parse_shapes(shape, TABLE1_SHAPES)
    overrides = {"kernel_size": kernel, "groups": groups, "forward_mode": pconv_mode,
                 "ratio": None if ratio is None else parse_ratio(ratio)}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    workloads = [_workload(name, s, layers, overrides) for name in names for s in shapes]
    for workload in workloads:
        check_fits(workload, host_batch(settings.execution))
    run_and_report(settings, workloads)


def _workload(name: str, shape: Shape, layers: int, overrides: dict) -> Workload:
    op = operators.get_operator(name)
    params = op.resolve(overrides)
    try:
        op.check(shape.c, **params)
    except operators.InvalidParameter as exc:
        raise bad(PARAM_OPTIONS.get(exc.param, f"--{exc.param}"), f"{exc} ({name} at {shape})") from None
    return Workload(name, shape, layers, tuple(params.items()))


def check_fits(workload: Workload, batch: int) -> None:
    """Refuse an operator stack that cannot fit in memory at ``batch``, before it is built. The
    least it needs: an fp32 input (drawn in fp32 whatever the dtype) and one layer's output, plus
    every layer's weights (the weight term of the operator's memory formula, i.e. at batch 0)."""
    op, (c, h, w) = operators.get_operator(workload.name), (workload.shape.c, workload.shape.h, workload.shape.w)
    weights = workload.layers * op.memory_elements(c, h, w, 0, **workload.param_dict)
    validated(validation.check_memory, lambda n: FP32_BYTES * (2 * n * c * h * w + weights), batch, "--shape",
              f"{workload.name} {workload.shape} ({workload.layers} layers)", "--shape, --layers or --kernel")
