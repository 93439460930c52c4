"""mkdocs-gen-files script: runs each tutorial source (``docs/tutorial_src/NAME.md``) and writes the page
``tutorials/NAME-steps.md`` with every block's output and figures (``tutorials/img/NAME-STEP-K.png``).

Each page runs once, in a new interpreter started in an empty temporary folder, offline, on small synthetic
cases. A failing block, a missing figure or a page loading from outside the site fails the build, naming the
page and the step (see ``docs/scripts/tutorials.py``).

Environment (all optional; the tests set the first two):

``GEODEFORM_TUTORIAL_PYTHON``
    The interpreter that runs the pages (default: the one running mkdocs). ``tests/test_docs.py`` gives
    the python of a clean virtual environment where only the wheel of geodeform is installed.
``GEODEFORM_TUTORIAL_RECORD``
    A JSON file to write the record of every page's run to (interpreter, where ``geodeform`` was imported
    from, whether the folder was empty, each step's success, output, figures, wall and CPU seconds: CPU of
    the page's process and of the commands its console blocks ran, the figure to compare on a shared
    machine).
``GEODEFORM_TUTORIAL_JOBS``
    How many pages run at a time after the first (default: 2, or 1 on a 1-core machine).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mkdocs_gen_files

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("tutorials", HERE / "tutorials.py")
assert spec is not None and spec.loader is not None
tutorials = importlib.util.module_from_spec(spec)
sys.modules["tutorials"] = tutorials
spec.loader.exec_module(tutorials)

python = os.environ.get("GEODEFORM_TUTORIAL_PYTHON") or sys.executable
record_path = os.environ.get("GEODEFORM_TUTORIAL_RECORD")
jobs = int(os.environ.get("GEODEFORM_TUTORIAL_JOBS") or min(2, os.cpu_count() or 1))
docs_dir = Path(mkdocs_gen_files.config.docs_dir)  # the site's docs/ (tests build small sites elsewhere)


def run(source: Path) -> tuple[Path, tutorials.Rendered, float]:
    """Run one page in a new, empty temporary folder."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"tutorial-{source.stem}-") as work:
        page = tutorials.render(
            source.stem,
            source.read_text(encoding="utf-8"),
            Path(work),
            python=python,
            page_dir=docs_dir / "tutorials",
        )
    return source, page, time.perf_counter() - t0


sources = sorted((docs_dir / "tutorial_src").glob("*.md"))
# The first page alone (with a fresh install it compiles the numba kernels the others then load from the
# cache), then the others `jobs` at a time (each is its own process).
done = [run(sources[0])] if sources else []
with ThreadPoolExecutor(jobs) as pool:
    done += pool.map(run, sources[1:])

record: dict[str, dict] = {}
for source, page, seconds in done:
    with mkdocs_gen_files.open(f"tutorials/{source.stem}-steps.md", "w") as fh:
        fh.write(page.markdown)
    mkdocs_gen_files.set_edit_path(f"tutorials/{source.stem}-steps.md", f"tutorial_src/{source.name}")
    for name, png in page.figures.items():
        with mkdocs_gen_files.open(f"tutorials/img/{name}", "wb") as fh:
            fh.write(png)
    steps, cpu = len(page.steps), sum(s.cpu for s in page.steps)
    print(
        f"tutorial {source.stem}: {steps} steps, {len(page.figures)} figure(s) in {seconds:.0f} s "
        f"({cpu:.0f} CPU-s: {', '.join(f'{s.step} {s.cpu:.1f}' for s in page.steps)})"
    )
    record[source.stem] = {**page.record(), "seconds": round(seconds, 1), "cpu": round(cpu, 1)}
if record_path:
    Path(record_path).write_text(json.dumps(record, indent=1))
