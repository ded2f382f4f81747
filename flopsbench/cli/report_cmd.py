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


MAX_REPORT_BYTES = 1 << 30  # a report with 1,000 rows of 10,000 samples each is about 200 MB
FIX = "give a report saved by --save or '--format json -o FILE' (by this version, unedited)"


def load_report(path: Path) -> Report:
    """The report in ``path``, or a one-line error naming what is wrong with the file."""
    try:
        if path.stat().st_size > MAX_REPORT_BYTES:
            raise bad("FILE", f"{path} is larger than {MAX_REPORT_BYTES >> 20} MiB, more than any report; {FIX}")
        data = json.loads(path.read_text(), parse_constant=_refuse_constant)
    except OSError as exc:
        raise bad("FILE", f"cannot read {path} ({exc.strerror}); {FIX}") from None
    except (UnicodeDecodeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        raise bad("FILE", f"{path} is not JSON ({exc}); {FIX}") from None
    except RecursionError:
        raise bad("FILE", f"{path} holds JSON nested deeper than Python's parser goes, so no report; {FIX}") from None
    try:
        return Report.from_dict(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # ReportError is a ValueError
        raise bad("FILE", f"{path} is not a flopsbench report this version reads ({exc}); {FIX}") from None


def _refuse_constant(name: str):
    """json.loads reads NaN and Infinity, which JSON does not have (and no report holds)."""
    raise ValueError(f"{name} is not a JSON number")


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
