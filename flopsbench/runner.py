"""Runs workloads (operators or models): build → count (FLOPs, params, memory) → time in
workers → result rows.

Count here, time there: this process builds and counts every case (fvcore, the memory
counter, the BN-fusion check, and its backend's staging, e.g. the ONNX export), always on the
CPU, and never times anything. Timing happens in fresh worker processes (``flopsbench.rounds``),
which build each case again from its spec and seed. A failure inside one case becomes an error
row; Ctrl-C (KeyboardInterrupt) passes through, after the rows are finished, so that the
caller keeps what is done."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Callable, Iterable, Iterator

import torch

import flopsbench_zoo
from flopsbench.backends import Backend, backend_for
from flopsbench.breakdown import count_parts
from flopsbench.build import build_case
from flopsbench.counting import count_flops, count_params, count_params_without_bn
from flopsbench.memory import count_memory_access
from flopsbench.report import Report, Row, error_line
from flopsbench.rounds import Case, measure
from flopsbench.spec import Execution, Workload
from flopsbench_zoo.fusion import conv_bn_pairs, fold_bn, randomize_bn

# A fused copy with random BN statistics must agree with the same copy unfused this closely, in fp32
# (relative, and absolute × the outputs' magnitude).
FUSION_TOLERANCE = 1e-3


def count_case(row: Row, module: torch.nn.Module, x: torch.Tensor, execution: Execution) -> torch.nn.Module:
    """Fill in FLOPs, params and memory access; return the module as timed (BN-fused models
    are counted both ways: the paper's Table 3 counts the unfused model, Table 8 the fused)."""
    flops = count_flops(module, x)
    row.flops, row.flops_by_operator, row.unsupported_ops = flops.total, flops.by_operator, flops.unsupported_ops
    row.zero_flop_ops = flops.zero_flop_ops
    row.params = count_params(module)
    if row.workload.kind == "model":
        row.params_without_bn = count_params_without_bn(module)
        row.flops_unfused = flops.total
        if row.workload.fuse_bn:
            module, row.bn_folded = fused_checked(module, x)
            row.flops = row.flops_fused = count_flops(module, x).total
    else:
        op = flopsbench_zoo.get_operator(row.workload.name)
        shape, params, layers = row.workload.shape, row.workload.param_dict, row.workload.layers
        row.flops_analytic = layers * execution.batch * op.macs(shape.c, shape.h, shape.w, **params)
        row.memory_ideal_elements = layers * op.memory_elements(shape.c, shape.h, shape.w, execution.batch, **params)
        row.memory_ideal_bytes = row.memory_ideal_elements * x.element_size()
    row.memory_impl = count_memory_access(module, x).to_dict()
    return module


def fused_checked(module: torch.nn.Module, x: torch.Tensor) -> tuple[torch.nn.Module, list[tuple[str, str]]]:
    """BN folded into the convs whose outputs it normalises (``conv_bn_pairs``), once the pairing
    is checked: on an fp32 copy whose BN statistics and affine parameters are random, the copy
    folded with the same pairs must compute what the copy computes. (Fresh BN is nearly the
    identity: on the module itself, even a wrong pairing would pass.) Returns the folded module and
    the pairs, which the workers fold in turn without tracing."""
    probe, x32 = copy.deepcopy(module).float(), x.float()
    pairs = conv_bn_pairs(probe, x32)
    randomize_bn(probe)
    with torch.inference_mode():
        expected = probe(x32)
        got = fold_bn(probe, pairs, inplace=True)(x32)
    scale = expected.abs().max().item() or 1.0  # relative to the outputs' magnitude
    if not torch.allclose(got, expected, rtol=FUSION_TOLERANCE, atol=FUSION_TOLERANCE * scale):
        worst = (got - expected).abs().max().item()
        raise RuntimeError(f"BN fusion changed the outputs of a copy with random BN statistics (max abs diff "
                           f"{worst:.3g} > {FUSION_TOLERANCE:g} × {scale:.3g}); time it with --no-fuse-bn")
    return fold_bn(module, pairs), pairs


# Row fields that count something of a whole batch (affine in the batch size: weights once, the
# rest per image), and of which the parent counts batches 1 and 2 only (see count_and_stage).
BATCH_COUNTS = ("params", "params_without_bn", "flops", "flops_analytic", "flops_unfused", "flops_fused",
                "flops_by_operator", "unsupported_ops", "zero_flop_ops", "memory_ideal_elements",
                "memory_ideal_bytes", "memory_impl", "breakdown")


def count_and_stage(row: Row, execution: Execution, backend: Backend) -> Case:
    """Build on the CPU (counts do not depend on the device, and the parent then holds no GPU
    memory a worker could miss), count, and stage what the backend's workers need. Beyond batch
    2 the counts are those of batches 1 and 2, extended along the line through them: every count
    is affine in the batch (weights once, activations per image), and a GPU batch counted on the
    CPU could take far more host memory and time than the timing itself."""
    if execution.batch <= 2:
        module, x = count_at(row, execution)
    else:
        one, two = Row(row.workload), Row(row.workload)
        count_at(one, replace(execution, batch=1))
        module, _ = count_at(two, replace(execution, batch=2))
        for name in BATCH_COUNTS:
            setattr(row, name, extended(getattr(one, name), getattr(two, name), execution.batch))
        row.bn_folded = two.bn_folded
        x = None
    staged = backend.stage(row, module, x, execution)  # x None: built by the backend if it needs it
    return Case(row, {"workload": row.workload.to_dict(), "bn_pairs": row.bn_folded, **staged})


def count_at(row: Row, execution: Execution) -> tuple[torch.nn.Module, torch.Tensor]:
    """Count ``row`` at ``execution``'s batch; the module as timed (fused if asked) and its input."""
    module, x = build_case(row.workload, execution, device="cpu")
    module = count_case(row, module, x, execution)
    if execution.breakdown_depth > 0 and row.workload.kind == "model":
        row.breakdown = count_parts(module, x, execution.breakdown_depth)
    return module, x


def extended(at_one, at_two, batch: int):
    """A count at ``batch`` from the same count at batches 1 and 2, field by field (dicts, lists
    of dicts and ints; anything else, e.g. a name, is taken as it is at batch 1)."""
    if isinstance(at_one, bool) or at_one is None:
        return at_one
    if isinstance(at_one, int) and isinstance(at_two, int):
        return at_one + (batch - 1) * (at_two - at_one)
    if isinstance(at_one, dict) and isinstance(at_two, dict):
        return {key: extended(value, at_two.get(key), batch) for key, value in at_one.items()}
    if isinstance(at_one, list) and isinstance(at_two, list) and len(at_one) == len(at_two):
        return [extended(a, b, batch) for a, b in zip(at_one, at_two)]
    return at_one


def run_all(report: Report, workloads: Iterable[Workload],
            on_step: Callable[[Report, str], None] = lambda report, label: None, transport=None) -> Report:
    """Count every workload (rows appear as they are counted), then time them in workers.
    ``on_step`` runs after each counted case and each timed (case, round), e.g. to save
    partial results; ``report.complete`` stays False if interrupted."""
    execution = report.execution
    backend = backend_for(execution)
    transport = transport or backend.transport()

    def counted() -> Iterator[Case]:
        for workload in workloads:
            row = Row(workload)
            report.rows.append(row)
            try:
                yield count_and_stage(row, execution, backend)
            except Exception as exc:  # noqa: BLE001 -- a failing case is data, not a crash
                row.status, row.error = "error", error_line(exc)
            on_step(report, f"counted {workload.name} {workload.shape}")

    measure(report, counted(), transport, on_step)
    return report
