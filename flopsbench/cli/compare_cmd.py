"""`flopsbench compare BASE NEW`: two saved reports of one protocol, row by row, paired by workload
(flopsbench.compare says how rows pair and what the ratio, its interval, the test and the verdict
are); the comparison as a table, CSV, Markdown, LaTeX or JSON. ``--fail-above 5%`` exits 1 when
a row got significantly slower by more than 5 %, for CI."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Callable, Optional, TextIO

import pandas as pd
import typer
from rich.console import Console

from flopsbench import __version__, validation
from flopsbench.cli import app
from flopsbench.cli.options import FORMATS, Format, Output, bad, check_choice, validated, write_output
from flopsbench.cli.report_cmd import load_report
from flopsbench.view_format import view_format
from flopsbench.compare import (ALPHA, CONFIDENCE, EXACT_MAX_ROUNDS, MIN_ROUNDS, MIN_SAMPLES, RESAMPLES, SEED,
                                Comparison, Pair, ProtocolError, compare_reports)
from flopsbench.escaping import csv_text, markdown_text, plain_text
from flopsbench.exporters import (_fmt, _latex_table, _markdown_table, _params_label, _rich_table,
                                  _with_intervals)
from flopsbench.paper import precision_label
from flopsbench.report import Report, Row

RATIO_NOTE = (f"NEW / BASE: the ratio of the medians (below 1: NEW is faster) with its {CONFIDENCE:.0%} "
              f"hierarchical bootstrap percentile interval ({RESAMPLES:,} resamples of each row's timing rounds, then "
              f"of the samples within each drawn round; seed {SEED}): the rounds, each a fresh worker process, are "
              "the independent units, not the samples.")
VERDICT_NOTE = (f"Verdict: faster or slower only when the Mann-Whitney U test on the rounds' medians finds a "
                f"difference (two-sided p < {ALPHA}; exact for up to {EXACT_MAX_ROUNDS} rounds in all) and the "
                f"interval excludes 1; otherwise no significant change. A verdict needs {MIN_SAMPLES} samples and "
                f"{MIN_ROUNDS} rounds a side. The rounds of a run span only that run's time, not the machine's state "
                "from one run to the next: repeat both runs before trusting a change of a few per cent.")

@app.command("compare")
def compare_command(
    base: Path = typer.Argument(..., metavar="BASE", help="The baseline report, JSON (--save or '--format json')."),
    new: Path = typer.Argument(..., metavar="NEW", help="The report to compare with it, of the same protocol."),
    fmt: Format = None,
    output: Output = None,
    fail_above: Optional[str] = typer.Option(None, "--fail-above", metavar="PCT",
                                             help="Exit 1 if a row is significantly slower by more than PCT, "
                                                  "e.g. 5% (for CI)."),
) -> None:
    """Compare two saved reports row by row: the ratio of medians with its interval, and whether NEW is
    significantly faster or slower (Mann-Whitney U test on the timing rounds' medians)."""
    check_choice(fmt, FORMATS, "--format")
    fmt = validated(view_format, fmt, output)
    threshold = None if fail_above is None else parse_percentage(fail_above, "--fail-above")
    validated(validation.check_writable, output)
    reports = _load(base, "BASE"), _load(new, "NEW")
    try:
        comparison = compare_reports(*reports, base_name=str(base), new_name=str(new))
    except ProtocolError as exc:
        raise bad("NEW", f"{plain_text(new)} is not a run of {plain_text(base)}'s protocol: {exc}; "
                         "compare runs of the same protocol") from None
    written = write_output(lambda stream: VIEWS[fmt](comparison, stream, threshold), output, "flopsbench compare")
    regressions = [] if threshold is None else comparison.regressions(threshold)
    for pair in regressions:
        typer.echo(f"flopsbench compare: {_where(pair)} is significantly slower by more than {_percent(threshold)}: "
                   f"NEW / BASE {_ratio_text(pair)}", err=True)
    if regressions or not written:
        raise typer.Exit(1)




def parse_percentage(text: str, option: str) -> float:
    """'5%' -> 0.05. A bare number is refused: 5 and 0.05 would each be read as the other by someone."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*", text, re.ASCII)
    if not match:
        raise bad(option, f"{text[:40]!r} is not a percentage; write it with '%', e.g. 5% (a bare 0.05 or 5 "
                          "would be ambiguous)")
    return float(match[1]) / 100


def _load(path: Path, name: str) -> Report:
    """load_report's one-line error, naming the argument at fault."""
    try:
        return load_report(path)
    except typer.BadParameter as exc:
        exc.param_hint = f"'{name}'"
        raise


# --- views ----------------------------------------------------------------------------------------------

def frame(comparison: Comparison) -> pd.DataFrame:
    """One line per workload, unrounded: medians, the ratio and its interval, p, runs, verdict."""
    df = pd.DataFrame.from_records([_record(pair, comparison.base.command) for pair in comparison.pairs])
    if df.empty:
        return df
    for column in ("BASE runs", "NEW runs", *(["Layers"] if "Layers" in df else [])):
        df[column] = df[column].astype("Int64")  # integers beside the missing values of a one-sided row
    return df


def _record(pair: Pair, command: str) -> dict:
    workload, model = pair.workload, command == "model"
    low, high = pair.ratio_ci or (None, None)
    return {
        "Model" if model else "Operator": workload.name,
        "Options": _params_label(pair.base or pair.new),
        "Shape": str(workload.shape),
        **({} if model else {"Layers": workload.layers}),
        "BASE median [ms]": _median_ms(pair.base),
        "NEW median [ms]": _median_ms(pair.new),
        "NEW / BASE": pair.ratio, "NEW / BASE CI low": low, "NEW / BASE CI high": high,
        "p": pair.p_value,
        "BASE runs": len(pair.base.samples_s) if pair.base else None,
        "NEW runs": len(pair.new.samples_s) if pair.new else None,
        "Verdict": pair.verdict,
        "Reason": pair.reason or "",
    }


def _median_ms(row: Row | None) -> float | None:
    return row.stats.median_s * 1e3 if row is not None and row.status == "ok" and row.samples_s else None


def _p_text(p) -> str:
    return "–" if p is None or pd.isna(p) else "< 0.001" if p < 0.001 else f"{p:.3f}"


def _display(comparison: Comparison) -> pd.DataFrame:
    """Formatted for reading: the ratio with its interval in one column; reasons go under the table."""
    df = frame(comparison)
    if df.empty:
        return df
    df = df.drop(columns="Reason")
    if not df["Options"].astype(bool).any():
        df = df.drop(columns="Options")
    df = df.astype(object)
    df["p"] = df["p"].map(_p_text)
    return _with_intervals(df).map(_fmt)


def _side_line(name: str, label: str, report: Report, text: Callable[[object], str]) -> str:
    env, ex = report.environment, report.execution
    machine = env.get("gpu_name") if ex.device == "cuda" else env.get("cpu_model")
    state = "" if report.complete else " (INCOMPLETE: interrupted; rows it did not finish are not compared)"
    return (f"{name}: {text(label)}, {text(report.created_utc)}{state}, host {text(env.get('hostname'))}, "
            f"{text(machine)}, {text(ex.runtime)} {text(env.get('libraries', {}).get(ex.runtime))}, "
            f"flopsbench {text(report.tool_version)}")


def header_lines(comparison: Comparison, threshold: float | None, text: Callable[[object], str] = plain_text,
                 ) -> list[str]:
    """What was compared, under which protocol, and how; ``text`` makes each value from a report or a
    file name safe for the view."""
    ex = comparison.base.execution
    threads = f"{ex.threads} thread{'s' * (ex.threads != 1)}"
    lines = [f"flopsbench compare: NEW {text(comparison.new_name)} against BASE {text(comparison.base_name)}: "
             f"{text(comparison.base.command)} on {text(ex.device)}, {text(ex.runtime)}, batch {text(ex.batch)}, "
             f"{threads}, {text(precision_label(ex))}",
             _side_line("BASE", comparison.base_name, comparison.base, text),
             _side_line("NEW", comparison.new_name, comparison.new, text),
             RATIO_NOTE, VERDICT_NOTE]
    if comparison.tested():
        lines.append(chance_line(comparison))
    if threshold is not None:
        regressions = comparison.regressions(threshold)
        lines.append(f"--fail-above {_percent(threshold)}: "
                     + (f"{len(regressions)} row(s) significantly slower by more: "
                        + ", ".join(_where(pair, text) for pair in regressions) if regressions
                        else "no row is significantly slower by more."))
    return lines


def chance_line(comparison: Comparison) -> str:
    """How many of the verdicts chance alone could give: with many rows, a few by chance are expected."""
    tested = len(comparison.tested())
    return (f"By chance: {len(comparison.verdicts())} of the {tested} row(s) tested are faster or slower. Were "
            f"nothing changed, each test would still say so up to {ALPHA:.0%} of the time: up to "
            f"{comparison.chance_verdicts():.1f} of {tested} on average. A change is surer when many rows share it, "
            "or when a repeated pair of runs shows it again.")


def note_lines(comparison: Comparison, text: Callable[[object], str] = plain_text) -> list[str]:
    """Per row: why it has no verdict, and how many warnings (noise, drift, outliers) either run gave
    it, which make its verdict less sure ('flopsbench report FILE' lists them)."""
    lines = []
    for i, pair in enumerate(comparison.pairs, 1):
        where = f"row {i} ({_where(pair, text)})"
        if pair.reason:
            lines.append(f"{where}: {pair.verdict}: {text(pair.reason)}")
        warned = [f"{side} {len(row.warnings)}" for side, row in (("BASE", pair.base), ("NEW", pair.new))
                  if row is not None and row.warnings]
        if warned:
            lines.append(f"{where}: warnings in {' and '.join(warned)} ('flopsbench report FILE' lists them); "
                         "the verdict is less sure")
    return lines


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.4g}%"


def _where(pair: Pair, text: Callable[[object], str] = plain_text) -> str:
    return f"{text(pair.workload.name)} {text(pair.workload.shape)}"


def _ratio_text(pair: Pair) -> str:
    low, high = pair.ratio_ci
    return f"{pair.ratio:.3f} [{low:.3f}, {high:.3f}], p {_p_text(pair.p_value)}"


def export_table(comparison: Comparison, stream: TextIO, threshold: float | None = None) -> None:
    lines = header_lines(comparison, threshold)
    interactive = hasattr(stream, "isatty") and stream.isatty()
    console = Console(file=stream, width=None if interactive else 220, force_terminal=interactive)
    console.print(_rich_table(_display(comparison), lines[0], "\n".join(lines[1:] + note_lines(comparison))))


def export_markdown(comparison: Comparison, stream: TextIO, threshold: float | None = None) -> None:
    lines = header_lines(comparison, threshold, markdown_text)
    stream.write(lines[0] + "\n\n" + _markdown_table(_display(comparison)) + "\n\n")
    for line in lines[1:] + [f"- {note}" for note in note_lines(comparison, markdown_text)]:
        stream.write(line + "\n")


def export_latex(comparison: Comparison, stream: TextIO, threshold: float | None = None) -> None:
    """A booktabs tabular; what the header and the notes say goes above it as '% ' comments."""
    for line in header_lines(comparison, threshold) + note_lines(comparison):
        stream.write(f"% {line}\n")
    stream.write(_latex_table(_display(comparison)))


def export_csv(comparison: Comparison, stream: TextIO, threshold: float | None = None) -> None:
    """The unrounded frame; text cells on one line, never a spreadsheet formula."""
    df = frame(comparison).map(lambda value: csv_text(value) if isinstance(value, str) else value)
    df.to_csv(stream, index=False, lineterminator="\n")


def export_json(comparison: Comparison, stream: TextIO, threshold: float | None = None) -> None:
    """Everything the other views show, as data (strings as they are in the reports)."""
    def side(name: str, report: Report) -> dict:
        env = report.environment
        return {"file": name, "created_utc": report.created_utc, "complete": report.complete,
                "tool_version": report.tool_version, "hostname": env.get("hostname"),
                "cpu_model": env.get("cpu_model"), "gpu_name": env.get("gpu_name"),
                "runtime_version": env.get("libraries", {}).get(report.execution.runtime)}

    def row(r: Row | None) -> dict | None:
        if r is None:
            return None
        stats = r.stats
        return {"status": r.status, "error": r.error, "n": len(r.samples_s), "median_s": stats and stats.median_s,
                "ci_low_s": stats and stats.ci_low_s, "ci_high_s": stats and stats.ci_high_s,
                "ci_method": stats and stats.ci_method, "warnings": r.warnings}

    ex = comparison.base.execution
    data = {
        "schema": "flopsbench.compare", "schema_version": 1, "tool_version": __version__,
        "base": side(comparison.base_name, comparison.base), "new": side(comparison.new_name, comparison.new),
        "protocol": {"command": comparison.base.command, "device": ex.device, "runtime": ex.runtime,
                     "batch": ex.batch, "threads": ex.threads, "dtype": ex.dtype,
                     "precision": precision_label(ex), "runtime_options": dict(ex.runtime_options)},
        "method": {"ratio": "median(NEW) / median(BASE)",
                   "interval": "hierarchical bootstrap percentile: timing rounds, then samples within each",
                   "confidence": CONFIDENCE, "resamples": RESAMPLES, "seed": SEED,
                   "test": f"Mann-Whitney U on the rounds' medians, two-sided, exact up to {EXACT_MAX_ROUNDS} rounds "
                           "in all, else the normal approximation with tie and continuity corrections",
                   "alpha": ALPHA, "min_samples": MIN_SAMPLES, "min_rounds": MIN_ROUNDS,
                   "verdict": "faster or slower when p < alpha and the interval excludes 1"},
        "chance": {"rows_tested": len(comparison.tested()),
                   "verdicts": len(comparison.verdicts()),
                   "verdicts_by_chance_at_most": round(comparison.chance_verdicts(), 6)},
        "fail_above": threshold,
        "rows": [{"workload": pair.workload.to_dict(), "verdict": pair.verdict, "reason": pair.reason,
                  "ratio": pair.ratio, "ratio_ci_low": pair.ratio_ci and pair.ratio_ci[0],
                  "ratio_ci_high": pair.ratio_ci and pair.ratio_ci[1], "p_value": pair.p_value,
                  "regression": None if threshold is None else pair.slower_by_more_than(threshold),
                  "base": row(pair.base), "new": row(pair.new)} for pair in comparison.pairs],
    }
    stream.write(json.dumps(data, indent=1) + "\n")


VIEWS: dict[str, Callable[[Comparison, TextIO, float | None], None]] = {
    "table": export_table, "csv": export_csv, "md": export_markdown, "latex": export_latex, "json": export_json,
}


def render(comparison: Comparison, fmt: str, threshold: float | None = None) -> str:
    buffer = io.StringIO()
    VIEWS[fmt](comparison, buffer, threshold)
    return buffer.getvalue()
