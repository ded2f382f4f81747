"""`flopsbench report FILE...`: saved reports (from --save, -o, or the board runner) as any view,
e.g. a LaTeX table for a paper, without measuring again. One file is shown as it was measured;
several (any devices, runtimes, machines, ops and model reports alike) are merged into the paper's
cross-device layouts (flopsbench.merge, flopsbench.merged_views)."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import List, Optional

import typer

from flopsbench.cli import app
from flopsbench.cli.ceilings_cmd import CeilingsFiles, given_ceilings
from flopsbench.cli.options import (FORMATS, Format, Output, Paper, Verbose, Wide, bad, check_choice, validated,
                                    write_output, write_view)
from flopsbench.columns import View
from flopsbench.view_format import view_format
from flopsbench import validation
from flopsbench.escaping import plain_text
from flopsbench.merge import MergeError, merge
from flopsbench.merged_views import COLUMN_CHOICES, VIEWS, Layout
from flopsbench.report import SCHEMA_VERSION, Report, ReportFileError, read_report_file
from flopsbench.schema_versions import NewerSchemaError


FIX = "give a report saved by --save or '--format json -o FILE' (by this version, unedited)"
PAPER_NAMES_BY_DEFAULT = ("md", "latex")  # the views pasted into papers; CSV and JSON keep the registry's names


def load_report(path: Path) -> Report:
    """The report in ``path`` (of an older schema version: migrated), or a one-line error naming
    what is wrong with the file."""
    try:
        return read_report_file(path)
    except NewerSchemaError as exc:
        raise bad("FILE", f"{path} was made by a newer flopsbench (schema {exc.version}; this one reads schema "
                          f"{SCHEMA_VERSION} and older); upgrade flopsbench to read it") from None
    except ReportFileError as exc:
        raise bad("FILE", f"{exc}; {FIX}") from None


@app.command("report")
def report_command(
    files: List[Path] = typer.Argument(..., metavar="FILE", help="Reports in JSON: from --save, '--format json', "
                                                                    "or 'python -m flopsbench.board'."),
    fmt: Format = None,
    output: Output = None,
    paper: Paper = False,
    ceilings: CeilingsFiles = None,
    wide: Wide = False,
    verbose: Verbose = False,
    columns: Optional[str] = typer.Option(
        None, "--columns", metavar="LIST",
        help="Merged view: what to show besides each row's name, shape and options, a comma list of "
             + ", ".join(COLUMN_CHOICES) + " (default: flops,memory,time,flops-per-s for operators; "
             "input,params,flops,time for models)."),
    paper_names: Optional[bool] = typer.Option(
        None, "--paper-names/--no-paper-names",
        help="Merged view: the paper's names of its operators and models ('FasterNet-T0'); default: in md and "
             "latex."),
    labels: Optional[List[str]] = typer.Option(
        None, "--label", metavar="FILE=TEXT",
        help="Merged view: say TEXT of FILE (a glob matches several) in its column's title, e.g. "
             "'board-*.json=emulated (qemu): no timing meaning'; files of one protocol under one label share a "
             "column. Repeatable."),
) -> None:
    """Render saved reports as a table, CSV, Markdown, LaTeX or JSON, without measuring again: one
    as measured, several merged into the paper's cross-device layouts (Table 1 for operators,
    Table 3 for models), rows matched by workload, a column group per device, runtime, protocol and
    machine."""
    check_choice(fmt, FORMATS, "--format")
    fmt = validated(view_format, fmt, output)
    validated(validation.check_writable, output)
    chosen = None if columns is None else _parse_columns(columns)
    if len(files) == 1 and columns is None and paper_names is None and not labels:
        report = load_report(files[0])
        with given_ceilings(ceilings or [], [report]):  # '% of peak' and 'Bound by' against them
            written = write_view(report, fmt, output, paper, shown=View(wide=wide, verbose=verbose))
    else:
        if ceilings:
            raise bad("--ceilings", "holds one report's rows against a machine's peak; give one FILE with it")
        for option, given in (("--wide", wide), ("--verbose", verbose)):
            if given:
                raise bad(option, "applies to one report's view; a merged view's columns are chosen with --columns")
        labelled = _parse_labels(labels or [], files)
        layout = Layout(chosen, fmt in PAPER_NAMES_BY_DEFAULT if paper_names is None else paper_names, paper)
        reports = [(str(path), load_report(path)) for path in files]
        try:
            merged = merge(reports, labelled)
        except MergeError as exc:
            raise bad("FILE", plain_text(exc)) from None
        written = write_output(lambda stream: VIEWS[fmt](merged, stream, layout), output)
    if not written:
        raise typer.Exit(1)


def _parse_columns(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        check_choice(name, COLUMN_CHOICES, "--columns")
    if not names:
        raise bad("--columns", f"give at least one of {', '.join(COLUMN_CHOICES)}")
    return names


def _parse_labels(labels: list[str], files: list[Path]) -> dict[str, str]:
    """FILE=TEXT (FILE a name as given, or a glob of them) -> {file name: TEXT}; one-line errors."""
    labelled: dict[str, str] = {}
    for given in labels:
        pattern, sep, text = given.partition("=")
        if not sep or not pattern or not text.strip():
            raise bad("--label", f"{plain_text(given)[:60]!r} is not FILE=TEXT; e.g. 'board.json=emulated (qemu)'")
        matched = [str(path) for path in files if str(path) == pattern or fnmatch.fnmatchcase(str(path), pattern)]
        if not matched:
            raise bad("--label", f"{plain_text(pattern)!r} matches none of the files given; name one of them, or a "
                                 "glob of their names as given")
        for name in matched:
            if labelled.setdefault(name, text) != text:
                raise bad("--label", f"{plain_text(name)} is given two labels; give each file one")
    return labelled


