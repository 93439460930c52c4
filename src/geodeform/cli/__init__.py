"""Command-line interface: one sub-command per module of this package (rasterio's ``rio`` layout)."""

from __future__ import annotations

import importlib
import sys

from geodeform.cli.app import app
from geodeform.errors import GeodeformError

# Each module registers its sub-command on ``app`` when imported.
_COMMAND_MODULES = ("demo", "init", "offsets", "run", "search")

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
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise
