"""`flopsbench report FILE.json`: a saved report (from --save, -o, or the board runner) as any
view, e.g. a LaTeX table for a paper, without measuring again."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from flopsbench.cli import app
from flopsbench.cli.options import (FORMATS, Format, Output, Paper, bad, check_choice, validated,
                                    write_view)
from flopsbench import validation
from flopsbench.report import Report


def load_report(path: Path) -> Report:
    """The report in ``path``, or a one-line error naming what is wrong with the file."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise bad("FILE", f"cannot read {path} ({exc.strerror}); give a report saved by --save or "
                          "'--format json -o FILE'") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad("FILE", f"{path} is not JSON ({exc}); give a report saved by --save or "
                          "'--format json -o FILE'") from None
    try:
        return Report.from_dict(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise bad("FILE", f"{path} is not a flopsbench report this version reads ({type(exc).__name__}: "
                          f"{exc}); re-run the measurement with this version") from None


@app.command("report")
def report_command(
    file: Path = typer.Argument(..., metavar="FILE", help="A report in JSON: from --save, '--format json', "
                                                          "or 'python -m flopsbench.board'."),
    fmt: Format = "md",
    output: Output = None,
    paper: Paper = False,
) -> None:
    """Render a saved report as a table, CSV, Markdown, LaTeX or JSON, without measuring again."""
    check_choice(fmt, FORMATS, "--format")
    validated(validation.check_writable, output)
    write_view(load_report(file), fmt, output, paper)
