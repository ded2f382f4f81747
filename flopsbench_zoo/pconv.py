"""Partial convolution (PConv, FasterNet Sec. 3.1): a k×k conv over the first c_p = c·r channels,
the other channels passed through untouched."""

from __future__ import annotations

from fractions import Fraction

import torch
from torch import nn

from flopsbench_zoo._registry import InvalidParameter, OperatorDef, register_operator
from flopsbench_zoo.conv import check_kernel

FORWARD_MODES = ("split_cat", "slicing")


def partial_channels(channels: int, ratio: float) -> int:
    """c_p = c·r, which must be a whole, positive number of channels."""
    exact = Fraction(channels) * Fraction(ratio).limit_denominator(1000)
    if exact.denominator != 1 or exact < 1 or exact > channels:
        raise InvalidParameter("ratio", f"{channels} channels × {ratio:g} is not a whole number "
                               "of channels between 1 and c; pick r with c·r integral, e.g. 1/4")
    return int(exact)


class PartialConv(nn.Module):
    """PConv with the official implementation's attribute names (``partial_conv3``), so that
    released FasterNet checkpoints load into models built from it.

    ``split_cat`` (default) splits, convolves the first part and concatenates: safe for training.
    ``slicing`` clones the input and writes the convolved channels in place: inference only.
    """

    def __init__(self, dim: int, ratio: float = 0.25, kernel_size: int = 3,
                 forward_mode: str = "split_cat"):
        super().__init__()
        if forward_mode not in FORWARD_MODES:
            raise InvalidParameter("forward_mode", f"{forward_mode!r} is not one of {FORWARD_MODES}")
        self.dim_conv3 = partial_channels(dim, ratio)
        self.dim_untouched = dim - self.dim_conv3
        self.forward_mode = forward_mode
        self.partial_conv3 = nn.Conv2d(self.dim_conv3, self.dim_conv3, kernel_size, stride=1,
                                       padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.forward_mode == "slicing":
            if self.training:
                raise RuntimeError("PConv forward_mode 'slicing' writes in place: inference only")
            x = x.clone()  # keep the caller's tensor (e.g. a residual shortcut) intact
            x[:, :self.dim_conv3] = self.partial_conv3(x[:, :self.dim_conv3])
            return x
        x1, x2 = torch.split(x, [self.dim_conv3, self.dim_untouched], dim=1)
        return torch.cat((self.partial_conv3(x1), x2), dim=1)

    def extra_repr(self) -> str:
        return f"dim_conv3={self.dim_conv3}, dim_untouched={self.dim_untouched}, forward_mode={self.forward_mode}"


def pconv_macs(c: int, h: int, w: int, kernel_size: int = 3, ratio: float = 0.25,
               forward_mode: str = "split_cat") -> int:
    """h·w·k²·c_p² multiply-adds (Eq. 4)."""
    cp = partial_channels(c, ratio)
    return h * w * kernel_size**2 * cp * cp


def pconv_memory_elements(c: int, h: int, w: int, batch: int = 1, kernel_size: int = 3,
                          ratio: float = 0.25, forward_mode: str = "split_cat") -> int:
    """h·w·2c_p + k²·c_p² elements (Eq. 5). It ignores the c - c_p untouched channels that a
    real split+cat or clone still copies; the measured counter shows those."""
    cp = partial_channels(c, ratio)
    return batch * h * w * 2 * cp + kernel_size**2 * cp * cp


def check_pconv(c: int, kernel_size: int = 3, ratio: float = 0.25,
                forward_mode: str = "split_cat") -> None:
    check_kernel(kernel_size)
    partial_channels(c, ratio)
    if forward_mode not in FORWARD_MODES:
        raise InvalidParameter("forward_mode", f"{forward_mode!r} is not one of {', '.join(FORWARD_MODES)}")


register_operator(OperatorDef(
    name="pconv",
    paper_label="PConv 3x3 (ours, r=1/4)",
    description="partial k×k convolution over c·r channels, r = 1/4 by default (Table 1 'PConv 3×3')",
    defaults={"kernel_size": 3, "ratio": 0.25, "forward_mode": "split_cat"},
    build=lambda c, kernel_size, ratio, forward_mode: PartialConv(c, ratio, kernel_size, forward_mode),
    macs=pconv_macs,
    memory_elements=pconv_memory_elements,
    check=check_pconv,
))
