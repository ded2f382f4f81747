"""The torch-free board runner: time an exported ONNX file with onnxruntime on a machine that has
neither torch nor fvcore (a Raspberry Pi class ARM board), and write flopsbench's JSON report.

    python -m flopsbench.board t0.onnx --threads 1 --cores 0 -o t0-arm.json

Needs only the Python standard library, numpy, onnxruntime and flopsbench's torch-free modules
(spec, report, timing, stats, sampling, cpu, environment, ort_runtime, output). The file is usually made
by ``flopsbench export NAME -o FILE.onnx`` on a machine with torch: the export embeds the
workload, batch, dtype and the FLOPs/params/memory counts (metadata key ``flopsbench``), which
the report's row carries over, so the board's report has the same schema and numbers as any
other and merges with them. An ONNX file without that metadata is still timed (its input shape
must then be fixed NCHW); its counts are unknown (null) and the row says so in a warning.
Metadata that is there but wrong (a damaged or crafted file: a float batch, a negative side, an
input larger than the memory available) is refused before anything is built, naming the field.

Timing is the same as ``flopsbench ops/model``: onnxruntime's CPU execution provider with
intra-op threads = ``--threads``, inter-op 1, sequential execution, every thread of the process
pinned to ``--cores``; the same warm-up, sampling budget and rounds, each round in a fresh worker
process (``flopsbench.worker``, the same rounds loop as ops/model), the same statistics, noise
warnings and exit-code rule. The input is prepared before
timing: seeded standard-normal float32 of the exported shape (numpy's generator, so its values
differ from torch's; latency does not depend on them).

Only JSON is written (the table views need the torch side's exporters); merge or render it on
the machine you copy it back to. Exit status: 0 ok, 1 the case failed (the report says why) or
the report could not be written (one line), 2 a user error (one line on stderr), 130 interrupted
(the report is marked incomplete), 141 stdout's reader went away (quietly, as SIGPIPE would end it).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from flopsbench import allocator, rounds, signals, validation
from flopsbench.backends import backend_for
from flopsbench.checksum import sha256
from flopsbench.constants import METADATA_KEY, device_name
from flopsbench.environment import capture_environment
from flopsbench.ort_runtime import OPT_LEVELS, make_session
from flopsbench.output import discard_stdout, reason, write_stdout, write_text
from flopsbench.process_exit import PIPE_GONE
from flopsbench.report import Report, Row, refuse_constant
from flopsbench.rounds import Case
from flopsbench.spec import DTYPES, Execution, Shape, TimingBudget, Workload

PROG = "python -m flopsbench.board"


class UserError(Exception):
    """A bad option or file: one line on stderr naming the option, exit status 2."""

    def __init__(self, option: str, message: str):
        super().__init__(f"{PROG}: error: {option}: {message}")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage first; one line is the rule here
        self.exit(2, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Time an exported ONNX file with onnxruntime (no torch needed) "
                                       "and write flopsbench's JSON report.")
    p.add_argument("model", metavar="MODEL.onnx", help="file made by 'flopsbench export NAME -o MODEL.onnx'")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads; inter-op is 1 (1)")
    p.add_argument("--cores", default=None,
                   help="cores to pin every thread to, e.g. 0 or 0,2-3 (the first --threads allowed cores)")
    budget = TimingBudget()  # the defaults, as the flopsbench commands have them
    p.add_argument("--warmup", type=float, default=budget.warmup_s,
                   help=f"warm-up seconds, shared among the rounds, each at least {budget.warmup_runs} calls "
                        f"({budget.warmup_s:g})")
    p.add_argument("--min-time", type=float, default=budget.min_time_s,
                   help=f"sample until this many seconds are timed... ({budget.min_time_s:g})")
    p.add_argument("--min-runs", type=int, default=budget.min_runs,
                   help=f"...and at least this many samples... ({budget.min_runs})")
    p.add_argument("--max-runs", type=int, default=budget.max_runs,
                   help=f"...but never more than this many ({budget.max_runs})")
    p.add_argument("--runs", type=int, default=budget.exact_runs, help="exactly this many samples instead")
    p.add_argument("--rounds", type=int, default=budget.rounds,
                   help=f"split the samples into this many rounds, each in a fresh worker process ({budget.rounds})")
    p.add_argument("--stop-ci", type=float, default=budget.stop_ci,
                   help="after half the rounds (2+), stop once the 95%% confidence interval of the median is "
                        f"within +- this fraction of it; 0: spend the whole budget ({budget.stop_ci:g})")
    p.add_argument("--ort-opt-level", default="all", choices=OPT_LEVELS, help="graph optimisation (all)")
    p.add_argument("--ort-spinning", action=argparse.BooleanOptionalAction, default=True,
                   help="let onnxruntime's worker threads spin while waiting (on)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input (0)")
    p.add_argument("--allocator", default=allocator.DEFAULT, choices=allocator.ALLOCATORS,
                   help="how the timing processes' malloc treats freed memory: retain keeps it (no page faults after "
                        f"the warm-up), system leaves it as the environment configures it ({allocator.DEFAULT})")
    p.add_argument("-o", "--output", default="-", help="write the JSON report to FILE ('-' = stdout, the default)")
    return p


# --- validation (before anything is loaded or measured) ----------------------------------------------

def budget_from(args: argparse.Namespace) -> TimingBudget:
    return TimingBudget(warmup_s=args.warmup, min_time_s=args.min_time, min_runs=args.min_runs,
                        max_runs=args.max_runs, exact_runs=args.runs, rounds=args.rounds, stop_ci=args.stop_ci)


# --- the ONNX file -------------------------------------------------------------------------------------

# The embedded metadata is checked field by field before anything is built from it: a crafted file
# must not make numpy allocate terabytes, nor put a string where the report has a number. Plain
# checks, as the board has no pydantic (the host's flopsbench.schema checks whole reports).
MAX_DIM = 2 ** 31 - 1  # a batch or side beyond it is no real input
MAX_COUNT = 2 ** 63 - 1
WORKLOAD_KINDS = ("operator", "model")


class BadMetadata(ValueError):
    """What is wrong with the embedded metadata, led by the field's path ('workload.shape[1] is ...')."""


def _shown(value) -> str:
    return {dict: "an object", type(None): "null"}.get(type(value)) or repr(value)[:40]


def _int(value, field: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:  # bool, float and str are no integers here
        raise BadMetadata(f"{field} is {_shown(value)}, not an integer from {low:,} to {high:,}")
    return value


def _count(value, field: str) -> None:
    if value is not None:
        _int(value, field, 0, MAX_COUNT)


def _counts_by_name(value, field: str) -> None:
    if not isinstance(value, dict):
        raise BadMetadata(f"{field} is {_shown(value)}, not an object of counts")
    for name, count in value.items():
        _int(count, validation.json_path(field, name), 0, MAX_COUNT)


def _memory_impl(value, field: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise BadMetadata(f"{field} is {_shown(value)}, not an object")
    for key in ("read_bytes", "write_bytes"):
        _int(value.get(key), f"{field}.{key}", 0, MAX_COUNT)


# Each count an export embeds (onnx_export.EMBEDDED_COUNTS) and its check; only these reach the row.
EMBEDDED_COUNT_CHECKS = {
    **{key: _count for key in ("params", "params_without_bn", "flops", "flops_analytic", "flops_unfused",
                               "flops_fused", "memory_ideal_elements", "memory_ideal_bytes")},
    "flops_by_operator": _counts_by_name, "unsupported_ops": _counts_by_name, "zero_flop_ops": _counts_by_name,
    "memory_impl": _memory_impl,
}


def _workload(value) -> dict:
    """The workload record, checked as Workload.from_dict reads it."""
    if not isinstance(value, dict):
        raise BadMetadata(f"workload is {_shown(value)}, not an object")
    if not isinstance(value.get("name"), str) or not value["name"]:
        raise BadMetadata(f"workload.name is {_shown(value.get('name'))}, not a name")
    if value.get("kind", "operator") not in WORKLOAD_KINDS:
        raise BadMetadata(f"workload.kind is {_shown(value.get('kind'))}, not one of {', '.join(WORKLOAD_KINDS)}")
    shape = value.get("shape")
    if not isinstance(shape, list) or len(shape) != 3:
        raise BadMetadata(f"workload.shape is {_shown(shape)}, not [C, H, W]")
    for index, side in enumerate(shape):
        _int(side, f"workload.shape[{index}]", 1, MAX_DIM)
    _int(value.get("layers"), "workload.layers", 1, MAX_DIM)
    params = value.get("params")
    if not isinstance(params, dict):
        raise BadMetadata(f"workload.params is {_shown(params)}, not an object")
    for key, option in params.items():
        if option is not None and not isinstance(option, (str, int, float)):
            raise BadMetadata(f"{validation.json_path('workload.params', key)} is {_shown(option)}, not a string, "
                              "number, boolean or null")
    if not isinstance(value.get("weights"), (str, type(None))):
        raise BadMetadata(f"workload.weights is {_shown(value['weights'])}, not a path or null")
    if not isinstance(value.get("fuse_bn", False), bool):
        raise BadMetadata(f"workload.fuse_bn is {_shown(value['fuse_bn'])}, not true or false")
    return value


def checked_metadata(text: str) -> dict:
    """The exporter's metadata from its JSON text, every field the runner uses checked (counts it
    does not know are left out); BadMetadata says which field is wrong."""
    try:
        metadata = json.loads(text, parse_constant=refuse_constant)
    except ValueError as exc:  # json.JSONDecodeError, and NaN or Infinity
        raise BadMetadata(f"is not JSON ({exc})") from None
    except RecursionError:
        raise BadMetadata("is nested deeper than Python's JSON parser goes") from None
    if not isinstance(metadata, dict):
        raise BadMetadata(f"is {_shown(metadata)}, not a JSON object")
    deep = validation.too_deep(metadata)
    if deep is not None:
        raise BadMetadata(f"{deep} is nested more than {validation.MAX_JSON_DEPTH} levels deep")
    counts = metadata.get("counts", {})
    if not isinstance(counts, dict):
        raise BadMetadata(f"counts is {_shown(counts)}, not an object")
    for key, check in EMBEDDED_COUNT_CHECKS.items():
        check(counts.get(key), f"counts.{key}")
    dtype = metadata.get("dtype", "fp32")
    if dtype not in DTYPES:
        raise BadMetadata(f"dtype is {_shown(dtype)}, not one of {', '.join(DTYPES)}")
    return {"workload": _workload(metadata.get("workload")), "batch": _int(metadata.get("batch"), "batch", 1, MAX_DIM),
            "dtype": dtype, "counts": {key: counts[key] for key in EMBEDDED_COUNT_CHECKS if key in counts},
            "exported_with": metadata.get("exported_with")}


def embedded_metadata(session, path: Path) -> tuple[dict | None, str | None]:
    """(the exporter's metadata, checked, None) or (None, why it is missing); metadata that is
    there but wrong is a user error naming the field."""
    value = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if value is None:
        return None, "it has no flopsbench metadata"
    try:
        return checked_metadata(value), None
    except BadMetadata as exc:
        raise UserError("MODEL.onnx", f"{path.name}: its flopsbench metadata {exc}; re-export it with "
                                      f"'flopsbench export NAME -o {path.name}'") from None


def input_spec(session, metadata: dict | None, path: Path) -> tuple[str, list[int]]:
    """The input's name and the NCHW shape to feed, checked against the session's input."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise UserError("MODEL.onnx", f"{path.name} has {len(inputs)} inputs; the board runner feeds exactly one")
    spec = inputs[0]
    if spec.type != "tensor(float)":
        raise UserError("MODEL.onnx", f"{path.name}'s input is {spec.type}; the board runner feeds float32, "
                                      "as 'flopsbench export' writes")
    declared = list(spec.shape)
    if metadata is not None:
        shape = [int(metadata["batch"]), *metadata["workload"]["shape"]]
        if len(declared) != 4 or any(isinstance(d, int) and d != s for d, s in zip(declared, shape)):
            raise UserError("MODEL.onnx", f"{path.name}'s metadata says input {shape} but its graph takes "
                                          f"{declared}; re-export it with 'flopsbench export'")
        check_input_fits(shape, path, from_metadata=True)
        return spec.name, shape
    if len(declared) != 4 or not all(isinstance(d, int) and d > 0 for d in declared):
        raise UserError("MODEL.onnx", f"{path.name} has no flopsbench metadata and its input shape {declared} is "
                                      "not a fixed NCHW shape; export it with 'flopsbench export NAME -o FILE.onnx'")
    check_input_fits(declared, path, from_metadata=False)
    return spec.name, declared


def check_input_fits(shape: list[int], path: Path, from_metadata: bool) -> None:
    """Refuse an input (float32) larger than the memory available, before a worker allocates it;
    the metadata's field at fault is the batch when one image would fit, else the shape."""
    needed, available = math.prod(shape) * 4, validation.available_memory()
    if available is None or needed <= available:
        return
    sizes = f"{_size(needed)}, and {_size(available)} of memory is available"
    if not from_metadata:
        raise UserError("MODEL.onnx", f"{path.name}'s input {shape} takes {sizes}; export it at a smaller batch "
                                      "or shape with 'flopsbench export'")
    field = "batch" if shape[0] > 1 and needed // shape[0] <= available else "workload.shape"
    raise UserError("MODEL.onnx", f"{path.name}: its flopsbench metadata {field} makes an input {shape} of "
                                  f"{sizes}; re-export it at a smaller batch or shape with "
                                  f"'flopsbench export NAME -o {path.name}'")


def _size(n: int) -> str:
    """1 << 40 -> '1 TiB'."""
    unit = max((u for u in range(7) if n >= 1024 ** u), default=0)
    return f"{n / 1024 ** unit:.3g} {('B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB')[unit]}"


def make_row(path: Path, metadata: dict | None, shape: list[int], missing: str | None) -> Row:
    """The row, with the exporter's counts copied in (unknown, None, without metadata)."""
    if metadata is None:
        workload = Workload(path.stem, Shape(*shape[1:]), 1, kind="model")
        row = Row(workload)
        row.warnings.append(f"{path.name}: {missing}, so FLOPs, params and memory are unknown (null) and the "
                            "workload is named after the file; export with 'flopsbench export NAME -o FILE.onnx' "
                            "to embed them")
        return row
    row = Row(Workload.from_dict(metadata["workload"]))
    for key, value in metadata["counts"].items():  # checked: only the counts an export embeds
        setattr(row, key, value)
    return row


# --- measuring -----------------------------------------------------------------------------------------

def measure(args: argparse.Namespace, argv: list[str]) -> Report:
    """Validate, load, time and return the report (``complete`` False if interrupted)."""
    try:
        validation.check_budget(args.min_time, args.min_runs, args.max_runs, args.runs, args.warmup, args.rounds,
                                args.stop_ci)
        cores = validation.parse_cores(args.cores, args.threads)
        validation.check_seed(args.seed)
        validation.check_writable(args.output)
    except validation.OptionError as exc:
        raise UserError(exc.option, str(exc)) from None
    if not allocator.available(args.allocator):
        raise UserError("--allocator", allocator.NEEDS_GLIBC)
    budget = budget_from(args)
    path = Path(args.model)
    if not path.is_file():
        raise UserError("MODEL.onnx", f"no file at {path}; give the path of a file made by 'flopsbench export'")
    try:
        session, record = make_session(path, args.threads, cores, args.ort_opt_level, args.ort_spinning)
    except Exception as exc:  # noqa: BLE001 -- onnxruntime's own error types vary by version
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError("MODEL.onnx", f"onnxruntime cannot load {path.name} ({reason})") from None
    metadata, missing = embedded_metadata(session, path)
    _, shape = input_spec(session, metadata, path)
    dtype = metadata.get("dtype", "fp32") if metadata else "fp32"
    device = device_name()
    execution = Execution(device=device, runtime="onnxruntime",
                          runtime_options=(("opt_level", args.ort_opt_level), ("spinning", args.ort_spinning)),
                          dtype=dtype, batch=shape[0], threads=args.threads, cores=cores, budget=budget,
                          seed=args.seed, allocator=args.allocator)
    row = make_row(path, metadata, shape, missing)
    row.runtime = {**record, "onnx_file": path.name, "onnx_bytes": path.stat().st_size, "onnx_sha256": sha256(path),
                   "runner": "flopsbench.board", "embedded_metadata": metadata is not None,
                   "exported_with": metadata.get("exported_with") if metadata else None,
                   "pconv_exported_as": "split_cat" if metadata else None}
    command = "model" if row.workload.kind == "model" else "ops"
    environment = capture_environment(with_torch=False, cores=cores)  # clock of the cores timed on
    report = Report(command=command, execution=execution, environment=environment,
                    argv=[PROG, *argv], rows=[row])
    # This process only loaded the file; the rounds are timed in fresh workers, as ops/model's are.
    case = Case(row, {"workload": row.workload.to_dict(), "onnx": str(path.resolve())})
    try:
        with signals.ending_as_interrupt():  # SIGTERM and SIGHUP keep the samples as Ctrl-C does
            rounds.measure(report, [case], backend_for(execution).transport())
    except KeyboardInterrupt:
        pass  # the report stays incomplete
    return report


def summary(report: Report) -> str:
    row, ex = report.rows[0], report.execution
    where = (f"{report.environment.get('machine')} (device {ex.device}, onnxruntime "
             f"{row.runtime.get('onnxruntime')}, {ex.threads} thread(s) on core(s) {','.join(map(str, ex.cores))})")
    label = f"{row.workload.name} {row.workload.shape} batch {ex.batch}"
    stats = row.stats
    if row.status != "ok" or stats is None:
        return f"{label} on {where}: {row.error or 'no samples'}"
    text = f"{label} on {where}: median {stats.median_s * 1e3:.4g} ms, IQR {stats.iqr_s * 1e3:.3g} ms, {stats.n} samples"
    if row.flops is not None:
        text += f"; FLOPs {_si(row.flops)}, FLOPS {_si(row.flops / stats.median_s)}/s"
    return text


def _si(value: float) -> str:
    """335438400 -> '335 M', 12 -> '12' (decimal prefixes, as the tables use)."""
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g} {prefix}"
    return f"{value:.3g}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    try:
        report = measure(args, argv)
    except UserError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        written = write_report(report, args.output)
    except BrokenPipeError:  # the reader is gone: end quietly, with SIGPIPE's status, as Unix tools end
        return PIPE_GONE
    print(summary(report), file=sys.stderr)
    for warning in report.rows[0].warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for note in report.rows[0].notes:
        print(f"note: {note}", file=sys.stderr)
    if written and args.output != "-":
        print(f"wrote {args.output}", file=sys.stderr)
    if not report.complete:
        print(f"interrupted{signals.describe()}: the report is marked incomplete and holds the samples taken so far",
              file=sys.stderr)
    return signals.exit_status(report.exit_status()) or (0 if written else 1)


def write_report(report: Report, output: str) -> bool:
    """The JSON on stdout ('-') or into ``output`` (flopsbench.output's rules: a regular file replaced in
    one step, a device, FIFO or symlink written through). A failure is one line on stderr and False;
    BrokenPipeError (the reader is gone) is raised, with stdout discarded."""
    try:
        if output == "-":
            write_stdout(report.to_json())
        else:
            write_text(Path(output), report.to_json())
    except BrokenPipeError:
        if output == "-":
            discard_stdout()
        raise
    except OSError as exc:
        if output == "-":
            discard_stdout()
        print(f"{PROG}: error: cannot write {'to stdout' if output == '-' else output} ({reason(exc)})",
              file=sys.stderr)
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
