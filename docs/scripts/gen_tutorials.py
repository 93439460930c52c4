"""mkdocs-gen-files script: runs each tutorial source (``docs/tutorial_src/NAME.md``) and writes the page
``tutorials/NAME-steps.md`` with every block's output and figures (``tutorials/img/NAME-STEP-K.png``).

Each page runs in a fresh temporary folder, offline, on small synthetic cases. A failing block fails the
build, naming the page and the step (see ``docs/scripts/tutorials.py``).
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import mkdocs_gen_files

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("tutorials", HERE / "tutorials.py")
assert spec is not None and spec.loader is not None
tutorials = importlib.util.module_from_spec(spec)
sys.modules["tutorials"] = tutorials
spec.loader.exec_module(tutorials)

for source in sorted((HERE.parent / "tutorial_src").glob("*.md")):
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"tutorial-{source.stem}-") as work:
        page = tutorials.render(source.stem, source.read_text(encoding="utf-8"), Path(work))
    with mkdocs_gen_files.open(f"tutorials/{source.stem}-steps.md", "w") as fh:
        fh.write(page.markdown)
    mkdocs_gen_files.set_edit_path(f"tutorials/{source.stem}-steps.md", f"tutorial_src/{source.name}")
    for name, png in page.figures.items():
        with mkdocs_gen_files.open(f"tutorials/img/{name}", "wb") as fh:
            fh.write(png)
    print(f"tutorial {source.stem}: {len(page.figures)} figure(s) in {time.perf_counter() - t0:.0f} s")
