"""A flopsbench plugin: an operator and a model of your own, counted, timed and exported like the
built-in ones.

    flopsbench list --plugin examples/custom_operator.py
    flopsbench ops --plugin examples/custom_operator.py --op ghostconv --shape 96x56x56
    flopsbench model --plugin examples/custom_operator.py ghostnet_toy
    flopsbench export --plugin examples/custom_operator.py ghostconv -o ghostconv.onnx

The operator is GhostNet's Ghost module (Han et al., CVPR 2020), ratio 2: half the output
channels come from a k×k convolution, the other half from a cheap 3×3 depthwise convolution of
those. The model stacks Ghost modules into a toy classifier. A plugin only registers: the
harness builds the module from the registered entry (in the parent, which counts, and again in
every worker, which times), stacks ``layers`` copies of an operator, and holds the analytic FLOP
and memory formulas given here against what it counts.

An installed package makes its plugin load always by declaring an entry point::

    [project.entry-points."flopsbench.plugins"]
    ghost = "my_package.flopsbench_plugin"          # a module that registers on import
"""

from __future__ import annotations

import torch
from torch import nn

from flopsbench_zoo import InvalidParameter, ModelDef, OperatorDef, register_model, register_operator

CHEAP_KERNEL = 3  # the depthwise "cheap operation"


class GhostConv(nn.Module):
    """c -> c: a k×k conv to c/2 channels, then a 3×3 depthwise conv of those, concatenated."""

    def __init__(self, channels: int, kernel_size: int = 1):
        super().__init__()
        half = channels // 2
        self.primary = nn.Conv2d(channels, half, kernel_size, padding=kernel_size // 2, bias=False)
        self.cheap = nn.Conv2d(half, half, CHEAP_KERNEL, padding=CHEAP_KERNEL // 2, groups=half, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary(x)
        return torch.cat((y, self.cheap(y)), dim=1)


def ghost_macs(c: int, h: int, w: int, kernel_size: int = 1) -> int:
    """h·w·(k²·c·c/2 + 3²·c/2) multiply-adds: the primary conv and the depthwise one."""
    half = c // 2
    return h * w * (kernel_size**2 * c * half + CHEAP_KERNEL**2 * half)


def ghost_memory_elements(c: int, h: int, w: int, batch: int = 1, kernel_size: int = 1) -> int:
    """h·w·2c + k²·c·c/2 + 3²·c/2 elements: the input and output maps plus the weights (as the
    paper counts a conv; the intermediate map and the concatenation's copy are left to the
    measured counter)."""
    half = c // 2
    return batch * h * w * 2 * c + kernel_size**2 * c * half + CHEAP_KERNEL**2 * half


def check_ghost(c: int, kernel_size: int = 1) -> None:
    if c % 2:
        raise InvalidParameter("shape", f"{c} channels: a Ghost module needs an even number")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise InvalidParameter("kernel_size", f"{kernel_size} must be a positive odd number")


register_operator(OperatorDef(
    name="ghostconv",
    description="Ghost module, ratio 2: k×k conv to c/2, 3×3 depthwise to the other c/2 (plugin example)",
    defaults={"kernel_size": 1},
    build=GhostConv,
    macs=ghost_macs,
    memory_elements=ghost_memory_elements,
    check=check_ghost,
))


def ghostnet_toy(num_classes: int = 1000, width: int = 32) -> nn.Module:
    """Stem (3×3 conv, stride 2), four Ghost modules with BN and ReLU, global pooling, classifier."""
    if num_classes < 1:
        raise InvalidParameter("num_classes", f"{num_classes} must be at least 1")
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                               nn.ReLU()]
    for _ in range(4):
        layers += [GhostConv(width, kernel_size=1), nn.BatchNorm2d(width), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))


register_model(ModelDef(
    name="ghostnet_toy",
    description="a toy classifier of four Ghost modules (plugin example), random init",
    build=ghostnet_toy,
    defaults={"num_classes": 1000, "width": 32},
    input_resolution=64,
))
