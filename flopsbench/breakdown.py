"""Where a model's time, FLOPs and memory go: one entry per module at a chosen depth of the
module tree (depth 2 of FasterNet is its stages and patch mergings, depth 4 its blocks).

Each part is timed on its own, on the very input it receives inside the whole model (captured
with forward pre-hooks), with the same timing loop as whole workloads; its FLOPs come from
fvcore's per-module count of the whole model, its bytes from the memory counter."""

from __future__ import annotations

import statistics
from typing import Callable

import torch

from flopsbench.counting import fvcore_analysis
from flopsbench.cpu import pinned
from flopsbench.memory import count_memory_access
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


def module_breakdown(model: torch.nn.Module, x: torch.Tensor, depth: int, execution: Execution,
                     budget: TimingBudget, timer_for: Callable[[Callable], Callable[[], float]] | None = None
                     ) -> list[dict]:
    """``timer_for(fn)`` times a part (CUDA events on a GPU); default the wall clock."""
    parts = modules_at_depth(model, depth)
    inputs = capture_inputs(model, x, [name for name, _ in parts])
    flops_by_module = fvcore_analysis(model, x).by_module()
    rows = []
    for name, module in parts:
        if name not in inputs:
            continue  # not called in forward (e.g. an unused head)
        args = inputs[name]
        call = lambda: module(*args)  # noqa: E731
        time_once = timer_for(call) if timer_for else None  # synchronous, so also the warm-up call
        with pinned(execution.threads, execution.cores), torch.inference_mode():
            warm_up(time_once or call, budget)
            samples = collect(call, budget, time_once=time_once)
        memory = count_memory_access(module, *args)
        rows.append({"part": name, "type": type(module).__name__, "flops": int(flops_by_module.get(name, 0)),
                     "memory_bytes": memory.total_bytes, "samples_s": samples,
                     "median_s": statistics.median(samples) if samples else None})
    return rows
