"""`flopsbench figure KIND FILE... -o out.pdf|png`: a figure of saved reports (``flopsbench.figures``),
PDF for papers, PNG for READMEs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from flopsbench import figures
from flopsbench.cli import ClickException, app
from flopsbench.cli.ceilings_cmd import CeilingsFiles, given_ceilings
from flopsbench.cli.options import bad, check_choice
from flopsbench.cli.report_cmd import load_report
from flopsbench.output import reason


@app.command("figure")
def figure_command(
    kind: str = typer.Argument(..., metavar="KIND", help="flops (Table 1 as bars), roofline, models (latency or "
                                                         "throughput vs FLOPs) or histogram (one row's samples)."),
    files: list[Path] = typer.Argument(..., metavar="FILE...", help="Reports in JSON (--save, '--format json')."),
    output: Path = typer.Option(..., "-o", "--output", metavar="FILE",
                                help="The figure: .pdf (papers), .png (READMEs) or .svg, by its suffix."),
    row: Optional[int] = typer.Option(None, "--row", metavar="N", help="histogram: the row, numbered from 1 as in "
                                                                       "the report's notes."),
    ceilings: CeilingsFiles = None,
) -> None:
    """Draw a figure of saved reports, one column wide, naming their devices and runtimes."""
    check_choice(kind, figures.KINDS, "KIND")
    if output.suffix.lower().lstrip(".") not in figures.FORMATS:
        raise bad("--output", f"{output.name}: name a .pdf (papers), .png (READMEs) or .svg file")
    if kind == "histogram" and (row is None or len(files) != 1):
        raise bad("--row", "a histogram is of one row of one report: give one FILE and --row N")
    if kind != "histogram" and row is not None:
        raise bad("--row", "applies to the histogram only")
    missing = figures.matplotlib_missing()
    if missing:
        raise ClickException(missing)
    reports = [load_report(path) for path in files]
    with given_ceilings(ceilings or [], reports):
        try:
            figure = figures.make(kind, reports, row=row)
        except figures.FigureError as exc:
            raise bad("--row" if kind == "histogram" else "FILE", str(exc)) from None
    try:
        figures.save(figure, output)
    except OSError as exc:
        raise ClickException(f"cannot write {output} ({reason(exc)})") from None
    typer.echo(f"wrote {output}", err=True)
