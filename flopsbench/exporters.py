"""Views of a report: a rich table, CSV, Markdown, LaTeX and JSON. Every exporter has the same
signature, ``export(report, stream, paper=False)``; numbers are formatted only here."""

from __future__ import annotations

import io
import math
import numbers
from pathlib import Path
from typing import Callable, TextIO

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

import operators
from flopsbench.paper import DEVICE_COLUMNS, precision_label, protocol_mismatch, table1_row, table3_row
from flopsbench.report import Report, Row, derived as derive, per_image
from operators.baselines import resolve_model

FLOPS_NOTE = "FLOPs: fvcore count, 1 multiply-add = 1 FLOP (FasterNet paper footnote 1)."
MEMORY_NOTE = ("Memory access in MB (10^6 bytes): 'ideal' is the paper's formula (Eqs. 2/3/5, "
               "elements incl. weights, × element size); 'impl' is what the executed aten ops read "
               "and write (views free).")

MODEL_NOTE = ("Models: Tab. 3 FLOPs = fvcore on the unfused eval model (BN counted, as the paper's Table 3); "
              "Tab. 8 = with BN folded into convs (the README / Table 8 count), which is the model timed "
              "unless bn=unfused. Params = all parameters of the unfused model. Mem impl in MB (10^6 bytes): "
              "what the executed aten ops read and write. FLOPS = timed model's FLOPs / median.")

def batch_note(batch: int) -> str:
    """What the columns count when a run times more than one image (the paper's Table 1 and CPU/ARM
    columns are batch 1; its GPU throughput is batch 32)."""
    return (f"Batch {batch}: FLOPs (and params) are per image, as in the paper's tables; memory access, latency "
            f"and FLOPS are of the whole batch of {batch} (FLOPS = the batch's FLOPs / median).")


ORT_MEMORY_NOTE = ("onnxruntime: memory access of its graph is not measured, so 'Mem impl' and intensity are "
                   "left out (the JSON's memory_impl is PyTorch eager's, for reference).")


def runtime_note(execution) -> str:
    """The caveat of putting this run's numbers beside the paper's, which all come from PyTorch."""
    return (f"Paper columns: the paper timed PyTorch on every device; this run timed {execution.runtime} "
            f"(its CPU execution provider), so the ratios compare two runtimes as well as two machines.")


TEXT_COLUMNS = ("Operator", "Model", "Options", "Shape", "Input", "Status")


def _defaults(row: Row) -> dict:
    """The registered defaults of the row's workload; none for a name this install does not
    know (e.g. a board report of an ONNX file without flopsbench metadata)."""
    try:
        if row.workload.kind == "model":
            return dict(resolve_model(row.workload.name).defaults)
        return dict(operators.get_operator(row.workload.name).defaults)
    except KeyError:
        return {}


def _params_label(row: Row) -> str:
    """The options that differ from the registered defaults, e.g. 'ratio=0.5'."""
    defaults = _defaults(row)
    changed = {k: v for k, v in row.workload.param_dict.items() if defaults.get(k) != v}
    if row.workload.kind == "model":
        changed.update({"bn": "unfused"} if not row.workload.fuse_bn else {})
        changed.update({"weights": Path(row.workload.weights).name} if row.workload.weights else {})
    return ",".join(f"{k}={v}" for k, v in changed.items())


def frame(report: Report, paper: bool = False) -> pd.DataFrame:
    """One line per row, display units named in the column headers; values unrounded."""
    records = [(_model_record if row.workload.kind == "model" else _operator_record)(row, report, paper)
               for row in report.rows]
    df = pd.DataFrame.from_records(records)
    if not df.empty:
        df["Runs"] = df["Runs"].astype("Int64")  # stays integer beside error rows' missing values
    return df


def _timing_columns(row: Row, execution) -> dict:
    stats = row.stats
    derived = derive(row.flops, row.memory_impl_bytes, stats, execution.batch)
    # The implementation's bytes are those of PyTorch's eager kernels: beside onnxruntime's
    # latency (another graph, other kernels) they would pass for what was timed, so they are left out.
    eager = execution.runtime == "torch"
    return {
        **({"Mem impl [MB]": _scaled(row.memory_impl_bytes, 1e6),
            "Intensity [FLOP/B]": derived["arithmetic_intensity_flop_per_byte"]} if eager else {}),
        "Median [ms]": _scaled(stats and stats.median_s, 1e-3),
        "IQR [ms]": _scaled(stats and stats.iqr_s, 1e-3),
        "FLOPS [G/s]": _scaled(derived["flops_per_s"], 1e9),
        "Throughput [1/s]": derived["throughput_per_s"],
        "Runs": stats.n if stats else None,
        "Status": row.status if row.status != "ok" else ("warn" if row.warnings else "ok"),
        "Error": row.error or "",
    }


def _operator_record(row: Row, report: Report, paper: bool) -> dict:
    record = {
        "Operator": row.workload.name,
        "Options": _params_label(row),
        "Shape": str(row.workload.shape),
        "Layers": row.workload.layers,
        "Batch": report.execution.batch,
        "Params [K]": _scaled(row.params, 1e3),
        "FLOPs [M]": _scaled(per_image(row.flops, report.execution.batch), 1e6),
        "Mem ideal [MB]": _scaled(row.memory_ideal_bytes, 1e6),
        **_timing_columns(row, report.execution),
    }
    if paper:
        ref = table1_row(row.workload)
        time_key, flops_key = DEVICE_COLUMNS[report.execution.device]
        record.update(_paper_time_columns(ref, time_key, report.execution.device))
        paper_flops = ref[flops_key] if ref else None
        record[f"Paper {report.execution.device} FLOPS [G/s]"] = paper_flops
        record["FLOPS / paper"] = _ratio(record["FLOPS [G/s]"], paper_flops, report)
    return record


def _model_record(row: Row, report: Report, paper: bool) -> dict:
    record = {
        "Model": row.workload.name,
        "Options": _params_label(row),
        "Input": str(row.workload.shape),
        "Batch": report.execution.batch,
        "Params [M]": _scaled(row.params, 1e6),
        "FLOPs [G] (Tab. 3, unfused)": _scaled(per_image(row.flops_unfused, report.execution.batch), 1e9),
        "FLOPs [G] (Tab. 8, BN fused)": _scaled(per_image(row.flops_fused, report.execution.batch), 1e9),
        **_timing_columns(row, report.execution),
    }
    if paper:
        ref = table3_row(row.workload)
        time_key, _ = DEVICE_COLUMNS[report.execution.device]
        record["Paper params [M]"] = ref["params_M"] if ref else None
        record["Paper FLOPs [G]"] = ref["flops_G"] if ref else None
        record.update(_paper_time_columns(ref, time_key, report.execution.device))
        published = ref[time_key] if ref else None
        if report.execution.device == "cuda":
            record["Throughput / paper"] = _ratio(record["Throughput [1/s]"], published, report)
        else:
            record["Latency / paper"] = _ratio(record["Median [ms]"], published, report)
    return record


def _ratio(measured: float | None, published: float | None, report: Report) -> float | None:
    """measured / published, only where both exist and the run followed the paper's protocol."""
    if not measured or not published or protocol_mismatch(report.execution):
        return None
    return measured / published


def _paper_time_columns(ref: dict | None, time_key: str, device: str) -> dict:
    label = "throughput [img/s]" if device == "cuda" else "latency [ms]"
    return {f"Paper {device} {label}": ref[time_key] if ref else None}


def breakdown_frame(row: Row) -> pd.DataFrame:
    """Where one model's time, FLOPs and memory go, per part, then the parts' sum and the whole
    model (timed beside its parts in their worker); each share is of the whole model, so a gap
    between the sum and the whole shows as the sum's share falling short of (or passing) 100 %."""
    shown = [p for p in row.breakdown or [] if p["type"] != "Identity"]  # e.g. a BN folded away
    medians = [p["median_s"] for p in row.breakdown or []]  # the sum counts every part, shown or not
    parts_sum = {"part": "sum of parts", "type": None, "flops": sum(p["flops"] for p in row.breakdown or []),
                 "memory_bytes": sum(p["memory_bytes"] for p in row.breakdown or []),
                 "median_s": sum(medians) if medians and None not in medians else None}
    whole = {"part": "whole model", "type": None, "flops": row.flops if row.flops is not None else parts_sum["flops"],
             "memory_bytes": row.memory_impl_bytes, "median_s": (row.breakdown_whole or {}).get("median_s")}

    def share(part: float | None, of: float | None) -> float | None:
        return 100 * part / of if part is not None and of else None

    return pd.DataFrame.from_records([{
        "Part": p["part"], "Type": p["type"],
        "FLOPs [M]": p["flops"] / 1e6,
        "FLOPs [%]": share(p["flops"], whole["flops"]),
        "Mem [MB]": _scaled(p["memory_bytes"], 1e6),
        "Median [ms]": _scaled(p["median_s"], 1e-3),
        "Time [%]": share(p["median_s"], whole["median_s"]),
        "FLOPS [G/s]": p["flops"] / p["median_s"] / 1e9 if p["median_s"] else None,
    } for p in [*shown, parts_sum, whole]])


def _scaled(value: float | None, unit: float) -> float | None:
    return None if value is None else value / unit


def _fmt(value) -> str:
    """Three significant figures at least, no exponent for everyday magnitudes."""
    if isinstance(value, str):
        return value
    if value is None or pd.isna(value):
        return "–"
    if isinstance(value, numbers.Integral):
        return f"{value:,}"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    return f"{value:,.{max(0, 2 - magnitude)}f}"


def _display(report: Report, paper: bool) -> pd.DataFrame:
    """Formatted for reading; the Options column only when some row has non-default options."""
    df = frame(report, paper)
    if df.empty:
        return df
    df = df.drop(columns="Error")  # errors are listed under the table
    if not df["Options"].astype(bool).any():
        df = df.drop(columns="Options")
    return df.astype(object).map(_fmt)


def header_lines(report: Report, paper: bool = False) -> list[str]:
    env, ex = report.environment, report.execution
    state = "" if report.complete else " — INCOMPLETE: interrupted, only finished rows are shown"
    if ex.device == "cuda":
        knobs = [knob.replace("_", " ") for knob in ("cuda_graph", "l2_flush", "channels_last") if ex.option(knob)]
        where = (f"{env.get('gpu_name')} ({ex.option('mode')}; {', '.join(knobs) or 'eager'}), "
                 f"host {env.get('hostname')}")
    else:
        where = (f"{env.get('cpu_model')}, host {env.get('hostname')}, {ex.threads} thread(s) pinned to cores "
                 f"{list(ex.cores)}")
    mismatch = protocol_mismatch(ex) if paper else None
    return [
        f"flopsbench {report.command} on {ex.device}: {where}, batch {ex.batch}, {precision_label(ex)}, "
        f"{ex.runtime} {env.get('libraries', {}).get(ex.runtime)}{state}",
        FLOPS_NOTE,
        *([batch_note(ex.batch)] if ex.batch > 1 else []),
        MODEL_NOTE if report.command == "model" else MEMORY_NOTE,
        *([ORT_MEMORY_NOTE] if ex.runtime == "onnxruntime" else []),
        *([runtime_note(ex)] if paper and ex.runtime != "torch" else []),
        *([f"Paper ratios left out: {mismatch}."] if mismatch else []),
    ]


def warning_lines(report: Report) -> list[str]:
    """Per-row notes: errors, measurement warnings, and the ops fvcore counted as 0 FLOPs."""
    lines = []
    for i, row in enumerate(report.rows, 1):
        where = f"row {i} ({row.workload.name} {row.workload.shape})"
        if row.error:
            lines.append(f"{where}: {row.status}: {row.error}")
        lines += [f"{where}: {w}" for w in row.warnings]
        lines += [f"{where}: note: {n}" for n in row.notes]
        if row.unsupported_ops:
            lines.append(f"{where}: fvcore has no FLOP formula for {', '.join(sorted(row.unsupported_ops))} "
                         "(counted as 0)")
        if row.zero_flop_ops:
            calls = ", ".join(f"{op} ×{n}" for op, n in sorted(row.zero_flop_ops.items()))
            lines.append(f"{where}: fvcore counts these as 0 FLOPs by design: {calls}")
    return lines


def export_json(report: Report, stream: TextIO, paper: bool = False) -> None:
    stream.write(report.to_json())


def export_csv(report: Report, stream: TextIO, paper: bool = False) -> None:
    frame(report, paper).to_csv(stream, index=False, lineterminator="\n")


def _breakdowns(report: Report) -> list[tuple[str, pd.DataFrame]]:
    """(title, formatted frame) for each row that has a breakdown."""
    depth = report.execution.breakdown_depth
    return [(f"Breakdown of {row.workload.name} {row.workload.shape} (modules at depth {depth}; each part timed "
             "alone on its own input, in turn with the whole model; Time [%] is of the whole model's median)",
             breakdown_frame(row).astype(object).map(_fmt))
            for row in report.rows if row.breakdown]


def _markdown_table(df: pd.DataFrame) -> str:
    align = ["left" if c in TEXT_COLUMNS + ("Part", "Type") else "right" for c in df.columns]
    return df.to_markdown(index=False, disable_numparse=True, colalign=align)


def export_markdown(report: Report, stream: TextIO, paper: bool = False) -> None:
    lines = header_lines(report, paper)
    stream.write(lines[0] + "\n\n" + _markdown_table(_display(report, paper)) + "\n\n")
    for line in lines[1:] + [f"- {w}" for w in warning_lines(report)]:
        stream.write(line + "\n")
    for title, df in _breakdowns(report):
        stream.write(f"\n{title}\n\n{_markdown_table(df)}\n")


def _latex_table(df: pd.DataFrame) -> str:
    """A booktabs tabular (\\usepackage{booktabs}); text escaped, missing values as '--'."""
    align = "".join("l" if c in TEXT_COLUMNS + ("Part", "Type") else "r" for c in df.columns)
    return df.replace("–", "--").to_latex(index=False, escape=True, column_format=align)


def export_latex(report: Report, stream: TextIO, paper: bool = False) -> None:
    """Tables to paste into a paper; what the header and notes say goes above them as comments."""
    for line in header_lines(report, paper) + warning_lines(report):
        stream.write(f"% {line}\n")
    stream.write(_latex_table(_display(report, paper)))
    for title, df in _breakdowns(report):
        stream.write(f"\n% {title}\n{_latex_table(df)}")


def _rich_table(df: pd.DataFrame, title: str, caption: str | None = None) -> Table:
    table = Table(title=title, caption=caption, caption_justify="left", title_justify="left")
    for column in df.columns:
        left = column in TEXT_COLUMNS + ("Part", "Type")
        table.add_column(Text(column), justify="left" if left else "right", no_wrap=left)
    for record in df.itertuples(index=False):
        table.add_row(*(Text(cell) for cell in record))  # text, not rich markup: '[ms]' stays
    return table


def export_table(report: Report, stream: TextIO, paper: bool = False) -> None:
    lines = header_lines(report, paper)
    interactive = hasattr(stream, "isatty") and stream.isatty()
    console = Console(file=stream, width=None if interactive else 220, force_terminal=interactive)
    console.print(_rich_table(_display(report, paper), lines[0], "\n".join(lines[1:] + warning_lines(report))))
    for title, df in _breakdowns(report):
        console.print(_rich_table(df, title))


EXPORTERS: dict[str, Callable[[Report, TextIO, bool], None]] = {
    "table": export_table,
    "csv": export_csv,
    "md": export_markdown,
    "latex": export_latex,
    "json": export_json,
}


def render(report: Report, fmt: str, paper: bool = False) -> str:
    buffer = io.StringIO()
    EXPORTERS[fmt](report, buffer, paper)
    return buffer.getvalue()
