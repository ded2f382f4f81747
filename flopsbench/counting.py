"""FLOPs (fvcore) and parameters. 1 multiply-add = 1 FLOP, fvcore's and the paper's convention."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # fvcore's import touches torch.jit.script
    from fvcore.nn import FlopCountAnalysis

from flopsbench.spec import FLOP_CONVENTION  # noqa: F401  (re-exported: the convention counted here)


@dataclass(frozen=True)
class FlopCount:
    total: int
    by_operator: dict[str, int]
    unsupported_ops: dict[str, int]


def fvcore_analysis(module: torch.nn.Module, *inputs: torch.Tensor) -> FlopCountAnalysis:
    """fvcore's analysis, already run (its results are cached), without its warnings.

    fvcore has no formula for ``scaled_dot_product_attention``, so timm modules that use it
    (``fused_attn``) are traced through their explicit matmul path instead: same maths, and
    the attention FLOPs get counted (MobileViT then matches the paper's Table 3)."""
    fused = [m for m in module.modules() if getattr(m, "fused_attn", False) is True]
    for m in fused:
        m.fused_attn = False
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # fvcore's jit tracing warns about deprecated APIs
            analysis = FlopCountAnalysis(module, inputs)
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            analysis.total()
    finally:
        for m in fused:
            m.fused_attn = True
    return analysis


def count_flops(module: torch.nn.Module, *inputs: torch.Tensor) -> FlopCount:
    """fvcore's count, with the ops fvcore has no handle for listed (they count as zero)."""
    analysis = fvcore_analysis(module, *inputs)
    return FlopCount(int(analysis.total()), dict(analysis.by_operator()), dict(analysis.unsupported_ops()))


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_params_without_bn(model: torch.nn.Module) -> int:
    """Parameters outside BatchNorm layers (BN affine weight/bias excluded; buffers never count).

    This is the convention that reproduces the published FasterNet parameter counts: Table 8 /
    README 3.9/7.6/15.0/31.1/53.5/93.4 M are, at printed precision, the parameters of the conv
    and linear layers only (analytic 3.896/7.580/14.960/31.140/53.456/93.377 M). Counting BN
    affine parameters (3.905/.../93.465 M, what fvcore's ``parameter_count`` reports for the
    unfused model) or BN folded into conv biases (3.901/.../93.421 M) does not match all six.
    Table 3 prints 93.5 for L, so it is not consistently one convention."""
    return sum(p.numel() for m in model.modules() if not isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
               for p in m.parameters(recurse=False))
