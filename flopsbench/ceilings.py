"""Machine ceilings for the roofline model (S. Williams, A. Waterman, D. Patterson, CACM 52(4),
2009): the peak compute and the memory bandwidth a runtime reaches on this machine, with the
threads, cores and dtype the rows are timed with.

Four kernels, each with a working set well beyond the last-level cache: a square GEMM and a 3×3
convolution (compute), a copy and a read-only sum (memory). The peak is the faster of the two
compute kernels, the bandwidth the faster of the two memory ones, each from its fastest sample:
a ceiling is the best the machine reaches, and other load only ever slows a call (STREAM reports
its best run likewise; the medians are recorded too). FLOPs
follow fvcore's convention, 1 multiply-add = 1 FLOP, so a GEMM M×N×K counts M·N·K and a peak here
is half the usual 2·M·N·K figure; bytes are what a kernel must read and write at least (a copy
reads and writes each element once), as the rows' memory counts are.

Count here, time there, as for the rows: this process works out each kernel's FLOPs and bytes
(and for onnxruntime writes its ONNX model), and the timing happens in fresh interpreters,
``python -m flopsbench.ceilings`` (one per round; a JSON job on stdin, a JSON result on stdout),
pinned to the cores with the threads, through the rows' warm-up and sample loop. The worker side
needs no torch for onnxruntime.

A record is cached per host, CPU (and GPU), device, runtime, threads, cores, dtype and METHOD under
$FLOPSBENCH_CACHE/ceilings; the views find it there (``for_report``) to add "% of peak" and
"Bound by" to a report, or take one given with --ceilings (``given``)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from flopsbench import __version__, allocator
from flopsbench.constants import cache_root
from flopsbench.cpu import audit_affinity, pinned
from flopsbench.output import write_text
from flopsbench.report import error_line, refuse_constant, utc_now
from flopsbench.spec import DTYPES, FLOP_CONVENTION, RUNTIMES, Execution, TimingBudget
from flopsbench.stats import summarize
from flopsbench.timing import collect, warm_up

SCHEMA = "flopsbench.ceilings"
SCHEMA_VERSION = 1
CONVENTION = (f"{FLOP_CONVENTION}; a GEMM M×N×K counts M·N·K FLOPs, so these peaks are half the usual "
              "2·M·N·K (multiplies and adds counted apart) figure")
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
DEVICES = ("cpu", "cuda", "arm")
MAX_RECORD_BYTES = 16 << 20  # a record holds a few thousand samples; more is not one
# How the kernels are timed, part of a record's key so that the cache never serves a record timed
# otherwise. 2: under the allocator's steady state (--allocator retain, where glibc has it); the
# records before it (no "method") took conv's output pages afresh every call and read its peak low.
METHOD = 2
OPSET = 17


@dataclass(frozen=True)
class Sizes:
    """The kernels' sizes: GEMM n×n×n, convolution (batch, c, h, w), and the bytes of each buffer
    the memory kernels stream."""

    gemm: int
    conv: tuple[int, int, int, int]
    stream_bytes: int


def largest_cache_bytes(sys_root: Path = Path("/sys")) -> int | None:
    """The largest CPU cache sysfs lists ("32768K"), or None where it lists none."""
    sizes = []
    for path in sys_root.glob("devices/system/cpu/cpu*/cache/index*/size"):
        try:
            match = re.fullmatch(r"(\d+)([KMG]?)", path.read_text().strip())
        except OSError:
            continue
        if match:
            sizes.append(int(match[1]) << {"": 0, "K": 10, "M": 20, "G": 30}[match[2]])
    return max(sizes, default=None)


def default_sizes(device: str) -> Sizes:
    """Large enough to reach the peak and to stream from memory: a CPU's buffers are at least four
    times its largest cache (and 128 MiB; 64 MiB on an ARM board, whose cores are slower), a GPU's 1 GiB."""
    if device == "cuda":
        return Sizes(gemm=8192, conv=(32, 256, 56, 56), stream_bytes=1 << 30)
    cache = 4 * (largest_cache_bytes() or 0)
    if device == "arm":
        return Sizes(gemm=512, conv=(1, 128, 56, 56), stream_bytes=max(64 << 20, cache))
    return Sizes(gemm=1024, conv=(1, 256, 56, 56), stream_bytes=max(128 << 20, cache))


@dataclass(frozen=True)
class Kernel:
    """One kernel to time: what it computes, its size, and its FLOPs and bytes, counted here."""

    name: str  # gemm, conv, copy, read
    bound: str  # what it measures: "compute" or "memory"
    size: dict
    flops: int
    bytes: int
    what: str

    @classmethod
    def from_dict(cls, data: dict) -> "Kernel":
        return cls(**{key: data[key] for key in cls.__dataclass_fields__})


def kernels(sizes: Sizes, dtype: str, runtime: str = "torch") -> list[Kernel]:
    """The four kernels at ``sizes``, their FLOPs (multiply-adds) and least bytes in ``dtype``."""
    e, n, (b, c, h, w) = ELEMENT_BYTES[dtype], sizes.gemm, sizes.conv
    m = sizes.stream_bytes // e
    # onnxruntime optimises an Identity (and a Mul by 1) away: its copy is a Mul by 0.5 (STREAM's scale)
    copy = "y = 0.5·x" if runtime == "onnxruntime" else "y = x"
    return [
        Kernel("gemm", "compute", {"n": n}, n ** 3, 3 * n * n * e, f"C = A·B, {n}×{n} matrices"),
        Kernel("conv", "compute", {"batch": b, "c": c, "h": h, "w": w}, b * h * w * 9 * c * c,
               e * (2 * b * c * h * w + 9 * c * c), f"3×3 convolution, {c}→{c} channels at {h}×{w}, batch {b}"),
        Kernel("copy", "memory", {"elements": m}, 0, 2 * m * e, f"{copy}, {m * e / 2 ** 20:.0f} MiB"),
        Kernel("read", "memory", {"elements": m}, 0, m * e, f"sum of x, {m * e / 2 ** 20:.0f} MiB"),
    ]


# ---------------------------------------------------------------- the parent: count, stage, collect

def measure(execution: Execution, sizes: Sizes | None = None, run: Callable[[dict], dict] | None = None,
            environment: dict | None = None) -> dict:
    """The ceilings record of ``execution`` (device, runtime, threads, cores, dtype; its budget's
    rounds and time), each round timed by ``run(job)`` (default: a fresh ``python -m
    flopsbench.ceilings``). Raises RuntimeError if no compute or no memory kernel could be timed."""
    run = run or run_fresh
    listed = kernels(sizes or default_sizes(execution.device), execution.dtype, execution.runtime)
    samples: dict[str, list[float]] = {kernel.name: [] for kernel in listed}
    round_sizes: dict[str, list[int]] = {kernel.name: [] for kernel in listed}  # each round a fresh process
    errors: dict[str, str] = {}
    workers: list[dict] = []
    environment = {} if environment is None else environment
    with tempfile.TemporaryDirectory(prefix="flopsbench-ceilings-") as folder:
        models = write_onnx_models(listed, Path(folder), execution.seed) if execution.runtime == "onnxruntime" else {}
        for index in range(execution.budget.rounds):
            job = {"execution": execution.to_dict(), "budget": asdict(execution.budget.round_share(index)),
                   "kernels": [asdict(kernel) for kernel in listed], "onnx": models}
            result = run(job)
            workers.append({"round": index + 1, "pid": _int(result.get("pid")),
                            "runtime": _dict(result.get("runtime"))})
            for key, value in _dict(result.get("environment")).items():
                environment.setdefault(str(key), value)
            for item in _list(result.get("kernels")):
                name = item.get("name") if isinstance(item, dict) else None
                if name not in samples:
                    continue
                taken = _seconds(item.get("samples_s"))
                samples[name] += taken
                round_sizes[name].append(len(taken))
                if isinstance(item.get("error"), str):
                    errors[name] = item["error"]
                if item.get("all_within_cores") is False:
                    errors.setdefault(name, f"some threads ran outside the pinned cores {list(execution.cores)}")
    return make_record(execution, environment, listed, samples, errors, workers, round_sizes)


def make_record(execution: Execution, environment: dict, listed: list[Kernel], samples: dict[str, list[float]],
                errors: dict[str, str], workers: list[dict], round_sizes: dict[str, list[int]] | None = None) -> dict:
    """The record: each kernel's samples (by round, ``round_sizes``; None: one round) and rate, the
    peak, the bandwidth and the ridge point."""
    round_sizes = round_sizes or {}
    timed = []
    for kernel in listed:
        sizes = round_sizes.get(kernel.name)
        stats = summarize(samples[kernel.name], sizes) if samples[kernel.name] else None
        amount, unit = (kernel.flops, "flops_per_s") if kernel.bound == "compute" else (kernel.bytes, "bytes_per_s")
        best_rate = amount / stats.min_s if stats and stats.min_s > 0 else None
        median_rate = amount / stats.median_s if stats and stats.median_s > 0 else None
        timed.append({**asdict(kernel), "samples_s": samples[kernel.name], "round_sizes": sizes,
                      "stats": stats and stats.to_dict(),
                      unit: best_rate, f"median_{unit}": median_rate, "problem": errors.get(kernel.name)})
    best = {}
    for bound, unit in (("compute", "flops_per_s"), ("memory", "bytes_per_s")):
        rated = [item for item in timed if item["bound"] == bound and item[unit]]
        if not rated:
            reasons = "; ".join(f"{name}: {why}" for name, why in errors.items()) or "no samples"
            raise RuntimeError(f"no {bound} kernel could be timed ({reasons})")
        best[bound] = max(rated, key=lambda item: item[unit])
    peak, bandwidth = best["compute"]["flops_per_s"], best["memory"]["bytes_per_s"]
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "tool_version": __version__, "created_utc": utc_now(),
        "key": key_for(environment, execution), "flop_convention": CONVENTION,
        "peak_flops_per_s": peak, "peak_kernel": best["compute"]["name"],
        "bandwidth_bytes_per_s": bandwidth, "bandwidth_kernel": best["memory"]["name"],
        "ridge_flop_per_byte": peak / bandwidth,
        "kernels": timed, "execution": execution.to_dict(), "environment": environment, "workers": workers,
    }


def write_onnx_models(listed: list[Kernel], folder: Path, seed: int) -> dict[str, str]:
    """Each kernel as an ONNX model for onnxruntime (weights as initializers, so that onnxruntime
    may pre-pack them as it does a model's); name -> path."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    paths = {}
    for kernel in listed:
        size, initializers = kernel.size, []
        if kernel.name == "gemm":
            n = size["n"]
            initializers.append(numpy_helper.from_array(rng.standard_normal((n, n), dtype=np.float32), "b"))
            node, shape = helper.make_node("MatMul", ["x", "b"], ["y"]), [n, n]
        elif kernel.name == "conv":
            c = size["c"]
            weight = rng.standard_normal((c, c, 3, 3), dtype=np.float32) / math.sqrt(9 * c)
            initializers.append(numpy_helper.from_array(weight, "w"))
            node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
            shape = [size["batch"], c, size["h"], size["w"]]
        elif kernel.name == "copy":
            initializers.append(numpy_helper.from_array(np.array(0.5, dtype=np.float32), "s"))
            node, shape = helper.make_node("Mul", ["x", "s"], ["y"]), [size["elements"]]
        else:
            node, shape = helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0), [size["elements"]]
        graph = helper.make_graph([node], kernel.name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)
        path = folder / f"{kernel.name}.onnx"
        onnx.save(model, str(path))
        paths[kernel.name] = str(path)
    return paths


def run_fresh(job: dict, python: str = sys.executable) -> dict:
    """One round in a new interpreter, ``python -m flopsbench.ceilings``: the job on its stdin, its
    result (one JSON line) from its stdout; its stderr passes through."""
    process = subprocess.run([python, "-m", "flopsbench.ceilings"], input=json.dumps(job), stdout=subprocess.PIPE,
                             text=True)
    lines = process.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except ValueError:
        result = None
    if process.returncode != 0 or not isinstance(result, dict):
        raise RuntimeError(f"the timing process exited with code {process.returncode} without a result "
                           "(its error is above)")
    return result


# ---------------------------------------------------------------- the worker: time

@dataclass
class Timed:
    """A kernel ready to time: the call, its timer (CUDA events) if not the wall clock, the
    settings it runs under, and how it is pinned (see cpu.pinned)."""

    call: Callable[[], object]
    time_once: Callable[[], float] | None = None
    settings: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    torch_threads: bool = True
    keep_workers: bool = False
    runtime: dict = field(default_factory=dict)


def serve(job: dict, clock: Callable[[], float] = time.perf_counter, tensor_device: str | None = None) -> dict:
    """Time every kernel of ``job`` in this process, pinned as the rows are; a kernel that fails is
    reported with its error. ``tensor_device`` overrides where torch builds the tensors (tests)."""
    execution = Execution.from_dict(job["execution"])
    budget = TimingBudget(**job["budget"])
    results, runtime = [], {}
    for spec in job["kernels"]:
        kernel = Kernel.from_dict(spec)
        samples: list[float] = []
        item: dict = {"name": kernel.name, "samples_s": samples}
        try:
            timed = prepare(kernel, execution, job.get("onnx", {}), tensor_device)
            runtime.update(timed.runtime)
            with timed.settings(), pinned(execution.threads, execution.cores, torch_threads=timed.torch_threads,
                                          keep_workers=timed.keep_workers):
                item["warmup_runs"] = warm_up(timed.time_once or timed.call, budget, clock)
                item["all_within_cores"] = audit_affinity(execution.cores)["all_within_cores"]
                collect(timed.call, budget, clock, timed.time_once, samples)
        except Exception as exc:  # noqa: BLE001 -- a kernel that fails is data: the others still run
            item["error"] = error_line(exc)
        finally:
            timed = None  # its buffers go before the next kernel's are made
        results.append(item)
    return {"pid": os.getpid(), "kernels": results, "runtime": runtime,
            "environment": _device_environment(execution)}


def prepare(kernel: Kernel, execution: Execution, models: dict, tensor_device: str | None = None) -> Timed:
    if execution.runtime == "onnxruntime":
        return _prepare_ort(kernel, execution, models[kernel.name])
    return _prepare_torch(kernel, execution, tensor_device or ("cuda" if execution.device == "cuda" else "cpu"))


def _prepare_torch(kernel: Kernel, execution: Execution, device: str) -> Timed:
    import torch
    import torch.nn.functional as F

    from flopsbench.cpu import set_interop_threads_once

    set_interop_threads_once(1)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[execution.dtype]
    torch.manual_seed(execution.seed)
    size = kernel.size
    if kernel.name == "gemm":
        a, b = (torch.randn(size["n"], size["n"], device=device, dtype=dtype) for _ in range(2))
        out = torch.empty_like(a)
        call = lambda: torch.mm(a, b, out=out)  # noqa: E731
    elif kernel.name == "conv":
        x = torch.randn(size["batch"], size["c"], size["h"], size["w"], device=device, dtype=dtype)
        weight = torch.randn(size["c"], size["c"], 3, 3, device=device, dtype=dtype) / math.sqrt(9 * size["c"])
        call = lambda: F.conv2d(x, weight, padding=1)  # noqa: E731
    elif kernel.name == "copy":
        src, dst = torch.ones(size["elements"], device=device, dtype=dtype), torch.empty(size["elements"],
                                                                                        device=device, dtype=dtype)
        call = lambda: dst.copy_(src)  # noqa: E731
    else:
        src = torch.ones(size["elements"], device=device, dtype=dtype)
        call = lambda: src.sum()  # noqa: E731
    if execution.device != "cuda":
        return Timed(call, settings=torch.inference_mode)
    from flopsbench import cuda

    precision = cuda.set_fp32_precision(False)  # IEEE fp32, as the rows unless --tf32

    @contextlib.contextmanager
    def settings() -> Iterator[None]:
        with torch.inference_mode(), cuda.cudnn_benchmark(True):  # its autotuning falls in the warm-up
            yield

    with settings():
        calls = cuda.calls_per_sample(call)
    return Timed(call, cuda.event_timer(call, calls=calls), settings,
                 runtime={"timer": "cuda events", "fp32_precision": precision})


def _prepare_ort(kernel: Kernel, execution: Execution, path: str) -> Timed:
    """An onnxruntime session on the kernel's model, set up as the rows' sessions are, run through
    an IO binding whose output buffer is made once: a fresh output array per call would time the
    page faults of allocating it (hundreds of MiB for the memory kernels)."""
    import numpy as np
    import onnxruntime as ort

    from flopsbench.ort_runtime import make_session

    options = dict(execution.runtime_options)
    session, record = make_session(path, execution.threads, execution.cores, options.get("opt_level", "all"),
                                   options.get("spinning", True))
    shape = session.get_inputs()[0].shape
    if kernel.bound == "memory":
        x = np.ones(shape, dtype=np.float32)
    else:
        x = np.random.default_rng(execution.seed).standard_normal(shape, dtype=np.float32)
    output = session.run(None, {"x": x})[0]
    binding = session.io_binding()
    binding.bind_cpu_input("x", x)
    binding.bind_ortvalue_output("y", ort.OrtValue.ortvalue_from_numpy(np.empty_like(output)))
    return Timed(lambda: session.run_with_iobinding(binding), torch_threads=False, keep_workers=True,
                 runtime={**record, "io_binding": True})


def _device_environment(execution: Execution) -> dict:
    if execution.device != "cuda":
        return {}
    from flopsbench import cuda

    return {key: value for key, value in cuda.gpu_environment().items() if key != "gpu_before"}


def main(argv: list[str] | None = None) -> int:
    """Read one job (JSON) from stdin, time it, write the result as one JSON line on stdout."""
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the result
    text = sys.stdin.read()
    try:
        job = json.loads(text)
        execution, _ = Execution.from_dict(job["execution"]), TimingBudget(**job["budget"])
        [Kernel.from_dict(spec) for spec in job["kernels"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        print(f"python -m flopsbench.ceilings: error: stdin: not a ceilings job ({error_line(exc)})", file=sys.stderr)
        return 2
    try:
        allocator.apply(execution.allocator)  # as the rows' workers do: conv's output is allocated every call
    except allocator.AllocatorError as exc:
        print(f"python -m flopsbench.ceilings: error: {exc}", file=sys.stderr)
        return 2
    result = serve(job)
    protocol.write(json.dumps(result) + "\n")
    protocol.flush()
    return 0


# ---------------------------------------------------------------- records, the cache, and a report's ceilings

def key_for(environment: dict, execution: Execution) -> dict:
    """What a record is cached under: the machine (host, CPU, and GPU on cuda), device, runtime,
    threads, cores and dtype, and how its kernels were timed (METHOD). Taken from a report's
    environment as well, so never trusted."""
    def text(name: str) -> str | None:
        value = environment.get(name)
        return value if isinstance(value, str) else None

    return {"hostname": text("hostname"), "cpu_model": text("cpu_model"),
            "gpu_name": text("gpu_name") if execution.device == "cuda" else None,
            "device": execution.device, "runtime": execution.runtime, "threads": execution.threads,
            "cores": list(execution.cores), "dtype": execution.dtype, "method": METHOD}


def cache_path(key: dict) -> Path:
    """$FLOPSBENCH_CACHE/ceilings/<host>-<device>-<runtime>-<dtype>-<threads>t-<hash of the key>.json"""
    digest = hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=8).hexdigest()
    readable = "-".join(str(key[name]) for name in ("hostname", "device", "runtime", "dtype"))
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{readable}-{key['threads']}t")[:80]
    return cache_root() / "ceilings" / f"{name}-{digest}.json"


def save(record: dict) -> Path:
    path = cache_path(record["key"])
    write_text(path, json.dumps(record, indent=1) + "\n")
    return path


@dataclass(frozen=True)
class Ceilings:
    """A record's roof: peak FLOPS (multiply-adds per second), bandwidth, and what they were
    measured on (``key``), when, and where the record was read from."""

    peak_flops_per_s: float
    bandwidth_bytes_per_s: float
    peak_kernel: str
    bandwidth_kernel: str
    key: dict
    created_utc: str
    source: str = ""  # the file given with --ceilings; empty for the cached record

    @property
    def ridge_flop_per_byte(self) -> float:
        return self.peak_flops_per_s / self.bandwidth_bytes_per_s

    def roof(self, intensity: float) -> float:
        """The attainable FLOPS at ``intensity`` FLOP/byte: min(peak, bandwidth × intensity)."""
        return min(self.peak_flops_per_s, self.bandwidth_bytes_per_s * intensity)

    def bound_by(self, intensity: float | None) -> str | None:
        """'memory' left of the ridge point, 'compute' from it on; None without an intensity."""
        if intensity is None or not math.isfinite(intensity) or intensity <= 0:
            return None
        return "memory" if intensity < self.ridge_flop_per_byte else "compute"

    def differences(self, key: dict) -> list[str]:
        """How ``key`` (a report's) differs from the one these ceilings were measured with."""
        return [f"{name} {self.key.get(name)!r} (the report: {key.get(name)!r})" for name in key
                if self.key.get(name) != key.get(name)]

    @classmethod
    def from_record(cls, data, source: str = "") -> "Ceilings":
        """The roof of a record read from JSON; ValueError says what is wrong with it."""
        if not isinstance(data, dict) or (data.get("schema"), data.get("schema_version")) != (SCHEMA, SCHEMA_VERSION):
            raise ValueError(f"not a {SCHEMA} record of schema version {SCHEMA_VERSION}")
        for name in ("peak_flops_per_s", "bandwidth_bytes_per_s"):
            value = data.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{name}: should be a positive finite number")
        key = data.get("key")
        checks = {"hostname": _optional_text, "cpu_model": _optional_text, "gpu_name": _optional_text,
                  "device": lambda v: v in DEVICES, "runtime": lambda v: v in RUNTIMES, "dtype": lambda v: v in DTYPES,
                  "threads": lambda v: _int(v) is not None and v >= 1,
                  "cores": lambda v: isinstance(v, list) and all(_int(c) is not None and c >= 0 for c in v),
                  "method": lambda v: v is None or _int(v) is not None}  # None: a record from before METHOD
        if not isinstance(key, dict):
            raise ValueError("key: should be an object")
        for name, check in checks.items():
            if not check(key.get(name)):
                raise ValueError(f"key.{name}: {str(key.get(name))[:40]!r} is not valid")
        texts = {name: data.get(name) for name in ("peak_kernel", "bandwidth_kernel", "created_utc")}
        if not all(isinstance(value, str) for value in texts.values()):
            raise ValueError("peak_kernel, bandwidth_kernel and created_utc: should be strings")
        return cls(float(data["peak_flops_per_s"]), float(data["bandwidth_bytes_per_s"]), key=dict(key),
                   source=source, **texts)


def read(path: Path) -> Ceilings:
    """The ceilings in a record file; ValueError (or OSError) says what is wrong with it."""
    if path.stat().st_size > MAX_RECORD_BYTES:
        raise ValueError(f"larger than {MAX_RECORD_BYTES >> 20} MiB, more than any ceilings record")
    try:
        data = json.loads(path.read_text(), parse_constant=refuse_constant)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None
    return Ceilings.from_record(data, str(path))


_GIVEN: ContextVar[tuple[Ceilings, ...]] = ContextVar("flopsbench_ceilings_given", default=())


@contextlib.contextmanager
def given(*found: Ceilings) -> Iterator[None]:
    """Within the block, reports are held against these ceilings (--ceilings FILE) before the cache."""
    token = _GIVEN.set(found)
    try:
        yield
    finally:
        _GIVEN.reset(token)


def for_report(environment: dict, execution: Execution) -> Ceilings | None:
    """The ceilings a report's rows are held against: of those ``given``, the one of the report's
    device and runtime that matches its key best; else the cached record of exactly its key; None
    where there is neither (or the cached file is damaged: then no columns, as without one)."""
    key = key_for(environment, execution)
    candidates = [c for c in _GIVEN.get() if (c.key["device"], c.key["runtime"]) == (key["device"], key["runtime"])]
    if candidates:
        return min(candidates, key=lambda c: len(c.differences(key)))
    path = cache_path(key)
    try:
        found = read(path) if path.is_file() else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if found is None or found.key != key:
        return None
    return replace(found, source="")  # the cache: its path says nothing a reader needs


def _optional_text(value) -> bool:
    return value is None or isinstance(value, str)


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _seconds(values) -> list[float]:
    """The durations in ``values`` (from another process): finite non-negative numbers, others dropped."""
    return [float(v) for v in _list(values) if isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v) and v >= 0]


if __name__ == "__main__":
    sys.exit(main())
