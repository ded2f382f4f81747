"""Options every measuring command shares, their validation, and the measure-and-report driver.

Validation happens before anything is measured, and each failure is a typer.BadParameter that
names the option and the fix (printed as one line by the CLI)."""

from __future__ import annotations

import functools
import inspect
import io
import os
import platform
import re
import socket
import sys
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Callable, Iterable, Optional, TextIO, get_type_hints

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from flopsbench.constants import ARM_MACHINES
from flopsbench.cli import invoked_args
from flopsbench import allocator, busy, cuda, devices, plugins, remote, signals, validation
from flopsbench.backends import backend_for
from flopsbench.columns import COLUMNS as COLUMN_NAMES, View, parse as parse_columns
from flopsbench.environment import capture_environment
from flopsbench.escaping import plain_text
from flopsbench.exporters import EXPORTERS, render
from flopsbench.output import create_new, discard_stdout, reason, write_stdout, write_text
from flopsbench.process_exit import PIPE_GONE
from flopsbench.report import Report
from flopsbench.rounds import rounds_with_samples
from flopsbench.runner import run_all
from flopsbench.ort_runtime import OPT_LEVELS
from flopsbench.spec import DTYPES, RUNTIMES, Execution, TimingBudget, Workload
from flopsbench.view_format import view_format

DEVICES = ("cpu", "cuda", "arm")
DEFAULT_RUNTIME = {"cpu": "torch", "cuda": "torch", "arm": "onnxruntime"}
FORMATS = tuple(EXPORTERS)
MODE_BATCH = {"latency": 1, "throughput": 32}
DEFAULT_MODE = {"cpu": "latency", "arm": "latency", "cuda": "throughput"}
_BUDGET, _EXECUTION = TimingBudget(), Execution()  # the defaults of how a case is timed


def integer(value: object) -> int:
    """An integer option's value (typer's ``parser``): its error is one plain line, not pydantic's."""
    if value is None or isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        raise typer.BadParameter(f"{str(value)[:40]!r} is not an integer") from None


def number(value: object) -> float:
    """A number option's value (typer's ``parser``), e.g. 0.2 or 2."""
    if value is None or isinstance(value, (int, float)):
        return value
    try:
        return float(str(value))
    except ValueError:
        raise typer.BadParameter(f"{str(value)[:40]!r} is not a number") from None


def batch_size(value: object) -> int:
    """--batch: one integer; a list (1,8) gets the way to measure several."""
    try:
        return integer(value)
    except typer.BadParameter:
        raise typer.BadParameter(f"{str(value)[:40]!r} is not one integer; give one batch size per run "
                                 "(run twice for two batches)") from None


# Options shared by every measuring command (same names, defaults and help everywhere).
Device = Annotated[str, typer.Option(help="Where to run: " + ", ".join(DEVICES) + ".")]
Runtime = Annotated[Optional[str], typer.Option(
    help="What executes: torch or onnxruntime (default: torch on cpu, onnxruntime on arm).")]
OrtOptLevel = Annotated[str, typer.Option(help="onnxruntime graph optimisation: " + ", ".join(OPT_LEVELS) + ".")]
OrtSpinning = Annotated[bool, typer.Option(help="Let onnxruntime's worker threads spin while waiting.")]
Batch = Annotated[Optional[int], typer.Option(parser=batch_size,
                                              help="Batch size (default: 1 in latency mode, 32 in throughput mode).")]
Mode = Annotated[Optional[str], typer.Option(
    help="latency (batch 1) or throughput (batch 32, images/s); default: throughput on cuda, latency "
         "elsewhere, as the paper measures.")]
CudaGraph = Annotated[bool, typer.Option(help="cuda: replay a captured CUDA graph (no per-kernel launch overhead).")]
L2Flush = Annotated[bool, typer.Option(help="cuda: flush the L2 cache before every sample (cold-cache timing).")]
ChannelsLast = Annotated[bool, typer.Option(help="torch: NHWC memory format (channels-last) for weights and input.")]
CudnnBenchmark = Annotated[bool, typer.Option(help="cuda: let cudnn autotune its algorithms during the warm-up.")]
FindMaxBatch = Annotated[bool, typer.Option(help="cuda: also find the largest batch that fits in GPU memory.")]
Tf32 = Annotated[bool, typer.Option("--tf32", help="cuda, fp32: let cuDNN convolutions and matmuls round to TF32 "
                                                   "(default: IEEE fp32, as the paper measured).")]
Threads = Annotated[int, typer.Option(parser=integer, help="torch intra-op threads (inter-op threads are set to 1).")]
Cores = Annotated[Optional[str], typer.Option(
    help="Cores to pin to, e.g. 0 or 0,2-3 (default: the first --threads allowed cores).")]
Dtype = Annotated[str, typer.Option(help="Data type: " + ", ".join(DTYPES) + ".")]
Allocator = Annotated[str, typer.Option(
    help="How the timing process's malloc treats freed memory: retain (keeps it: after the warm-up no call faults "
         "pages in, a long-running program's steady state) or system (as the environment configures it; glibc's "
         "default faults some rows' pages in on every call, in some processes and not others).")]
On = Annotated[Optional[str], typer.Option(
    "--on", metavar="DEVICE", help="Time on this device of the inventory (--devices): counting and export stay here; "
    "its kind, runtime, cores and threads come from the inventory (see docs/devices.md).")]
DevicesFile = Annotated[Optional[Path], typer.Option(
    "--devices", metavar="FILE", help="The device inventory (TOML) for --on (default: $FLOPSBENCH_DEVICES, "
    "./devices.toml, ~/.config/flopsbench/devices.toml).")]
Warmup = Annotated[float, typer.Option(parser=number, help=f"Warm-up seconds before timing, shared among the rounds "
                                                           f"(each at least {_BUDGET.warmup_runs} calls; 0 to "
                                                           f"{validation.MAX_SECONDS}).")]
MinTime = Annotated[float, typer.Option(parser=number, help=f"Keep sampling until this many seconds are timed "
                                                            f"(0 to {validation.MAX_SECONDS})...")]
MinRuns = Annotated[int, typer.Option(parser=integer, help="...and at least this many samples...")]
MaxRuns = Annotated[int, typer.Option(parser=integer, help=f"...but never more than this many "
                                                           f"(at most {validation.MAX_RUNS:,}).")]
Runs = Annotated[Optional[int], typer.Option(parser=integer, help=f"Exactly this many samples (overrides the three "
                                                                  f"above; at most {validation.MAX_RUNS:,}).")]
Rounds = Annotated[int, typer.Option(parser=integer, help="Split sampling into rounds, each a fresh worker process "
                                     "that times every case, so machine and process noise spread over all rows "
                                     f"(1 to {validation.MAX_ROUNDS}).")]
StopCi = Annotated[float, typer.Option(parser=number, help="After half the rounds (2+), stop a row once the 95% "
                                       "confidence interval of its median from its samples is within +- this "
                                       "fraction of it and its rounds agree (0 = always spend the budget).")]
Format = Annotated[Optional[str], typer.Option("--format", help="Output view: " + ", ".join(FORMATS) + " (default: "
                                                 "the one -o FILE's extension names, else table).")]
Output = Annotated[Optional[str], typer.Option("-o", "--output", metavar="FILE",
                                               help="Write the view to FILE ('-' = stdout).")]
Save = Annotated[bool, typer.Option(help="Also save JSON (written as it runs) and Markdown into --results-dir.")]
ResultsDir = Annotated[Path, typer.Option(help="Folder for --save.")]
Paper = Annotated[bool, typer.Option(help="Add the paper's published numbers for this device beside each row it has.")]
Seed = Annotated[int, typer.Option(parser=integer, help="Seed for weights and inputs.")]
Wide = Annotated[bool, typer.Option("--wide", help="Show every column (default: those a reader needs first; the "
                                                  "terminal's fit 100 columns).")]
Columns = Annotated[Optional[str], typer.Option(
    "--columns", metavar="LIST", help="Show exactly these columns after each row's name, a comma list of "
    + ", ".join(COLUMN_NAMES) + ".")]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", help="Under the table, each row's warnings in full "
                                                               "(default: one line per cause).")]
Plugins = Annotated[Optional[list[str]], typer.Option(
    "--plugin", metavar="FILE.py|MODULE", help="Load a plugin first: a Python file or module that registers its "
    "own operators or models (repeatable; see docs/plugins.md). Installed plugins "
    f"(entry points '{plugins.GROUP}') load always.")]


@dataclass(frozen=True)
class SharedOptions:
    """The options of every measuring command, declared once: each field is an option (its name
    and help in its Annotated type, its default here; how a case is timed defaults to
    TimingBudget's and Execution's own). ``with_shared_options`` adds them to a command."""

    on: On = None
    devices: DevicesFile = None
    device: Device = _EXECUTION.device
    runtime: Runtime = None
    ort_opt_level: OrtOptLevel = "all"
    ort_spinning: OrtSpinning = True
    mode: Mode = None
    batch: Batch = None
    cuda_graph: CudaGraph = False
    l2_flush: L2Flush = False
    channels_last: ChannelsLast = False
    cudnn_benchmark: CudnnBenchmark = True
    find_max_batch: FindMaxBatch = False
    tf32: Tf32 = False
    threads: Threads = _EXECUTION.threads
    cores: Cores = None
    dtype: Dtype = _EXECUTION.dtype
    allocator: Allocator = _EXECUTION.allocator
    warmup: Warmup = _BUDGET.warmup_s
    min_time: MinTime = _BUDGET.min_time_s
    min_runs: MinRuns = _BUDGET.min_runs
    max_runs: MaxRuns = _BUDGET.max_runs
    runs: Runs = _BUDGET.exact_runs
    rounds: Rounds = _BUDGET.rounds
    stop_ci: StopCi = _BUDGET.stop_ci
    fmt: Format = None
    output: Output = None
    save: Save = False
    results_dir: ResultsDir = Path("results")
    paper: Paper = False
    seed: Seed = _EXECUTION.seed
    wide: Wide = False
    columns: Columns = None
    verbose: Verbose = False

    def settings(self, command: str, breakdown_depth: int = 0,
                 breakdown_time: float = _EXECUTION.breakdown_time_s) -> "RunSettings":
        """These options validated (one-line errors) before anything is measured: ``validate``."""
        return validate(command, self, breakdown_depth, breakdown_time)


def with_shared_options(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` with the shared options (SharedOptions's fields) after its own, in the signature
    typer reads; ``command`` gets them back as one argument, ``shared: SharedOptions``."""
    own = inspect.signature(command, eval_str=True)
    types = get_type_hints(SharedOptions, include_extras=True)
    shared = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=types[f.name])
              for f in fields(SharedOptions)]
    context = inspect.Parameter("click_context", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
    parameters = [*(p for p in own.parameters.values() if p.name != "shared"), *shared, context]

    @functools.wraps(command)
    def with_options(click_context: typer.Context, **arguments):
        options = SharedOptions(**{f.name: arguments.pop(f.name) for f in fields(SharedOptions)})
        given = [f.name for f in fields(SharedOptions) if click_context.get_parameter_source(f.name).name != "DEFAULT"]
        check_beside_on(options, given)
        return command(**arguments, shared=options)

    with_options.__signature__ = own.replace(parameters=parameters)
    with_options.__annotations__ = {p.name: p.annotation for p in parameters}
    return with_options


def load_plugins(given: list[str] | None) -> None:
    """The installed plugins, then those given with --plugin, before any name is looked up."""
    try:
        plugins.load_all([*plugins.installed(), *(given or ())])
    except plugins.PluginError as exc:
        raise bad("--plugin", str(exc)) from None


@dataclass(frozen=True)
class RunSettings:
    """A validated how-to-run (the Execution) plus where the results go."""

    command: str
    execution: Execution
    fmt: str
    output: str | None
    save_to: Path | None
    paper: bool
    view: View = View()  # --columns, --wide, --verbose
    target: devices.Device | None = None  # --on: the inventory's device


def run_settings(command: str, *, breakdown_depth: int = 0, breakdown_time: float = _EXECUTION.breakdown_time_s,
                 **options) -> RunSettings:
    """The shared options given by name (SharedOptions's fields; the rest take their defaults), validated."""
    return validate(command, SharedOptions(**options), breakdown_depth, breakdown_time)


def validate(command: str, o: SharedOptions, breakdown_depth: int = 0,
             breakdown_time: float = _EXECUTION.breakdown_time_s) -> RunSettings:
    """Validate the shared options (one-line errors) before anything is measured."""
    target = on_device(o)
    if target is not None:  # the inventory says what and where
        o = replace(o, device=target.kind, runtime=target.runtime, threads=target.threads,
                    cores=",".join(map(str, target.cores)))
    over_ssh = target is not None and target.transport == "ssh"
    for value, choices, option in ((o.device, DEVICES, "--device"), (o.dtype, DTYPES, "--dtype"),
                                   (o.fmt, FORMATS, "--format"), (o.allocator, allocator.ALLOCATORS, "--allocator")):
        check_choice(value, choices, option)
    if not over_ssh:  # a device over ssh is checked there (flopsbench devices; the probe before a run)
        check_device(o.device)
        if not allocator.available(o.allocator):
            raise bad("--allocator", allocator.NEEDS_GLIBC)
    runtime = resolve_runtime(o.device, o.runtime, o.dtype)
    check_choice(o.ort_opt_level, OPT_LEVELS, "--ort-opt-level")
    if runtime == "onnxruntime" and breakdown_depth:
        raise bad("--breakdown", "parts are timed with torch; use it with --runtime torch")
    mode = o.mode or DEFAULT_MODE[o.device]
    check_choice(mode, tuple(MODE_BATCH), "--mode")
    batch = MODE_BATCH[mode] if o.batch is None else o.batch
    check_positive(batch, "--batch")
    gpu_only = {"--cuda-graph": o.cuda_graph, "--l2-flush": o.l2_flush, "--find-max-batch": o.find_max_batch,
                "--no-cudnn-benchmark": not o.cudnn_benchmark, "--tf32": o.tf32}
    for option, given in gpu_only.items():
        if given and o.device != "cuda":
            raise bad(option, "needs --device cuda")
    if o.tf32 and o.dtype != "fp32":
        raise bad("--tf32", f"rounds fp32 maths to TF32; this run is --dtype {o.dtype}")
    if o.channels_last and runtime != "torch":
        raise bad("--channels-last", "applies to the torch runtime; onnxruntime picks its own layout")
    pinned_cores = target.cores if over_ssh else validated(validation.parse_cores, o.cores, o.threads)
    validated(validation.check_budget, o.min_time, o.min_runs, o.max_runs, o.runs, o.warmup, o.rounds, o.stop_ci)
    validated(validation.check_seed, o.seed)
    if breakdown_depth < 0:
        raise bad("--breakdown", f"{breakdown_depth} must be >= 0 (0 = off)")
    validated(validation.check_seconds, breakdown_time, "--breakdown-time", positive=True)
    validated(validation.check_writable, o.output)
    if o.save:
        check_results_dir(o.results_dir)
    if runtime == "onnxruntime":
        from flopsbench.onnx_export import check_cache  # imports onnx: only for runs that export
        validated(check_cache)
    budget = TimingBudget(warmup_s=o.warmup, min_time_s=o.min_time, min_runs=o.min_runs, max_runs=o.max_runs,
                          exact_runs=o.runs, rounds=o.rounds, stop_ci=o.stop_ci)
    if runtime == "onnxruntime":
        runtime_options: tuple = (("opt_level", o.ort_opt_level), ("spinning", o.ort_spinning))
    elif o.device == "cuda":
        runtime_options = (("cudnn_benchmark", o.cudnn_benchmark), ("cuda_graph", o.cuda_graph),
                           ("l2_flush", o.l2_flush), ("channels_last", o.channels_last),
                           ("find_max_batch", o.find_max_batch), ("mode", mode), ("tf32", o.tf32))
    else:
        runtime_options = (("channels_last", o.channels_last),) if o.channels_last else ()
    execution = Execution(device=o.device, runtime=runtime, runtime_options=runtime_options, dtype=o.dtype,
                          batch=batch, threads=o.threads, cores=pinned_cores, budget=budget, seed=o.seed,
                          breakdown_depth=breakdown_depth, breakdown_time_s=breakdown_time, allocator=o.allocator)
    return RunSettings(command, execution, validated(view_format, o.fmt, o.output), o.output,
                       save_path(o.results_dir, command, o.device, runtime, target and target.name) if o.save else None,
                       o.paper,
                       check_view(o.columns, o.wide, o.verbose, o.paper), target)


FROM_INVENTORY = {"device": _EXECUTION.device, "runtime": None, "cores": None, "threads": _EXECUTION.threads}


def check_beside_on(o: SharedOptions, given: list[str]) -> None:
    """What the inventory sets (--device, --runtime, --cores, --threads) may not be ``given`` beside
    --on: one of the two would be ignored. The command line says what was given, even a default's
    value (with_shared_options); elsewhere a value other than the default counts as given."""
    if o.on is None:
        return
    for name in FROM_INVENTORY:
        if name in given:
            raise bad(f"--{name}", f"comes from the inventory with --on {o.on}; set it there, or drop --on")


def on_device(o: SharedOptions) -> devices.Device | None:
    """--on's device from the inventory (--devices), or None."""
    if o.on is None:
        if o.devices is not None:
            raise bad("--devices", "is the inventory for --on; add --on DEVICE")
        return None
    check_beside_on(o, [name for name, default in FROM_INVENTORY.items() if getattr(o, name) != default])
    try:
        return devices.find(devices.load_inventory(o.devices), o.on, o.devices)
    except devices.InventoryError as exc:
        raise bad("--on" if "no device" in str(exc) else "--devices", str(exc)) from None


def check_view(columns: str | None, wide: bool, verbose: bool, paper: bool) -> View:
    """--columns (names of flopsbench.columns.COLUMNS; the paper's only with --paper), --wide, --verbose."""
    if columns is not None and wide:
        raise bad("--columns", "chooses the columns, --wide shows them all; give one of the two")
    try:
        chosen = None if columns is None else parse_columns(columns)
    except ValueError as exc:
        raise bad("--columns", str(exc)) from None
    needs_paper = [name for name in chosen or () if COLUMN_NAMES[name].startswith("--paper")]
    if needs_paper and not paper:
        raise bad("--columns", f"{needs_paper[0]!r} is the paper's figure; add --paper")
    return View(chosen, wide, verbose)


def run_and_report(settings: RunSettings, workloads: list[Workload]) -> None:
    """Measure the workloads under ``settings`` and write the report."""
    on_gpu = settings.execution.device == "cuda"
    # The GPU's own record (name, clocks before) comes from the first worker that times on it.
    target, transport = settings.target, None
    if target is not None and target.transport == "ssh":
        transport = remote.SshWorkers(target, backend_for(settings.execution).preload)
        try:
            environment = remote_environment(target, transport)
        except remote.RemoteError as exc:
            transport.close()
            raise bad("--on", f"{exc}; check it with 'flopsbench devices'") from None
    else:
        environment = capture_environment(cores=settings.execution.cores)
        if target is not None:
            environment["transport"] = {"kind": "local"}
    if target is not None:
        environment.update(device_name=target.name, device=target.record())
    report = Report(command=settings.command, execution=settings.execution, environment=environment,
                    argv=["flopsbench", *invoked_args()])
    if plugins.loaded():  # where the operators and models of its own came from
        report.environment["plugins"] = list(plugins.loaded())
    measure_and_report(report, workloads, settings.fmt, settings.output, settings.save_to, settings.paper,
                       view=settings.view, transport=transport,
                       after=lambda: report.environment.update(gpu_after=cuda.gpu_state()) if on_gpu else None)


def remote_environment(target: devices.Device, transport: "remote.SshWorkers") -> dict:
    """The report's environment for a run on ``target`` over ssh: the device's own (read there: the
    samples come from it), the transport, and this machine's, which counted and exported."""
    probe = transport.environment()
    environment = probe.get("environment") if isinstance(probe.get("environment"), dict) else {}
    here = capture_environment(with_torch=True, cores=None)
    return {**environment, "userland_bits": probe.get("userland_bits"),
            "pinned_core_load": probe.get("pinned_core_load"),
            "transport": {"kind": "ssh", "target": target.ssh_target, "port": target.port, "python": target.python,
                          "directory": transport.directory},
            "counted_on": {key: here.get(key) for key in ("hostname", "platform", "machine", "cpu_model", "python",
                                                          "libraries", "flopsbench", "git")}}


def bad(option: str, message: str) -> typer.BadParameter:
    return typer.BadParameter(message, param_hint=f"'{option}'")


def check_choice(value: str | None, choices: Iterable[str], option: str) -> None:
    if value is not None and value not in choices:
        raise bad(option, f"{value!r} is not one of {', '.join(choices)}")


def check_device(device: str) -> None:
    if device == "cuda" and not cuda.available():
        raise bad("--device", f"cuda: {cuda.unavailable_reason()}; run on a machine with an NVIDIA GPU "
                              "and a CUDA build of torch, or use --device cpu")
    if device == "arm" and platform.machine().lower() not in ARM_MACHINES:
        raise bad("--device", f"arm needs an aarch64 host, and this one is {platform.machine()}; either "
                              "export here ('flopsbench export NAME -o model.onnx') and time it on the board "
                              "with 'python -m flopsbench.board model.onnx', or time onnxruntime on this CPU "
                              "with '--device cpu --runtime onnxruntime'")


def resolve_runtime(device: str, runtime: str | None, dtype: str) -> str:
    """The runtime for this device (cpu: torch, arm: onnxruntime) unless one is chosen."""
    runtime = runtime or DEFAULT_RUNTIME[device]
    check_choice(runtime, RUNTIMES, "--runtime")
    if runtime == "onnxruntime" and device == "cuda":
        raise bad("--runtime", "onnxruntime runs here on the CPU execution provider only; use --device cpu")
    if runtime == "onnxruntime" and dtype != "fp32":
        raise bad("--dtype", f"{dtype} is not supported with --runtime onnxruntime; use fp32")
    return runtime


def parse_names(text: str | None, known: list[str], option: str) -> list[str]:
    """A comma list of registered names; None or 'all' means every one."""
    if text is None or text.strip() == "all":
        return list(known)
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name not in known:
            raise bad(option, f"unknown name {name!r}; choose from {', '.join(known)} "
                              "(see 'flopsbench list')")
    if not names:
        raise bad(option, f"give at least one of {', '.join(known)}")
    return names


def parse_ratio(text: str) -> float:
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise bad("--ratio", f"{text!r} is not a number or fraction; use e.g. 1/4 or 0.25") from None
    if not 0 < value <= 1:
        raise bad("--ratio", f"{text} must be in (0, 1]; use e.g. 1/4")
    return value


def validated(check, *args, **kwargs):
    """Run a shared check (flopsbench.validation), turning its failure into a one-line CLI error."""
    try:
        return check(*args, **kwargs)
    except validation.OptionError as exc:
        raise bad(exc.option, str(exc)) from None


def check_positive(value: int, option: str) -> None:
    if value < 1:
        raise bad(option, f"{value} must be a positive integer")


def host_batch(execution: Execution) -> int:
    """The batch this machine's memory must hold: the run's own, except on cuda, where inputs are
    made on the GPU and the host only counts at batches 1 and 2 (runner.count_and_stage)."""
    return min(execution.batch, 2) if execution.device == "cuda" else execution.batch


def save_path(results_dir: Path, command: str, device: str, runtime: str, host: str | None = None) -> Path:
    """results/<command>-<device>-<runtime>-<host>-<UTC time>-<pid>.json: what was run, where, how,
    when (to the microsecond) and by which process (``host``: this machine's name, or --on's device's).
    The name is only planned here: SavedReport creates the file with O_EXCL, and a name another run
    took gets a -2 (-3, ...) suffix."""
    host = re.sub(r"[^A-Za-z0-9_.-]+", "-", host or socket.gethostname())[:40]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    return results_dir / f"{command}-{device}-{runtime}-{host}-{stamp}-{os.getpid()}.json"


def check_results_dir(results_dir: Path) -> None:
    validated(validation.check_folder, results_dir, "--results-dir", "choose a writable folder")


def print_line(console: Console, text: object, style: str = "") -> None:
    """``text`` as one line on ``console``, shown as it is: never read as rich markup, control
    characters escaped (plain_text), not wrapped at the terminal's width."""
    console.print(Text(plain_text(text), style=style), soft_wrap=True)


class SavedReport:
    """--save: the JSON, created before measuring under a name no other run has (output.create_new)
    and replaced after every step, and the Markdown beside it at the end. A save that fails while
    measuring (a full disk) is a warning, once, and measuring goes on; each step tries again."""

    def __init__(self, planned: Path, console: Console):
        self.path, self.console = planned, console
        self.created = self.warned = self.current = False

    def write(self, report: Report) -> None:
        """Save the JSON now (an OSError if it fails)."""
        self.current = False
        if self.created:
            write_text(self.path, report.to_json())
        else:
            self.path = create_new(self.path, report.to_json())
            self.created = True
        self.current = True

    def while_measuring(self, report: Report) -> None:
        try:
            self.write(report)
        except OSError as exc:
            if not self.warned:
                self.warned = True
                print_line(self.console, f"warning: cannot save {self.path} ({reason(exc)}); measuring goes on "
                                         "and each step tries again", style="yellow")

    def finish(self, report: Report, paper: bool) -> bool:
        """The last save of the JSON, then the Markdown; a failure is one line on stderr and False."""
        markdown = None
        try:
            self.write(report)
            markdown = self.path.with_suffix(".md")
            write_text(markdown, render(report, "md", paper))
        except OSError as exc:
            kept = f"; the JSON is saved in {self.path}" if markdown else ""
            print_line(self.console, f"flopsbench: error: cannot save {markdown or self.path} ({reason(exc)}){kept}")
            return False
        print_line(self.console, f"saved {self.path} and {markdown.name}")
        return True

    @property
    def kept(self) -> Path | None:
        """The JSON, if its last save worked."""
        return self.path if self.current else None


class _Terminal(io.StringIO):
    """A buffer that says it is a terminal (stdout is one), so that the table view fits it, in colour."""

    def isatty(self) -> bool:
        return True


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout is not None and sys.stdout.isatty()
    except (AttributeError, ValueError):  # a closed or stand-in stream
        return False


def write_output(draw: Callable[[TextIO], object], output: str | None, command: str = "flopsbench",
                 saved: Path | None = None) -> bool:
    """The view ``draw`` writes to a stream, rendered whole first, on stdout (no output, or '-';
    as a terminal when stdout is one) or into ``output`` (flopsbench.output: a regular file is
    replaced in one step, a device, FIFO or symlink written through). A failure is one line on
    stderr, prefixed with ``command`` and naming ``saved`` (the JSON kept) if given, and False. A
    pipe whose reader is gone ends the command quietly with SIGPIPE's status, 141, as any Unix
    tool ends. Every command's views are written by this one function."""
    stderr = Console(stderr=True)
    to_stdout = output is None or output == "-"
    try:
        stream = _Terminal() if to_stdout and _stdout_is_terminal() else io.StringIO()
        draw(stream)
        if to_stdout:
            write_stdout(stream.getvalue())
        else:
            write_text(Path(output), stream.getvalue())
    except BrokenPipeError:
        if to_stdout:
            discard_stdout()
        raise typer.Exit(PIPE_GONE) from None
    except OSError as exc:
        if to_stdout:
            discard_stdout()
        kept = f"; the report is saved in {saved}" if saved else ""
        print_line(stderr, f"{command}: error: cannot write {'to stdout' if to_stdout else output} "
                           f"({reason(exc)}){kept}")
        return False
    if not to_stdout:
        print_line(stderr, f"wrote {output}")
    return True


def write_view(report: Report, fmt: str, output: str | None, paper: bool, saved: Path | None = None,
               shown: View = View()) -> bool:
    """A report's chosen view (its columns and notes as ``shown`` says), written by write_output."""
    return write_output(lambda stream: EXPORTERS[fmt](report, stream, paper, shown), output, saved=saved)


def measure_and_report(report: Report, workloads: list[Workload], fmt: str, output: str | None,
                       save: Path | None, paper: bool, after: Callable[[], object] = lambda: None,
                       view: View = View(), transport=None) -> None:
    """Say first whether a pinned core is busy (check_pinned_cores), run every workload with a
    progress bar on stderr, saving the JSON after each step (a SavedReport, whose name ``save``
    plans), then write the chosen view (``view``: its columns and notes). Ctrl-C keeps what is done,
    marked incomplete. Exits as ``Report.exit_status`` says (130 interrupted, 1 a row failed), else
    1 if a file could not be written (141 if stdout's reader is gone: write_view)."""
    stderr = Console(stderr=True)
    # count each, time each round, then break each down if asked
    execution = report.execution
    steps = len(workloads) * (1 + rounds_with_samples(execution.budget) + (execution.breakdown_depth > 0)
                              + bool(execution.option("find_max_batch")))
    progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=stderr, auto_refresh=False, transient=True)
    task = progress.add_task("counting", total=steps)
    saved = None if save is None else SavedReport(save, stderr)

    def on_step(report: Report, label: str) -> None:
        if saved is not None:
            saved.while_measuring(report)
        progress.update(task, advance=1, description=label)
        progress.refresh()

    check_pinned_cores(report, stderr)
    if saved is not None:
        saved.while_measuring(report)  # created now: its name is taken before anything is measured
    with progress:
        try:
            with signals.ending_as_interrupt():  # SIGTERM and SIGHUP keep the rows as Ctrl-C does
                run_all(report, workloads, on_step=on_step, transport=transport)
        except KeyboardInterrupt:
            pass  # the report stays incomplete
    after()  # e.g. read the GPU's clocks and temperature again
    written = saved.finish(report, paper) if saved is not None else True
    written = write_view(report, fmt, output, paper, saved.kept if saved is not None else None, view) and written
    for row in report.rows:
        if row.status != "ok":
            stderr.print(Text.assemble((plain_text(row.status), "red"), " ",
                                       plain_text(f"{row.workload.name} {row.workload.shape}: {row.error}")),
                         soft_wrap=True)
    if not report.complete:
        print_line(stderr, f"interrupted{signals.describe()} after {progress.tasks[0].completed:.0f} of {steps} "
                           "steps; the report is marked incomplete and holds the samples taken so far")
    status = signals.exit_status(report.exit_status()) or (0 if written else 1)
    if status:
        raise typer.Exit(status)


def check_pinned_cores(report: Report, stderr: Console) -> None:
    """Before anything is timed, the load of the pinned cores over a short window (flopsbench.busy),
    kept in the report (environment['pinned_core_load']; its notes say it too); one line on stderr
    where another process kept one busy. A device over ssh read its own (flopsbench.probe)."""
    transport = report.environment.get("transport")
    over_ssh = isinstance(transport, dict) and transport.get("kind") == "ssh"
    record = report.environment.get("pinned_core_load") if over_ssh else busy.pinned_core_load(report.execution.cores)
    if record is not None:
        report.environment["pinned_core_load"] = record
        line = busy.warning(record)
        if line:
            print_line(stderr, f"warning: {line}", style="yellow")
