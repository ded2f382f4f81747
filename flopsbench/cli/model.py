"""`flopsbench model`: whole models, measured the way the paper's Table 3 measures them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import typer

from flopsbench.cli import app
from flopsbench import validation
from flopsbench.cli.options import (Batch, ChannelsLast, CudaGraph, CudnnBenchmark, FindMaxBatch, L2Flush, Tf32,
                                    Mode, OrtOptLevel, OrtSpinning, Runtime, Cores, Device, Dtype, Format, MaxRuns, MinRuns, MinTime, Output,
                                    Paper, ResultsDir, Rounds, Runs, Save, Seed, StopCi, Threads, Warmup, bad,
                                    check_positive, host_batch, parse_ratio, run_and_report, run_settings,
                                    shared_options, validated)
from flopsbench.spec import Shape, Workload
from operators import InvalidParameter
from operators.baselines import resolve_model
from operators.weights import load_official_weights

# Model option -> the CLI option that sets it (for error messages).
PARAM_OPTIONS = {"ratio": "--ratio", "forward_mode": "--pconv-mode", "act": "--act", "num_classes": "--num-classes"}
MAX_CLASSES = 1_000_000  # classifier outputs: beyond the largest label sets in use
FP32_BYTES = 4


@app.command("model")
def model_command(
    names: list[str] = typer.Argument(..., help="Registered model names (see 'flopsbench list'), or timm:NAME "
                                                 "for any timm model."),
    resolution: Optional[int] = typer.Option(None, help="Square input side (default: the model's own, "
                                                        "224 for FasterNet)."),
    ratio: Optional[str] = typer.Option(None, help="FasterNet PConv ratio r = 1/n_div, e.g. 1/4 (default)."),
    pconv_mode: Optional[str] = typer.Option(None, help="FasterNet PConv forward: split_cat (default) or "
                                                        "slicing (inference only, faster)."),
    act: Optional[str] = typer.Option(None, help="FasterNet activation: gelu or relu (default: the variant's)."),
    num_classes: Optional[int] = typer.Option(None, help=f"Classifier outputs (default 1000; at most "
                                                         f"{MAX_CLASSES:,})."),
    weights: Optional[Path] = typer.Option(None, help="Official checkpoint to load (e.g. fasternet_t0-epoch.281-"
                                                      "val_acc1.71.9180.pth); default: seeded random weights."),
    fuse_bn: bool = typer.Option(True, help="Fold BatchNorm into the preceding convs before timing, as the "
                                            "paper does (FLOPs are reported both ways)."),
    breakdown_depth: int = typer.Option(0, "--breakdown", help="Also time, count and measure each module at "
                                        "this depth of the module tree (FasterNet: 2 = stages, 4 = blocks; 0 = off)."),
    breakdown_time: float = typer.Option(0.3, help="Seconds of samples per part for --breakdown "
                                                      f"(at most {validation.MAX_SECONDS})."),
    device: Device = "cpu", runtime: Runtime = None, ort_opt_level: OrtOptLevel = "all",
    ort_spinning: OrtSpinning = True, mode: Mode = None, batch: Batch = None, cuda_graph: CudaGraph = False,
    l2_flush: L2Flush = False, channels_last: ChannelsLast = False, cudnn_benchmark: CudnnBenchmark = True,
    find_max_batch: FindMaxBatch = False, tf32: Tf32 = False, threads: Threads = 1, cores: Cores = None, dtype: Dtype = "fp32",
    warmup: Warmup = 0.2, min_time: MinTime = 2.0, min_runs: MinRuns = 10, max_runs: MaxRuns = 10_000,
    runs: Runs = None, rounds: Rounds = 4, stop_ci: StopCi = 0.01, fmt: Format = "table", output: Output = None, save: Save = False,
    results_dir: ResultsDir = Path("results"), paper: Paper = False, seed: Seed = 0,
) -> None:
    """Measure models: params, FLOPs (unfused and BN-fused), memory access, latency, FLOPS (Table 3)."""
    settings = run_settings("model", **shared_options(locals()))
    check_sizes(resolution, num_classes)
    if weights is not None and not weights.is_file():
        raise bad("--weights", f"no file at {weights}; give the path of a downloaded checkpoint")
    overrides = {"ratio": None if ratio is None else parse_ratio(ratio), "forward_mode": pconv_mode,
                 "act": act, "num_classes": num_classes}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    workloads = [_workload(name, overrides, resolution, weights, fuse_bn, host_batch(settings.execution))
                 for name in names]
    for option, key in (("--ratio", "ratio"), ("--pconv-mode", "forward_mode"), ("--act", "act")):
        if key in overrides and not any(key in w.param_dict for w in workloads):
            raise bad(option, f"none of {', '.join(names)} has this option (FasterNet models do)")
    run_and_report(settings, workloads)


def check_sizes(resolution: int | None, num_classes: int | None) -> None:
    """The model options that size it, within bounds (memory is checked per model, see check_fits)."""
    if resolution is not None:
        check_positive(resolution, "--resolution")
    if num_classes is not None:
        validated(validation.check_range, num_classes, "--num-classes", 1, MAX_CLASSES)


def check_fits(workload: Workload, batch: int) -> None:
    """Refuse a model whose input cannot fit in memory at ``batch``, before it is built. The least
    it needs: the fp32 3xRxR input and one output as large (a model's weights and wider maps come
    on top, so this refuses only what surely fails)."""
    pixels = workload.shape.c * workload.shape.h * workload.shape.w
    validated(validation.check_memory, lambda n: FP32_BYTES * 2 * n * pixels, batch, "--resolution",
              f"{workload.name} at {workload.shape.h}x{workload.shape.w}")


def _workload(name: str, overrides: dict, resolution: int | None, weights: Path | None, fuse_bn: bool,
              batch: int) -> Workload:
    """The workload of one model; built once here (at batch 1) if an option could fail to fit it,
    after checking that ``batch`` of its input fits in memory."""
    try:
        model_def = resolve_model(name)
    except KeyError as exc:
        raise bad("NAME", str(exc.args[0])) from None
    params = model_def.resolve(overrides)
    side = resolution or model_def.input_resolution
    workload = Workload(name, Shape(3, side, side), 1, tuple(params.items()), kind="model",
                        weights=None if weights is None else str(weights), fuse_bn=fuse_bn)
    check_fits(workload, batch)
    if not model_def.unavailable and (overrides or resolution or weights):
        _check_buildable(model_def, workload)
    return workload


def _check_buildable(model_def, workload: Workload) -> None:
    """Build the model once with the user's options so that a bad option fails before measuring."""
    try:
        model = model_def.create(**workload.param_dict).eval()
    except InvalidParameter as exc:
        raise bad(PARAM_OPTIONS.get(exc.param, f"--{exc.param}"), f"{workload.name}: {exc}") from None
    if workload.weights:
        try:
            load_official_weights(model, workload.weights)
        except (ValueError, FileNotFoundError) as exc:
            raise bad("--weights", f"{exc}") from None
    side = workload.shape.h
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, side, side))
    except Exception as exc:  # noqa: BLE001 -- any failure means this input does not fit
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise bad("--resolution", f"{workload.name} cannot take a {side}x{side} input ({reason}); "
                                  f"try its default {model_def.input_resolution}") from None
