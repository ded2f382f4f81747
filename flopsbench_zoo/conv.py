"""Regular, grouped, depthwise and pointwise convolution: one builder, four entries of data."""

from __future__ import annotations

from torch import nn

from flopsbench_zoo._registry import InvalidParameter, OperatorDef, register_operator


def conv_layer(channels: int, kernel_size: int = 3, groups: int = 1) -> nn.Conv2d:
    """c -> c conv, stride 1, same padding, no bias (the paper's Table 1 layer)."""
    return nn.Conv2d(channels, channels, kernel_size, stride=1, padding=kernel_size // 2,
                     groups=groups, bias=False)


def conv_macs(c: int, h: int, w: int, kernel_size: int = 3, groups: int = 1) -> int:
    """h·w·k²·c²/g multiply-adds (paper: h·w·k²·c² for g = 1, h·w·k²·c for depthwise)."""
    return h * w * kernel_size**2 * c * (c // groups)


def conv_memory_elements(c: int, h: int, w: int, batch: int = 1, kernel_size: int = 3,
                         groups: int = 1) -> int:
    """h·w·2c + k²·c²/g elements: input and output maps plus the weights (Eqs. 2 and 3)."""
    return batch * h * w * 2 * c + kernel_size**2 * c * (c // groups)


def check_kernel(kernel_size: int) -> None:
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise InvalidParameter("kernel_size", f"{kernel_size} must be a positive odd number "
                               "so that same padding keeps h and w")


def check_groups(c: int, kernel_size: int = 3, groups: int = 1) -> None:
    check_kernel(kernel_size)
    if groups < 1 or c % groups:
        raise InvalidParameter("groups", f"{c} channels are not divisible by {groups} groups")


register_operator(OperatorDef(
    name="conv",
    paper_label="Conv 3x3",
    description="regular k×k convolution (Table 1 'Conv 3×3')",
    defaults={"kernel_size": 3},
    build=lambda c, kernel_size: conv_layer(c, kernel_size),
    macs=lambda c, h, w, kernel_size: conv_macs(c, h, w, kernel_size),
    memory_elements=lambda c, h, w, batch, kernel_size: conv_memory_elements(c, h, w, batch, kernel_size),
    check=lambda c, kernel_size: check_kernel(kernel_size),
))

register_operator(OperatorDef(
    name="gconv",
    paper_label="GConv 3x3 (16 groups)",
    description="grouped k×k convolution, 16 groups by default (Table 1 'GConv 3×3')",
    defaults={"kernel_size": 3, "groups": 16},
    build=conv_layer,
    macs=conv_macs,
    memory_elements=conv_memory_elements,
    check=check_groups,
))

register_operator(OperatorDef(
    name="dwconv",
    paper_label="DWConv 3x3",
    description="depthwise k×k convolution, groups = channels (Table 1 'DWConv 3×3')",
    defaults={"kernel_size": 3},
    build=lambda c, kernel_size: conv_layer(c, kernel_size, groups=c),
    macs=lambda c, h, w, kernel_size: conv_macs(c, h, w, kernel_size, groups=c),
    memory_elements=lambda c, h, w, batch, kernel_size: conv_memory_elements(
        c, h, w, batch, kernel_size, groups=c),
    check=lambda c, kernel_size: check_kernel(kernel_size),
))

register_operator(OperatorDef(
    name="pwconv",
    description="pointwise 1×1 convolution (the paper's PWConv)",
    defaults={},
    build=lambda c: conv_layer(c, kernel_size=1),
    macs=lambda c, h, w: conv_macs(c, h, w, kernel_size=1),
    memory_elements=lambda c, h, w, batch: conv_memory_elements(c, h, w, batch, kernel_size=1),
))
