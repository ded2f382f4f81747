"""`flopsbench export NAME -o FILE.onnx`: an operator stack or a model as ONNX, with its counts
embedded, for the torch-free board runner (``python -m flopsbench.board FILE.onnx``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from flopsbench import validation, workloads
from flopsbench.cli import app
from flopsbench.cli.options import (Batch, Plugins, Seed, bad, check_choice, check_positive, integer,
                                    load_plugins, parse_ratio, validated)
from flopsbench.onnx_export import compare_with_torch, export_metadata, write_onnx
from flopsbench.output import staged
from flopsbench.ort_runtime import make_session
from flopsbench.report import Row
from flopsbench.build import build_case
from flopsbench.runner import count_case
from flopsbench.spec import Execution, Workload
from flopsbench_zoo.pconv import FORWARD_MODES


@app.command("export")
def export_command(
    name: str = typer.Argument(..., help="An operator (see 'flopsbench list'), a registered model, or timm:NAME."),
    output: Path = typer.Option(..., "-o", "--output", metavar="FILE", help="The ONNX file to write."),
    shape: Optional[str] = typer.Option(None, "--shape", metavar="CxHxW",
                                        help="Operators: feature map (default 96x56x56)."),
    layers: Optional[int] = typer.Option(None, parser=integer, help="Operators: identical layers stacked (default "
                                                                    f"10; at most {validation.MAX_LAYERS})."),
    kernel: Optional[int] = typer.Option(None, parser=integer,
                                         help="Operators: kernel size for conv, gconv, dwconv, pconv (default 3)."),
    groups: Optional[int] = typer.Option(None, parser=integer, help="Operators: GConv groups (default 16)."),
    ratio: Optional[str] = typer.Option(None, help="PConv partial ratio r = c_p/c, e.g. 1/4 (default)."),
    pconv_mode: Optional[str] = typer.Option(None, help="PConv forward recorded in the workload: split_cat (default) "
                                                        "or slicing; the graph is always exported as split_cat."),
    resolution: Optional[int] = typer.Option(None, parser=integer,
                                             help="Models: square input side (default: the model's own)."),
    act: Optional[str] = typer.Option(None, help="Models: FasterNet activation, gelu or relu (default: the variant's)."),
    num_classes: Optional[int] = typer.Option(None, parser=integer, help="Models: classifier outputs (default 1000)."),
    weights: Optional[Path] = typer.Option(None, help="Models: official checkpoint to load (default: seeded random "
                                                      "weights)."),
    fuse_bn: Optional[bool] = typer.Option(None, "--fuse-bn/--no-fuse-bn", help="Models: fold BatchNorm into the "
                                           "preceding convs, as the paper does (default on)."),
    batch: Batch = 1, seed: Seed = 0, plugin: Plugins = None,
) -> None:
    """Export an operator stack or a model to ONNX with its FLOPs, params and memory counts embedded,
    checked against PyTorch with onnxruntime; time it on a board with 'python -m flopsbench.board FILE'."""
    load_plugins(plugin)
    check_positive(batch, "--batch")
    check_choice(pconv_mode, FORWARD_MODES, "--pconv-mode")
    overrides = workloads.given(kernel_size=kernel, groups=groups, forward_mode=pconv_mode, act=act,
                                num_classes=num_classes, ratio=None if ratio is None else parse_ratio(ratio))
    workload = validated(workloads.one_workload, name, shape=shape, layers=layers, overrides=overrides,
                         resolution=resolution, weights=weights, fuse_bn=fuse_bn, batch=batch)
    _check_output(output)
    execution = Execution(device="cpu", runtime="onnxruntime", dtype="fp32", batch=batch, seed=seed)
    try:
        size, flops, worst = export_workload(workload, execution, output)
    except Exception as exc:  # noqa: BLE001 -- anything past validation: one line, exit 1
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        typer.echo(f"flopsbench export: error: {workload.name}: {reason}", err=True)
        raise typer.Exit(1) from None
    flops_text = "unknown" if flops is None else _si(flops, "")
    typer.echo(f"wrote {output} ({_si(size, 'B')}): {workload.name} {workload.shape} batch {batch}, "
               f"FLOPs {flops_text} (1 multiply-add = 1 FLOP), onnxruntime vs torch max abs diff {worst:.3g}",
               err=True)


def _si(value: float, unit: str) -> str:
    """1234567 -> '1.23 M' (decimal prefixes, as the tables use)."""
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:g} {unit}".rstrip()


def export_workload(workload: Workload, execution: Execution, output: Path) -> tuple[int, int | None, float]:
    """Build and count the workload as the runner does, export it with the counts embedded, and
    check onnxruntime's output against PyTorch's; (file size in bytes, FLOPs, max abs diff).
    The file is checked before it is put in place (flopsbench.output's rules: a regular file is
    replaced in one step, a device or symlink written through): one whose outputs do not match
    never reaches ``output``."""
    row = Row(workload)
    module, x = build_case(workload, execution)
    module = count_case(row, module, x, execution)
    with staged(output) as onnx_file:
        write_onnx(module, x, onnx_file, export_metadata(row, execution))
        session, _ = make_session(onnx_file, threads=1, cores=(0,))
        worst = compare_with_torch(session, {session.get_inputs()[0].name: x.numpy()}, module, x)
        size = onnx_file.stat().st_size
    return size, row.flops, worst


def _check_output(output: Path) -> None:
    """Fail before building if the file cannot be written."""
    if str(output) == "-":
        raise bad("--output", "an ONNX file is binary; give a file path, e.g. -o model.onnx")
    if output.is_dir():
        raise bad("--output", f"{output} is a folder; give a file path, e.g. -o {output / 'model.onnx'}")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # the check below says why the file cannot be written
    validated(validation.check_writable, str(output))
