"""Building a case from its spec: the same module and input wherever it is built, the parent
that counts it and every worker that times it (seeded, eval mode)."""

from __future__ import annotations

import torch

import flopsbench_zoo
from flopsbench.spec import Execution, Workload
from flopsbench_zoo.baselines import resolve_model
from flopsbench_zoo.fusion import fold_bn
from flopsbench_zoo.weights import load_official_weights

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def build_case(workload: Workload, execution: Execution, device: str = "cpu",
               bn_pairs: list[tuple[str, str]] | None = None) -> tuple[torch.nn.Module, torch.Tensor]:
    """The module in eval mode and its input on ``device``, deterministic for a given seed;
    ``bn_pairs``: the (conv, BN) module names to fold, as the parent found and checked them
    (``runner.fused_checked``): a worker folds them without tracing anything, since a forward
    pass under a dispatch mode would change the speed of what it times next."""
    torch.manual_seed(execution.seed)
    if workload.kind == "model":
        module = resolve_model(workload.name).create(**workload.param_dict).eval()
        if workload.weights:
            load_official_weights(module, workload.weights)
    else:
        op = flopsbench_zoo.get_operator(workload.name)
        module = op.build_stack(workload.shape.c, workload.layers, **workload.param_dict).eval()
    x = build_input(workload, execution, device)
    if bn_pairs and workload.fuse_bn:  # folded in fp32, then cast: a fold in fp16/bf16 rounds twice as much
        module = fold_bn(module, bn_pairs, inplace=True)
    module = module.to(device=device, dtype=x.dtype)
    if execution.option("channels_last"):
        module, x = module.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    return module, x


def bn_pairs_from(job_value) -> list[tuple[str, str]]:
    """The (conv, BN) pairs of a worker's job, checked: pairs of module names, nothing else."""
    if not isinstance(job_value, list):
        return []
    return [(pair[0], pair[1]) for pair in job_value
            if isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(name, str) for name in pair)]


def build_input(workload: Workload, execution: Execution, device: str = "cpu") -> torch.Tensor:
    """A batch of standard-normal input of the workload's shape and the run's dtype. Made on the
    device itself: a batch too large for a GPU fails there as a GPU out-of-memory error, not in
    host memory on its way over."""
    shape = workload.shape
    return torch.randn(execution.batch, shape.c, shape.h, shape.w, device=device).to(TORCH_DTYPES[execution.dtype])
