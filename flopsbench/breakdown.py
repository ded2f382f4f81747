"""Where a model's time, FLOPs and memory go: one entry per module at a chosen depth of the
module tree (depth 2 of FasterNet is its stages and patch mergings, depth 4 its blocks).

Each part is timed on its own in a worker, on the very input it receives inside the whole model
(captured with forward pre-hooks), with the same timing loop as whole workloads; its FLOPs come
from fvcore's per-module count of the whole model, its bytes from the memory counter, both
counted in the parent."""

from __future__ import annotations

from typing import Callable

import torch

from flopsbench.cpu import pinned
from flopsbench.spec import Execution, TimingBudget
from flopsbench.timing import collect, warm_up


def modules_at_depth(model: torch.nn.Module, depth: int) -> list[tuple[str, torch.nn.Module]]:
    """Modules whose dotted name has ``depth`` parts, plus shallower leaves, in forward order
    of registration; together they cover the model once."""
    parts = []
    for name, module in model.named_modules():
        level = 0 if not name else name.count(".") + 1
        if level == depth or (0 < level < depth and not any(True for _ in module.children())):
            parts.append((name, module))
    return parts


def capture_inputs(model: torch.nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, tuple]:
    """The positional inputs each named module receives during one forward pass of ``model``."""
    modules = dict(model.named_modules())
    inputs: dict[str, tuple] = {}

    def hook_for(name: str) -> Callable:
        def hook(module, args):
            inputs.setdefault(name, tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args))
        return hook

    handles = [modules[name].register_forward_pre_hook(hook_for(name)) for name in names]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return inputs


def count_parts(model: torch.nn.Module, x: torch.Tensor, depth: int) -> list[dict]:
    """The parts at ``depth`` with their FLOPs (fvcore's per-module count of the whole model) and
    bytes (the memory counter, on the input each part receives); their times come from a
    worker (``time_parts``). Counting happens in the parent, never where parts are timed."""
    from flopsbench.counting import fvcore_analysis  # imported here: a worker never loads the counters
    from flopsbench.memory import count_memory_access

    parts = modules_at_depth(model, depth)
    inputs = capture_inputs(model, x, [name for name, _ in parts])
    flops_by_module = fvcore_analysis(model, x).by_module()
    return [{"part": name, "type": type(module).__name__, "flops": int(flops_by_module.get(name, 0)),
             "memory_bytes": count_memory_access(module, *inputs[name]).total_bytes, "samples_s": [], "median_s": None}
            for name, module in parts if name in inputs]  # a part not called in forward (an unused head) is left out


def time_parts(model: torch.nn.Module, x: torch.Tensor, depth: int, execution: Execution, budget: TimingBudget,
               timer_for: Callable[[Callable], Callable[[], float] | None] = lambda call: None) -> list[dict]:
    """Each part timed on its own, on the input it receives inside the whole model;
    ``timer_for(fn)`` times a part (CUDA events on a GPU), None: the wall clock."""
    parts = modules_at_depth(model, depth)
    inputs = capture_inputs(model, x, [name for name, _ in parts])
    timed = []
    for name, module in parts:
        if name not in inputs:
            continue
        args = inputs[name]
        call = lambda: module(*args)  # noqa: E731
        time_once = timer_for(call)  # synchronous, so also the warm-up call
        with pinned(execution.threads, execution.cores), torch.inference_mode():
            warm_up(time_once or call, budget)
            samples = collect(call, budget, time_once=time_once)
        timed.append({"part": name, "samples_s": samples})
    return timed
