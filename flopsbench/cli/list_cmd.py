"""`flopsbench list`: every registered operator and model with a one-line description."""

from __future__ import annotations

import typer

import flopsbench_zoo
from flopsbench.cli import app
from flopsbench.cli.options import Plugins, load_plugins


@app.command("list")
def list_command(plugin: Plugins = None) -> None:
    """List the registered operators and models, one line each (with those of any plugin)."""
    load_plugins(plugin)
    typer.echo("Operators (flopsbench ops --op NAME):")
    for name in flopsbench_zoo.list_operators():
        op = flopsbench_zoo.get_operator(name)
        defaults = ", ".join(f"{k}={v}" for k, v in op.defaults.items())
        typer.echo(f"  {name:22} {op.description}" + (f"  [{defaults}]" if defaults else ""))
    typer.echo("Models (flopsbench model NAME; any timm model as timm:NAME):")
    for name in flopsbench_zoo.list_models():
        model = flopsbench_zoo.get_model(name)
        state = f"UNAVAILABLE: {model.unavailable}" if model.unavailable else f"{model.input_resolution}px"
        typer.echo(f"  {name:22} {model.description}  [{state}]")
