"""mkdocs-gen-files script: writes the generated reference pages at build time.

* ``reference/api/index.md`` and one page per public module of ``geodeform`` (mkdocstrings, numpydoc);
* ``reference/cli.md`` from the ``geodeform`` click/Typer app (every sub-command, automatically);
* ``reference/config.md`` from the pydantic models of ``geodeform.config`` (when that module exists).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import mkdocs_gen_files

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("refgen", HERE / "refgen.py")
assert spec is not None and spec.loader is not None
refgen = importlib.util.module_from_spec(spec)
sys.modules["refgen"] = refgen
spec.loader.exec_module(refgen)

# --- API ---------------------------------------------------------------------------------------------------
modules = refgen.api_modules()
index = [
    "# API reference\n",
    "Generated from the docstrings (numpydoc) of the public names of each module (its `__all__`). "
    "Units and sign conventions are stated in each docstring; the conventions are summarised in "
    "[Sign conventions](../../concepts/conventions.md).\n",
    "| module | summary |",
    "|---|---|",
]
for name in modules:
    mod = importlib.import_module(name)
    summary = (mod.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    page = f"reference/api/{name}.md"
    index.append(f"| [`{name}`]({name}.md) | {refgen._cell(summary)} |")
    body = [
        f"# `{name}`\n",
        f"::: {name}\n    options:\n      show_root_heading: false\n      heading_level: 2\n",
    ]
    for cls in refgen.options_classes(name):
        body.append(f"::: {cls}\n    options:\n      heading_level: 2\n")
    with mkdocs_gen_files.open(page, "w") as fh:
        fh.write("\n".join(body))
    mkdocs_gen_files.set_edit_path(page, f"../src/{name.replace('.', '/')}")
with mkdocs_gen_files.open("reference/api/index.md", "w") as fh:
    fh.write("\n".join(index) + "\n")

# --- CLI ---------------------------------------------------------------------------------------------------
with mkdocs_gen_files.open("reference/cli.md", "w") as fh:
    fh.write(
        "# Command line reference\n\n"
        "Generated at build time from the `geodeform` command itself, so every sub-command and option "
        "listed here exists in this version. `geodeform COMMAND --help` prints the same text.\n\n"
    )
    fh.write(refgen.cli_markdown(refgen.geodeform_command()))

# --- peer benchmark table ---------------------------------------------------------------------------------
import json  # noqa: E402

runs = sorted((HERE.parent).glob("peerbench_*.json"))
with mkdocs_gen_files.open("peerbench.md", "w") as fh:
    fh.write(
        "# Peer benchmark: every method\n\n"
        "Generated at build time from the newest peerbench JSON kept in `docs/` (every method peerbench "
        "ran, on the same pairs, in the same run). The summary, what the numbers mean and how to reproduce "
        "them are on the [Benchmarks](benchmarks.md) page.\n\n"
    )
    if runs:
        fh.write(refgen.peerbench_markdown(json.loads(runs[-1].read_text()), source=f"docs/{runs[-1].name}"))
    else:
        fh.write("No peerbench run is kept in `docs/`.\n")

# --- configuration -----------------------------------------------------------------------------------------
models = refgen.config_models()
with mkdocs_gen_files.open("reference/config.md", "w") as fh:
    fh.write("# Configuration reference\n\n")
    if models:
        config = importlib.import_module("geodeform.config")
        fh.write(
            "A job is one YAML file: `geodeform init --preset ice > job.yaml` writes a complete, commented "
            "one, `geodeform run job.yaml` runs it ([Running a job](../guide/jobs.md)). This page is made "
            "at build time from the pydantic models of `geodeform.config`: every field with its type, unit, "
            "default and allowed values. Unknown keys are errors.\n\n"
        )
        if hasattr(config, "PRESETS") and hasattr(config, "JobConfig"):
            fh.write(
                "## Presets\n\n`preset: NAME` lays these values under your file (yours win); `·` = the "
                "model default. `geodeform init --preset NAME` also fills in an example `search`.\n\n"
            )
            fh.write(refgen.presets_markdown(config.PRESETS, config.JobConfig) + "\n")
        if hasattr(config, "config_to_yaml") and hasattr(config, "preset_config"):
            example = config.config_to_yaml(config.preset_config("ice"))
            fh.write(f"## Example: `geodeform init --preset ice`\n\n```yaml\n{example}```\n\n")
        fh.write(refgen.config_markdown(models))
    else:
        fh.write(
            "Job configuration files (`geodeform.config`) are not part of this version. When they are, this "
            "page is generated from the pydantic models themselves by `docs/scripts/gen_ref.py`.\n"
        )
