"""Which columns a report's table shows. Each column of exporters.frame has a short name (COLUMNS);
each view has defaults: the terminal the columns a reader needs first, so that the table fits 100
columns; Markdown and LaTeX the paper's (Table 1: FLOPs, memory access, latency, FLOPS; Table 3:
params, FLOPs, latency); CSV all of them. --wide shows all, --columns exactly those named."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

import pandas as pd

# --columns: each name and what it holds. The row's name (Operator or Model) comes first always, and
# Options wherever a row has options other than its defaults: they say which row it is.
COLUMNS = {
    "shape": "the feature map (operators) or input (models), CxHxW",
    "layers": "operators: the identical layers stacked",
    "batch": "the batch size",
    "params": "the parameters",
    "flops": "FLOPs per image (models: Table 3's count, BN unfused)",
    "flops-fused": "models: FLOPs per image with BN folded into the convs (Table 8's count)",
    "memory": "operators: memory access by the paper's formula (Eqs. 2/3/5)",
    "memory-impl": "memory the executed PyTorch kernels read and write",
    "intensity": "FLOPs per byte of memory-impl",
    "time": "the median latency [ms] (of the whole batch)",
    "ci": "the 95% confidence interval of the median (and of the throughput), beside it",
    "iqr": "the interquartile range of the samples",
    "cold-start": "building the case in a new worker",
    "first-call": "the first call of the case",
    "settle": "calls until the latency settled",
    "flops-per-s": "FLOPS [G/s]: FLOPs / median",
    "peak-share": "% of the machine's measured peak FLOPS (with ceilings)",
    "bound-by": "memory or compute, by the roofline (with ceilings)",
    "throughput": "images per second",
    "peak-memory": "the peak memory of the case",
    "energy": "energy per inference",
    "flops-per-w": "FLOPs per joule",
    "runs": "the samples behind the median",
    "status": "ok, error, or the causes of the row's warnings (drift, noisy, ...)",
    "paper-params": "--paper, models: the paper's params",
    "paper-flops": "--paper, models: the paper's FLOPs",
    "paper-time": "--paper: the paper's latency (throughput on a GPU)",
    "paper-flops-per-s": "--paper, operators: the paper's FLOPS",
    "ratio": "--paper: this run / the paper (FLOPS for operators, latency or throughput for models), "
             "with its interval",
}
ALWAYS = ("name", "options")

# The frame's headers by name; a header 'X CI low' or 'X CI high' is the interval of X.
HEADERS = {
    "Operator": "name", "Model": "name", "Options": "options", "Shape": "shape", "Input": "shape",
    "Layers": "layers", "Batch": "batch", "Params [K]": "params", "Params [M]": "params",
    "FLOPs [M]": "flops", "FLOPs [G] (Tab. 3, unfused)": "flops", "FLOPs [G] (Tab. 8, BN fused)": "flops-fused",
    "Mem ideal [MB]": "memory", "Mem impl [MB]": "memory-impl", "Intensity [FLOP/B]": "intensity",
    "Median [ms]": "time", "IQR [ms]": "iqr", "Cold start [ms]": "cold-start", "First call [ms]": "first-call",
    "Settle [calls]": "settle", "FLOPS [G/s]": "flops-per-s", "% of peak": "peak-share", "Bound by": "bound-by",
    "Throughput [1/s]": "throughput", "Peak mem [MB]": "peak-memory", "Energy [mJ/inf]": "energy",
    "FLOPS/W [G/W]": "flops-per-w", "Runs": "runs", "Status": "status", "Paper params [M]": "paper-params",
    "Paper FLOPs [G]": "paper-flops", "FLOPS / paper": "ratio", "Latency / paper": "ratio",
    "Throughput / paper": "ratio",
}
PAPER_HEADERS = ((re.compile(r"Paper \w+ (latency \[ms\]|throughput \[img/s\])"), "paper-time"),
                 (re.compile(r"Paper \w+ FLOPS \[G/s\]"), "paper-flops-per-s"))
INTERVAL = re.compile(r"(.*) CI (low|high)")
TEXT_ONLY = ("Error", "Warnings", "Median CI method")  # in the data (CSV), never a table's column: the notes say them

TERMINAL = {"operator": ("shape", "flops", "memory", "time", "ci", "flops-per-s", "status"),
            "model": ("params", "flops", "time", "ci", "flops-per-s", "status")}
PAPER_VIEW = {"operator": ("shape", "flops", "memory", "time", "ci", "flops-per-s"),
              "model": ("params", "flops", "time", "ci", "flops-per-s")}
WITH_PAPER = {"table": {"operator": ("paper-flops-per-s", "ratio"), "model": ("paper-time", "ratio")},
              "paper": {"operator": ("paper-time", "paper-flops-per-s", "ratio"),
                        "model": ("paper-params", "paper-flops", "paper-time", "ratio")}}


@dataclass(frozen=True)
class View:
    """How a report's views show it, besides --paper: its columns (``columns``: exactly these,
    names of COLUMNS; ``wide``: all; neither: the view's defaults) and its notes (``verbose``:
    each row's warnings in full, rather than one line per cause)."""

    columns: tuple[str, ...] | None = None
    wide: bool = False
    verbose: bool = False


def parse(text: str) -> tuple[str, ...]:
    """--columns' comma list, each a name of COLUMNS; a ValueError naming the valid ones otherwise."""
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in COLUMNS]
    if unknown or not names:
        given = f"unknown column {unknown[0]!r}" if unknown else "no column given"
        raise ValueError(f"{given}; choose from {', '.join(COLUMNS)}")
    return names


def name_of(header: str) -> str | None:
    """The --columns name of a frame header (an interval's: that of the value it belongs to)."""
    interval = INTERVAL.fullmatch(header)
    base = interval.group(1) if interval else header
    return HEADERS.get(base) or next((name for pattern, name in PAPER_HEADERS if pattern.fullmatch(base)), None)


def defaults(view: str, kind: str, paper: bool, batch: int) -> tuple[str, ...]:
    """The default columns of ``view`` ('table' or 'paper': md and LaTeX) for ``kind`` ('operator'
    or 'model'); a batch above 1 adds its throughput, as the paper gives on a GPU."""
    chosen = (TERMINAL if view == "table" else PAPER_VIEW)[kind]
    if batch > 1:  # after the median and its interval
        at = chosen.index("ci") + 1
        chosen = (*chosen[:at], "throughput", *chosen[at:])
    return chosen + (WITH_PAPER[view][kind] if paper else ())


def select(df: pd.DataFrame, chosen: Iterable[str] | None) -> pd.DataFrame:
    """The row's name, its options, then the columns of ``chosen`` in its order (those this report
    has), each followed by its interval where it has one and 'ci' is chosen (a ratio's always);
    None: every column but the TEXT_ONLY ones."""
    if chosen is None:
        return df.drop(columns=[c for c in TEXT_ONLY if c in df])
    chosen = tuple(chosen)
    picked = []
    for name in (*ALWAYS, *chosen):
        for header in df.columns:
            if name_of(header) == name and not INTERVAL.fullmatch(header) and header not in picked:
                picked.append(header)
                if name == "ratio" or "ci" in chosen:
                    picked += [f"{header} CI low", f"{header} CI high"] if f"{header} CI low" in df else []
    return df[picked]
