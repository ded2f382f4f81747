"""Views of a report: a rich table, CSV, Markdown, LaTeX and JSON. Every exporter has the same
signature, ``export(report, stream, paper=False, view=View())`` (flopsbench.columns.View: which
columns, and notes in full or grouped by cause); numbers are formatted only here."""

from __future__ import annotations

import io
import math
import numbers
import textwrap
from pathlib import Path
from typing import Callable, TextIO

import pandas as pd
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

import flopsbench_zoo
from flopsbench import busy, columns, notes
from flopsbench.ceilings import for_report as ceilings_for, key_for as ceilings_key
from flopsbench.columns import View
from flopsbench.escaping import csv_text, latex_text, markdown_text, plain_text
from flopsbench.paper import DEVICE_COLUMNS, precision_label, protocol_mismatch, table1_row, table3_row
from flopsbench.report import Report, Row, derived as derive, per_image
from flopsbench_zoo.baselines import resolve_model

FLOPS_NOTE = "FLOPs: fvcore count, 1 multiply-add = 1 FLOP (FasterNet paper footnote 1)."
# What the brackets after a median are, and what they leave out (benchmarks/interval_coverage.py)
INTERVAL_NOTE = ("In brackets after a median (and what is worked out from it): its 95 % confidence interval, "
                 "from the run's timing rounds (each a fresh worker process) resampled, then each one's samples "
                 "(hierarchical bootstrap; a row of one round: the samples' order statistics). It leaves out how "
                 "the machine's speed moves from one run to the next: on a shared 2-core VM the next run's median "
                 "fell inside it for 312 of 563 rows: 93 of 238 rows of two rounds, 178 of 255 of four (139 of "
                 "563 with the samples taken as independent). To tell two runs apart, use 'flopsbench compare'.")
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


TEXT_COLUMNS = ("Operator", "Model", "Options", "Shape", "Status", "Bound by", "Verdict")
NAME_COLUMNS = ("Operator", "Model")  # may fold on a narrow terminal, where a number may not


def _defaults(row: Row) -> dict:
    """The registered defaults of the row's workload; none for a name this install does not
    know (e.g. a board report of an ONNX file without flopsbench metadata)."""
    try:
        if row.workload.kind == "model":
            return dict(resolve_model(row.workload.name).defaults)
        return dict(flopsbench_zoo.get_operator(row.workload.name).defaults)
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
        df = df.drop(columns=[c for c in BEYOND_STEADY_STATE if c in df and df[c].isna().all()])
        _add_roofline_columns(df, report)
    return df


def _add_roofline_columns(df: pd.DataFrame, report: Report) -> None:
    """'% of peak' (FLOPS / the machine's peak) and, where the intensity is shown, 'Bound by'
    (memory left of the ridge point, compute from it on), after the FLOPS column; only when the
    ceilings of the report's machine, device, runtime, threads, cores and dtype are known
    (flopsbench.ceilings: cached, or given with --ceilings)."""
    ceilings = ceilings_for(report.environment, report.execution)
    if ceilings is None:
        return
    columns: dict[str, list] = {"% of peak": []}
    eager = report.execution.runtime == "torch"  # the intensity is PyTorch eager's (see _timing_columns)
    if eager:
        columns["Bound by"] = []
    for row in report.rows:
        values = derive(row.flops, row.memory_impl_bytes, row.stats, report.execution.batch)
        flops_per_s = values["flops_per_s"]
        columns["% of peak"].append(None if flops_per_s is None else 100 * flops_per_s / ceilings.peak_flops_per_s)
        if eager:
            columns["Bound by"].append(ceilings.bound_by(values["arithmetic_intensity_flop_per_byte"]))
    at = df.columns.get_loc("FLOPS [G/s]") + 1
    for offset, (name, values) in enumerate(columns.items()):
        df.insert(at + offset, name, pd.Series(values, dtype=object))


def roofline_lines(report: Report, text: Callable[[object], str] = plain_text) -> list[str]:
    """What '% of peak' and 'Bound by' are held against (none without ceilings); ``text`` as in
    header_lines."""
    ceilings = ceilings_for(report.environment, report.execution)
    if ceilings is None:
        return []
    differences = ceilings.differences(ceilings_key(report.environment, report.execution))
    rates = [derive(row.flops, None, row.stats, report.execution.batch)["flops_per_s"] for row in report.rows]
    above = sum(rate is not None and rate > ceilings.peak_flops_per_s for rate in rates)
    return [f"% of peak: FLOPS / this machine's measured peak, {ceilings.peak_flops_per_s / 1e9:.3g} GFLOPS "
            f"(multiply-adds, {text(ceilings.peak_kernel)}); Bound by: memory below the ridge point "
            f"{ceilings.ridge_flop_per_byte:.3g} FLOP/B (peak / bandwidth {ceilings.bandwidth_bytes_per_s / 1e9:.3g} "
            f"GB/s, {text(ceilings.bandwidth_kernel)}), else compute: the roofline model (Williams, Waterman and "
            f"Patterson, 2009). Ceilings measured {text(ceilings.created_utc)} by 'flopsbench ceilings'"
            f" ({text(ceilings.source) or 'cached'}).",
            *([f"The ceilings differ from this run in {text('; '.join(differences))}."] if differences else []),
            *([f"{above} row(s) ran above the measured peak: the ceilings were measured at a slower moment of the "
               "machine (other load, or another hour of a shared VM); measure them again when it is idle "
               "('flopsbench ceilings --refresh')."] if above else [])]


# Columns shown only when some row has a value (older reports, and machines that measure no energy, have none).
BEYOND_STEADY_STATE = ("Cold start [ms]", "First call [ms]", "Settle [calls]", "Peak mem [MB]", "Energy [mJ/inf]",
                       "FLOPS/W [G/W]")


def _cold_start_columns(row: Row) -> dict:
    cold = row.cold_start or {}
    return {"Cold start [ms]": _scaled(cold.get("build_s"), 1e-3),
            "First call [ms]": _scaled(cold.get("first_call_s"), 1e-3), "Settle [calls]": cold.get("settle_calls")}


def _memory_energy_columns(row: Row, execution) -> dict:
    """The peak memory the device's figure (the GPU's allocator on a GPU, else the worker's resident
    set), the energy of one call (the whole batch) and FLOPs per joule (FLOPS per watt)."""
    figure = "gpu_peak_allocated_bytes" if execution.device == "cuda" else "host_peak_bytes"
    joules = (row.energy or {}).get("j_per_call")
    flops_per_w = row.flops / joules if row.flops is not None and joules else None  # FLOPs per joule
    flops_per_w = flops_per_w if flops_per_w is None or math.isfinite(flops_per_w) else None  # a joule too small
    return {"Peak mem [MB]": _scaled((row.peak_memory or {}).get(figure), 1e6),
            "Energy [mJ/inf]": _scaled(joules, 1e-3), "FLOPS/W [G/W]": _scaled(flops_per_w, 1e9)}


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
        "Median [ms] CI low": _scaled(stats and stats.ci_low_s, 1e-3),
        "Median [ms] CI high": _scaled(stats and stats.ci_high_s, 1e-3),
        "Median CI method": stats and stats.ci_method,  # 'rounds' or 'samples' (flopsbench.stats)
        "IQR [ms]": _scaled(stats and stats.iqr_s, 1e-3),
        **_cold_start_columns(row),
        "FLOPS [G/s]": _scaled(derived["flops_per_s"], 1e9),
        "Throughput [1/s]": derived["throughput_per_s"],
        # a longer latency is a lower throughput: the interval's ends swap
        "Throughput [1/s] CI low": execution.batch / stats.ci_high_s if stats and stats.ci_high_s else None,
        "Throughput [1/s] CI high": execution.batch / stats.ci_low_s if stats and stats.ci_low_s else None,
        **_memory_energy_columns(row, execution),
        "Runs": stats.n if stats else None,
        "Status": row.status if row.status != "ok" else ("warn" if row.warnings else "ok"),
        "Error": row.error or "",
        "Warnings": " | ".join(row.warnings),  # CSV: what 'warn' is about (the notes under a table say it too)
    }


def _operator_record(row: Row, report: Report, paper: bool) -> dict:
    record = {
        "Operator": row.workload.name,
        "Options": _params_label(row),
        "Shape": str(row.workload.shape),
        "Layers": row.workload.layers,
        "Batch": report.execution.batch,
        "Params [M]": _scaled(row.params, 1e6),
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
        flops = row.flops
        record.update(_ratio_columns("FLOPS / paper", lambda median: flops and flops / median / 1e9, paper_flops,
                                     row, report))
    return record


def _model_record(row: Row, report: Report, paper: bool) -> dict:
    record = {
        "Model": row.workload.name,
        "Options": _params_label(row),
        "Shape": str(row.workload.shape),
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
            batch = report.execution.batch
            record.update(_ratio_columns("Throughput / paper", lambda median: batch / median, published, row, report))
        else:
            record.update(_ratio_columns("Latency / paper", lambda median: median / 1e-3, published, row, report))
    return record


def _ratio(measured: float | None, published: float | None, report: Report) -> float | None:
    """measured / published, only where both exist and the run followed the paper's protocol."""
    if not measured or not published or protocol_mismatch(report.execution):
        return None
    return measured / published


def _ratio_columns(name: str, measured: Callable[[float], float | None], published: float | None, row: Row,
                   report: Report) -> dict:
    """``name``: the measured value at the row's median (``measured`` of it) / the published one, as
    _ratio; ``name`` CI low and high: the same at the ends of the median's 95 % interval, in order (a
    longer latency is fewer FLOPS). The paper states no uncertainty, so the interval is the run's alone."""
    stats = row.stats
    ratio = _ratio(measured(stats.median_s), published, report) if stats and stats.median_s > 0 else None
    ends = (stats.ci_low_s, stats.ci_high_s) if ratio is not None else (None, None)
    low, high = sorted(_ratio(measured(end), published, report) for end in ends) if all(ends) else (None, None)
    return {name: ratio, f"{name} CI low": low, f"{name} CI high": high}


def _with_intervals(df: pd.DataFrame) -> pd.DataFrame:
    """Each ratio with CI columns as one text column, '1.02 [0.98, 1.05]' (just '1.02' without an
    interval), formatted by _fmt."""
    for name in [c for c in df.columns if f"{c} CI low" in df.columns]:
        low, high = df.pop(f"{name} CI low"), df.pop(f"{name} CI high")
        df[name] = [_fmt(r) if pd.isna(lo) or pd.isna(hi) else f"{_fmt(r)} [{_fmt(lo)}, {_fmt(hi)}]"
                    for r, lo, hi in zip(df[name], low, high)]
    return df


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


def _display(report: Report, paper: bool, view: View = View(), layout: str = "table") -> pd.DataFrame:
    """Formatted for reading in ``layout`` ('table', or 'paper': Markdown and LaTeX, with the paper's
    names of its operators and models): the columns ``view`` chooses (columns.select), each row's
    status saying what its warnings are about, the Options column only when some row has non-default
    options. Errors and warnings are listed under the table (note_lines)."""
    df = frame(report, paper)
    if df.empty:
        return df
    df["Status"] = [notes.status(row) for row in report.rows]
    name = "Model" if "Model" in df and "Operator" not in df else "Operator"
    if layout == "paper":
        df[name] = [_shown_name(row, paper_names=True) for row in report.rows]
    chosen = None if view.wide else \
        view.columns or columns.defaults(layout, name.lower(), paper, report.execution.batch)
    df = columns.select(df, chosen)
    if "Options" in df and not df["Options"].astype(bool).any():
        df = df.drop(columns="Options")
    return _with_intervals(df.astype(object)).map(_fmt)


def _shown_name(row: Row, paper_names: bool = False) -> str:
    """The row's name, or where ``paper_names`` the paper's name of a registered operator or model
    at its defaults ('FasterNet-T0')."""
    from flopsbench.merged_views import paper_name  # it imports this module

    return (paper_names and paper_name(row.workload)) or row.workload.name


def _row_label(row: Row, paper_names: bool = False) -> tuple[str, str]:
    """(name, shape) of a row in the notes: its name as the table shows it, with the options that
    differ from the defaults."""
    options = _params_label(row)
    name = _shown_name(row, paper_names)
    return (f"{name} ({options})" if options else name), str(row.workload.shape)


def note_lines(report: Report, view: View = View(), text: Callable[[object], str] = plain_text,
               paper_names: bool = False) -> list[str]:
    """The notes under the rows: one line per cause of warning (notes.grouped_lines), or with
    ``view.verbose`` each row's warnings in full (warning_lines); ``text`` as in header_lines."""
    if view.verbose:
        core = busy.warning(report.environment.get("pinned_core_load"))
        return [*([core] if core else []), *warning_lines(report, text)]
    return notes.grouped_lines(report, lambda row: _row_label(row, paper_names), text)


def header_lines(report: Report, paper: bool = False, text: Callable[[object], str] = plain_text,
                 steady_state_only: bool = False) -> list[str]:
    """What the run was and what the columns mean; ``text`` makes each value taken from the report
    safe for the view (the report may come from elsewhere; the rest of each line is ours);
    ``steady_state_only``: without the notes of the cold-start, peak-memory and energy columns (a
    table that does not show them)."""
    env, ex = report.environment, report.execution
    state = "" if report.complete else " — INCOMPLETE: interrupted, only finished rows are shown"
    if ex.device == "cuda":
        knobs = [knob.replace("_", " ") for knob in ("cuda_graph", "l2_flush", "channels_last") if ex.option(knob)]
        where = (f"{text(env.get('gpu_name'))} ({text(ex.option('mode'))}; {', '.join(knobs) or 'eager'}), "
                 f"host {text(env.get('hostname'))}")
    else:
        where = (f"{text(env.get('cpu_model'))}, host {text(env.get('hostname'))}, {text(ex.threads)} thread(s) "
                 f"pinned to cores [{', '.join(text(core) for core in ex.cores)}]")
    mismatch = protocol_mismatch(ex) if paper else None
    return [
        f"flopsbench {text(report.command)} on {text(ex.device)}: {where}, batch {text(ex.batch)}, "
        f"{text(precision_label(ex))}, {text(ex.runtime)} {text(env.get('libraries', {}).get(ex.runtime))}, "
        f"allocator {text(ex.allocator)}{state}",
        FLOPS_NOTE,
        INTERVAL_NOTE,
        *([batch_note(ex.batch)] if ex.batch > 1 else []),
        MODEL_NOTE if report.command == "model" else MEMORY_NOTE,
        *([ORT_MEMORY_NOTE] if ex.runtime == "onnxruntime" else []),
        *([text(runtime_note(ex))] if paper and ex.runtime != "torch" else []),
        *roofline_lines(report, text),
        *([] if steady_state_only else beyond_steady_state_lines(report, text)),
        *([f"Paper ratios left out: {text(mismatch)}."] if mismatch else []),
    ]


COLD_START_NOTE = ("Cold start: each round is a new worker process, which builds the case (module and weights, or "
                   "the onnxruntime session) in 'Cold start [ms]', then calls it: 'First call [ms]' is the first call "
                   "there ({first_call}), 'Settle [calls]' how many calls passed before three in a row fell within "
                   "the row's noise band, median ± max(2 × IQR, 5 %); each is the median over the rounds. A case "
                   "other than the first of its worker's job finds the process warmed by the cases before it. "
                   "The paper reports only steady-state latency (the median).")
FIRST_CALL_TIMERS = {"cuda": "wall clock around the call and a synchronize, before any other call of the case",
                     "cpu": "wall clock", "arm": "wall clock"}
PEAK_MEMORY_NOTES = {
    "cuda": "Peak mem [MB]: torch.cuda.max_memory_allocated while the case was built and timed, less what was "
            "allocated before (weights, activations, cudnn workspaces, a CUDA graph's pool, the L2 flush buffer); "
            "the JSON's peak_memory also has the reserved (cached) peak and the host's resident set; the largest "
            "over the rounds.",
    "host": "Peak mem [MB]: how far the worker's resident set rose (VmHWM, reset before the build) above its size "
            "before the case was built, while it was built and timed; memory the process already held and reused "
            "is not counted; the largest over the rounds.",
}
ORT_PEAK_NOTE = " onnxruntime's Python API reports no session peak: its rows are the worker's resident set."
ENERGY_NOTE = ("Energy [mJ/inf]: {source}, read before the samples and again once a second or more of calls had "
               "passed (untimed calls after the samples where they were shorter), over the calls in that window; "
               "one inference is one call of the batch. FLOPS/W [G/W]: the batch's FLOPs / its joules.")


def beyond_steady_state_lines(report: Report, text: Callable[[object], str] = plain_text) -> list[str]:
    """What the cold-start, peak-memory and energy columns are, for those some row has; and, once
    per report, why a figure was not measured (e.g. no permission to read RAPL)."""
    rows, ex = report.rows, report.execution
    lines = []
    if any((row.cold_start or {}).get("first_call_s") is not None for row in rows):
        lines.append(COLD_START_NOTE.format(first_call=FIRST_CALL_TIMERS.get(ex.device, "wall clock")))
    figure = "gpu_peak_allocated_bytes" if ex.device == "cuda" else "host_peak_bytes"
    if any((row.peak_memory or {}).get(figure) is not None for row in rows):
        lines.append(PEAK_MEMORY_NOTES["cuda" if ex.device == "cuda" else "host"]
                     + (ORT_PEAK_NOTE if ex.runtime == "onnxruntime" else ""))
    sources = list(dict.fromkeys(row.energy["source"] for row in rows if (row.energy or {}).get("j_per_call")
                                 is not None and isinstance(row.energy.get("source"), str)))
    if sources:
        lines.append(ENERGY_NOTE.format(source=text("; ".join(sources))))
    reasons = [(row.peak_memory or {}).get("unavailable") for row in rows]
    reasons += [(row.energy or {}).get("unavailable") for row in rows]
    lines += [f"{text(reason)}." for reason in dict.fromkeys(r for r in reasons if isinstance(r, str))]
    return lines


def warning_lines(report: Report, text: Callable[[object], str] = plain_text) -> list[str]:
    """Per-row notes: errors, measurement warnings, and the ops fvcore counted as 0 FLOPs; ``text``
    as in header_lines."""
    lines = []
    for i, row in enumerate(report.rows, 1):
        where = f"row {i} ({text(row.workload.name)} {text(row.workload.shape)})"
        if row.error:
            lines.append(f"{where}: {text(row.status)}: {text(row.error)}")
        lines += [f"{where}: {text(w)}" for w in row.warnings]
        lines += [f"{where}: note: {text(n)}" for n in row.notes]
        if row.unsupported_ops:
            lines.append(f"{where}: fvcore has no FLOP formula for "
                         f"{', '.join(text(op) for op in sorted(row.unsupported_ops))} (counted as 0)")
        if row.zero_flop_ops:
            calls = ", ".join(f"{text(op)} ×{text(n)}" for op, n in sorted(row.zero_flop_ops.items()))
            lines.append(f"{where}: fvcore counts these as 0 FLOPs by design: {calls}")
    return lines


def export_json(report: Report, stream: TextIO, paper: bool = False, view: View = View()) -> None:
    stream.write(report.to_json())


def export_csv(report: Report, stream: TextIO, paper: bool = False, view: View = View()) -> None:
    """The unrounded frame, every column (the rows' errors and warnings too) unless ``view.columns``
    chooses; text cells on one line, never a spreadsheet formula (escaping.csv_text)."""
    df = frame(report, paper)
    df = columns.select(df, view.columns) if view.columns and not df.empty else df
    df = df.map(lambda value: csv_text(value) if isinstance(value, str) else value)
    df.to_csv(stream, index=False, lineterminator="\n")


def _breakdowns(report: Report, text: Callable[[object], str] = plain_text) -> list[tuple[str, pd.DataFrame]]:
    """(title, formatted frame) for each row that has a breakdown; ``text`` as in header_lines (the
    frame's cells are left to the view)."""
    depth = report.execution.breakdown_depth
    return [(f"Breakdown of {text(row.workload.name)} {text(row.workload.shape)} (modules at depth {text(depth)}; "
             "each part timed alone on its own input, in turn with the whole model; Time [%] is of the whole "
             "model's median)",
             breakdown_frame(row).astype(object).map(_fmt))
            for row in report.rows if row.breakdown]


def _markdown_table(df: pd.DataFrame) -> str:
    """Every cell escaped; the column names are ours (a paper column's device is a known one)."""
    align = ["left" if c in TEXT_COLUMNS + ("Part", "Type") else "right" for c in df.columns]
    return df.map(markdown_text).to_markdown(index=False, disable_numparse=True, colalign=align)


def export_markdown(report: Report, stream: TextIO, paper: bool = False, view: View = View()) -> None:
    lines = header_lines(report, paper, markdown_text)
    stream.write(lines[0] + "\n\n" + _markdown_table(_display(report, paper, view, "paper")) + "\n\n")
    for line in lines[1:] + [f"- {w}" for w in note_lines(report, view, markdown_text, paper_names=True)]:
        stream.write(line + "\n")
    for title, df in _breakdowns(report, markdown_text):
        stream.write(f"\n{title}\n\n{_markdown_table(df)}\n")


def _latex_table(df: pd.DataFrame) -> str:
    """A booktabs tabular (\\usepackage{booktabs}); text escaped, missing values as '--'."""
    align = "".join("l" if c in TEXT_COLUMNS + ("Part", "Type") else "r" for c in df.columns)
    df = df.replace("–", "--").map(latex_text).rename(columns=latex_text)
    return df.to_latex(index=False, escape=False, column_format=align)


def export_latex(report: Report, stream: TextIO, paper: bool = False, view: View = View()) -> None:
    """Tables to paste into a paper; what the header and notes say goes above them as comments (each
    one line by plain_text, so nothing in it can end the comment early)."""
    for line in header_lines(report, paper) + note_lines(report, view, paper_names=True):
        stream.write(f"% {line}\n")
    stream.write(_latex_table(_display(report, paper, view, "paper")))
    for title, df in _breakdowns(report):
        stream.write(f"\n% {title}\n{_latex_table(df)}")


def _rich_table(df: pd.DataFrame, title: str, caption: str | None = None, fit: bool = False,
                split_intervals: bool = False, show_edge: bool = True) -> Table:
    """Titles, captions and cells as Text, which rich prints as is (no markup, no emoji codes), so the
    text must already be free of control characters (header_lines, note_lines, plain_text).
    ``fit``: each header wrapped at its spaces to its column's widest value, and no cell wrapped, so
    that the table is as narrow as its values allow and rich never narrows a column below a number
    (it would cut it); ``split_intervals``: also each interval on a line under its value, and each of
    a status's causes on a line of its own."""
    table = Table(title=Text(title), caption=caption and Text(caption), caption_justify="left",
                  title_justify="left", show_edge=show_edge)
    left = [column in TEXT_COLUMNS + ("Part", "Type") for column in df.columns]
    cells = [[plain_text(cell) for cell in record] for record in df.itertuples(index=False)]
    if split_intervals:
        cells = [[_split(cell, column, text) for cell, column, text in zip(record, df.columns, left)]
                 for record in cells]
    for i, column in enumerate(df.columns):
        header = plain_text(column)
        if fit:
            widest = max([len(line) for record in cells for line in record[i].split("\n")] +
                         [len(word) for word in header.split()])
            header = "\n".join(textwrap.wrap(header, widest, break_long_words=False, break_on_hyphens=False))
        name = column in NAME_COLUMNS  # a long name (timm:...) folds: rich narrows it before any number
        table.add_column(Text(header), justify="left" if left[i] else "right", no_wrap=(left[i] or fit) and not name,
                         overflow="fold" if name else "ellipsis")
    for record in cells:
        table.add_row(*(Text(cell) for cell in record))
    return table


def _split(cell: str, column: str, text: bool) -> str:
    """A cell on lines: a number's interval under it, a status's causes one a line."""
    if column == "Status":
        return cell.replace(", ", ",\n")
    return cell if text else cell.replace(" [", "\n[", 1)


def export_table(report: Report, stream: TextIO, paper: bool = False, view: View = View()) -> None:
    """Rich tables. On a terminal as wide as it is (the default columns fit 100): headers on one line
    where they fit, else wrapped, else each interval under its value; on a terminal too narrow even
    then (say COLUMNS=20, where rich would cut every number) as wide as they need, so that the lines
    overflow instead. Elsewhere (a pipe, a file) as wide as the tables are: nothing wrapped or cut.
    The notes of columns not shown (cold start, peak memory, energy) are left out."""
    beyond = {columns.name_of(header) for header in BEYOND_STEADY_STATE}
    lines = header_lines(report, paper, steady_state_only=not (view.wide or beyond & set(view.columns or ())))
    interactive = hasattr(stream, "isatty") and stream.isatty()
    console = Console(file=stream, width=None if interactive else 10_000, force_terminal=interactive)
    shown = _display(report, paper, view)
    caption = "\n".join(lines[1:] + note_lines(report, view))
    breakdowns = _breakdowns(report)
    unclamped = console.options.update_width(10_000)  # rich clamps a measurement to the width it is given

    def laid_out(**layout) -> tuple[list[Table], int, int]:
        tables = [_rich_table(shown, lines[0], caption, show_edge=False, **layout),
                  *(_rich_table(df, title, show_edge=False, **layout) for title, df in breakdowns)]
        widths = [Measurement.get(console, unclamped, table) for table in tables]
        return tables, max(width.maximum for width in widths), max(width.minimum for width in widths)

    for layout in ({}, {"fit": True}, {"fit": True, "split_intervals": True}) if interactive else ({},):
        tables, needed, least = laid_out(**layout)
        if needed <= console.width:
            break
    # the last layout may still fit by folding a long name (NAME_COLUMNS): only numbers never give way
    console.width = max(console.width, least) if interactive else needed
    for table in tables:
        console.print(table)


EXPORTERS: dict[str, Callable[[Report, TextIO, bool, View], None]] = {
    "table": export_table,
    "csv": export_csv,
    "md": export_markdown,
    "latex": export_latex,
    "json": export_json,
}


def render(report: Report, fmt: str, paper: bool = False, view: View = View()) -> str:
    buffer = io.StringIO()
    EXPORTERS[fmt](report, buffer, paper, view)
    return buffer.getvalue()
