"""``geodeform init``: write a commented job config for a preset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geodeform.cli.app import app
from geodeform.config import config_to_yaml, preset_config

__all__ = ["init"]


@app.command("init")
def init(
    preset: Annotated[str, typer.Option(help="Preset: ice, slide, quake, survey or sar.")] = "ice",
    name: Annotated[str | None, typer.Option(help="Job name (default my-<preset>-job).")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of standard output.")
    ] = None,
) -> None:
    """Print a complete, commented job config for PRESET (every field with its unit and default).

    Example: ``geodeform init --preset ice > job.yaml``, edit ``search.start/end/aoi``, then
    ``geodeform run job.yaml``.
    """
    from geodeform.io import atomic_output  # needs the geo extra: imported when the command runs

    text = config_to_yaml(preset_config(preset, name=name))
    if output is None:
        typer.echo(text, nl=False)
        return
    with atomic_output(output) as tmp:
        tmp.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {output}")
