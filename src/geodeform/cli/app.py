"""The root ``geodeform`` Typer application; sub-commands register themselves on it."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="geodeform",
    help="Ground deformation from satellite images (offset tracking, corrections, time series).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
