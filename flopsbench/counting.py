"""FLOPs (fvcore) and parameters. 1 multiply-add = 1 FLOP, fvcore's and the paper's convention."""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass

import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # fvcore's import touches torch.jit.script
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import conv_flop_count, get_shape

from flopsbench.spec import FLOP_CONVENTION  # noqa: F401  (re-exported: the convention counted here)


@dataclass(frozen=True)
class FlopCount:
    total: int
    by_operator: dict[str, int]
    unsupported_ops: dict[str, int]
    zero_flop_ops: dict[str, int]  # calls of the ops fvcore ignores by design (counted as 0 FLOPs)


class ZeroListingFlopCountAnalysis(FlopCountAnalysis):
    """fvcore's analysis that also counts the calls of the ops on its ignore list (``relu``,
    ``cat``, reshapes...), which it otherwise drops silently: neither counted nor listed as
    unsupported. Each such op gets a handle (fvcore's public ``set_op_handle``) that counts
    its call and returns 0, which adds nothing to fvcore's Counters, so every FLOP count stays
    as it was, in the same single trace. ``prim::`` graph plumbing (constants, lists) is not
    listed: it runs no operator. It also counts ``torchvision::deform_conv2d``
    (``deform_conv2d_flops``), which fvcore would list as unsupported."""

    def __init__(self, model: torch.nn.Module, inputs) -> None:
        super().__init__(model, inputs)
        self._zero_flop_calls: Counter[str] = Counter()
        self.set_op_handle("torchvision::deform_conv2d", deform_conv2d_flops)
        # _ignored_ops is fvcore's ignore list as set for this analysis (fvcore has no public getter).
        self.set_op_handle(**{kind: self._call_counter(kind) for kind in sorted(self._ignored_ops)})

    def _call_counter(self, kind: str):
        def handle(inputs, outputs) -> int:
            self._zero_flop_calls[kind] += 1
            return 0
        return handle

    def zero_flop_ops(self) -> Counter[str]:
        """Calls of each ignored op in the traced graph (fvcore runs its analysis once, cached)."""
        self.total()
        return Counter(self._zero_flop_calls)


def deform_conv2d_flops(inputs, outputs) -> int:
    """``torchvision::deform_conv2d`` (CycleMLP's Cycle FC), which fvcore has no formula for:
    the multiply-adds of the convolution it applies, N·C_out·(C_in/groups)·kh·kw·H_out·W_out
    (fvcore's conv formula, on the weight's shape). The bilinear sampling at the offsets, the
    mask and the bias are not counted: CycleMLP's authors count it so (their fvcore handle
    ``sfc_flop_jit``), and their published FLOPs are reproduced with it. Its inputs are
    (input, weight, offset, mask, bias, stride…)."""
    return int(conv_flop_count(get_shape(inputs[0]), get_shape(inputs[1]), get_shape(outputs[0])))


def fvcore_analysis(module: torch.nn.Module, *inputs: torch.Tensor) -> ZeroListingFlopCountAnalysis:
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
            analysis = ZeroListingFlopCountAnalysis(module, inputs)
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            analysis.total()
    finally:
        for m in fused:
            m.fused_attn = True
    return analysis


def count_flops(module: torch.nn.Module, *inputs: torch.Tensor) -> FlopCount:
    """fvcore's count, with every op it counts as zero listed with its calls: those it has no
    formula for (``unsupported_ops``) and those it ignores by design (``zero_flop_ops``)."""
    analysis = fvcore_analysis(module, *inputs)
    return FlopCount(int(analysis.total()), dict(analysis.by_operator()), dict(analysis.unsupported_ops()),
                     dict(analysis.zero_flop_ops()))


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
