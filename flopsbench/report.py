"""The report model: rows of counts and raw samples plus the config and environment.

JSON is the complete record; every table is a view computed from it. Units are SI and named in
the field (``median_s``, ``*_bytes``); nothing is rounded here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from flopsbench import __version__
from flopsbench.bootstrap import usable_round_sizes
from flopsbench.spec import FLOP_CONVENTION, Execution, Workload
from flopsbench.stats import Stats, summarize_frozen

SCHEMA_VERSION = 1


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def error_line(exc: BaseException) -> str:
    """An exception as a row's one-line error: its type and the first line of its message."""
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


@dataclass
class Row:
    """One measured case. ``status`` is 'ok', 'error' or 'not timed' (then ``error`` says why)."""

    workload: Workload
    status: str = "ok"
    error: str | None = None
    params: int | None = None
    flops: int | None = None
    flops_analytic: int | None = None  # operators: the analytic formula fvcore is held to
    flops_unfused: int | None = None  # models: fvcore on the unfused eval model (paper Table 3)
    flops_fused: int | None = None  # models: fvcore with BN folded into convs (Table 8 / README)
    params_without_bn: int | None = None  # models: the rule the published FasterNet params follow
    bn_folded: list | None = None  # models: the (conv, BN) pairs folded, as one executed forward pass showed them
    flops_by_operator: dict[str, int] = field(default_factory=dict)
    unsupported_ops: dict[str, int] = field(default_factory=dict)  # op -> calls, ops fvcore has no formula for
    zero_flop_ops: dict[str, int] = field(default_factory=dict)  # op -> calls, ops fvcore ignores by design (0 FLOPs)
    memory_ideal_elements: int | None = None
    memory_ideal_bytes: int | None = None
    memory_impl: dict | None = None  # MemoryAccess.to_dict()
    samples_s: list[float] = field(default_factory=list)
    round_sizes: list[int] = field(default_factory=list)  # samples taken in each timing round
    stopped_after_round: int | None = None  # its median was precise enough then (TimingBudget.stop_ci)
    warmup_runs: int = 0
    worker_pids: list[int] = field(default_factory=list)  # the worker processes that took its samples
    affinity: dict | None = None
    runtime: dict | None = None  # onnxruntime: session settings, ONNX file, check against torch; cuda: knobs
    # Beyond steady state, each from every round's fresh worker: how far its memory rose while the case ran
    # (flopsbench.peak_memory), its cold start (build, first call, calls until the latency settled;
    # sampling.summarize_cold_start) and the energy of its calls (flopsbench.energy), each with how it was measured.
    peak_memory: dict | None = None
    cold_start: dict | None = None
    energy: dict | None = None
    max_batch: int | None = None  # --find-max-batch: the largest batch that fit in GPU memory
    breakdown: list[dict] | None = None  # per part (module or op kind): FLOPs, bytes, time
    # --breakdown: the whole model timed in the parts' worker, interleaved with them (samples_s,
    # pass_sizes, median_s, warnings), and parts_sum_ratio: the parts' medians summed / its median
    breakdown_whole: dict | None = None
    warnings: list[str] = field(default_factory=list)  # each makes an 'ok' row's shown status 'warn'
    notes: list[str] = field(default_factory=list)  # informational (e.g. drift not checked): shown, status unchanged

    @property
    def stats(self) -> Stats | None:
        if not self.samples_s:
            return None
        sizes = tuple(self.round_sizes) if usable_round_sizes(self.samples_s, self.round_sizes) else ()
        return summarize_frozen(tuple(self.samples_s), sizes)

    @property
    def memory_impl_bytes(self) -> int | None:
        return None if self.memory_impl is None else self.memory_impl["read_bytes"] + self.memory_impl["write_bytes"]

    def to_dict(self, batch: int) -> dict:
        stats = self.stats
        data = {"workload": self.workload.to_dict(), **{k: v for k, v in vars(self).items() if k != "workload"}}
        data["memory_impl_bytes"] = self.memory_impl_bytes
        data["stats"] = stats.to_dict() if stats else None
        data["derived"] = derived(self.flops, self.memory_impl_bytes, stats, batch)
        data["per_image"] = {name: per_image(getattr(self, name), batch) for name in PER_IMAGE}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Row":
        """A row from its JSON; schema.ReportError (a ValueError) says what is wrong with it."""
        from flopsbench.schema import validated_row  # here: the torch-free board and worker never read rows

        validated_row(data)  # strict: what passes has the types the fields say, so it is used as it is
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "workload"}
        notes = data.get("notes")
        fields["notes"] = [n for n in notes if isinstance(n, str)] if isinstance(notes, list) else []
        return cls(workload=Workload.from_dict(data["workload"]), **fields)


# The counts a paper's table gives per image (FLOPs); the row's own fields are totals for the
# whole batch of ``execution.batch`` images, which is what FLOPS divides by the median latency.
PER_IMAGE = ("flops", "flops_analytic", "flops_unfused", "flops_fused")
BATCH_SCOPE = ("row fields flops*, memory_* and samples_s are for the whole batch of execution.batch images; "
               "per_image holds the FLOPs of one image (the paper's tables); params do not depend on the batch")


def per_image(total: int | None, batch: int) -> int | float | None:
    """A FLOP count of one image from the batch's: FLOPs are linear in the batch (no FLOPs without
    an image), so this is exact (an int whenever the division is)."""
    if total is None:
        return None
    return total // batch if total % batch == 0 else total / batch


def derived(flops: int | None, memory_bytes: int | None, stats: Stats | None, batch: int) -> dict:
    """FLOPS = FLOPs / median latency; throughput = batch / median; intensity = FLOPs / byte."""
    median = stats.median_s if stats else None
    return {
        "flops_per_s": flops / median if flops is not None and median else None,
        "throughput_per_s": batch / median if median else None,
        "arithmetic_intensity_flop_per_byte": flops / memory_bytes if flops is not None and memory_bytes else None,
    }


@dataclass
class Report:
    command: str
    execution: Execution
    environment: dict
    argv: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    workers: list[dict] = field(default_factory=list)  # each worker process: task, round, order, pid, exit
    complete: bool = False
    created_utc: str = field(default_factory=utc_now)
    finished_utc: str | None = None
    tool_version: str = __version__

    def to_dict(self) -> dict:
        return {
            "schema": "flopsbench.report",
            "schema_version": SCHEMA_VERSION,
            "tool_version": self.tool_version,
            "command": self.command,
            "argv": self.argv,
            "created_utc": self.created_utc,
            "finished_utc": self.finished_utc,
            "complete": self.complete,
            "flop_convention": FLOP_CONVENTION,
            "batch_scope": BATCH_SCOPE,
            "memory_unit": "bytes (ideal: paper Eqs. 2/3/5 in elements × element size; impl: what PyTorch's eager "
                           "kernels read and write, for onnxruntime rows too)",
            "execution": self.execution.to_dict(),
            "environment": self.environment,
            "workers": self.workers,
            "rows": [row.to_dict(self.execution.batch) for row in self.rows],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Report":
        """A report from its JSON, migrated from an older schema version; schema.ReportError (a
        ValueError) says what is wrong with it, schema_versions.NewerSchemaError (one) that a newer
        flopsbench made it."""
        # here: the torch-free board and worker never read reports
        from flopsbench.schema import validated_report
        from flopsbench.schema_versions import upgraded

        data = upgraded(data)
        checked = validated_report(data)
        # the execution as checked: the keys a later version may add are left out, as Execution takes none
        return cls(command=data["command"], execution=Execution.from_dict(checked.execution.model_dump()),
                   environment=data["environment"], argv=data["argv"],
                   rows=[Row.from_dict(r) for r in data["rows"]], workers=_list_of_dicts(data.get("workers")),
                   complete=data["complete"],
                   created_utc=data["created_utc"], finished_utc=data["finished_utc"],
                   tool_version=data["tool_version"])

    def exit_status(self) -> int:
        """The one exit-code rule of every measuring command: 130 interrupted (incomplete), 1 a row
        failed or was never timed, 0 otherwise."""
        if not self.complete:
            return 130
        return 0 if all(row.status == "ok" for row in self.rows) else 1

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"


def _list_of_dicts(value) -> list[dict]:
    """A report's worker records, whatever a hand-edited or older file holds there."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []



MAX_REPORT_BYTES = 1 << 30  # a report with 1,000 rows of 10,000 samples each is about 200 MB


class ReportFileError(ValueError):
    """A file that holds no report this version reads; the message names the file and says why."""


def read_report_file(path: Path) -> Report:
    """The report in ``path`` (of an older schema version: migrated). A file that holds none is a
    ReportFileError naming what is wrong with it; a newer schema's report is
    schema_versions.NewerSchemaError, for its reader to say to upgrade. Nothing in the file is trusted."""
    from flopsbench.schema_versions import NewerSchemaError

    try:
        if path.stat().st_size > MAX_REPORT_BYTES:
            raise ReportFileError(f"{path} is larger than {MAX_REPORT_BYTES >> 20} MiB, more than any report")
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse_constant)  # JSON is UTF-8
    except OSError as exc:
        raise ReportFileError(f"cannot read {path} ({exc.strerror})") from None
    except (UnicodeDecodeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        if isinstance(exc, ReportFileError):
            raise
        raise ReportFileError(f"{path} is not JSON ({exc})") from None
    except RecursionError:
        raise ReportFileError(f"{path} holds JSON nested deeper than Python's parser goes, so no report") from None
    try:
        return Report.from_dict(data)
    except NewerSchemaError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:  # ReportError is a ValueError
        raise ReportFileError(f"{path} is not a flopsbench report this version reads ({exc})") from None


def refuse_constant(name: str):
    """For json.loads's ``parse_constant``: it reads NaN and Infinity, which JSON does not have (and
    no file flopsbench reads holds)."""
    raise ValueError(f"{name} is not a JSON number")
