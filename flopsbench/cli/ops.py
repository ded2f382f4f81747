"""`flopsbench ops`: the paper's Table 1 (operator FLOPs, memory access, latency, FLOPS)."""

from __future__ import annotations

from typing import Optional

import typer

import flopsbench_zoo
from flopsbench import validation, workloads
from flopsbench.cli import app
from flopsbench.cli.options import (Plugins, SharedOptions, check_choice, host_batch, integer, load_plugins,
                                    parse_names, parse_ratio, run_and_report, validated, with_shared_options)
from flopsbench.spec import TABLE1_SHAPES
from flopsbench_zoo.pconv import FORWARD_MODES


@app.command("ops")
@with_shared_options
def ops_command(
    op: Optional[str] = typer.Option(None, "--op", help="Comma list of operators (default: all; see "
                                                         "'flopsbench list')."),
    shape: Optional[list[str]] = typer.Option(None, "--shape", metavar="CxHxW", help="Feature map, repeatable "
                                              "(default: Table 1's 96x56x56 192x28x28 384x14x14 768x7x7)."),
    layers: int = typer.Option(10, parser=integer, help=f"Identical layers stacked per operator "
                                                        f"(1 to {validation.MAX_LAYERS})."),
    kernel: Optional[int] = typer.Option(None, parser=integer,
                                         help="Kernel size for conv, gconv, dwconv, pconv (default 3)."),
    groups: Optional[int] = typer.Option(None, parser=integer, help="GConv groups (default 16)."),
    ratio: Optional[str] = typer.Option(None, help="PConv partial ratio r = c_p/c, e.g. 1/4 (default)."),
    pconv_mode: Optional[str] = typer.Option(None, help="PConv forward: split_cat (default) or slicing "
                                                        "(inference only)."),
    plugin: Plugins = None,
    *, shared: SharedOptions,
) -> None:
    """Measure operators: FLOPs, memory access, latency and FLOPS (the paper's Table 1)."""
    load_plugins(plugin)
    settings = shared.settings("ops")
    check_choice(pconv_mode, FORWARD_MODES, "--pconv-mode")
    validated(validation.check_range, layers, "--layers", 1, validation.MAX_LAYERS)
    names = parse_names(op, flopsbench_zoo.list_operators(), "--op")
    shapes = validated(workloads.parse_shapes, shape, TABLE1_SHAPES)
    overrides = workloads.given(kernel_size=kernel, groups=groups, forward_mode=pconv_mode,
                                ratio=None if ratio is None else parse_ratio(ratio))
    run_and_report(settings, validated(workloads.operator_workloads, names, shapes, layers, overrides,
                                       host_batch(settings.execution)))
