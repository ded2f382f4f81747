"""`flopsbench list`: every registered operator with a one-line description."""

from __future__ import annotations

import typer

import operators
from flopsbench.cli import app


@app.command("list")
def list_command() -> None:
    """List the registered operators."""
    for name in operators.list_operators():
        op = operators.get_operator(name)
        defaults = ", ".join(f"{k}={v}" for k, v in op.defaults.items())
        typer.echo(f"{name:8} {op.description}" + (f"  [{defaults}]" if defaults else ""))
