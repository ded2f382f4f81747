"""The torch-free board runner: time an exported ONNX file with onnxruntime on a machine that has
neither torch nor fvcore (a Raspberry Pi class ARM board), and write flopsbench's JSON report.

    python -m flopsbench.board t0.onnx --threads 1 --cores 0 -o t0-arm.json

Needs only the Python standard library, numpy, onnxruntime and flopsbench's torch-free modules
(spec, report, timing, stats, sampling, cpu, environment, ort_runtime). The file is usually made
by ``flopsbench export NAME -o FILE.onnx`` on a machine with torch: the export embeds the
workload, batch, dtype and the FLOPs/params/memory counts (metadata key ``flopsbench``), which
the report's row carries over, so the board's report has the same schema and numbers as any
other and merges with them. An ONNX file without that metadata is still timed (its input shape
must then be fixed NCHW); its counts are unknown (null) and the row says so in a warning.

Timing is the same as ``flopsbench ops/model``: onnxruntime's CPU execution provider with
intra-op threads = ``--threads``, inter-op 1, sequential execution, every thread of the process
pinned to ``--cores``; the same warm-up, sampling budget and rounds, each round in a fresh worker
process (``flopsbench.worker``, the same rounds loop as ops/model), the same statistics, noise
warnings and exit-code rule. The input is prepared before
timing: seeded standard-normal float32 of the exported shape (numpy's generator, so its values
differ from torch's; latency does not depend on them).

Only JSON is written (the table views need the torch side's exporters); merge or render it on
the machine you copy it back to. Exit status: 0 ok, 1 the case failed (the report says why),
2 a user error (one line on stderr), 130 interrupted (the report is marked incomplete).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from flopsbench import rounds, validation
from flopsbench.backends import backend_for
from flopsbench.constants import METADATA_KEY, device_name
from flopsbench.environment import capture_environment
from flopsbench.ort_runtime import OPT_LEVELS, make_session
from flopsbench.report import Report, Row, write_atomically
from flopsbench.rounds import Case
from flopsbench.spec import Execution, Shape, TimingBudget, Workload

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
    p.add_argument("--warmup", type=float, default=0.2, help="warm-up seconds, at least 3 calls (0.2)")
    p.add_argument("--min-time", type=float, default=2.0, help="sample until this many seconds are timed... (2)")
    p.add_argument("--min-runs", type=int, default=10, help="...and at least this many samples... (10)")
    p.add_argument("--max-runs", type=int, default=10_000, help="...but never more than this many (10000)")
    p.add_argument("--runs", type=int, default=None, help="exactly this many samples instead")
    p.add_argument("--rounds", type=int, default=4, help="split the samples into this many rounds, each in a "
                                                         "fresh worker process (4)")
    p.add_argument("--stop-ci", type=float, default=0.01,
                   help="after 2+ rounds, stop once the 95%% confidence interval of the median is within +- this "
                        "fraction of it; 0: spend the whole budget (0.01)")
    p.add_argument("--ort-opt-level", default="all", choices=OPT_LEVELS, help="graph optimisation (all)")
    p.add_argument("--ort-spinning", action=argparse.BooleanOptionalAction, default=True,
                   help="let onnxruntime's worker threads spin while waiting (on)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input (0)")
    p.add_argument("-o", "--output", default="-", help="write the JSON report to FILE ('-' = stdout, the default)")
    return p


# --- validation (before anything is loaded or measured) ----------------------------------------------

def budget_from(args: argparse.Namespace) -> TimingBudget:
    return TimingBudget(warmup_s=args.warmup, min_time_s=args.min_time, min_runs=args.min_runs,
                        max_runs=args.max_runs, exact_runs=args.runs, rounds=args.rounds, stop_ci=args.stop_ci)


# --- the ONNX file -------------------------------------------------------------------------------------

def embedded_metadata(session) -> tuple[dict | None, str | None]:
    """(the exporter's metadata, None) or (None, why it is missing or unreadable)."""
    value = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if value is None:
        return None, "it has no flopsbench metadata"
    try:
        metadata = json.loads(value)
        Workload.from_dict(metadata["workload"])
        int(metadata["batch"])
    except (ValueError, KeyError, TypeError) as exc:
        return None, f"its flopsbench metadata is unreadable ({type(exc).__name__}: {exc})"
    return metadata, None


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
        return spec.name, shape
    if len(declared) != 4 or not all(isinstance(d, int) and d > 0 for d in declared):
        raise UserError("MODEL.onnx", f"{path.name} has no flopsbench metadata and its input shape {declared} is "
                                      "not a fixed NCHW shape; export it with 'flopsbench export NAME -o FILE.onnx'")
    return spec.name, declared


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    for key, value in metadata.get("counts", {}).items():
        if key in Row.__dataclass_fields__ and key != "workload":
            setattr(row, key, value)
    return row


# --- measuring -----------------------------------------------------------------------------------------

def measure(args: argparse.Namespace, argv: list[str]) -> Report:
    """Validate, load, time and return the report (``complete`` False if interrupted)."""
    try:
        validation.check_budget(args.min_time, args.min_runs, args.max_runs, args.runs, args.warmup, args.rounds,
                                args.stop_ci)
        cores = validation.parse_cores(args.cores, args.threads)
        validation.check_writable(args.output)
    except validation.OptionError as exc:
        raise UserError(exc.option, str(exc)) from None
    budget = budget_from(args)
    path = Path(args.model)
    if not path.is_file():
        raise UserError("MODEL.onnx", f"no file at {path}; give the path of a file made by 'flopsbench export'")
    try:
        session, record = make_session(path, args.threads, cores, args.ort_opt_level, args.ort_spinning)
    except Exception as exc:  # noqa: BLE001 -- onnxruntime's own error types vary by version
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError("MODEL.onnx", f"onnxruntime cannot load {path.name} ({reason})") from None
    metadata, missing = embedded_metadata(session)
    _, shape = input_spec(session, metadata, path)
    dtype = metadata.get("dtype", "fp32") if metadata else "fp32"
    device = device_name()
    execution = Execution(device=device, runtime="onnxruntime",
                          runtime_options=(("opt_level", args.ort_opt_level), ("spinning", args.ort_spinning)),
                          dtype=dtype, batch=shape[0], threads=args.threads, cores=cores, budget=budget,
                          seed=args.seed)
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
        text += f"; FLOPs {_si(row.flops)} -> {_si(row.flops / stats.median_s)}FLOPS"
    return text


def _si(value: float) -> str:
    """335438400 -> '335 M' (decimal prefixes, as the tables use)."""
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g} {prefix}"
    return f"{value:.3g} "


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    try:
        report = measure(args, argv)
    except UserError as exc:
        print(exc, file=sys.stderr)
        return 2
    text = report.to_json()
    if args.output == "-":
        sys.stdout.write(text)
    else:
        write_atomically(Path(args.output), text)
    print(summary(report), file=sys.stderr)
    for warning in report.rows[0].warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for note in report.rows[0].notes:
        print(f"note: {note}", file=sys.stderr)
    if args.output != "-":
        print(f"wrote {args.output}", file=sys.stderr)
    if not report.complete:
        print("interrupted: the report is marked incomplete and holds the samples taken so far", file=sys.stderr)
    return report.exit_status()


if __name__ == "__main__":
    sys.exit(main())
