"""The flopsbench command line (Typer). One module per command; shared options in options.py."""

from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

# typer may ship its own copy of click: take the base class its exceptions really derive from.
ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")

_invoked_args: list[str] = []


def invoked_args() -> list[str]:
    """The arguments the CLI was called with (not the host process's sys.argv)."""
    return list(_invoked_args)


class OneLineErrors(TyperGroup):
    """User errors print one line naming the option and the fix, exit code 2, no traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        _invoked_args[:] = sys.argv[1:] if args is None else list(args)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as exc:
            where = exc.ctx.command_path if getattr(exc, "ctx", None) else "flopsbench"
            typer.echo(f"{where}: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("flopsbench: aborted", err=True)
            sys.exit(130)
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(cls=OneLineErrors, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Measure FLOPs, memory access, latency and FLOPS of operators and models.")

from flopsbench.cli import ceilings_cmd, claims_cmd, compare_cmd, export, figure_cmd, list_cmd, model, ops, report_cmd  # noqa: E402,F401


def main() -> None:
    app()
