"""Where a model's time, FLOPs and memory go: one entry per module at a chosen depth of the
module tree (depth 2 of FasterNet is its stages and patch mergings, depth 4 its blocks).

Each part is timed on its own in a worker, on the very input it receives inside the whole model
(captured with forward pre-hooks), with the timer the whole model's row was timed with (CUDA
graphs, L2 flushes, back-to-back calls, as asked); its FLOPs come from fvcore's per-module count
of the whole model, its bytes from the memory counter, both counted in the parent. The whole model
is timed in the same worker, in passes interleaved with its parts, so that a change in the
machine's speed affects both alike: the parts' medians then sum to a measured fraction of the
whole's (time outside the parts, or lost by timing each alone, is the gap), and each part's share
of time is of the whole model.

Torch-free at import: the parent's rounds loop checks a worker's times with ``check_times``."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Callable

from flopsbench.cpu import pinned
from flopsbench.spec import Execution, TimingBudget
from flopsbench.stats import noise_warnings, round_medians, summarize
from flopsbench.timing import collect, warm_up

if TYPE_CHECKING:
    import torch

SUM_TOLERANCE = 0.10  # the parts' medians may sum to 1 ± this × the whole's before a warning


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
    import torch

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
               timer_for: Callable[[Callable], Callable[[], float] | None] = lambda call: None,
               whole_call: Callable[[], object] | None = None,
               whole_timer: Callable[[], float] | None = None) -> tuple[dict, list[dict]]:
    """The whole model (``whole_call`` timed by ``whole_timer``, as its row was; by default
    ``model(x)`` on the wall clock) and each part, on the input it receives inside the whole
    model, timed by ``timer_for(call)`` (None: the wall clock). ``budget.rounds`` passes each
    time the whole, then every part, in turn (every other pass in reverse order, so none is
    always first), each taking its ``round_share`` of the budget. Returns the whole's and the
    parts' samples with the count each pass took (``pass_sizes``)."""
    import torch

    parts = modules_at_depth(model, depth)
    inputs = capture_inputs(model, x, [name for name, _ in parts])
    items = [({"samples_s": [], "pass_sizes": []}, whole_call or (lambda: model(x)), whole_timer)]
    for name, module in parts:
        if name in inputs:
            call = partial(module, *inputs[name])
            items.append(({"part": name, "samples_s": [], "pass_sizes": []}, call, timer_for(call)))
    with pinned(execution.threads, execution.cores), torch.inference_mode():
        for index in range(budget.rounds):
            share = budget.round_share(index)
            for record, call, time_once in items if index % 2 == 0 else items[::-1]:
                warm_up(time_once or call, share)  # through the timer: synchronous on a GPU
                samples = collect(call, share, time_once=time_once)
                record["samples_s"] += samples
                record["pass_sizes"].append(len(samples))
    whole, *timed = (record for record, _, _ in items)
    return whole, timed


def check_times(parts: list[dict], whole: dict) -> list[str]:
    """The parent's checks of a breakdown's times (``median_s`` and ``samples_s`` of each part
    and of the whole, ``pass_sizes`` where known): sets ``whole["parts_sum_ratio"]`` (the parts'
    medians summed over the whole's median; None unless all were timed) and each timed part's
    ``warnings`` (the noise checks of a row); returns the row's warnings: one if the sum is off by
    more than SUM_TOLERANCE, one naming the noisy parts."""
    medians = [part.get("median_s") for part in parts]
    timed = bool(parts) and bool(whole.get("median_s")) and None not in medians
    whole["parts_sum_ratio"] = sum(medians) / whole["median_s"] if timed else None
    for item in [*parts, whole]:
        item["warnings"] = _noise(item)
    warnings = []
    ratio = whole["parts_sum_ratio"]
    if ratio is not None and abs(ratio - 1) > SUM_TOLERANCE:
        warnings.append(f"breakdown: the parts' medians sum to {ratio:.2f} × the whole model's (timed side by "
                        "side in one worker); the gap is time spent outside the parts (glue ops, launches) or a "
                        "difference made by timing each part alone (its own launches and synchronisation, other "
                        "cache contents)")
    noisy = [part["part"] for part in parts if part["warnings"]] + (["the whole model"] if whole["warnings"] else [])
    if noisy:
        warnings.append(f"breakdown: noisy timings of {', '.join(noisy)}; their own warnings are in the report's "
                        "breakdown records; raise --breakdown-time, or pin to an idle core with --cores")
    return warnings


def _noise(item: dict) -> list[str]:
    """A row's noise checks on one timed item; drift between passes only with 3+ samples in each."""
    samples, sizes = item.get("samples_s") or [], item.get("pass_sizes") or []
    if not samples:
        return []
    medians = round_medians(samples, sizes) if sizes and min(sizes) >= 3 else []
    return noise_warnings(summarize(samples), medians)
