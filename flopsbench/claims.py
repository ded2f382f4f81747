"""The FasterNet paper's claims checked against measured reports (``flopsbench claims FILE...``).

The claims are data: the ``claims`` list of data/fasternet_published.json, each quoted from the
paper and cited by section, figure, equation and table, with the workloads it compares (operands
``a`` and ``b``, in flopsbench's terms, at the paper's settings), the paper's number and what the
paper claims of it. Each claim is checked per device and, for operators, per feature map (a
*check*), and each check gets one verdict:

- **Timed claims** (a speed-up, a time ratio, a FLOPS ratio per feature map, a ratio of the FLOPS
  averaged over Table 1's four feature maps) compare the ratio's 95 % bootstrap interval (as
  compare's, compare.hierarchical_ratio_interval: each row's timing rounds resampled, then their
  samples, 2,000 times, seed 0; a row of one round, its samples) with the claimed
  side of 1: *holds* when the whole interval lies on the claimed side (a speed-up: above 1),
  *fails* when the whole interval lies on the other side, *inconclusive* when it straddles 1 (or
  touches it), or when a row has fewer than 8 samples (compare.MIN_SAMPLES). The verdict is on the
  direction only; the measured ratio is shown beside the paper's number, with where the paper's
  number falls (within, above or below the interval), for the magnitude, which depends on the
  machine.
- **Counted claims** (FLOPs and the ideal memory access of PConv against Conv) divide exact counts
  of the same report: *holds* when the ratio is within the claim's relative tolerance of the
  paper's number, *fails* otherwise; they have no interval.
- **not measured**: no report from the device, or no timed row of an operand; the reason names
  what is missing.

Both rows of a ratio come from reports of one protocol (device, runtime, batch, threads,
precision, speed options: identity.protocol), never from two: each protocol found for a device
gets its own check. Within a protocol the rows come from one report when one holds them all (the
one whose least-sampled row has the most samples, as a run's interleaved rounds share its
machine state); otherwise each row from the report that has it with the most samples, and the
check says so. Rows pair by workload identity (identity.workload_identity; the weights file is
left out, as weights do not change the speed). Torch-free: it reads reports and the paper's data."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from flopsbench.bootstrap import RESAMPLES, SEED, hierarchical_medians, percentile_interval
from flopsbench.compare import MIN_SAMPLES, hierarchical_ratio_interval, split_rounds
from flopsbench.identity import SPEED_NEUTRAL_OPTIONS, protocol, workload_identity
from flopsbench.paper import DEVICE_COLUMNS, precision_label, protocol_mismatch, published
from flopsbench.report import Report, Row
from flopsbench.spec import Execution, Shape, Workload

HOLDS, FAILS, INCONCLUSIVE, NOT_MEASURED = "holds", "fails", "inconclusive", "not measured"
DEVICE_NAMES = {"cuda": "GPU", "cpu": "CPU", "arm": "ARM"}  # the paper's names of flopsbench's devices
# What each kind of claim divides (A and B its operands), in the terms of the paper.
KINDS = {
    "speedup": "speed-up of A over B: B's latency / A's (on the GPU: A's throughput / B's)",
    "time_ratio": "A's latency / B's",
    "flops_per_s_ratio": "A's FLOPS / B's, at one feature map",
    "average_flops_per_s_ratio": "A's FLOPS / B's, each averaged over the four feature maps",
    "flops_ratio": "A's FLOPs / B's (fvcore counts)",
    "memory_ratio": "A's ideal memory access / B's (the paper's formulas)",
}
COUNTED = {"flops_ratio": "flops", "memory_ratio": "memory_ideal_bytes"}  # kind -> the row's count
CLAIMED = ("above", "below", "equal")


@dataclass(frozen=True)
class Operand:
    """A workload a claim compares: the paper's name for it (a Table 1 operator or a Table 3 model)
    and the workload at the paper's settings; an operator's feature map comes from the claim."""

    label: str
    workload: dict

    def at(self, shape: Shape | None) -> Workload:
        data = self.workload
        side = Shape(*data["shape"]) if shape is None else shape
        return Workload(data["name"], side, data["layers"], tuple(data["params"].items()), data["kind"],
                        None, data.get("fuse_bn", False))


@dataclass(frozen=True)
class Claim:
    id: str
    text: str  # as in the paper
    where: str  # section, figure, equation, table
    kind: str  # a key of KINDS
    a: Operand
    b: Operand
    claimed: str  # the ratio lies 'above' or 'below' the threshold, or is 'equal' to it within the tolerance
    threshold: float
    devices: tuple[str, ...] = ()  # timed claims
    feature_maps: tuple[Shape, ...] = ()  # operator claims
    paper: dict | float | None = None  # the paper's number: per device, or one for all
    paper_from: str | None = None  # or the Table 1 entries it follows from: operators_table(_averages)
    tolerance: float = 0.0  # relative, for 'equal'
    note: str | None = None

    @property
    def timed(self) -> bool:
        return self.kind not in COUNTED

    def cases(self) -> tuple[Shape | None, ...]:
        """What one check covers besides the device: a feature map, or (models, averages) everything."""
        return self.feature_maps if self.kind in ("flops_per_s_ratio", *COUNTED) else (None,)


def paper_claims() -> list[Claim]:
    """The claims in the paper's data, checked for shape (ValueError names the claim at fault)."""
    return [parse_claim(item) for item in published()["claims"]]


def parse_claim(data: Any) -> Claim:
    where = data.get("id", "?") if isinstance(data, dict) else "?"
    try:
        operands = [Operand(data[side]["label"], data[side]["workload"]) for side in ("a", "b")]
        claim = Claim(id=data["id"], text=data["text"], where=data["where"], kind=data["kind"], a=operands[0],
                      b=operands[1], claimed=data["claimed"], threshold=float(data["threshold"]),
                      devices=tuple(data.get("devices", ())),
                      feature_maps=tuple(Shape(*fm) for fm in data.get("feature_maps", ())),
                      paper=data.get("paper"), paper_from=data.get("paper_from"),
                      tolerance=float(data.get("tolerance", 0.0)), note=data.get("note"))
        for operand in operands:
            operand.at(claim.feature_maps[0] if claim.feature_maps else None)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"claim {where!r} is malformed ({type(exc).__name__}: {exc})") from None
    if claim.kind not in KINDS or claim.claimed not in CLAIMED or set(claim.devices) - set(DEVICE_NAMES):
        raise ValueError(f"claim {where!r} has an unknown kind, claimed side or device")
    if claim.timed != bool(claim.devices):
        raise ValueError(f"claim {where!r}: a timed claim needs devices, a counted one has none")
    if (claim.a.workload["kind"] == "operator") != bool(claim.feature_maps):
        raise ValueError(f"claim {where!r}: operators need feature maps, models have their input")
    return claim


@dataclass(frozen=True, eq=False)  # two sources are the same only if they are one object
class Source:
    """A report and the file it came from."""

    name: str
    report: Report


@dataclass(frozen=True)
class Value:
    """One operand's measured quantity beside the paper's, in SI units (``quantity`` names it:
    latency_s, throughput_per_s, flops_per_s, flops, memory_bytes)."""

    label: str
    quantity: str
    measured: float | None
    paper: float | None


@dataclass(frozen=True)
class Check:
    """One claim on one device under one protocol, at one feature map where it has one."""

    claim: Claim
    verdict: str
    device: str | None = None
    protocol: str | None = None  # runtime, batch, threads, precision, options
    case: Shape | None = None
    ratio: float | None = None
    interval: tuple[float, float] | None = None
    paper: float | None = None
    values: tuple[Value, ...] = ()
    reason: str | None = None  # why not measured, or inconclusive without an interval
    notes: tuple[str, ...] = ()
    files: tuple[str, ...] = ()

    @property
    def paper_position(self) -> str | None:
        """Where the paper's number falls against the measured interval: within, above or below."""
        if self.paper is None or self.interval is None:
            return None
        low, high = self.interval
        return "above" if self.paper > high else "below" if self.paper < low else "within"


def direction_verdict(interval: tuple[float, float], threshold: float, claimed: str) -> str:
    """holds: the interval lies entirely on the claimed side of the threshold; fails: entirely on
    the other; inconclusive: it straddles or touches it."""
    low, high = interval
    above, below = low > threshold, high < threshold
    if claimed == "below":
        above, below = below, above
    return HOLDS if above else FAILS if below else INCONCLUSIVE


def evaluate(claims: list[Claim], sources: list[Source]) -> list[Check]:
    """Every check of every claim, in the claims' order, then device, protocol and feature map."""
    checks = []
    for claim in claims:
        checks.extend(_timed_checks(claim, sources) if claim.timed else _counted_checks(claim, sources))
    return checks


# --- timed claims ---------------------------------------------------------------------------------

def _timed_checks(claim: Claim, sources: list[Source]) -> list[Check]:
    checks = []
    for device in claim.devices:
        groups = _protocol_groups([s for s in sources if s.report.execution.device == device])
        if not groups:
            checks.append(Check(claim, NOT_MEASURED, device, paper=_paper_ratio(claim, device, None),
                                reason=f"no report from the {DEVICE_NAMES[device]} (device {device})"))
        for group in groups:
            execution = group[0].report.execution
            for case in claim.cases():
                checks.append(_timed_check(claim, device, protocol_label(execution), case, group))
    return checks


def _protocol_groups(sources: list[Source]) -> list[list[Source]]:
    """The reports by protocol (identity.protocol, whether ops or model), in the order first given."""
    groups: dict[tuple, list[Source]] = {}
    for source in sources:
        key = tuple(sorted((k, v) for k, v in protocol(source.report).items() if k != "command"))
        groups.setdefault(key, []).append(source)
    return list(groups.values())


def protocol_label(execution: Execution) -> str:
    """'torch, batch 1, 1 thread, fp32' and any runtime option that changes the speed."""
    options = [f"{k}={v}" for k, v in sorted(dict(execution.runtime_options).items())
               if k not in SPEED_NEUTRAL_OPTIONS]
    threads = f"{execution.threads} thread{'s' * (execution.threads != 1)}"
    return ", ".join([str(execution.runtime), f"batch {execution.batch}", threads, precision_label(execution),
                      *options])


def _operands(claim: Claim, case: Shape | None) -> list[Workload]:
    """The workloads a check needs: A then B, at each of the claim's feature maps for an average."""
    shapes = claim.feature_maps if claim.kind == "average_flops_per_s_ratio" else (case,)
    return [operand.at(shape) for operand in (claim.a, claim.b) for shape in shapes]


def _timed_check(claim: Claim, device: str, label: str, case: Shape | None, group: list[Source]) -> Check:
    workloads = _operands(claim, case)
    paper = _paper_ratio(claim, device, case)
    picked, missing, notes = select_rows(workloads, group)
    base = Check(claim, NOT_MEASURED, device, label, case, paper=paper)
    if missing:
        return replace(base, reason=missing)
    rows = [row for row, _ in picked]
    files = tuple(dict.fromkeys(source.name for _, source in picked))
    notes += _row_notes(picked)
    mismatch = protocol_mismatch(picked[0][1].report.execution)
    if mismatch:
        notes.append(mismatch)
    if claim.kind in ("flops_per_s_ratio", "average_flops_per_s_ratio") and any(not row.flops for row in rows):
        return replace(base, reason="a row has no FLOPs count", notes=tuple(notes), files=files)
    if any(row.stats.median_s <= 0 for row in rows):  # a timer's tick above the call's time, or an edited file
        return replace(base, verdict=INCONCLUSIVE, reason="a row's median is 0 s: no ratio", notes=tuple(notes),
                       files=files)
    half = len(rows) // 2
    a_rows, b_rows = rows[:half], rows[half:]
    ratio, interval = _ratio_and_interval(claim.kind, a_rows, b_rows)
    values = _values(claim, device, case, a_rows, b_rows, picked[0][1].report.execution.batch)
    checked = replace(base, ratio=ratio, values=values, notes=tuple(notes), files=files)
    fewest = min(len(row.samples_s) for row in rows)
    if fewest < MIN_SAMPLES:
        return replace(checked, verdict=INCONCLUSIVE,
                       reason=f"a row has {fewest} samples; the interval needs {MIN_SAMPLES} a row")
    if interval is None:
        return replace(checked, verdict=INCONCLUSIVE, reason="no interval: a median is 0 s in some resamples")
    return replace(checked, verdict=direction_verdict(interval, claim.threshold, claim.claimed), interval=interval)


def _ratio_and_interval(kind: str, a: list[Row], b: list[Row]) -> tuple[float, tuple[float, float] | None]:
    """The measured ratio (of the medians) and its bootstrap interval (None when a resampled
    median is 0)."""
    if kind == "average_flops_per_s_ratio":
        return _average_flops_per_s(a) / _average_flops_per_s(b), _average_ratio_interval(a, b)
    (row_a,), (row_b,) = a, b
    median_a, median_b = row_a.stats.median_s, row_b.stats.median_s
    rounds_a, rounds_b = _rounds(row_a), _rounds(row_b)
    if kind == "time_ratio":  # A's latency / B's
        return median_a / median_b, hierarchical_ratio_interval(rounds_b, rounds_a)
    # a speed-up is B's latency / A's; a FLOPS ratio the same, times A's FLOPs / B's (exact counts)
    factor = row_a.flops / row_b.flops if kind == "flops_per_s_ratio" else 1.0
    interval = hierarchical_ratio_interval(rounds_a, rounds_b)
    return factor * median_b / median_a, None if interval is None else (factor * interval[0], factor * interval[1])


def _average_flops_per_s(rows: list[Row]) -> float:
    return float(np.mean([row.flops / row.stats.median_s for row in rows]))


def _rounds(row: Row) -> list[np.ndarray]:
    """The row's samples by timing round (all of them as one where its round sizes are unusable)."""
    return split_rounds(row, "")[0]


def _average_ratio_interval(a: list[Row], b: list[Row]) -> tuple[float, float] | None:
    """The bootstrap percentile interval of A's average FLOPS / B's: every row's median resampled
    over its rounds (bootstrap.hierarchical_medians), the averages and their ratio taken in each of
    the RESAMPLES resamples; None if a resampled median is 0."""
    rng = np.random.default_rng(SEED)
    medians = [hierarchical_medians(_rounds(row), RESAMPLES, rng) for row in a + b]
    if not all((m > 0).all() for m in medians):
        return None
    flops_per_s = [row.flops / m for row, m in zip(a + b, medians)]
    ratios = np.mean(flops_per_s[:len(a)], axis=0) / np.mean(flops_per_s[len(a):], axis=0)
    return percentile_interval(ratios)


def select_rows(workloads: list[Workload], sources: list[Source]) -> tuple[list[tuple[Row, Source]], str | None,
                                                                          list[str]]:
    """A timed row of each workload with its report, as the module says: from one report that holds
    them all, the one whose least-sampled row has the most samples; else each from the report with
    its most samples. Returns (rows, what is missing or None, notes saying which report was used)."""
    keys = [_key(workload) for workload in workloads]
    found = [(source, _timed_rows(source.report)) for source in sources]
    whole = [(source, rows) for source, rows in found if all(key in rows for key in keys)]
    if whole:
        def fewest(item) -> int:
            return min(len(item[1][key].samples_s) for key in keys)

        source, rows = max(whole, key=fewest)  # the first of equals
        notes = []
        if len(whole) > 1:
            others = ", ".join(f"{other.name} ({fewest((other, r))})" for other, r in whole if other is not source)
            notes.append(f"{len(whole)} reports hold these rows: used {source.name}, whose least-sampled row has "
                         f"the most samples ({fewest((source, rows))}), over {others}")
        return [(rows[key], source) for key in keys], None, notes
    picked, missing, notes = [], [], []
    for workload, key in zip(workloads, keys):
        having = [(rows[key], source) for source, rows in found if key in rows]
        if not having:
            missing.append(_why_missing(workload, key, sources))
            continue
        row, source = max(having, key=lambda item: len(item[0].samples_s))
        picked.append((row, source))
        if len(having) > 1:
            others = ", ".join(f"{s.name} ({len(r.samples_s)})" for r, s in having if s is not source)
            notes.append(f"{describe(workload)}: {len(having)} reports have it: used {source.name}, with the most "
                         f"samples ({len(row.samples_s)}), over {others}")
    if missing:
        return [], "; ".join(missing), []
    notes.insert(0, "no one report holds every row of this check: the rows come from different runs, whose "
                    "machine state may differ by more than the intervals show")
    return picked, None, notes


def _key(workload: Workload) -> tuple:
    return workload_identity(replace(workload, weights=None))


def _timed_rows(report: Report) -> dict[tuple, Row]:
    """The report's first row of each workload that was timed ('ok', with samples)."""
    rows: dict[tuple, Row] = {}
    for row in report.rows:
        if row.status == "ok" and row.samples_s:
            rows.setdefault(_key(row.workload), row)
    return rows


def _why_missing(workload: Workload, key: tuple, sources: list[Source]) -> str:
    for source in sources:
        for row in source.report.rows:
            if _key(row.workload) == key:
                why = f"{row.status}: {row.error}" if row.status != "ok" else "no samples"
                return f"{describe(workload)} in {source.name} was not timed ({why})"
    return f"no report has {describe(workload)} at the paper's settings"


def describe(workload: Workload) -> str:
    """'pconv 96x56x56 ×10' or 'mobilevit_xxs 3x256x256'."""
    layers = f" ×{workload.layers}" if workload.kind == "operator" else ""
    return f"{workload.name} {workload.shape}{layers}"


def _row_notes(picked: list[tuple[Row, Source]]) -> list[str]:
    notes = []
    for row, source in picked:
        if row.warnings:
            notes.append(f"{describe(row.workload)} has {len(row.warnings)} warning(s) in {source.name} (noise, "
                         "drift or outliers; 'flopsbench report FILE' lists them): the interval sees only the "
                         "spread within the run")
    for source in dict.fromkeys(source for _, source in picked):
        if not source.report.complete:
            notes.append(f"{source.name} is incomplete (interrupted)")
    return notes


# --- counted claims -------------------------------------------------------------------------------

def _counted_checks(claim: Claim, sources: list[Source]) -> list[Check]:
    """One check per feature map, from the first report holding both rows with the count (any device:
    the counts do not depend on it)."""
    field = COUNTED[claim.kind]
    checks = []
    for case in claim.cases():
        a, b = claim.a.at(case), claim.b.at(case)
        paper = _paper_ratio(claim, None, case)
        pair = next(((rows[_key(a)], rows[_key(b)], source) for source in sources
                     if _key(a) in (rows := _counted_rows(source.report, field)) and _key(b) in rows), None)
        if pair is None:
            checks.append(Check(claim, NOT_MEASURED, case=case, paper=paper,
                                reason=f"no report holds both {describe(a)} and {describe(b)} with their "
                                       f"{field.replace('_', ' ')}"))
            continue
        row_a, row_b, source = pair
        ratio = getattr(row_a, field) / getattr(row_b, field)
        near = abs(ratio - claim.threshold) <= claim.tolerance * abs(claim.threshold)
        notes = []
        if field == "flops" and row_a.flops_analytic and row_b.flops_analytic:
            notes.append(f"the analytic formula counts {row_a.flops_analytic:,} / {row_b.flops_analytic:,} FLOPs")
        batch = source.report.execution.batch
        quantity = "flops" if field == "flops" else "memory_bytes"
        values = tuple(Value(operand.label, quantity, getattr(row, field) / batch,
                             _paper_operand(operand, quantity, None, case))
                       for operand, row in ((claim.a, row_a), (claim.b, row_b)))
        checks.append(Check(claim, HOLDS if near else FAILS, case=case, ratio=ratio, paper=paper, values=values,
                            notes=tuple(notes), files=(source.name,)))
    return checks


def _counted_rows(report: Report, field: str) -> dict[tuple, Row]:
    rows: dict[tuple, Row] = {}
    for row in report.rows:
        if getattr(row, field) is not None:
            rows.setdefault(_key(row.workload), row)
    return rows


# --- the paper's numbers --------------------------------------------------------------------------

def _paper_ratio(claim: Claim, device: str | None, case: Shape | None) -> float | None:
    """The paper's number for this check: the claim's own (per device, or one), or the ratio of the
    Table 1 entries it follows from; None where the paper has none (a check of all feature maps)."""
    if isinstance(claim.paper, dict):
        return claim.paper.get(device)
    if isinstance(claim.paper, (int, float)):
        return float(claim.paper)
    if claim.paper_from is None or device is None or (claim.paper_from == "operators_table" and case is None):
        return None
    a, b = (_paper_operand(operand, "flops_per_s", device, case) for operand in (claim.a, claim.b))
    return a / b if a and b else None


def _paper_operand(operand: Operand, quantity: str, device: str | None, case: Shape | None) -> float | None:
    """The paper's value of one operand in SI units: a model's latency or throughput (Table 3), an
    operator's FLOPS at a feature map or averaged (Table 1), or its FLOPs at a feature map."""
    data = published()
    if operand.workload["kind"] == "model":
        entry = next((m for m in data["models"] if m["name"] == operand.label), None)
        value = entry and entry.get(DEVICE_COLUMNS[device][0])
        return None if value is None else value if quantity == "throughput_per_s" else value / 1e3
    if quantity == "flops_per_s" and case is None:
        entry = next((m for m in data["operators_table_averages"] if m["operator"] == operand.label), None)
        value = entry and entry.get(DEVICE_COLUMNS[device][1] + "_avg")
        return None if value is None else value * 1e9
    entry = next((m for m in data["operators_table"] if m["operator"] == operand.label
                  and Shape(**m["feature_map"]) == case), None)
    if entry is None or quantity == "memory_bytes":  # the paper prints no memory access
        return None
    return entry["flops_M_total_10_layers"] * 1e6 if quantity == "flops" else entry[DEVICE_COLUMNS[device][1]] * 1e9


def _values(claim: Claim, device: str, case: Shape | None, a: list[Row], b: list[Row], batch: int,
            ) -> tuple[Value, ...]:
    """Each operand's measured quantity beside the paper's: latency (throughput on the GPU) for
    models, FLOPS (averaged for an average) for operators."""
    if claim.kind in ("speedup", "time_ratio"):
        quantity = "throughput_per_s" if device == "cuda" else "latency_s"

        def measured(rows: list[Row]) -> float:
            median = rows[0].stats.median_s
            return batch / median if quantity == "throughput_per_s" else median
    else:
        quantity, measured = "flops_per_s", _average_flops_per_s  # one row: its FLOPS
    return tuple(Value(operand.label, quantity, measured(rows), _paper_operand(operand, quantity, device, case))
                 for operand, rows in ((claim.a, a), (claim.b, b)))
