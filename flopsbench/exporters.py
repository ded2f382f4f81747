"""Views of a report: a rich table, CSV, Markdown and JSON. Every exporter has the same
signature, ``export(report, stream, paper=False)``; numbers are formatted only here."""

from __future__ import annotations

import io
import math
import numbers
from typing import Callable, TextIO

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

import operators
from flopsbench.paper import DEVICE_COLUMNS, table1_row
from flopsbench.report import Report, Row

FLOPS_NOTE = "FLOPs: fvcore count, 1 multiply-add = 1 FLOP (FasterNet paper footnote 1)."
MEMORY_NOTE = ("Memory access in MB (10^6 bytes): 'ideal' is the paper's formula (Eqs. 2/3/5, "
               "elements incl. weights, × element size); 'impl' is what the executed aten ops read "
               "and write (views free).")

TEXT_COLUMNS = ("Operator", "Options", "Shape", "Status")


def _params_label(row: Row) -> str:
    defaults = operators.get_operator(row.workload.name).defaults
    changed = {k: v for k, v in row.workload.param_dict.items() if defaults.get(k) != v}
    return ",".join(f"{k}={v}" for k, v in changed.items())


def frame(report: Report, paper: bool = False) -> pd.DataFrame:
    """One line per row, display units named in the column headers; values unrounded."""
    records = []
    batch = report.execution.batch
    for row in report.rows:
        stats = row.stats
        mem_impl = row.memory_impl_bytes
        derived = row.to_dict(batch)["derived"]
        record = {
            "Operator": row.workload.name,
            "Options": _params_label(row),
            "Shape": str(row.workload.shape),
            "Layers": row.workload.layers,
            "Batch": batch,
            "Params [K]": _scaled(row.params, 1e3),
            "FLOPs [M]": _scaled(row.flops, 1e6),
            "Mem ideal [MB]": _scaled(row.memory_ideal_bytes, 1e6),
            "Mem impl [MB]": _scaled(mem_impl, 1e6),
            "Intensity [FLOP/B]": derived["arithmetic_intensity_flop_per_byte"],
            "Median [ms]": _scaled(stats and stats.median_s, 1e-3),
            "IQR [ms]": _scaled(stats and stats.iqr_s, 1e-3),
            "FLOPS [G/s]": _scaled(derived["flops_per_s"], 1e9),
            "Throughput [1/s]": derived["throughput_per_s"],
            "Runs": stats.n if stats else None,
            "Status": "error" if row.status != "ok" else ("warn" if row.warnings else "ok"),
            "Error": row.error or "",
        }
        if paper:
            record.update(_paper_columns(row, report.execution.device, record["FLOPS [G/s]"]))
        records.append(record)
    df = pd.DataFrame.from_records(records)
    if not df.empty:
        df["Runs"] = df["Runs"].astype("Int64")  # stays integer beside error rows' missing values
    return df


def _paper_columns(row: Row, device: str, flops_g: float | None) -> dict:
    ref = table1_row(row.workload)
    time_key, flops_key = DEVICE_COLUMNS[device]
    unit = "[img/s]" if device == "cuda" else "[ms]"
    paper_flops = ref[flops_key] if ref else None
    return {
        f"Paper {device} {'throughput' if device == 'cuda' else 'latency'} {unit}": ref[time_key] if ref else None,
        f"Paper {device} FLOPS [G/s]": paper_flops,
        "FLOPS / paper": flops_g / paper_flops if flops_g and paper_flops else None,
    }


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


def header_lines(report: Report) -> list[str]:
    env, ex = report.environment, report.execution
    state = "" if report.complete else " — INCOMPLETE: interrupted, only finished rows are shown"
    return [
        f"flopsbench {report.command} on {ex.device}: {env.get('cpu_model')}, host {env.get('hostname')}, "
        f"{ex.threads} thread(s) pinned to cores {list(ex.cores)}, batch {ex.batch}, {ex.dtype}, "
        f"torch {env.get('libraries', {}).get('torch')}{state}",
        FLOPS_NOTE,
        MEMORY_NOTE,
    ]


def warning_lines(report: Report) -> list[str]:
    """Per-row notes: errors, measurement warnings, and the ops fvcore counted as 0 FLOPs."""
    lines = []
    for i, row in enumerate(report.rows, 1):
        where = f"row {i} ({row.workload.name} {row.workload.shape})"
        if row.error:
            lines.append(f"{where}: error: {row.error}")
        lines += [f"{where}: {w}" for w in row.warnings]
        if row.unsupported_ops:
            lines.append(f"{where}: fvcore has no FLOP formula for {', '.join(sorted(row.unsupported_ops))} "
                         "(counted as 0)")
    return lines


def export_json(report: Report, stream: TextIO, paper: bool = False) -> None:
    stream.write(report.to_json())


def export_csv(report: Report, stream: TextIO, paper: bool = False) -> None:
    frame(report, paper).to_csv(stream, index=False, lineterminator="\n")


def export_markdown(report: Report, stream: TextIO, paper: bool = False) -> None:
    lines = header_lines(report)
    stream.write(lines[0] + "\n\n")
    df = _display(report, paper)
    align = ["left" if c in TEXT_COLUMNS else "right" for c in df.columns]
    stream.write(df.to_markdown(index=False, disable_numparse=True, colalign=align) + "\n\n")
    for line in lines[1:] + [f"- {w}" for w in warning_lines(report)]:
        stream.write(line + "\n")


def export_table(report: Report, stream: TextIO, paper: bool = False) -> None:
    lines = header_lines(report)
    df = _display(report, paper)
    table = Table(title=lines[0], caption="\n".join(lines[1:] + warning_lines(report)),
                  caption_justify="left", title_justify="left")
    for column in df.columns:
        left = column in TEXT_COLUMNS
        table.add_column(Text(column), justify="left" if left else "right", no_wrap=left)
    for record in df.itertuples(index=False):
        table.add_row(*(Text(cell) for cell in record))  # text, not rich markup: '[ms]' stays
    interactive = hasattr(stream, "isatty") and stream.isatty()
    console = Console(file=stream, width=None if interactive else 220, force_terminal=interactive)
    console.print(table)


EXPORTERS: dict[str, Callable[[Report, TextIO, bool], None]] = {
    "table": export_table,
    "csv": export_csv,
    "md": export_markdown,
    "json": export_json,
}


def render(report: Report, fmt: str, paper: bool = False) -> str:
    buffer = io.StringIO()
    EXPORTERS[fmt](report, buffer, paper)
    return buffer.getvalue()
