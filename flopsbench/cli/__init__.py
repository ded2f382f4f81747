"""The flopsbench command line (Typer). One module per command; shared options in options.py."""

from __future__ import annotations

import sys

import typer
from typer.core import TyperCommand, TyperGroup

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


class Command(TyperCommand):
    """A command whose help names its arguments as a shell user reads them, NAME, FILE... and
    [NAME], where typer writes {name}... and <list[str]>."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                pieces.append(argument_label(param) if param.required else f"[{argument_label(param)}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx, formatter) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                if param.param_type_name == "argument":
                    arguments.append((argument_label(param), record[1]))
                else:
                    options.append(record)
        for title, records in (("Arguments", arguments), ("Options", options)):
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)


def argument_label(param) -> str:
    """NAME (its metavar, else its name in capitals), with '...' if it takes several."""
    label = param.metavar or param.name.upper()
    return label + "..." if param.nargs != 1 and not label.endswith("...") else label


class App(typer.Typer):
    """A typer app whose commands are Commands unless a command asks for another class."""

    def command(self, *args, cls=None, **kwargs):
        return super().command(*args, cls=cls or Command, **kwargs)


app = App(cls=OneLineErrors, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
          rich_markup_mode=None, help="Measure FLOPs, memory access, latency and FLOPS of operators and models.")


def version_line() -> str:
    """'flopsbench 0.1.0 (git <commit>[, modified])': the release and the checkout it runs from."""
    from flopsbench import __version__
    from flopsbench.environment import git_commit

    checkout = git_commit()
    where = ("not a git checkout" if checkout is None
             else f"git {checkout['commit']}" + (", modified" if checkout["dirty"] else ""))
    return f"flopsbench {__version__} ({where})"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                          help="Print the version and the git commit, then exit.")) -> None:
    pass

from flopsbench.cli import ceilings_cmd, claims_cmd, compare_cmd, devices_cmd, export, figure_cmd, list_cmd, model, ops, report_cmd, sweep_cmd  # noqa: E402,F401


def main() -> None:
    app()
