"""The flopsbench command line (Typer). One module per command; shared options in options.py."""

from __future__ import annotations

import sys

import click
import typer
from typer.core import TyperGroup


class OneLineErrors(TyperGroup):
    """User errors print one line naming the option and the fix, exit code 2, no traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            where = exc.ctx.command_path if getattr(exc, "ctx", None) else "flopsbench"
            click.echo(f"{where}: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("flopsbench: aborted", err=True)
            sys.exit(130)
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(cls=OneLineErrors, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Measure FLOPs, memory access, latency and FLOPS of operators and models.")

from flopsbench.cli import list_cmd, ops  # noqa: E402,F401  (registers the commands)


def main() -> None:
    app()
