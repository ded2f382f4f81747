"""`flopsbench claims FILE...`: the FasterNet paper's claims (flopsbench.claims says which, and how
each is checked) against saved reports from any devices, each with its verdict beside the paper's
number, as a table, CSV, Markdown, LaTeX or JSON."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Callable, TextIO

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from flopsbench import __version__, validation
from flopsbench.claims import (DEVICE_NAMES, KINDS, Check, Claim, Source, Value, evaluate,
                               paper_claims)
from flopsbench.cli import app
from flopsbench.cli.options import (FORMATS, Format, Output, check_choice, validated, write_output)
from flopsbench.cli.report_cmd import load_report
from flopsbench.view_format import view_format
from flopsbench.bootstrap import CONFIDENCE, RESAMPLES, SEED
from flopsbench.compare import MIN_SAMPLES
from flopsbench.escaping import csv_text, latex_text, markdown_text, plain_text
from flopsbench.exporters import _fmt

RULE_NOTE = (f"Verdicts. Timed claims: the ratio of the medians with its {CONFIDENCE:.0%} bootstrap interval "
             f"({RESAMPLES:,} resamples of each row's timing rounds, then of their samples, seed {SEED}); 'holds' "
             "when the whole interval lies on the claimed side of 1, 'fails' when it lies wholly on the other side, "
             f"'inconclusive' when it straddles or touches 1 or a row has fewer than {MIN_SAMPLES} samples. The "
             "verdict is on the direction; 'Paper' and 'Paper vs interval' show the magnitude, which depends on "
             "the machine. Counted claims (FLOPs, memory access): exact counts, 'holds' within the stated "
             "tolerance. 'not measured': "
             "the reports lack a device or a row. Both rows of a ratio come from reports of one protocol, "
             "preferably from one report.")
NUMBER_COLUMNS = ("Measured", "Paper")  # right-aligned in the views
UNITS = {"latency_s": (1e-3, "ms"), "throughput_per_s": (1, "img/s"), "flops_per_s": (1e9, "GFLOPS"),
         "flops": (1e6, "MFLOPs"), "memory_bytes": (1e6, "MB")}


@app.command("claims")
def claims_command(
    files: list[Path] = typer.Argument(..., metavar="FILE...", help="Reports in JSON (--save, '--format json', or "
                                                                    "'python -m flopsbench.board'), from any devices."),
    fmt: Format = None,
    output: Output = None,
) -> None:
    """Check the FasterNet paper's claims (T0 vs MobileViT-XXS, L vs Swin-B, PConv's FLOPS, FLOPs and memory
    access) against saved reports: each verdict (holds, fails, inconclusive, not measured) beside the paper's
    number."""
    check_choice(fmt, FORMATS, "--format")
    fmt = validated(view_format, fmt, output)
    validated(validation.check_writable, output)
    sources = [Source(str(path), load_report(path)) for path in files]
    checks = evaluate(paper_claims(), sources)
    if not write_output(lambda stream: VIEWS[fmt](checks, sources, stream), output, "flopsbench claims"):
        raise typer.Exit(1)




# --- views ----------------------------------------------------------------------------------------------

def claimed_text(claim: Claim) -> str:
    """'> 1', '< 1', '= 0.0625' or '≈ 0.25 ± 10%'."""
    if claim.claimed == "equal":
        exact = claim.tolerance < 1e-6
        return f"= {claim.threshold:g}" if exact else f"≈ {claim.threshold:g} ± {claim.tolerance * 100:g}%"
    return f"{'>' if claim.claimed == 'above' else '<'} {claim.threshold:g}"


def frame(checks: list[Check]) -> pd.DataFrame:
    """One line per check, unrounded: the ratio, its interval, the paper's number, the verdict, and
    each operand's measured and published value (SI units, as 'Quantity' names them)."""
    records = []
    for check in checks:
        low, high = check.interval or (None, None)
        a, b = check.values or (None, None)
        records.append({
            "Claim": check.claim.id, "Device": DEVICE_NAMES.get(check.device, ""),
            "Measured under": check.protocol or "", "Case": str(check.case) if check.case else "",
            "Ratio": check.ratio, "Ratio CI low": low, "Ratio CI high": high, "Paper": check.paper,
            "Paper vs interval": check.paper_position or "", "Claimed": claimed_text(check.claim),
            "Verdict": check.verdict, "Reason": check.reason or "",
            "Quantity": a.quantity if a else "",
            **_operand_columns("A", a, check.claim.a.label), **_operand_columns("B", b, check.claim.b.label),
            "Notes": " | ".join(check.notes), "Files": " ".join(check.files),
        })
    return pd.DataFrame.from_records(records)


def _operand_columns(side: str, value: Value | None, label: str) -> dict:
    return {side: label, f"{side} measured": value and value.measured, f"{side} paper": value and value.paper}


def _value_text(value: Value) -> str:
    scale, unit = UNITS[value.quantity]
    paper = "" if value.paper is None else f" (paper {_fmt(value.paper / scale)})"
    return f"{value.label} {_fmt(value.measured / scale)} {unit}{paper}"


def _display(checks: list[Check]) -> pd.DataFrame:
    """Formatted for reading: the ratio with its interval in one column; reasons and notes go below."""
    rows = []
    for check in checks:
        ratio = "–" if check.ratio is None else _fmt(check.ratio)
        if check.interval:
            ratio += f" [{_fmt(check.interval[0])}, {_fmt(check.interval[1])}]"
        rows.append({"Claim": check.claim.id, "Device": DEVICE_NAMES.get(check.device, "–"),
                     "Measured under": check.protocol or "–", "Case": str(check.case) if check.case else "–",
                     "Measured": ratio, "Paper": _fmt(check.paper), "Paper vs interval": check.paper_position or "–",
                     "Claimed": claimed_text(check.claim), "Verdict": check.verdict,
                     "Values": "; ".join(_value_text(value) for value in check.values) or "–"})
    return pd.DataFrame.from_records(rows)


def header_lines(sources: list[Source], text: Callable[[object], str] = plain_text) -> list[str]:
    """What was checked against what, and how; ``text`` makes each value from a file safe for the view."""
    lines = [f"flopsbench claims: the FasterNet paper's claims (Chen et al., CVPR 2023) against "
             f"{len(sources)} report{'s' * (len(sources) != 1)}"]
    for source in sources:
        report, env = source.report, source.report.environment
        ex = report.execution
        machine = env.get("gpu_name") if ex.device == "cuda" else env.get("cpu_model")
        state = "" if report.complete else " (INCOMPLETE)"
        lines.append(f"Report {text(source.name)}: {text(report.command)} on {text(ex.device)}, {text(ex.runtime)}, "
                     f"{text(report.created_utc)}{state}, host {text(env.get('hostname'))}, {text(machine)}")
    return lines + [RULE_NOTE]


def claim_lines(checks: list[Check], text: Callable[[object], str] = plain_text) -> list[str]:
    """Each claim once: its words, where the paper says it, and what its ratio divides."""
    lines = []
    for claim in {check.claim.id: check.claim for check in checks}.values():
        said = [f"{claim.id}: \u201c{claim.text}\u201d ({claim.where}).", f"A = {claim.a.label}, B = {claim.b.label};",
                f"ratio: {KINDS[claim.kind]}; claimed {claimed_text(claim)}.", *([claim.note] if claim.note else [])]
        lines.append(text(" ".join(said)))
    return lines


def note_lines(checks: list[Check], text: Callable[[object], str] = plain_text) -> list[str]:
    """Per check: why it is not measured or inconclusive, and which reports it used."""
    lines = []
    for i, check in enumerate(checks, 1):
        where = ", ".join(part for part in (check.claim.id, DEVICE_NAMES.get(check.device), check.protocol,
                                            str(check.case) if check.case else None) if part)
        said = [*([f"{check.verdict}: {check.reason}"] if check.reason else []), *check.notes,
                *([f"from {', '.join(check.files)}"] if check.files else [])]
        lines.append(f"check {i} ({text(where)}): " + "; ".join(text(part) for part in said))
    return lines


def export_table(checks: list[Check], sources: list[Source], stream: TextIO) -> None:
    lines = header_lines(sources)
    interactive = hasattr(stream, "isatty") and stream.isatty()
    console = Console(file=stream, width=None if interactive else 220, force_terminal=interactive)
    caption = "\n".join(lines[1:] + claim_lines(checks) + note_lines(checks))
    table = Table(title=Text(lines[0]), caption=Text(caption), caption_justify="left", title_justify="left")
    df = _display(checks)
    for column in df.columns:  # Text: printed as it is, never read as markup
        table.add_column(Text(column), justify="right" if column in NUMBER_COLUMNS else "left")
    for record in df.itertuples(index=False):
        table.add_row(*(Text(plain_text(cell)) for cell in record))
    console.print(table)


def _markdown_table(df: pd.DataFrame) -> str:
    align = ["right" if column in NUMBER_COLUMNS else "left" for column in df.columns]
    return df.map(markdown_text).to_markdown(index=False, disable_numparse=True, colalign=align)


def export_markdown(checks: list[Check], sources: list[Source], stream: TextIO) -> None:
    lines = header_lines(sources, markdown_text)
    stream.write(lines[0] + "\n\n" + _markdown_table(_display(checks)) + "\n\n")
    for line in lines[1:]:
        stream.write(f"{line}\n\n")
    stream.write("Claims:\n\n" + "".join(f"- {line}\n" for line in claim_lines(checks, markdown_text)))
    notes = note_lines(checks, markdown_text)
    if notes:
        stream.write("\nNotes:\n\n" + "".join(f"- {line}\n" for line in notes))


def export_latex(checks: list[Check], sources: list[Source], stream: TextIO) -> None:
    """A booktabs tabular; the header, the claims and the notes go above it as '% ' comments."""
    for line in header_lines(sources) + claim_lines(checks) + note_lines(checks):
        stream.write(f"% {line}\n")
    df = _display(checks).drop(columns="Values").replace("–", "--")
    align = "".join("r" if column in NUMBER_COLUMNS else "l" for column in df.columns)
    stream.write(df.map(latex_text).rename(columns=latex_text).to_latex(index=False, escape=False,
                                                                        column_format=align))


def export_csv(checks: list[Check], sources: list[Source], stream: TextIO) -> None:
    """The unrounded frame; text cells on one line, never a spreadsheet formula."""
    df = frame(checks).map(lambda value: csv_text(value) if isinstance(value, str) else value)
    df.to_csv(stream, index=False, lineterminator="\n")


def export_json(checks: list[Check], sources: list[Source], stream: TextIO) -> None:
    """Everything the other views show, as data (strings as they are in the reports)."""
    claims = {check.claim.id: check.claim for check in checks}
    data = {
        "schema": "flopsbench.claims", "schema_version": 1, "tool_version": __version__,
        "reports": [{"file": s.name, "command": s.report.command, "device": s.report.execution.device,
                     "runtime": s.report.execution.runtime, "created_utc": s.report.created_utc,
                     "complete": s.report.complete, "hostname": s.report.environment.get("hostname"),
                     "cpu_model": s.report.environment.get("cpu_model"),
                     "gpu_name": s.report.environment.get("gpu_name")} for s in sources],
        "method": {"interval": "hierarchical bootstrap percentile of the ratio of medians (rounds, then samples)",
                   "confidence": CONFIDENCE,
                   "resamples": RESAMPLES, "seed": SEED, "min_samples": MIN_SAMPLES, "rule": RULE_NOTE},
        "claims": [{"id": c.id, "text": c.text, "where": c.where, "kind": c.kind, "ratio": KINDS[c.kind],
                    "a": c.a.label, "b": c.b.label, "claimed": c.claimed, "threshold": c.threshold,
                    "tolerance": c.tolerance, "note": c.note} for c in claims.values()],
        "checks": [{"claim": check.claim.id, "device": check.device, "protocol": check.protocol,
                    "case": str(check.case) if check.case else None, "verdict": check.verdict,
                    "ratio": check.ratio, "ratio_ci_low": check.interval and check.interval[0],
                    "ratio_ci_high": check.interval and check.interval[1], "paper": check.paper,
                    "paper_vs_interval": check.paper_position, "reason": check.reason, "notes": list(check.notes),
                    "files": list(check.files),
                    "values": [{"label": v.label, "quantity": v.quantity, "measured": v.measured, "paper": v.paper}
                               for v in check.values]} for check in checks],
    }
    stream.write(json.dumps(data, indent=1) + "\n")


VIEWS: dict[str, Callable[[list[Check], list[Source], TextIO], None]] = {
    "table": export_table, "csv": export_csv, "md": export_markdown, "latex": export_latex, "json": export_json,
}


def render(checks: list[Check], sources: list[Source], fmt: str) -> str:
    buffer = io.StringIO()
    VIEWS[fmt](checks, sources, buffer)
    return buffer.getvalue()
