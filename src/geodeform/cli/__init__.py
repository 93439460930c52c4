"""Command-line interface: one sub-command per module of this package (rasterio's ``rio`` layout)."""

from __future__ import annotations

import importlib
import sys

import click
import typer
from rich.console import Console

from geodeform.cli.app import app
from geodeform.errors import GeodeformError

# Each module registers its sub-command on ``app`` when imported.
_COMMAND_MODULES = ("demo", "init", "offsets", "run", "search", "serve", "users")

__all__ = ["app", "main"]


def _register() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(f"geodeform.cli.{name}")


def main() -> None:
    """Entry point of the ``geodeform`` console script: errors of ours print one clear line, exit 2."""
    _register()
    try:
        app(standalone_mode=False)
    except GeodeformError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
    except SystemExit:
        raise
    except Exception as exc:  # usage errors arrive here in non-standalone mode
        # Typer >= 0.2x raises its own copy of click's exceptions (typer._click), not click's: both have
        # show() and an int exit_code.
        if isinstance(exc, click.ClickException) or (
            callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int)
        ):
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        if isinstance(exc, (click.exceptions.Abort, typer.Abort)):
            sys.exit(1)
        raise
