"""The stack a benchmark times in its own fresh process, built as flopsbench's workers build it."""

from __future__ import annotations

import os


def pinned_stack(op: str, shape: str, core: int, convention: str):
    """In this process: pin to ``core``, set the allocator ``convention`` (flopsbench.allocator)
    before torch is imported, one torch thread; then OP's 10-layer stack on SHAPE as flopsbench
    builds it (the operator's defaults, seed 0, fp32, batch 1). Returns (module, input)."""
    os.sched_setaffinity(0, {core})
    from flopsbench import allocator

    allocator.apply(convention)
    import torch

    import flopsbench_zoo
    from flopsbench.build import build_case
    from flopsbench.spec import Execution, Shape, Workload

    torch.set_num_threads(1)
    definition = flopsbench_zoo.get_operator(op)
    workload = Workload(op, Shape.parse(shape), 10, tuple(definition.resolve({}).items()))
    return build_case(workload, Execution(cores=(core,)))
