"""`flopsbench ops`: the paper's Table 1 (operator FLOPs, memory access, latency, FLOPS)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

import operators
from flopsbench.cli import app, invoked_args
from flopsbench.cli.options import (DEVICES, FORMATS, bad, check_budget, check_choice, check_device, check_output,
                                    check_positive, check_results_dir, measure_and_report, parse_cores,
                                    parse_names, parse_ratio, parse_shapes, save_path)
from flopsbench.cpu import set_interop_threads_once
from flopsbench.environment import capture_environment
from flopsbench.report import Report
from operators.pconv import FORWARD_MODES
from flopsbench.spec import DTYPES, TABLE1_SHAPES, Execution, TimingBudget, Workload

# Operator parameter -> the option that sets it (for error messages).
PARAM_OPTIONS = {"kernel_size": "--kernel", "groups": "--groups", "ratio": "--ratio",
                 "forward_mode": "--pconv-mode"}


@app.command("ops")
def ops_command(
    device: str = typer.Option("cpu", help="Where to run: " + ", ".join(DEVICES) + "."),
    op: Optional[str] = typer.Option(None, "--op", help="Comma list of operators (default: all; see 'flopsbench list')."),
    shape: Optional[list[str]] = typer.Option(None, "--shape", help="Feature map CxHxW, repeatable "
                                              "(default: Table 1's 96x56x56 192x28x28 384x14x14 768x7x7)."),
    layers: int = typer.Option(10, help="Identical layers stacked per operator."),
    batch: int = typer.Option(1, help="Batch size (latency at batch 1, as the paper's CPU column)."),
    threads: int = typer.Option(1, help="torch intra-op threads (inter-op threads are set to 1)."),
    cores: Optional[str] = typer.Option(None, help="Cores to pin to, e.g. 0 or 0,2-3 (default: the first --threads allowed cores)."),
    dtype: str = typer.Option("fp32", help="Data type: " + ", ".join(DTYPES) + "."),
    kernel: Optional[int] = typer.Option(None, help="Kernel size for conv, gconv, dwconv, pconv (default 3)."),
    groups: Optional[int] = typer.Option(None, help="GConv groups (default 16)."),
    ratio: Optional[str] = typer.Option(None, help="PConv partial ratio r = c_p/c, e.g. 1/4 (default)."),
    pconv_mode: Optional[str] = typer.Option(None, help="PConv forward: split_cat (default) or slicing (inference only)."),
    warmup: float = typer.Option(0.2, help="Warm-up seconds (at least 3 calls) before timing."),
    min_time: float = typer.Option(2.0, help="Keep sampling until this many seconds are timed..."),
    min_runs: int = typer.Option(10, help="...and at least this many samples..."),
    max_runs: int = typer.Option(10_000, help="...but never more than this many."),
    runs: Optional[int] = typer.Option(None, help="Exactly this many samples (overrides the three above)."),
    rounds: int = typer.Option(4, help="Split sampling into rounds that visit every case in turn, "
                                       "so machine noise spreads over all rows (1 = one case at a time)."),
    fmt: str = typer.Option("table", "--format", help="Output view: " + ", ".join(FORMATS) + "."),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Write the view to FILE ('-' = stdout)."),
    save: bool = typer.Option(False, help="Also save JSON (written as rows finish) and Markdown into --results-dir."),
    results_dir: Path = typer.Option(Path("results"), help="Folder for --save."),
    paper: bool = typer.Option(False, help="Add the paper's published numbers for this device beside each Table 1 row."),
    seed: int = typer.Option(0, help="Seed for weights and inputs."),
) -> None:
    """Measure operators: FLOPs, memory access, latency and FLOPS (the paper's Table 1)."""
    for value, choices, option in ((device, DEVICES, "--device"), (dtype, DTYPES, "--dtype"),
                                   (fmt, FORMATS, "--format"), (pconv_mode, FORWARD_MODES, "--pconv-mode")):
        check_choice(value, choices, option)
    check_device(device)
    names = parse_names(op, operators.list_operators(), "--op")
    shapes = parse_shapes(shape, TABLE1_SHAPES)
    check_positive(layers, "--layers")
    check_positive(batch, "--batch")
    pinned_cores = parse_cores(cores, threads)
    check_budget(min_time, min_runs, max_runs, runs, warmup)
    check_positive(rounds, "--rounds")
    overrides = {"kernel_size": kernel, "groups": groups, "forward_mode": pconv_mode,
                 "ratio": None if ratio is None else parse_ratio(ratio)}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    workloads = [_workload(name, s, layers, overrides) for name in names for s in shapes]
    check_output(output)
    if save:
        check_results_dir(results_dir)

    set_interop_threads_once(1)
    execution = Execution(device=device, dtype=dtype, batch=batch, threads=threads, cores=pinned_cores,
                          budget=TimingBudget(warmup_s=warmup, min_time_s=min_time, min_runs=min_runs,
                                              max_runs=max_runs, exact_runs=runs, rounds=rounds),
                          seed=seed)
    report = Report(command="ops", execution=execution, environment=capture_environment(),
                    argv=["flopsbench", *invoked_args()])
    measure_and_report(report, workloads, fmt, output, save_path(results_dir, "ops", device) if save else None,
                       paper)


def _workload(name: str, shape, layers: int, overrides: dict) -> Workload:
    op = operators.get_operator(name)
    params = op.resolve(overrides)
    try:
        op.check(shape.c, **params)
    except operators.InvalidParameter as exc:
        raise bad(PARAM_OPTIONS.get(exc.param, f"--{exc.param}"), f"{exc} ({name} at {shape})") from None
    return Workload(name, shape, layers, tuple(params.items()))
