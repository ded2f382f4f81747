"""Runs workloads (operators or models) on the CPU: build → count (FLOPs, params, memory) →
time → result rows.

Timing is interleaved: every case is built and counted first, then sampled in ``rounds`` that
visit all cases in turn (see TimingBudget). A failure inside one case becomes an error row;
Ctrl-C (KeyboardInterrupt) passes through so that the caller keeps what is done."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

import operators
from flopsbench import cuda
from flopsbench.board import ARM_NOTE
from flopsbench.breakdown import module_breakdown
from flopsbench.counting import count_flops, count_params, count_params_without_bn
from flopsbench.memory import count_memory_access
from flopsbench.onnx_export import cached_export, export_metadata
from flopsbench.ort_runtime import check_outputs, make_session
from flopsbench.report import Report, Row, error_line, utc_now
from flopsbench.spec import Execution, TimingBudget, Workload
from flopsbench.sampling import finish_row, sample_round
from operators.baselines import resolve_model
from operators.fusion import fuse_bn
from operators.weights import load_official_weights

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# onnxruntime's output must match PyTorch's within rtol, and atol × the output's largest magnitude.
ORT_RTOL, ORT_ATOL = 1e-3, 1e-4
# The CUDA knobs a row records (and their defaults).
CUDA_DEFAULTS = {"cudnn_benchmark": True, "cuda_graph": False, "l2_flush": False, "channels_last": False}
# Fused and unfused outputs must agree this closely (relative, and absolute × the outputs' magnitude).
FUSION_TOLERANCE = {torch.float32: 1e-3, torch.float16: 5e-2, torch.bfloat16: 1e-1}


@dataclass
class Case:
    """A row and what it needs to be timed: the built module, its input, and the call to time
    (the module itself, or an onnxruntime session running its export)."""

    row: Row
    module: torch.nn.Module | None = None
    x: torch.Tensor | None = None
    call: Callable[[], object] | None = None
    timer: Callable[[], float] | None = None  # times one call (CUDA events); None: the wall clock


def build_case(workload: Workload, execution: Execution) -> tuple[torch.nn.Module, torch.Tensor]:
    """The module in eval mode and its input, deterministic for a given seed."""
    torch.manual_seed(execution.seed)
    if workload.kind == "model":
        module = resolve_model(workload.name).create(**workload.param_dict).eval()
        if workload.weights:
            load_official_weights(module, workload.weights)
    else:
        op = operators.get_operator(workload.name)
        module = op.build_stack(workload.shape.c, workload.layers, **workload.param_dict).eval()
    shape, dtype = workload.shape, TORCH_DTYPES[execution.dtype]
    device = torch.device("cuda" if execution.device == "cuda" else "cpu")
    # Made on the device itself: a batch too large for the GPU fails there as a GPU out-of-memory
    # error, not in host memory on its way over.
    x = torch.randn(execution.batch, shape.c, shape.h, shape.w, device=device).to(dtype)
    module = module.to(device=device, dtype=dtype)
    if execution.option("channels_last"):
        module, x = module.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    return module, x


def count_case(row: Row, module: torch.nn.Module, x: torch.Tensor, execution: Execution) -> torch.nn.Module:
    """Fill in FLOPs, params and memory access; return the module to time (BN-fused models
    are counted both ways: the paper's Table 3 counts the unfused model, Table 8 the fused)."""
    flops = count_flops(module, x)
    row.flops, row.flops_by_operator, row.unsupported_ops = flops.total, flops.by_operator, flops.unsupported_ops
    row.params = count_params(module)
    if row.workload.kind == "model":
        row.params_without_bn = count_params_without_bn(module)
        row.flops_unfused = flops.total
        if row.workload.fuse_bn:
            module = fused_checked(module, x)
            row.flops = row.flops_fused = count_flops(module, x).total
    else:
        op = operators.get_operator(row.workload.name)
        shape, params, layers = row.workload.shape, row.workload.param_dict, row.workload.layers
        row.flops_analytic = layers * execution.batch * op.macs(shape.c, shape.h, shape.w, **params)
        row.memory_ideal_elements = layers * op.memory_elements(shape.c, shape.h, shape.w, execution.batch, **params)
        row.memory_ideal_bytes = row.memory_ideal_elements * x.element_size()
    row.memory_impl = count_memory_access(module, x).to_dict()
    return module


def fused_checked(module: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """BN folded into the preceding convs, refusing a fusion that changes the outputs."""
    fused = fuse_bn(module)
    with torch.inference_mode():
        expected, got = module(x), fused(x)
    # Relative to the outputs' magnitude; GPUs compute fp32 convs in TF32 by default, hence looser there.
    tolerance = FUSION_TOLERANCE[x.dtype] * (10 if x.is_cuda and x.dtype == torch.float32 else 1)
    scale = expected.abs().max().item() or 1.0
    if not torch.allclose(got, expected, rtol=tolerance, atol=tolerance * scale):
        worst = (got - expected).abs().max().item()
        raise RuntimeError(f"BN fusion changed the outputs (max abs diff {worst:.3g} > {tolerance:g} × {scale:.3g}); "
                           "time it with --no-fuse-bn")
    return fused


def prepare_case(workload: Workload, execution: Execution) -> Case:
    case = Case(Row(workload))
    try:
        _prepare(case, execution)
    except Exception as exc:  # noqa: BLE001 -- a failing case is data, not a crash
        fail(case, exc, execution)
    return case


def _prepare(case: Case, execution: Execution) -> None:
    module, case.x = build_case(case.row.workload, execution)
    case.module = count_case(case.row, module, case.x, execution)
    case.call = runtime_call(case, execution)


def largest_batch(case: Case, execution: Execution, limit: int = 4096) -> int:
    """The largest batch whose forward pass runs on the GPU (doubling, then bisecting). A batch
    fails by running out of memory or by a non-fatal refusal (e.g. cuDNN's 32-bit indexing limit
    on huge tensors); if the limit was not memory, the row says what it was."""
    sample = case.x[:1]
    layout = torch.channels_last if execution.option("channels_last") else torch.contiguous_format
    refusals: dict[int, str] = {}

    def fits(batch: int) -> bool:
        try:
            # as timed: same layout, same cudnn settings (its algorithms' workspaces count too)
            with torch.inference_mode(), gpu_settings(execution):
                case.module(sample.expand(batch, *sample.shape[1:]).contiguous(memory_format=layout))
            ran = True
        except Exception as exc:  # noqa: BLE001 -- classified below
            if cuda.is_fatal(exc):
                raise  # the context is dead: no further CUDA call, not even to free the cache
            if not cuda.is_out_of_memory(exc):
                refusals[batch] = error_line(exc)
            ran = False
        torch.cuda.empty_cache()
        return ran

    largest = cuda.largest_fitting(fits, start=execution.batch, limit=limit)
    if largest == limit:
        case.row.warnings.append(f"--find-max-batch: every batch up to the search limit {limit} fits")
    elif largest + 1 in refusals:
        case.row.warnings.append(f"--find-max-batch: batch {largest + 1} failed for a reason other than "
                                 f"memory ({refusals[largest + 1]})")
    return largest


def runtime_call(case: Case, execution: Execution) -> Callable[[], object]:
    """What gets timed: ``module(x)`` with torch; with onnxruntime, a session on the cached
    ONNX export, whose output must first match PyTorch's."""
    module, x = case.module, case.x
    if execution.runtime == "torch" and execution.device == "cuda":
        return cuda_call(case, execution)
    if execution.runtime == "torch":
        return lambda: module(x)
    row = case.row
    metadata = export_metadata(row, execution)
    path, cached = cached_export(module, x, metadata)
    options = dict(execution.runtime_options)
    session, record = make_session(path, execution.threads, execution.cores,
                                   options.get("opt_level", "all"), options.get("spinning", True))
    feeds = {session.get_inputs()[0].name: x.numpy()}
    worst = compare_with_torch(session, feeds, module, x)
    row.runtime = {**record, "onnx_file": str(path), "export_cached": cached, "pconv_exported_as": "split_cat",
                   "max_abs_diff_vs_torch": worst, **({"note": ARM_NOTE} if execution.device == "arm" else {})}
    return lambda: session.run(None, feeds)


def cuda_call(case: Case, execution: Execution) -> Callable[[], object]:
    """``module(x)`` on the GPU, replayed from a CUDA graph if asked; its timer uses CUDA events,
    with an L2 flush before each sample if asked."""
    module, x = case.module, case.x
    call: Callable[[], object] = lambda: module(x)
    if execution.option("cuda_graph"):
        try:
            with torch.inference_mode(), gpu_settings(execution):
                call = cuda.graphed(call)
        except RuntimeError as exc:  # e.g. a forward that synchronises with the host cannot be captured
            raise RuntimeError(f"--cuda-graph could not capture this call ({error_line(exc)}); time it "
                               "without --cuda-graph") from exc
    flush = cuda.l2_flusher(x.device) if execution.option("l2_flush") else None
    case.timer = gpu_timer(call, execution, before=flush)
    case.row.runtime = {"timer": "cuda events", "calls_per_sample": case.timer.calls,
                        "gpu": torch.cuda.get_device_name(x.device),
                        **{key: execution.option(key, default) for key, default in CUDA_DEFAULTS.items()},
                        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32}
    return call


def gpu_timer(call: Callable[[], object], execution: Execution,
              before: Callable[[], object] | None = None) -> Callable[[], float]:
    """CUDA-event timer of ``call``. Throughput mode times back-to-back calls (about 1 ms of
    them per sample, the GPU's steady state, as the paper's 200 forwards in a row); latency mode
    and cold-cache timing (``before`` flushes the L2 before every call) time one call alone."""
    calls = 1
    if execution.option("mode") == "throughput" and before is None:
        with torch.inference_mode(), gpu_settings(execution):
            calls = cuda.calls_per_sample(call)
    return cuda.event_timer(call, before=before, calls=calls)


def gpu_settings(execution: Execution):
    """cudnn.benchmark as asked while a GPU case runs (autotuning then falls in the warm-up)."""
    if execution.device != "cuda":
        return contextlib.nullcontext()
    return cuda.cudnn_benchmark(execution.option("cudnn_benchmark", True))


def compare_with_torch(session, feeds: dict, module: torch.nn.Module, x: torch.Tensor) -> float:
    """onnxruntime's output against PyTorch's on the same input: the largest absolute
    difference, or an error beyond rtol ORT_RTOL and atol ORT_ATOL × the output's magnitude."""
    with torch.inference_mode():
        expected = module(x).numpy()
    scale = float(abs(expected).max()) or 1.0  # relative to the output, however small it is
    return check_outputs(session.run(None, feeds)[0], expected, rtol=ORT_RTOL, atol=ORT_ATOL * scale)


def time_round(row: Row, call: Callable[[], object], execution: Execution, budget: TimingBudget,
               clock: Callable[[], float] = time.perf_counter, time_once: Callable[[], float] | None = None) -> None:
    """One round of samples for ``row`` (see sampling.sample_round), under inference mode and,
    on a GPU, with cudnn.benchmark as asked (its autotuning happens in the warm-up)."""
    with torch.inference_mode(), gpu_settings(execution):
        sample_round(row, call, execution, budget, clock, torch_threads=execution.runtime == "torch",
                     time_once=time_once)


def fail(case: Case, exc: Exception, execution: Execution) -> None:
    message = error_line(exc)
    if execution.device == "cuda" and cuda.is_out_of_memory(exc):
        smaller = max(1, execution.batch // 2)
        message = (f"out of GPU memory at batch {execution.batch}; try --batch {smaller}, or --find-max-batch "
                   f"to find the largest that fits ({message})")
    case.row.status, case.row.error = "error", message
    case.module = case.x = case.call = case.timer = None  # free the memory of a case that will not be timed
    if execution.device == "cuda" and not cuda.is_fatal(exc):  # a dead context fails every CUDA call
        torch.cuda.empty_cache()


def skip(case: Case, reason: str) -> None:
    case.row.status, case.row.error = "skipped", reason
    case.module = case.x = case.call = case.timer = None


def run_all(report: Report, workloads: Iterable[Workload],
            on_step: Callable[[Report, str], None] = lambda report, label: None) -> Report:
    """Prepare every workload (rows appear as they are counted), then time the rounds.
    ``on_step`` runs after each counted case and each timed (case, round), e.g. to save
    partial results; ``report.complete`` stays False if interrupted."""
    execution = report.execution
    cases: list[Case] = []
    lost: list[str] = []  # why the CUDA context died, once it has

    def guarded(case: Case, step: Callable[[], object], after_timing: str | None = None) -> None:
        """Run one step of a case; a fatal CUDA error skips every later CUDA step. A step after
        timing (named, e.g. "--breakdown") that fails leaves the row's timing standing and adds
        a warning."""
        if lost:
            if not case.row.samples_s:
                skip(case, f"skipped: the CUDA context was lost earlier ({lost[0]})")
            elif not any(w.startswith("CUDA context lost") for w in case.row.warnings):
                case.row.warnings.append(f"CUDA context lost after {len(case.row.round_sizes)} timing round(s) "
                                         f"({lost[0]}); the samples taken before are kept")
            return
        try:
            step()
        except Exception as exc:  # noqa: BLE001 -- a failing case is data, not a crash
            message = error_line(exc)
            if after_timing:
                case.row.warnings.append(f"{after_timing} failed: {message}")
            else:
                fail(case, exc, execution)
            if execution.device == "cuda" and cuda.is_fatal(exc):
                lost.append(message)

    for workload in workloads:
        case = Case(Row(workload))
        guarded(case, lambda: _prepare(case, execution))
        cases.append(case)
        report.rows.append(case.row)
        on_step(report, f"counted {workload.name} {workload.shape}")
    rounds = execution.budget.rounds
    for index in range(rounds):
        budget = execution.budget.round_share(index)
        for case in cases:
            if case.row.status != "ok":
                continue
            guarded(case, lambda: time_round(case.row, case.call, execution, budget, time_once=case.timer))
            on_step(report, f"round {index + 1}/{rounds} {case.row.workload.name} {case.row.workload.shape}")
    if execution.option("find_max_batch"):
        for case in cases:
            if case.row.status == "ok":
                def find_max_batch(case: Case = case) -> None:
                    case.row.max_batch = largest_batch(case, execution)
                guarded(case, find_max_batch, after_timing="--find-max-batch")
            on_step(report, f"largest batch {case.row.workload.name}")
    if execution.breakdown_depth > 0:
        part_budget = TimingBudget(warmup_s=0.05, min_time_s=execution.breakdown_time_s, min_runs=3, rounds=1)
        timer_for = (lambda call: gpu_timer(call, execution)) if execution.device == "cuda" else None
        for case in cases:
            if case.row.status == "ok" and case.row.workload.kind == "model":
                def breakdown(case: Case = case) -> None:
                    with gpu_settings(execution):  # parts are timed as the whole model was
                        case.row.breakdown = module_breakdown(case.module, case.x, execution.breakdown_depth,
                                                              execution, part_budget, timer_for)
                guarded(case, breakdown, after_timing="--breakdown")
            on_step(report, f"breakdown {case.row.workload.name}")
    for case in cases:
        finish_row(case.row, execution)
    report.complete = True
    report.finished_utc = utc_now()
    return report
