"""Workloads from what a command was given: each operator on each feature map (``flopsbench ops``),
each model at its input (``flopsbench model``), or one of either (``flopsbench export``), with its
parameters, checked before anything is measured. Each failure is a validation.OptionError naming
the option to change (the CLI prints it as one line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch

import flopsbench_zoo
from flopsbench import validation
from flopsbench.spec import Shape, Workload
from flopsbench.validation import OptionError
from flopsbench_zoo.baselines import resolve_model
from flopsbench_zoo.models import ModelDef
from flopsbench_zoo.weights import load_official_weights

# Operator and model parameter -> the option that sets it (for error messages).
PARAM_OPTIONS = {"kernel_size": "--kernel", "groups": "--groups", "ratio": "--ratio", "forward_mode": "--pconv-mode",
                 "act": "--act", "num_classes": "--num-classes"}
# Model options only some models take (FasterNet's); the others take every model's (num_classes).
FASTERNET_OPTIONS = {"--ratio": "ratio", "--pconv-mode": "forward_mode", "--act": "act"}
MAX_CLASSES = 1_000_000  # classifier outputs: beyond the largest label sets in use
FP32_BYTES = 4
DEFAULT_SHAPE = Shape(96, 56, 56)  # export's operator stack, unless --shape says otherwise
DEFAULT_LAYERS = 10


def given(**values: Any) -> dict[str, Any]:
    """The parameters given (not None), e.g. given(kernel_size=None, ratio=0.5) -> {'ratio': 0.5}."""
    return {key: value for key, value in values.items() if value is not None}


def parse_shapes(texts: Iterable[str] | None, default: Iterable[Shape]) -> list[Shape]:
    """--shape's values, each a CxHxW or a comma list of them; none given: ``default``."""
    if not texts:
        return list(default)
    try:
        return [Shape.parse(t) for text in texts for t in text.split(",")]
    except ValueError as exc:
        raise OptionError("--shape", f"{exc}; give C, H and W as positive integers") from None


# --- operators -------------------------------------------------------------------------------------

def operator_workloads(names: Iterable[str], shapes: Iterable[Shape], layers: int, overrides: dict,
                       batch: int) -> list[Workload]:
    """Each operator on each shape, ``layers`` deep, its defaults replaced by the ``overrides`` it
    takes, each checked to fit in memory at ``batch``."""
    workloads = [operator_workload(name, shape, layers, overrides) for name in names for shape in shapes]
    for workload in workloads:
        check_operator_fits(workload, batch)
    return workloads


def operator_workload(name: str, shape: Shape, layers: int, overrides: dict) -> Workload:
    op = flopsbench_zoo.get_operator(name)
    params = op.resolve(overrides)
    try:
        op.check(shape.c, **params)
    except flopsbench_zoo.InvalidParameter as exc:
        raise OptionError(PARAM_OPTIONS.get(exc.param, f"--{exc.param}"), f"{exc} ({name} at {shape})") from None
    return Workload(name, shape, layers, tuple(params.items()))


def check_operator_fits(workload: Workload, batch: int) -> None:
    """Refuse an operator stack that cannot fit in memory at ``batch``, before it is built. The
    least it needs: an fp32 input (drawn in fp32 whatever the dtype) and one layer's output, plus
    every layer's weights (the weight term of the operator's memory formula, i.e. at batch 0)."""
    op, (c, h, w) = flopsbench_zoo.get_operator(workload.name), (workload.shape.c, workload.shape.h, workload.shape.w)
    weights = workload.layers * op.memory_elements(c, h, w, 0, **workload.param_dict)
    validation.check_memory(lambda n: FP32_BYTES * (2 * n * c * h * w + weights), batch, "--shape",
                            f"{workload.name} {workload.shape} ({workload.layers} layers)",
                            "--shape, --layers or --kernel")


# --- models ----------------------------------------------------------------------------------------

def model_workloads(names: Iterable[str], overrides: dict, resolution: int | None, weights: Path | None,
                    fuse_bn: bool, batch: int) -> list[Workload]:
    """Each model (see model_workload; check_model_sizes and check_weights_file first); a FasterNet
    option none of them takes is refused."""
    names = list(names)
    workloads = [model_workload(name, overrides, resolution, weights, fuse_bn, batch) for name in names]
    for option, key in FASTERNET_OPTIONS.items():
        if key in overrides and not any(key in w.param_dict for w in workloads):
            raise OptionError(option, f"none of {', '.join(names)} has this option (FasterNet models do)")
    return workloads


def check_model_sizes(resolution: int | None, num_classes: int | None) -> None:
    """The model options that size it, within bounds (memory is checked per model, see check_model_fits)."""
    if resolution is not None and resolution < 1:
        raise OptionError("--resolution", f"{resolution} must be a positive integer")
    if num_classes is not None:
        validation.check_range(num_classes, "--num-classes", 1, MAX_CLASSES)


def check_weights_file(weights: Path | None) -> None:
    if weights is not None and not weights.is_file():
        raise OptionError("--weights", f"no file at {weights}; give the path of a downloaded checkpoint")


def check_model_fits(workload: Workload, batch: int) -> None:
    """Refuse a model whose input cannot fit in memory at ``batch``, before it is built. The least
    it needs: the fp32 3xRxR input and one output as large (a model's weights and wider maps come
    on top, so this refuses only what surely fails)."""
    pixels = workload.shape.c * workload.shape.h * workload.shape.w
    validation.check_memory(lambda n: FP32_BYTES * 2 * n * pixels, batch, "--resolution",
                            f"{workload.name} at {workload.shape.h}x{workload.shape.w}")


def find_model(name: str) -> ModelDef:
    try:
        return resolve_model(name)
    except KeyError as exc:
        raise OptionError("NAME", str(exc.args[0])) from None


def model_workload(name: str, overrides: dict, resolution: int | None, weights: Path | None, fuse_bn: bool,
                   batch: int) -> Workload:
    """The workload of one model; built once here (at batch 1) if an option could fail to fit it,
    after checking that ``batch`` of its input fits in memory."""
    model_def = find_model(name)
    params = model_def.resolve(overrides)
    side = resolution or model_def.input_resolution
    workload = Workload(name, Shape(3, side, side), 1, tuple(params.items()), kind="model",
                        weights=None if weights is None else str(weights), fuse_bn=fuse_bn)
    check_model_fits(workload, batch)
    if not model_def.unavailable and (overrides or resolution or weights):
        check_buildable(model_def, workload)
    return workload


def check_buildable(model_def: ModelDef, workload: Workload) -> None:
    """Build the model once with the user's options so that a bad option fails before measuring."""
    try:
        model = model_def.create(**workload.param_dict).eval()
    except flopsbench_zoo.InvalidParameter as exc:
        raise OptionError(PARAM_OPTIONS.get(exc.param, f"--{exc.param}"), f"{workload.name}: {exc}") from None
    if workload.weights:
        try:
            load_official_weights(model, workload.weights)
        except (ValueError, FileNotFoundError) as exc:
            raise OptionError("--weights", f"{exc}") from None
    side = workload.shape.h
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, side, side))
    except Exception as exc:  # noqa: BLE001 -- any failure means this input does not fit
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OptionError("--resolution", f"{workload.name} cannot take a {side}x{side} input ({reason}); "
                                          f"try its default {model_def.input_resolution}") from None


# --- one of either (export) ------------------------------------------------------------------------

def one_workload(name: str, *, shape: str | None, layers: int | None, overrides: dict, resolution: int | None,
                 weights: Path | None, fuse_bn: bool | None, batch: int) -> Workload:
    """An operator workload (``ops``' rules) or a model workload (``model``'s rules), checked to fit
    in memory at ``batch``; the options of the other kind (None when not given) are refused."""
    if name in flopsbench_zoo.list_operators():
        _refuse("operator", name, {"--resolution": resolution, "--act": overrides.get("act"),
                                   "--num-classes": overrides.get("num_classes"), "--weights": weights,
                                   "--fuse-bn": fuse_bn})
        if layers is not None:
            validation.check_range(layers, "--layers", 1, validation.MAX_LAYERS)
        shapes = parse_shapes([shape] if shape else None, [DEFAULT_SHAPE])
        if len(shapes) != 1:
            raise OptionError("--shape", f"give one CxHxW (one file per shape), not {shape!r}")
        accepted = flopsbench_zoo.get_operator(name).defaults
        for key in overrides:
            if key not in accepted:
                raise OptionError(PARAM_OPTIONS[key], f"{name} has no such parameter; its parameters: "
                                                      f"{', '.join(accepted) or 'none'}")
        workload = operator_workload(name, shapes[0], DEFAULT_LAYERS if layers is None else layers,
                                     overrides)
        check_operator_fits(workload, batch)
        return workload
    try:
        model_def = resolve_model(name)
    except KeyError as exc:
        raise OptionError("NAME", f"{name!r} is no operator ({', '.join(flopsbench_zoo.list_operators())}); "
                                  f"{exc.args[0]}") from None
    if model_def.unavailable:
        raise OptionError("NAME", f"{name} cannot be built here: {model_def.unavailable}")
    _refuse("model", name, {"--shape": shape, "--layers": layers, "--kernel": overrides.get("kernel_size"),
                            "--groups": overrides.get("groups")})
    check_model_sizes(resolution, overrides.get("num_classes"))
    check_weights_file(weights)
    workload = model_workload(name, overrides, resolution, weights, True if fuse_bn is None else fuse_bn, batch)
    for option, key in FASTERNET_OPTIONS.items():
        if key in overrides and key not in workload.param_dict:
            raise OptionError(option, f"{name} has no such option (FasterNet models do)")
    return workload


def _refuse(kind: str, name: str, given_options: dict) -> None:
    for option, value in given_options.items():
        if value is not None:
            other = "models" if kind == "operator" else "operators"
            raise OptionError(option, f"applies to {other} only, and {name} is "
                                      f"{'an' if kind == 'operator' else 'a'} {kind}")
