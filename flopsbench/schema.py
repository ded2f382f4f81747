"""The report's JSON schema (pydantic v2): what a saved report must hold before it is read back
(``Report.from_dict``) and rendered (``flopsbench report``).

It checks the structure and the type of everything the views and ``from_dict`` read, strictly:
no string passes for a number, no float for an integer, no bool for either, no NaN or infinity.
Counts are integers in [0, 2**63); durations are finite seconds, 0 or within [1e-12, 1e6] (a
FLOP count over a shorter one would overflow to infinity); shapes are positive integers; devices,
runtimes and dtypes are the known ones; nothing nests deeper than validation.MAX_JSON_DEPTH.
Keys it does not know are read past (a later version may add some). Host side only: the
torch-free board runner and worker never read reports, and need not have pydantic."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from flopsbench.allocator import ALLOCATORS
from flopsbench.spec import DTYPES, RUNTIMES
from flopsbench.validation import MAX_JSON_DEPTH, json_path, too_deep

DEVICES = ("cpu", "cuda", "arm")  # options.DEVICES, and the devices the paper has columns for
MAX_COUNT = 2 ** 63 - 1
MAX_DIM = 2 ** 31 - 1
MAX_SECONDS = 1e6
MIN_SECONDS = 1e-12  # no clock resolves less; FLOPs over less could overflow to infinity


class ReportError(ValueError):
    """What is wrong with a report, led by the JSON path of the item at fault: 'rows[0].flops: ...'."""


def _duration(value: float) -> float:
    if 0 < value < MIN_SECONDS:
        raise ValueError(f"should be 0 or at least {MIN_SECONDS} s (no clock resolves less)")
    return value


def _scalar(value: Any) -> Any:
    """An option's value: a string, number, boolean or null (not an array or object)."""
    if value is not None and not isinstance(value, (str, int, float)):  # bool is an int
        raise ValueError("should be a string, number, boolean or null")
    return value


Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Positive = Annotated[int, Field(ge=1, le=MAX_COUNT)]
Dim = Annotated[int, Field(ge=1, le=MAX_DIM)]
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS), AfterValidator(_duration)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
Scalar = Annotated[Any, AfterValidator(_scalar)]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


class _Open(_Model):
    """A record whose further keys are kept as they are (the report carries them on)."""

    model_config = ConfigDict(extra="allow")


class WorkloadModel(_Model):
    kind: Literal["operator", "model"] = "operator"
    name: str
    shape: Annotated[list[Dim], Field(min_length=3, max_length=3)]
    layers: Positive
    params: dict[str, Scalar]
    weights: str | None = None
    fuse_bn: bool = False


class BudgetModel(_Model):
    warmup_s: Seconds = 0.2
    warmup_runs: Count = 3
    min_time_s: Seconds = 2.0
    min_runs: Count = 10
    max_runs: Count = 10_000
    exact_runs: Count | None = None
    rounds: Positive = 4
    stop_ci: Fraction = 0.01


class ExecutionModel(_Model):
    device: Literal[DEVICES] = "cpu"
    runtime: Literal[RUNTIMES] = "torch"
    runtime_options: dict[str, Any] = {}
    dtype: Literal[DTYPES] = "fp32"
    batch: Positive = 1
    threads: Positive = 1
    cores: Annotated[list[Count], Field(min_length=1)]
    budget: BudgetModel
    seed: int = 0  # older reports may hold any integer; only new runs are held to validation.SEED_LIMIT
    breakdown_depth: Count = 0
    breakdown_time_s: Annotated[float, Field(gt=0, le=MAX_SECONDS)] = 0.3
    allocator: Literal[ALLOCATORS] = "system"  # reports made before --allocator were timed with the system's


class MemoryImplModel(_Open):
    read_bytes: Count
    write_bytes: Count


class PartModel(_Open):
    """One part of a --breakdown."""

    part: str
    type: str | None
    flops: Count
    memory_bytes: Count
    median_s: Seconds | None


class WholeModel(_Open):
    median_s: Seconds | None = None


class ColdStartModel(_Open):
    """A row's cold start: the medians over its rounds (each round's record is under ``rounds``)."""

    build_s: Seconds | None = None
    first_call_s: Seconds | None = None
    settle_calls: Annotated[float, Field(ge=0, le=MAX_COUNT)] | None = None


class PeakMemoryModel(_Open):
    """A row's peak memory: each figure's largest over its rounds, how measured, why one is missing."""

    host_peak_bytes: Count | None = None
    gpu_peak_allocated_bytes: Count | None = None
    gpu_peak_reserved_bytes: Count | None = None
    method: str | None = None
    unavailable: str | None = None


class EnergyModel(_Open):
    """A row's energy: joules per call (the whole batch) over its rounds' windows, or why none."""

    source: str | None = None
    j_per_call: Annotated[float, Field(ge=0)] | None = None
    unavailable: str | None = None


class RowModel(_Model):
    workload: WorkloadModel
    status: Literal["ok", "error", "not timed"] = "ok"
    error: str | None = None
    params: Count | None = None
    flops: Count | None = None
    flops_analytic: Count | None = None
    flops_unfused: Count | None = None
    flops_fused: Count | None = None
    params_without_bn: Count | None = None
    bn_folded: list[Any] | None = None
    flops_by_operator: dict[str, Count] = {}
    unsupported_ops: dict[str, Count] = {}
    zero_flop_ops: dict[str, Count] = {}
    memory_ideal_elements: Count | None = None
    memory_ideal_bytes: Count | None = None
    memory_impl: MemoryImplModel | None = None
    samples_s: list[Seconds] = []
    round_sizes: list[Count] = []
    stopped_after_round: Count | None = None
    warmup_runs: Count = 0
    worker_pids: list[int] = []
    affinity: dict[str, Any] | None = None
    runtime: dict[str, Any] | None = None
    peak_memory: PeakMemoryModel | None = None
    cold_start: ColdStartModel | None = None
    energy: EnergyModel | None = None
    max_batch: Count | None = None
    breakdown: list[PartModel] | None = None
    breakdown_whole: WholeModel | None = None
    warnings: list[str] = []
    notes: Any = None  # Row.from_dict keeps the strings among them (older reports have none)


class EnvironmentModel(_Open):
    libraries: dict[str, Any] = {}


class ReportModel(_Model):
    """A saved report, as ``Report.to_dict`` writes it (the derived fields are computed again)."""

    model_config = ConfigDict(title="flopsbench report")

    schema_name: Literal["flopsbench.report"] = Field(alias="schema")
    schema_version: Literal[1]
    tool_version: str
    command: str
    argv: list[str]
    created_utc: str
    finished_utc: str | None
    complete: bool
    execution: ExecutionModel
    environment: EnvironmentModel
    workers: Any = None  # Report.from_dict keeps the objects among them (older reports have none)
    rows: list[RowModel]


JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"  # what pydantic v2 writes


def json_schema() -> dict:
    """The report's JSON Schema, published beside the format's description as docs/report-schema.json
    (``python -m flopsbench.schema > docs/report-schema.json`` writes it again)."""
    return {"$schema": JSON_SCHEMA_DIALECT, **ReportModel.model_json_schema(by_alias=True)}


def validated_report(data: Any) -> ReportModel:
    """``data`` (parsed JSON) checked as a whole report; ReportError says what is wrong where."""
    return _validated(ReportModel, data)


def validated_row(data: Any) -> RowModel:
    """``data`` checked as one row of a report."""
    return _validated(RowModel, data)


def _validated(model: type[_Model], data: Any):
    if not isinstance(data, dict):
        raise ReportError(f"top level: is {_json_type(data)}, not a JSON object")
    path = too_deep(data)
    if path is not None:
        raise ReportError(f"{path}: nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ReportError(_first_problem(exc)) from None


def _first_problem(exc: ValidationError) -> str:
    """'rows[0].samples_s[3]: should be a number, got '0.03'' (and how many more problems there are)."""
    error = exc.errors(include_url=False)[0]
    if error["type"] == "missing":
        text = f"{_path(error['loc'])}: missing"
    else:
        message = _MESSAGES.get(error["type"]) or error["msg"].removeprefix("Value error, ").removeprefix("Input ")
        message = message[:1].lower() + message[1:]
        got = error.get("input")
        shown = _json_type(got) if isinstance(got, (dict, list)) else repr(got)[:60]
        text = f"{_path(error['loc'])}: {message}, got {shown}"
    more = exc.error_count() - 1
    return text + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")


# pydantic's words for a JSON reader
_MESSAGES = {"int_type": "should be an integer", "float_type": "should be a number", "finite_number": "should be a "
             "finite number", "string_type": "should be a string", "bool_type": "should be true or false",
             "list_type": "should be an array", "dict_type": "should be an object", "model_type": "should be an object"}


def _path(loc: tuple) -> str:
    """('rows', 0, 'samples_s', 3) -> 'rows[0].samples_s[3]'."""
    text = ""
    for key in loc:
        text = json_path(text, key)
    return text or "top level"


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


if __name__ == "__main__":
    import json

    print(json.dumps(json_schema(), indent=1, ensure_ascii=False))
