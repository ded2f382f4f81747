"""Views of merged reports (flopsbench.merge) in the paper's layouts: a rich table, CSV, Markdown,
LaTeX and JSON, each ``export(merged, stream, layout)``.

Operators take Table 1's layout (a row per operator and feature map; FLOPs and memory access once;
per column group its latency, or throughput at a batch above 1, and FLOPS), models Table 3's (a
row per model; params and FLOPs once; per group its latency or throughput). A group's headers name
its device and runtime. Every string from a report or a label is escaped for its format."""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from typing import Callable, TextIO

import pandas as pd
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

import flopsbench_zoo
from flopsbench import __version__
from flopsbench.escaping import csv_text, latex_text, markdown_text, plain_text
from flopsbench.exporters import FLOPS_NOTE, INTERVAL_NOTE, _fmt, _params_label
from flopsbench.merge import DEVICE_ORDER, Cell, Column, Merged, MergedRow
from flopsbench.paper import DEVICE_COLUMNS, precision_label, published, table1_row, table3_row
from flopsbench.report import Row
from flopsbench.spec import Workload

# --columns: what each shows; the identifying columns (name, shape, options) are always there.
COLUMN_CHOICES = {
    "layers": "operators: the layers stacked (shown anyway where rows differ in it)",
    "input": "models: the input shape (shown anyway where one model has two)",
    "params": "the parameters",
    "flops": "FLOPs per image (models: Table 3's count, BN unfused)",
    "flops-fused": "models: FLOPs per image with BN folded into the convs (Table 8's count)",
    "memory": "operators: memory access by the paper's formula (Eqs. 2/3/5)",
    "memory-impl": "memory the executed PyTorch kernels read and write",
    "time": "per group: latency [ms] at batch 1, throughput [img/s] at a larger batch",
    "ci": "per group: the 95% confidence interval of the median, beside the time",
    "flops-per-s": "per group: FLOPS [G/s]",
    "runs": "per group: the samples behind the median",
}
DEFAULT_COLUMNS = {"operator": ("flops", "memory", "time", "flops-per-s"),
                   "model": ("input", "params", "flops", "time")}
TITLES = {"operator": "Operators (the paper's Table 1 layout)", "model": "Models (the paper's Table 3 layout)"}
IDENTIFYING = ("Operator", "Model", "Options", "Shape")
INTEGER = ("Layers", "Runs")
LOW, HIGH = " CI low", " CI high"


@dataclass(frozen=True)
class Layout:
    """What the views show: the --columns chosen (None: the defaults), the paper's names for its
    operators and models, and the paper's published numbers beside each device's groups."""

    columns: tuple[str, ...] | None = None
    paper_names: bool = False
    paper: bool = False


Header = tuple[str, str]  # (group title, or '' for a row's own columns; what the column holds)


def paper_name(workload: Workload) -> str | None:
    """The paper's name of a registered operator or model at its defaults ('PConv 3x3 (ours, r=1/4)',
    'FasterNet-T0'), or None."""
    try:
        lookup = flopsbench_zoo.get_model if workload.kind == "model" else flopsbench_zoo.get_operator
        definition = lookup(workload.name)
    except KeyError:
        return None
    if definition.paper_label is None or workload.param_dict != dict(definition.defaults):
        return None
    return definition.paper_label


def _time_metric(throughput: bool) -> str:
    return "Throughput [img/s]" if throughput else "Latency [ms]"


def _group_columns(column: Column, chosen: set[str]) -> list[tuple[Header, Callable[[Cell], object]]]:
    """A group's columns: header and the value of a cell (None where the row has no cell there)."""
    batch, title = column.execution.batch, column.title

    def time(end: Callable[[Cell], float | None]) -> Callable[[Cell], object]:
        def value(cell: Cell):
            seconds = end(cell)
            if not seconds:
                return None
            return batch / seconds if column.throughput else seconds * 1e3
        return value

    median = time(lambda cell: cell.stats and cell.stats.median_s)
    # a longer latency is a lower throughput: the interval's ends swap
    low = time(lambda cell: cell.stats and (cell.stats.ci_high_s if column.throughput else cell.stats.ci_low_s))
    high = time(lambda cell: cell.stats and (cell.stats.ci_low_s if column.throughput else cell.stats.ci_high_s))
    metric = _time_metric(column.throughput)
    spec = []
    if "time" in chosen or "ci" in chosen:
        spec.append(((title, metric), median))
    if "ci" in chosen:
        spec += [((title, metric + LOW), low), ((title, metric + HIGH), high)]
    if "flops-per-s" in chosen:
        spec.append(((title, "FLOPS [G/s]"), lambda cell: cell.flops_per_s and cell.flops_per_s / 1e9))
    if "runs" in chosen:
        spec.append(((title, "Runs"), lambda cell: cell.stats and cell.stats.n))
    return spec


def _paper_columns(device: str, kind: str, chosen: set[str]) -> list[tuple[Header, Callable[[Workload], object]]]:
    """The paper's published time (and FLOPS, for operators) on ``device``, where it has the row."""
    time_key, flops_key = DEVICE_COLUMNS[device]
    lookup = table1_row if kind == "operator" else table3_row
    title = f"paper {device}"
    spec = [((title, _time_metric(device == "cuda")), lambda w: (lookup(w) or {}).get(time_key))]
    if kind == "operator" and "flops-per-s" in chosen:
        spec.append(((title, "FLOPS [G/s]"), lambda w: (lookup(w) or {}).get(flops_key)))
    return spec


def _scaled(value, unit: float):
    return None if value is None else value / unit


def frame(merged: Merged, kind: str, layout: Layout = Layout()) -> pd.DataFrame:
    """The table of ``kind`` ('operator' or 'model'), values unrounded, columns (group, what)."""
    rows = merged.table(kind)
    chosen = set(layout.columns if layout.columns is not None else DEFAULT_COLUMNS[kind])
    model = kind == "model"
    names = {}
    for row in rows:
        names.setdefault(row.workload.name, set()).add((row.workload.shape, row.workload.layers))

    def name(row: MergedRow) -> str:
        return (layout.paper_names and paper_name(row.workload)) or row.workload.name

    spec: list[tuple[Header, Callable[[MergedRow], object]]] = [
        (("", "Model" if model else "Operator"), name),
        (("", "Options"), lambda row: _params_label(Row(workload=row.workload))),
    ]
    if not model:
        spec.append((("", "Shape"), lambda row: str(row.workload.shape)))
        if "layers" in chosen or len({row.workload.layers for row in rows}) > 1:
            spec.append((("", "Layers"), lambda row: row.workload.layers))
    elif "input" in chosen or any(len(shapes) > 1 for shapes in names.values()):
        spec.append((("", "Shape"), lambda row: str(row.workload.shape)))
    counts = {
        "params": ("Params [M]", lambda c: _scaled(c.params, 1e6)),
        "flops": ("FLOPs [G]" if model else "FLOPs [M]",
                  lambda c: _scaled(c.flops_unfused, 1e9) if model else _scaled(c.flops, 1e6)),
        "flops-fused": ("FLOPs fused [G]", lambda c: _scaled(c.flops_fused, 1e9)),
        "memory": ("Mem ideal [MB]", lambda c: _scaled(c.memory_ideal_bytes, 1e6)),
        "memory-impl": ("Mem impl [MB]", lambda c: _scaled(c.memory_impl_bytes, 1e6)),
    }
    applies = {"flops-fused": model, "memory": not model}
    for key, (header, value) in counts.items():
        if key in chosen and applies.get(key, True):
            spec.append((("", header), lambda row, value=value: value(row.counts)))
    for column in merged.columns_of(kind):
        for header, value in _group_columns(column, chosen):
            spec.append((header, lambda row, key=column.key, value=value: (
                value(row.cells[key]) if key in row.cells else None)))
    if layout.paper:
        devices = {column.execution.device for column in merged.columns_of(kind)}
        for device in [d for d in DEVICE_ORDER if d in devices]:
            for header, value in _paper_columns(device, kind, chosen):
                spec.append((header, lambda row, value=value: value(row.workload)))

    data = {header: pd.Series([value(row) for row in rows], dtype="Int64" if header[1] in INTEGER else object)
            for header, value in spec}
    df = pd.DataFrame(data, columns=pd.MultiIndex.from_tuples([header for header, _ in spec]))
    if not any(df[("", "Options")].astype(bool)):
        df = df.drop(columns=[("", "Options")])
    return df


def _display(df: pd.DataFrame) -> pd.DataFrame:
    """Formatted for reading: each time with its interval, '48.6 [47.9, 49.2]'."""
    df = df.astype(object)
    for group, what in list(df.columns):
        if (group, what + LOW) in df.columns:
            low, high = df.pop((group, what + LOW)), df.pop((group, what + HIGH))
            df[(group, what)] = [_fmt(v) if pd.isna(lo) or pd.isna(hi) else f"{_fmt(v)} [{_fmt(lo)}, {_fmt(hi)}]"
                                 for v, lo, hi in zip(df[(group, what)], low, high)]
    return df.map(_fmt)


def flat(header: Header) -> str:
    group, what = header
    return f"{group}: {what}" if group else what


# --- what the tables say about themselves ---------------------------------------------------------------------------

def _version(column: Column) -> str:
    libraries = column.sources[0].report.environment.get("libraries")
    version = libraries.get(column.execution.runtime) if isinstance(libraries, dict) else None
    return f" {version}" if version is not None else ""


def _commit(source) -> str:
    git = source.report.environment.get("git")
    if not isinstance(git, dict) or not git.get("commit"):
        return ""
    return f", commit {str(git['commit'])[:7]}{' (dirty)' if git.get('dirty') else ''}"


def column_lines(merged: Merged) -> list[str]:
    """Each group's protocol and machine, in words."""
    lines = []
    for column in merged.columns:
        ex, first = column.execution, column.sources[0]
        options = "".join(f", {key}={value}" for key, value in ex.runtime_options)
        device = f", device {first.device_name}" if first.device_name else ""
        where = f"labelled '{column.label}'" if column.label else f"{first.machine}, host {first.host}{device}"
        lines.append(f"'{column.title}': {ex.device}, {ex.runtime}{_version(column)}, batch {ex.batch}, "
                     f"{ex.threads} thread{'s' * (ex.threads != 1)}, {precision_label(ex)}{options}, "
                     f"allocator {ex.allocator}; {where}; "
                     f"{len(column.sources)} report{'s' * (len(column.sources) != 1)}")
    return lines


def source_lines(merged: Merged) -> list[str]:
    """Each file: its group, machine, CPU or GPU, date and flopsbench."""
    title = {id(source): column.title for column in merged.columns for source in column.sources}
    lines = []
    for source in merged.sources:
        report = source.report
        state = "" if report.complete else "; INCOMPLETE: interrupted, only its finished rows are in"
        label = f"; labelled '{source.label}'" if source.label else ""
        lines.append(f"{source.name}: '{title[id(source)]}'; {report.command} report made {report.created_utc} on "
                     f"{source.machine}, host {source.host}; flopsbench {report.tool_version}{_commit(source)}"
                     f"{label}{state}")
    return lines


def note_lines(merged: Merged, layout: Layout) -> list[str]:
    """What the columns mean, the groups, the sources, then what the merge found."""
    kinds = merged.kinds
    lines = [FLOPS_NOTE,
             "Rows match by workload (kind, name, shape, layers, parameters, checkpoint, BN folding), never by "
             "position; a column group per protocol (device, runtime, batch, threads, precision, speed options) "
             "and machine: runs of different protocols are never pooled.",
             "Latency [ms]: the median of the samples, at batch 1; Throughput [img/s]: the group's batch / the "
             "median; FLOPS [G/s]: the FLOPs of one call (the whole batch) / the median.", INTERVAL_NOTE]
    if "operator" in kinds:
        batches = {row.counts.memory_batch for row in merged.table("operator")} - {None}
        at = f" at batch {', '.join(map(str, sorted(batches)))}" if batches - {1} else ""
        lines.append(f"Operators: FLOPs [M] per image; memory access in MB (10^6 bytes){at}: 'ideal' by the paper's "
                     "formula (Eqs. 2/3/5), 'impl' what PyTorch's eager kernels read and write (for onnxruntime "
                     "groups too).")
    if "model" in kinds:
        lines.append("Models: FLOPs [G] per image, Table 3's count (fvcore on the unfused model, BN counted); FLOPs "
                     "fused: BN folded into the convs (Table 8); FLOPS uses the count of the model timed.")
    lines += column_lines(merged) + source_lines(merged) + list(merged.notes)
    if layout.paper:
        settings = published()["settings"]
        devices = [d for d in DEVICE_ORDER if any(c.execution.device == d for c in merged.columns)]
        for device in devices:
            what = ("throughput" if device == "cuda" else "latency") + (" and FLOPS" if "operator" in kinds else "")
            machine = settings["gpu" if device == "cuda" else device]
            lines.append(f"'paper {device}': the FasterNet paper's published {what} (Tables 1 and 3) on {machine}, "
                         "with PyTorch.")
    return lines


# --- views ----------------------------------------------------------------------------------------------------------

def title_line(merged: Merged) -> str:
    count = len(merged.sources)
    return f"flopsbench report: {count} report{'s' * (count != 1)} merged"


def _tables(merged: Merged, layout: Layout) -> list[tuple[str, pd.DataFrame]]:
    return [(TITLES[kind], frame(merged, kind, layout)) for kind in merged.kinds]


def _align(df: pd.DataFrame) -> list[str]:
    return ["left" if group == "" and what in IDENTIFYING else "right" for group, what in df.columns]


def export_markdown(merged: Merged, stream: TextIO, layout: Layout = Layout()) -> None:
    stream.write(markdown_text(title_line(merged)) + "\n")
    for title, df in _tables(merged, layout):
        shown = _display(df)
        shown.columns = [flat((markdown_text(group), what)) for group, what in shown.columns]
        table = shown.map(markdown_text).to_markdown(index=False, disable_numparse=True, colalign=_align(df))
        stream.write(f"\n{title}\n\n{table}\n")
    stream.write("\n" + "".join(f"- {markdown_text(line)}\n" for line in note_lines(merged, layout)))


def _latex_tabular(df: pd.DataFrame) -> str:
    """A booktabs tabular, each group's title spanning its columns over a \\cmidrule."""
    shown = _display(df).replace("–", "--")
    align = "".join("l" if a == "left" else "r" for a in _align(df))
    headers = list(shown.columns)
    spans: list[tuple[str, int, int]] = []  # (group, first column, last column), 1-based
    for i, (group, _) in enumerate(headers, 1):
        if spans and spans[-1][0] == group:
            spans[-1] = (group, spans[-1][1], i)
        else:
            spans.append((group, i, i))
    top = " & ".join(f"\\multicolumn{{{last - first + 1}}}{{c}}{{{latex_text(group)}}}" if group else
                     " & ".join([""] * (last - first + 1)) for group, first, last in spans)
    rules = " ".join(f"\\cmidrule(lr){{{first}-{last}}}" for group, first, last in spans if group)
    lines = [f"\\begin{{tabular}}{{{align}}}", "\\toprule"]
    if rules:
        lines += [top + " \\\\", rules]
    lines += [" & ".join(latex_text(what) for _, what in headers) + " \\\\", "\\midrule"]
    lines += [" & ".join(latex_text(cell) for cell in record) + " \\\\" for record in shown.itertuples(index=False)]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def export_latex(merged: Merged, stream: TextIO, layout: Layout = Layout()) -> None:
    """Tabulars to paste into a paper (\\usepackage{booktabs}); what the notes say goes above them as
    '% ' comments (each one line by plain_text, so nothing in it can end the comment early)."""
    for line in [title_line(merged), *note_lines(merged, layout)]:
        stream.write(f"% {plain_text(line)}\n")
    for title, df in _tables(merged, layout):
        stream.write(f"% {title}\n{_latex_tabular(df)}")


def export_csv(merged: Merged, stream: TextIO, layout: Layout = Layout()) -> None:
    """The unrounded tables, headers 'group: what'; with operators and models both, one after the
    other with a 'Table' column first. Text cells on one line, never a spreadsheet formula."""
    frames = []
    for kind in merged.kinds:
        df = frame(merged, kind, layout)
        df.columns = [csv_text(flat(header)) for header in df.columns]
        frames.append(df.assign(Table=kind)[["Table", *df.columns]] if len(merged.kinds) > 1 else df)
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    df = df.map(lambda value: csv_text(value) if isinstance(value, str) else value)
    df.to_csv(stream, index=False, lineterminator="\n")


def _rich_table(df: pd.DataFrame, title: str, caption: str | None) -> Table:
    table = Table(title=Text(title), caption=caption and Text(caption), caption_justify="left", title_justify="left")
    shown = _display(df)
    for (group, what), align in zip(shown.columns, _align(df)):
        header = Text(f"{plain_text(group)}\n{what}" if group else what)
        table.add_column(header, justify=align, no_wrap=align == "left")
    for record in shown.itertuples(index=False):
        table.add_row(*(Text(plain_text(cell)) for cell in record))
    return table


def export_table(merged: Merged, stream: TextIO, layout: Layout = Layout()) -> None:
    """Rich tables, the notes under the last; as wide as the terminal, or as they need where it is narrower."""
    tables_data = _tables(merged, layout)
    caption = "\n".join(plain_text(line) for line in note_lines(merged, layout))
    interactive = hasattr(stream, "isatty") and stream.isatty()
    console = Console(file=stream, width=None if interactive else 220, force_terminal=interactive)
    console.print(Text(plain_text(title_line(merged))))
    tables = [_rich_table(df, title, caption if i == len(tables_data) - 1 else None)
              for i, (title, df) in enumerate(tables_data)]
    unclamped = console.options.update_width(10_000)
    needed = max((Measurement.get(console, unclamped, table).minimum for table in tables), default=0)
    console.width = max(console.width, needed)
    for table in tables:
        console.print(table)
    if not tables:
        console.print(Text(caption))


def _cell_data(cell: Cell) -> dict:
    stats = cell.stats
    return {
        "n": stats.n if stats else 0, "median_s": stats and stats.median_s, "ci_low_s": stats and stats.ci_low_s,
        "ci_high_s": stats and stats.ci_high_s, "ci_method": stats and stats.ci_method, "flops_per_s": cell.flops_per_s,
        "throughput_per_s": cell.throughput_per_s(stats and stats.median_s),
        "pooled_runs": len(cell.timed), "sources": [source.name for source, _ in cell.timed],
        "failures": [{"file": source.name, "status": row.status, "error": row.error} for source, row in cell.failed],
        "warnings": [warning for _, row in cell.timed for warning in row.warnings],
    }


def export_json(merged: Merged, stream: TextIO, layout: Layout = Layout()) -> None:
    """Everything the other views show, as data (strings as they are in the reports); the same
    whatever --columns chose."""
    title = {id(source): column.title for column in merged.columns for source in column.sources}
    data = {
        "schema": "flopsbench.merged", "schema_version": 1, "tool_version": __version__,
        "sources": [{"file": s.name, "label": s.label, "column": title[id(s)], "command": s.report.command,
                     "created_utc": s.report.created_utc, "complete": s.report.complete,
                     "tool_version": s.report.tool_version, "hostname": s.report.environment.get("hostname"),
                     "machine": s.machine, "git": s.report.environment.get("git")} for s in merged.sources],
        "columns": [{"title": c.title, "device": c.execution.device, "runtime": c.execution.runtime,
                     "batch": c.execution.batch, "threads": c.execution.threads, "dtype": c.execution.dtype,
                     "precision": precision_label(c.execution), "runtime_options": dict(c.execution.runtime_options),
                     "allocator": c.execution.allocator,
                     "time": "throughput" if c.throughput else "latency", "label": c.label,
                     "machine": c.sources[0].machine, "hostname": c.sources[0].host,
                     "sources": [s.name for s in c.sources]} for c in merged.columns],
        "rows": [{"workload": row.workload.to_dict(), "paper_name": paper_name(row.workload),
                  "counts": asdict(row.counts),
                  "cells": {column.title: _cell_data(row.cells[column.key]) for column in merged.columns
                            if column.key in row.cells}} for row in merged.rows],
        "notes": list(merged.notes),
    }
    stream.write(json.dumps(data, indent=1) + "\n")


VIEWS: dict[str, Callable[[Merged, TextIO, Layout], None]] = {
    "table": export_table, "csv": export_csv, "md": export_markdown, "latex": export_latex, "json": export_json,
}


def render(merged: Merged, fmt: str, layout: Layout = Layout()) -> str:
    buffer = io.StringIO()
    VIEWS[fmt](merged, buffer, layout)
    return buffer.getvalue()
