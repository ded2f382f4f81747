"""Folding BatchNorm into the convolution whose output it normalises, for inference (the paper fuses BN).

The pairs come from one executed forward pass, not from the order in which modules are
registered: a BN registered after a conv may run before it, or on another tensor, and a fresh BN
is so nearly the identity that folding it into the wrong conv changes the outputs by almost
nothing. A conv's output is watched at the level of ATen operations (a ``TorchDispatchMode``),
which sees every read of it, whatever module or function makes it; forward hooks say which
module produced and which BN consumed it. This works on any model that runs, FX-traceable or not.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.utils._pytree import tree_leaves

from flopsbench_zoo.dispatch_mode import PlainDispatchMode


def fuse_bn(model: nn.Module, x: torch.Tensor, inplace: bool = False) -> nn.Module:
    """``fold_bn(model, conv_bn_pairs(model, x))``: every BN that can be folded, folded.
    In FasterNet that is patch_embed.proj+norm, each PatchMerging's reduction+norm and each
    MLP's first conv + BN. ``x``: an input the model runs on (only the path it takes matters, so
    one image will do). Returns a fused copy unless ``inplace``."""
    return fold_bn(model, conv_bn_pairs(model, x), inplace)


def conv_bn_pairs(model: nn.Module, x: torch.Tensor) -> list[tuple[str, str]]:
    """The (conv name, BN name) pairs, in execution order, that one forward pass of ``x`` shows
    to be foldable: a BatchNorm2d with running statistics whose input is the output of a Conv2d,
    where that output is read by nothing else (no other op, not returned), and the conv and the
    BN each run once. Exact types only: subclasses (timm's BatchNormAct2d, weight-standardised
    convs) do more than the fold accounts for. A module registered under two names is left
    out, since replacing it under one would not replace it under the other. The model must be
    in eval mode; the forward pass runs without gradients and leaves the model as it was."""
    _require_eval(model)
    names: dict[nn.Module, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        names.setdefault(module, []).append(name)
    named = {module: found[0] for module, found in names.items() if len(found) == 1 and found[0]}
    convs = [m for m in named if type(m) is nn.Conv2d and not m.training]
    bns = [m for m in named if type(m) is nn.BatchNorm2d and not m.training and m.running_mean is not None]

    trace = _Trace()
    hooks = [conv.register_forward_hook(trace.conv_ran) for conv in convs]
    for bn in bns:
        hooks += [bn.register_forward_pre_hook(trace.bn_starts), bn.register_forward_hook(trace.bn_ended)]
    try:
        with torch.no_grad(), trace:
            outputs = tree_leaves(model(x))
    finally:
        for hook in hooks:
            hook.remove()

    pairs = []
    for bn, inputs in trace.bn_inputs.items():
        conv = trace.producer.get(id(inputs[0]))
        if (len(inputs) == 1 and conv is not None and len(trace.conv_outputs[conv]) == 1
                and set(trace.readers[id(inputs[0])]) == {bn} and not any(out is inputs[0] for out in outputs)):
            pairs.append((named[conv], named[bn]))
    return pairs


def fold_bn(model: nn.Module, pairs: list[tuple[str, str]], inplace: bool = False) -> nn.Module:
    """Fold each BN of ``pairs`` (module names, as from ``conv_bn_pairs``) into its conv, which
    gains a bias; the BN becomes ``nn.Identity`` so that key paths stay put. The fold is computed
    in fp32 and the result cast to the conv's dtype: folding in fp16/bf16 rounds each step (about
    twice the error). The model must be in eval mode (BN's running statistics are what gets
    folded). Returns a fused copy unless ``inplace``."""
    _require_eval(model)
    if not inplace:
        model = copy.deepcopy(model)
    for conv_name, bn_name in pairs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        fused = fuse_conv_bn_eval(copy.deepcopy(conv).float(), copy.deepcopy(bn).float())
        _replace(model, conv_name, fused.to(conv.weight.dtype))
        _replace(model, bn_name, nn.Identity())
    return model


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm2d of ``model`` random running statistics and affine parameters, in
    place (seeded): mean ~ N(0, 1), var ~ U(0.5, 2), weight ~ U(0.5, 1.5), bias ~ N(0, 0.5).
    Fresh BN is nearly the identity, so only then does folding a BN into the wrong conv show in
    the outputs. Returns the model."""
    generator = torch.Generator().manual_seed(seed)

    def normal(n: int, std: float) -> torch.Tensor:
        return std * torch.randn(n, generator=generator)

    def uniform(n: int, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm2d):
                n = bn.num_features
                if bn.running_mean is not None:
                    bn.running_mean.copy_(normal(n, 1.0))
                    bn.running_var.copy_(uniform(n, 0.5, 2.0))
                if bn.weight is not None:
                    bn.weight.copy_(uniform(n, 0.5, 1.5))
                    bn.bias.copy_(normal(n, 0.5))
    return model


class _Trace(PlainDispatchMode):
    """One forward pass, as the hooks and ATen see it: each watched conv's outputs, each watched
    BN's inputs, and for every conv output the BN running (None: none) at each op that read it.
    The outputs are held until the trace is dropped, so that their ids stay unique."""

    def __init__(self):
        super().__init__()
        self.conv_outputs: dict[nn.Module, list[torch.Tensor]] = {}
        self.producer: dict[int, nn.Module] = {}  # id(conv output) -> conv
        self.readers: dict[int, list[nn.Module | None]] = {}
        self.bn_inputs: dict[nn.Module, list] = {}
        self.running_bn: nn.Module | None = None

    def conv_ran(self, conv, args, output) -> None:
        self.conv_outputs.setdefault(conv, []).append(output)
        self.producer[id(output)] = conv
        self.readers[id(output)] = []

    def bn_starts(self, bn, args) -> None:
        self.bn_inputs.setdefault(bn, []).append(args[0] if args else None)
        self.running_bn = bn

    def bn_ended(self, bn, args, output) -> None:
        self.running_bn = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        for arg in tree_leaves((args, kwargs or {})):
            if isinstance(arg, torch.Tensor) and id(arg) in self.readers:
                self.readers[id(arg)].append(self.running_bn)
        return func(*args, **(kwargs or {}))


def _require_eval(model: nn.Module) -> None:
    if model.training:
        raise ValueError("fuse_bn folds BN running statistics: call model.eval() first")


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, module)
