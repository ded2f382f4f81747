"""Reports of several runs (devices, runtimes, machines; ``ops``, ``model`` and board reports alike)
merged into the paper's cross-device layouts (``flopsbench report FILE...``; the views are in
flopsbench.merged_views).

- **Rows** are workloads, matched by their identity (flopsbench.identity), never by position. An
  operator at another layer count is another workload, so it gets its own row.
- **Columns**: every protocol (device, runtime, batch, threads, precision, the runtime options that
  change the speed: identity.protocol) on every machine (host and CPU or GPU name) is one column
  group. Runs of different protocols are never pooled; each group's title names its device and
  runtime, plus each aspect in which it differs from the other groups of that device and runtime
  ('cpu torch b8'), the machine where only that tells two apart, and the source's label if given.
  A label (``--label FILE=TEXT``, e.g. 'emulated (qemu): no timing meaning') stands for the
  machine: the files of one protocol under one label share a group, whatever hosts made them.
- **Duplicates**: several rows of one workload in one group (a run repeated on one machine, or a
  workload twice in a report) are pooled: the cell is the median of all their samples, as the rounds
  of one run are pooled, rather than the newest run alone, which would throw measurements away and
  leave the choice of run to the order of the files. The notes say which cells are pooled, and that
  the interval of a pooled median resamples all their rounds together, as though of one run.
- **Counts** (params, FLOPs per image, memory access) are shown once per row; where the sources
  disagree, the notes say so, and the first source's are shown.

Everything here is data; text from the reports is made safe only by the views."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Mapping

import flopsbench_zoo
from flopsbench.bootstrap import usable_round_sizes
from flopsbench.identity import SPEED_NEUTRAL_OPTIONS, protocol, workload_identity
from flopsbench.report import Report, Row, per_image
from flopsbench.spec import Execution, Workload
from flopsbench.stats import Stats, summarize

DEVICE_ORDER = ("cuda", "cpu", "arm")  # the paper's columns: GPU, CPU, ARM
MAX_LISTED = 4  # workloads named in one note before 'and N more'


class MergeError(ValueError):
    """The reports cannot be merged as given (the same report twice); the message says why."""


@dataclass(frozen=True)
class Source:
    """One report to merge: the file it came from, and what the user says of it (``--label``)."""

    name: str
    report: Report
    label: str | None = None

    @property
    def machine(self) -> str:
        """The CPU or GPU the report's rows ran on, as its environment names it."""
        env = self.report.environment
        value = env.get("gpu_name") if self.report.execution.device == "cuda" else env.get("cpu_model")
        return str(value) if value not in (None, "") else "unknown CPU or GPU"

    @property
    def host(self) -> str:
        return str(self.report.environment.get("hostname"))

    @property
    def device_name(self) -> str | None:
        """The device's name in the inventory (``--on NAME``; flopsbench.devices), if it ran on one."""
        name = self.report.environment.get("device_name")
        return name if isinstance(name, str) and name else None


@dataclass(frozen=True)
class Column:
    """A column group: the sources of one protocol on one machine (or under one label)."""

    key: tuple
    title: str
    sources: tuple[Source, ...]

    @property
    def execution(self) -> Execution:
        return self.sources[0].report.execution

    @property
    def label(self) -> str | None:
        return self.sources[0].label

    @property
    def throughput(self) -> bool:
        """Whether the group's time is a throughput (batch > 1, as the paper's GPU column) or a latency."""
        return self.execution.batch > 1


@dataclass(frozen=True)
class Cell:
    """One workload in one column group: its rows from the group's sources, samples pooled."""

    column: Column
    entries: tuple[tuple[Source, Row], ...]

    @property
    def timed(self) -> list[tuple[Source, Row]]:
        return [(source, row) for source, row in self.entries if row.status == "ok" and row.samples_s]

    @property
    def failed(self) -> list[tuple[Source, Row]]:
        return [(source, row) for source, row in self.entries if row.status != "ok"]

    @property
    def pooled(self) -> bool:
        return len(self.timed) > 1

    @cached_property
    def samples_s(self) -> list[float]:
        return [sample for _, row in self.timed for sample in row.samples_s]

    @cached_property
    def round_sizes(self) -> list[int]:
        """Each pooled row's rounds in turn; a row whose round sizes are not usable counts as one round."""
        return [size for _, row in self.timed
                for size in (row.round_sizes if usable_round_sizes(row.samples_s, row.round_sizes)
                             else [len(row.samples_s)])]

    @cached_property
    def stats(self) -> Stats | None:
        return summarize(self.samples_s, self.round_sizes) if self.samples_s else None

    @property
    def flops(self) -> int | None:
        """The FLOPs of one call (the whole batch), as the timed rows count them."""
        return next((row.flops for _, row in self.timed if row.flops is not None), None)

    @property
    def flops_per_s(self) -> float | None:
        stats, flops = self.stats, self.flops
        return flops / stats.median_s if stats and flops is not None and stats.median_s > 0 else None

    def throughput_per_s(self, seconds: float | None) -> float | None:
        """Images per second at a call of ``seconds`` (the median, or an end of its interval)."""
        return self.column.execution.batch / seconds if seconds else None

    @property
    def warned(self) -> bool:
        return any(row.warnings for _, row in self.timed)


@dataclass(frozen=True)
class Counts:
    """What a row's workload counts, once: per image for FLOPs, for one batch of ``memory_batch``
    images for memory (the smallest batch any source ran)."""

    params: int | None = None
    flops: int | float | None = None  # the timed workload's (operators: the table's; models: BN fused unless unfused)
    flops_unfused: int | float | None = None  # models: the paper's Table 3 count
    flops_fused: int | float | None = None
    memory_ideal_bytes: int | None = None
    memory_impl_bytes: int | None = None
    memory_batch: int | None = None


@dataclass(frozen=True)
class MergedRow:
    identity: tuple
    workload: Workload
    cells: dict[tuple, Cell]  # by Column.key
    counts: Counts = field(default_factory=Counts)


@dataclass(frozen=True)
class Merged:
    sources: tuple[Source, ...]
    columns: tuple[Column, ...]  # in the paper's device order (GPU, CPU, ARM), then the files' order
    rows: tuple[MergedRow, ...]  # operators in the registry's order, then models; each in the files' order
    notes: tuple[str, ...]  # what pooled, failed, warned or disagreed (plain text, from the reports)

    def table(self, kind: str) -> list[MergedRow]:
        """The rows of one kind, 'operator' (Table 1's layout) or 'model' (Table 3's)."""
        return [row for row in self.rows if row.workload.kind == kind]

    @property
    def kinds(self) -> list[str]:
        return [kind for kind in ("operator", "model") if self.table(kind)]

    def columns_of(self, kind: str) -> list[Column]:
        """The groups that have a cell in the table of ``kind``."""
        keys = {key for row in self.table(kind) for key in row.cells}
        return [column for column in self.columns if column.key in keys]


def merge(reports: Iterable[tuple[str, Report]], labels: Mapping[str, str] | None = None) -> Merged:
    """The reports, each named (a file name), merged: rows by workload identity, a column group per
    protocol and machine. ``labels`` maps a name to what the user says of that source (it stands
    for the machine in the grouping). MergeError if one report is given twice."""
    labels = labels or {}
    sources = [Source(name, report, labels.get(name)) for name, report in reports]
    _refuse_repeats(sources)
    columns = _columns(sources)
    by_source = {id(source): column for column in columns for source in column.sources}

    entries: dict[tuple, dict[tuple, list]] = {}  # identity -> column key -> [(source, row)]
    workloads: dict[tuple, Workload] = {}
    for source in sources:
        column = by_source[id(source)]
        for row in source.report.rows:
            identity = workload_identity(row.workload)
            workloads.setdefault(identity, row.workload)
            entries.setdefault(identity, {}).setdefault(column.key, []).append((source, row))

    notes: list[str] = []
    rows = []
    for identity in _ordered(workloads):
        cells = {key: Cell(column, tuple(found)) for column in columns
                 if (found := entries[identity].get(key := column.key))}
        found_rows = [entry for cell in cells.values() for entry in cell.entries]
        counts, disagreement = _counts(workloads[identity], found_rows)
        notes += disagreement
        rows.append(MergedRow(identity, workloads[identity], cells, counts))
    notes = _layer_notes(rows) + notes + _cell_notes(rows, columns)
    return Merged(tuple(sources), tuple(columns), tuple(rows), tuple(notes))


def _refuse_repeats(sources: list[Source]) -> None:
    """One report given twice (the same file, or a copy) would count its samples twice."""
    seen: dict[str, Source] = {}
    for source in sources:
        digest = hashlib.sha256(json.dumps(source.report.to_dict(), sort_keys=True).encode()).hexdigest()
        if digest in seen:
            raise MergeError(f"{seen[digest].name} and {source.name} hold the same report; give each report once "
                             "(runs of one protocol on one machine are pooled, so a report twice would count its "
                             "samples twice)")
        seen[digest] = source


def column_key(source: Source) -> tuple:
    """The group a source belongs to: its protocol (whatever its kind of report: an ops and a model
    report of one protocol fill the two tables of one group) and its machine, or its label. Two
    devices of an inventory on one machine (cores 0 and 1) are two machines here, never pooled."""
    aspects = tuple((aspect, text) for aspect, text in protocol(source.report).items() if aspect != "command")
    where = ("label", source.label) if source.label else ("machine", source.host, source.machine, source.device_name)
    return aspects, where


def _columns(sources: list[Source]) -> list[Column]:
    grouped: dict[tuple, list[Source]] = {}
    for source in sources:
        grouped.setdefault(column_key(source), []).append(source)

    def order(key: tuple) -> int:
        device = grouped[key][0].report.execution.device
        return DEVICE_ORDER.index(device) if device in DEVICE_ORDER else len(DEVICE_ORDER)

    keys = sorted(grouped, key=order)  # stable: the files' order within a device
    titles = _titles([grouped[key] for key in keys])
    return [Column(key, title, tuple(grouped[key])) for key, title in zip(keys, titles)]


def _titles(groups: list[list[Source]]) -> list[str]:
    """'device runtime', plus what tells the group apart from the others of its device and runtime:
    the protocol's differing aspects (b8, t4, fp16, opt_level=basic); the label, in parentheses,
    always; then the inventory's device name, else the machine, else the host, where that tells them
    apart; '#2', '#3' if nothing does."""
    firsts = [group[0] for group in groups]
    titles = [f"{s.report.execution.device} {s.report.execution.runtime}" for s in firsts]
    differing = [[] for _ in groups]
    for base in set(titles):
        members = [i for i, title in enumerate(titles) if title == base]
        parts = [_short_protocol(firsts[i].report.execution) for i in members]
        for aspect in dict.fromkeys(a for part in parts for a in part):
            if len({part.get(aspect) for part in parts}) > 1:
                for i, part in zip(members, parts):
                    if aspect in part:
                        differing[i].append(part[aspect])
    titles = [" ".join([title, *extra]) for title, extra in zip(titles, differing)]
    titles = [f"{title} ({s.label})" if s.label else title for title, s in zip(titles, firsts)]
    for describe in (lambda s: s.device_name or "", lambda s: s.machine, lambda s: f"host {s.host}"):
        for title in set(titles):
            members = [i for i, other in enumerate(titles) if other == title]
            if len({describe(firsts[i]) for i in members}) > 1:
                for i in members:
                    titles[i] = f"{title} {describe(firsts[i])}".rstrip()
    seen: dict[str, int] = {}
    numbered = []
    for title in titles:
        seen[title] = seen.get(title, 0) + 1
        numbered.append(title if titles.count(title) == 1 else f"{title} #{seen[title]}")
    return numbered


def _short_protocol(execution: Execution) -> dict[str, str]:
    """The aspects of a protocol that may tell two groups of one device and runtime apart, shortly."""
    precision = execution.dtype + ("+tf32" if execution.option("tf32") else "")
    parts = {"batch": f"b{execution.batch}", "threads": f"t{execution.threads}", "precision": precision,
             "allocator": f"allocator={execution.allocator}"}
    for key, value in execution.runtime_options:
        if key not in SPEED_NEUTRAL_OPTIONS:
            parts[f"option {key}"] = f"{key}={value}"
    return parts


def _ordered(workloads: dict[tuple, Workload]) -> list[tuple]:
    """Operators first, each operator's rows together, in the registry's order (Table 1's), then
    unknown names, then models; otherwise as the files list them."""
    known = flopsbench_zoo.list_operators()
    names = list(dict.fromkeys(w.name for w in workloads.values()))

    def rank(identity: tuple) -> tuple:
        workload = workloads[identity]
        if workload.kind == "model":
            return (2, 0, 0)
        if workload.name in known:
            return (0, known.index(workload.name), 0)
        return (1, names.index(workload.name), 0)

    return sorted(workloads, key=rank)  # stable


def where(workload: Workload) -> str:
    """'conv 96x56x56' (and the layers when not the paper's 10)."""
    layers = f" ×{workload.layers}" if workload.kind == "operator" and workload.layers != 10 else ""
    return f"{workload.name} {workload.shape}{layers}"


def _counts(workload: Workload, entries: list[tuple[Source, Row]]) -> tuple[Counts, list[str]]:
    """A row's counts from its sources' rows, and a note for each count they disagree on."""
    notes = []

    def agreed(what: str, values: list[tuple[Source, object]]):
        values = [(source, value) for source, value in values if value is not None]
        if not values:
            return None
        first_source, first = values[0]
        other = next(((source, value) for source, value in values if value != first), None)
        if other is not None:
            notes.append(f"{where(workload)}: the sources count different {what}: {first} in {first_source.name}, "
                         f"{other[1]} in {other[0].name}; shown: {first_source.name}'s")
        return first

    def batch(source: Source) -> int:
        return source.report.execution.batch

    smallest = min((batch(s) for s, row in entries if row.memory_ideal_bytes is not None
                    or row.memory_impl_bytes is not None), default=None)
    at_smallest = [(s, row) for s, row in entries if batch(s) == smallest]
    counts = Counts(
        params=agreed("params", [(s, row.params) for s, row in entries]),
        flops=agreed("FLOPs per image", [(s, per_image(row.flops, batch(s))) for s, row in entries]),
        flops_unfused=agreed("unfused FLOPs per image", [(s, per_image(row.flops_unfused, batch(s)))
                                                         for s, row in entries]),
        flops_fused=agreed("fused FLOPs per image", [(s, per_image(row.flops_fused, batch(s))) for s, row in entries]),
        memory_ideal_bytes=agreed(f"ideal memory access at batch {smallest}",
                                  [(s, row.memory_ideal_bytes) for s, row in at_smallest]),
        memory_impl_bytes=agreed(f"implementation memory access at batch {smallest}",
                                 [(s, row.memory_impl_bytes) for s, row in at_smallest]),
        memory_batch=smallest,
    )
    return counts, notes


def _listed(workloads: list[Workload]) -> str:
    names = [where(w) for w in workloads]
    more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
    return ", ".join(names[:MAX_LISTED]) + more


def _layer_notes(rows: list[MergedRow]) -> list[str]:
    """An operator at two layer counts: two workloads, on two rows (the Layers column tells them apart)."""
    stacked: dict[tuple, list[Workload]] = {}
    for row in rows:
        if row.workload.kind == "operator":
            stacked.setdefault(workload_identity(row.workload, layers=False), []).append(row.workload)
    return [f"{found[0].name} {found[0].shape} is stacked {' and '.join(str(w.layers) for w in found)} layers deep "
            "in different sources: different workloads, on separate rows"
            for found in stacked.values() if len(found) > 1]


def _cell_notes(rows: list[MergedRow], columns: list[Column]) -> list[str]:
    """Per group: the cells pooled from several runs, those that carry warnings, and each failure."""
    notes = []
    for column in columns:
        cells = [(row.workload, row.cells[column.key]) for row in rows if column.key in row.cells]
        pooled = [workload for workload, cell in cells if cell.pooled]
        if pooled:
            runs = sorted({len(cell.timed) for _, cell in cells if cell.pooled})
            notes.append(f"'{column.title}': {' or '.join(map(str, runs))} runs of {_listed(pooled)} pooled: the "
                         "median of all their samples (its interval resamples all their rounds together, as though "
                         "of one run)")
        warned = [workload for workload, cell in cells if cell.warned]
        if warned:
            notes.append(f"'{column.title}': measurement warnings (noise, drift or outliers) on {_listed(warned)}; "
                         "'flopsbench report FILE' lists them")
        for workload, cell in cells:
            for source, row in cell.failed:
                shown = "; the other runs' samples are shown" if cell.timed else ""
                notes.append(f"'{column.title}': {where(workload)} in {source.name}: {row.status}"
                             f"{': ' + row.error if row.error else ''}{shown}")
    return notes
