"""FLOPs (fvcore) and parameters. 1 multiply-add = 1 FLOP, fvcore's and the paper's convention."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # fvcore's import touches torch.jit.script
    from fvcore.nn import FlopCountAnalysis

FLOP_CONVENTION = "fvcore: 1 multiply-add = 1 FLOP (FasterNet paper, footnote 1)"


@dataclass(frozen=True)
class FlopCount:
    total: int
    by_operator: dict[str, int]
    unsupported_ops: dict[str, int]


def count_flops(module: torch.nn.Module, *inputs: torch.Tensor) -> FlopCount:
    """fvcore's count, with the ops fvcore has no handle for listed (they count as zero)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # fvcore's jit tracing warns about deprecated APIs
        analysis = FlopCountAnalysis(module, inputs)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        total = int(analysis.total())
        return FlopCount(total, dict(analysis.by_operator()), dict(analysis.unsupported_ops()))


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
