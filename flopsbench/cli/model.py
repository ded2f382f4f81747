"""`flopsbench model`: whole models, measured the way the paper's Table 3 measures them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from flopsbench import validation, workloads
from flopsbench.cli import app
from flopsbench.cli.options import (Plugins, SharedOptions, host_batch, integer, load_plugins, number, parse_ratio,
                                    run_and_report, validated, with_shared_options)
from flopsbench.spec import Execution


@app.command("model")
@with_shared_options
def model_command(
    names: list[str] = typer.Argument(..., help="Registered model names (see 'flopsbench list'), or timm:NAME "
                                                 "for any timm model."),
    resolution: Optional[int] = typer.Option(None, parser=integer, help="Square input side (default: the model's "
                                                                        "own, 224 for FasterNet)."),
    ratio: Optional[str] = typer.Option(None, help="FasterNet PConv ratio r = 1/n_div, e.g. 1/4 (default)."),
    pconv_mode: Optional[str] = typer.Option(None, help="FasterNet PConv forward: split_cat (default) or "
                                                        "slicing (inference only, faster)."),
    act: Optional[str] = typer.Option(None, help="FasterNet activation: gelu or relu (default: the variant's)."),
    num_classes: Optional[int] = typer.Option(None, parser=integer, help=f"Classifier outputs (default 1000; at "
                                                                         f"most {workloads.MAX_CLASSES:,})."),
    weights: Optional[Path] = typer.Option(None, help="Official checkpoint to load (e.g. fasternet_t0-epoch.281-"
                                                      "val_acc1.71.9180.pth); default: seeded random weights."),
    fuse_bn: bool = typer.Option(True, help="Fold BatchNorm into the preceding convs before timing, as the "
                                            "paper does (FLOPs are reported both ways)."),
    breakdown_depth: int = typer.Option(0, "--breakdown", parser=integer, help="Also time, count and measure each "
                                        "module at this depth of the module tree (FasterNet: 2 = stages, 4 = "
                                        "blocks; 0 = off)."),
    breakdown_time: float = typer.Option(Execution().breakdown_time_s, parser=number, help="Seconds of samples per "
                                         f"part for --breakdown (at most {validation.MAX_SECONDS})."),
    plugin: Plugins = None,
    *, shared: SharedOptions,
) -> None:
    """Measure models: params, FLOPs (unfused and BN-fused), memory access, latency, FLOPS (Table 3)."""
    load_plugins(plugin)
    settings = shared.settings("model", breakdown_depth, breakdown_time)
    validated(workloads.check_model_sizes, resolution, num_classes)
    validated(workloads.check_weights_file, weights)
    overrides = workloads.given(ratio=None if ratio is None else parse_ratio(ratio), forward_mode=pconv_mode,
                                act=act, num_classes=num_classes)
    run_and_report(settings, validated(workloads.model_workloads, names, overrides, resolution, weights, fuse_bn,
                                       host_batch(settings.execution)))
