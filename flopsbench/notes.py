"""The notes under a report's table, as a person reads them: each cause of the rows' warnings once
(drift, noise, outliers, threads outside the pinned cores, a breakdown's gaps, a throttled GPU, ops
counted as 0 FLOPs, ...), with the rows it touched, the range of what was seen and the remedy:

    drift: 5 of 20 rows (conv 384x14x14, 768x7x7; dwconv 96x56x56) drifted 5–9 % between timing
    rounds (the machine's speed changed during the run): rerun on an idle core (--cores), or raise --min-time

Each row's warnings in full are the verbose notes (exporters.warning_lines); the JSON keeps them all.
Grouping is a view's concern: the report is never changed here."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from flopsbench import busy
from flopsbench.escaping import plain_text
from flopsbench.report import Report, Row

TextFn = Callable[[object], str]
LabelFn = Callable[[Row], tuple[str, str]]  # a row's (name, shape) as its view shows them


@dataclass(frozen=True)
class Cause:
    """A kind of warning, known by how its text starts (``pattern``, whose ``value`` of a match is
    the figure to give the range of, e.g. the drift in %), with the Status ``tag`` of a row that
    has it, what it says (``says``, with that ``{range}``) and its remedy."""

    tag: str
    pattern: re.Pattern
    says: str
    remedy: str = ""
    value: Callable[[re.Match], float] | None = None
    unit: str = " %"


def _first(match: re.Match) -> float:
    return float(match.group(1))


def _share(match: re.Match) -> float:
    return 100 * int(match.group(1)) / max(int(match.group(2)), 1)


IDLE_CORE = "rerun on an idle core (--cores), or raise --min-time"
CAUSES = (
    Cause("drift", re.compile(r"drift: the medians of the \d+ timing rounds span (\d+)%"),
          "drifted {range} between timing rounds (the machine's speed changed during the run)", IDLE_CORE, _first),
    Cause("noisy", re.compile(r"noisy: IQR is (\d+)%"), "had an IQR of {range} of the median",
          "close other programs, pin to an idle core with --cores, or collect longer with --min-time", _first),
    Cause("outliers", re.compile(r"(\d+) of (\d+) samples are outliers"),
          "had {range} of their samples outliers (MAD rule; other load on the machine likely interfered)",
          IDLE_CORE, _share),
    Cause("threads", re.compile(r"some threads ran outside the pinned cores"),
          "had threads running outside the pinned cores, so other cores' work is in their times"),
    Cause("throttled", re.compile(r"the GPU throttled during timing"),
          "ran while the GPU throttled (-v gives the reasons and clocks)",
          "let the GPU cool and check its power limit, then rerun"),
    Cause("breakdown", re.compile(r"breakdown: the parts' medians sum to ([\d.]+) ×"),
          "have breakdowns whose parts' medians sum to {range} the whole model's: time outside the parts "
          "(glue ops, launches), or changed by timing each part alone", value=_first, unit=" ×"),
    Cause("breakdown", re.compile(r"breakdown: noisy timings of"), "have breakdowns with noisy parts",
          "raise --breakdown-time, or pin to an idle core with --cores"),
)
DRIFT_NOT_CHECKED_NOTE = "drift not checked: rounds of too few samples; raise --min-runs or --runs"
OTHER_TAG = "warn"


def cause_of(warning: str) -> tuple[Cause | None, re.Match | None]:
    for cause in CAUSES:
        match = cause.pattern.match(warning)
        if match:
            return cause, match
    return None, None


def status(row: Row) -> str:
    """The row's status as a table shows it: 'ok', its error status, or what its warnings are
    about, e.g. 'drift, noisy' ('warn' for a warning of no known cause)."""
    if row.status != "ok":
        return row.status
    tags = [cause.tag if cause else OTHER_TAG for cause, _ in map(cause_of, row.warnings)]
    return ", ".join(dict.fromkeys(tags)) or "ok"


def grouped_lines(report: Report, label: LabelFn, text: TextFn = plain_text) -> list[str]:
    """The notes, one line per cause (``label`` names the rows as the view does; ``text`` makes a
    report's text safe for the view): errors (one line per failed row), the busy core found before
    timing, each known cause of warning, each other warning text, the rows' notes, and the ops
    fvcore counted as 0 FLOPs."""
    rows = report.rows
    lines = [f"{text(' '.join(label(row)))}: {text(row.status)}: {text(row.error)}" for row in rows if row.error]
    core = busy.warning(report.environment.get("pinned_core_load"))
    lines += [core] if core else []
    groups: dict[object, tuple[dict[int, Row], list[float]]] = {}  # cause (or a text) -> rows by index, values
    for i, row in enumerate(rows):
        for warning in row.warnings:
            cause, match = cause_of(warning)
            affected, values = groups.setdefault(cause or warning, ({}, []))
            affected[i] = row
            if cause and cause.value:
                values.append(cause.value(match))
    for key, (affected, values) in groups.items():
        which = _which(affected, rows, label, text)
        if isinstance(key, Cause):
            says = key.says.format(range=_range(values, key.unit))
            lines.append(f"{key.tag}: {which} {says}" + (f": {key.remedy}" if key.remedy else ""))
        else:
            lines.append(f"{which}: {text(key)}")
    lines += _note_lines(rows, label, text)
    lines += _zero_flop_lines(rows, label, text)
    return lines


def _note_lines(rows: list[Row], label: LabelFn, text: TextFn) -> list[str]:
    """The rows' notes, each text once with the rows that have it ('drift not checked' once, whatever
    the rounds' sizes)."""
    groups: dict[str, dict[int, Row]] = {}
    for i, row in enumerate(rows):
        for note in row.notes:
            key = DRIFT_NOT_CHECKED_NOTE if note.startswith("drift not checked:") else note
            groups.setdefault(key, {})[i] = row
    return [f"note: {_which(affected, rows, label, text)}: {text(note)}" for note, affected in groups.items()]


def _zero_flop_lines(rows: list[Row], label: LabelFn, text: TextFn) -> list[str]:
    """The ops fvcore has no formula for, then those it counts as 0 FLOPs by design (with their calls,
    summed over the rows), each once."""
    lines = []
    unsupported = {i: row for i, row in enumerate(rows) if row.unsupported_ops}
    if unsupported:
        ops = sorted({text(op) for row in unsupported.values() for op in row.unsupported_ops})
        lines.append(f"{_which(unsupported, rows, label, text)}: fvcore has no FLOP formula for {', '.join(ops)} "
                     "(counted as 0)")
    by_design = {i: row for i, row in enumerate(rows) if row.zero_flop_ops}
    if by_design:
        calls: Counter = Counter()
        for row in by_design.values():
            for op, n in row.zero_flop_ops.items():  # a report read from a file may hold anything
                calls[text(op)] += n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 0
        ops = ", ".join(f"{op} ×{n}" if n else op for op, n in sorted(calls.items()))
        lines.append(f"{_which(by_design, rows, label, text)}: fvcore counts these as 0 FLOPs by design: {ops}")
    return lines


def _range(values: list[float], unit: str) -> str:
    if not values:
        return ""
    low, high = min(values), max(values)
    digits = 0 if unit == " %" else 2
    return f"{low:.{digits}f}{unit}" if round(low, digits) == round(high, digits) else \
        f"{low:.{digits}f}–{high:.{digits}f}{unit}"


def _which(affected: dict[int, Row], rows: list[Row], label: LabelFn, text: TextFn) -> str:
    """'all 20 rows', '3 of 20 rows (conv 96x56x56, 768x7x7; gconv 96x56x56)', or, where most rows
    are affected, '15 of 20 rows (all but ...)'; a name that only one row of the report has is
    given without its shape."""
    if len(affected) == len(rows):
        return f"all {len(rows)} rows" if len(rows) > 1 else "the row"
    rest = [row for i, row in enumerate(rows) if i not in affected]
    listed, prefix = (rest, "all but ") if len(rest) < len(affected) else (list(affected.values()), "")
    return f"{len(affected)} of {len(rows)} rows ({prefix}{_names(listed, rows, label, text)})"


def _names(listed: list[Row], rows: list[Row], label: LabelFn, text: TextFn) -> str:
    shapes: dict[str, list[str]] = {}
    for row in listed:
        name, shape = label(row)
        shapes.setdefault(name, []).append(shape)
    count = Counter(label(row)[0] for row in rows)
    items = [text(name) if count[name] == 1 else f"{text(name)} {', '.join(text(s) for s in shown)}"
             for name, shown in shapes.items()]
    return ("; " if any(count[name] > 1 for name in shapes) else ", ").join(items)
