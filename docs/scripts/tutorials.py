"""Run a tutorial page's code blocks in order and render each block's output and figures below it.

A tutorial source (``docs/tutorial_src/NAME.md``) is Markdown whose ```` ```python ```` blocks are executed
in one namespace (like a notebook) and whose ```` ```console ```` blocks hold shell commands (``$ cmd``),
run with this Python's ``bin`` first on PATH, all in one working folder. Used at build time by
``docs/scripts/gen_tutorials.py`` (mkdocs-gen-files) and by ``tests/test_docs.py``.
A block that fails stops the build with the page and the step named.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^```(python|console)\n(.*?)^```\n", re.S | re.M)


class TutorialError(RuntimeError):
    """A code block of a tutorial failed."""


@dataclass
class Rendered:
    """The page's Markdown with outputs and figure links, and the figures (name -> PNG bytes)."""

    markdown: str
    figures: dict[str, bytes] = field(default_factory=dict)


def blocks(source: str) -> list[tuple[str, str]]:
    """(language, code) of every executed block, in page order."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(source)]


def commands(code: str) -> list[str]:
    """The ``$ command`` lines of a console block."""
    return [line[2:] for line in code.splitlines() if line.startswith("$ ")]


def as_script(source: str) -> str:
    """The page's blocks as one Python script (console commands through ``subprocess``), to run elsewhere."""
    out = ["import subprocess", "import matplotlib", "matplotlib.use('Agg')"]
    for lang, code in blocks(source):
        if lang == "python":
            out.append(code)
        else:
            out += [f"subprocess.run({cmd!r}, shell=True, check=True)" for cmd in commands(code)]
    return "\n".join(out) + "\n"


def _shell(cmd: str, cwd: Path) -> str:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "COLUMNS": "110"}  # rich tables as wide as the page
    proc = subprocess.run(cmd, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise TutorialError(f"`{cmd}` exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


def _python(code: str, namespace: dict, cwd: Path) -> str:
    buf = io.StringIO()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            exec(compile(code, "<tutorial>", "exec"), namespace)  # our own pages, not user input
    except Exception as exc:
        raise TutorialError(f"{type(exc).__name__}: {exc}\n{buf.getvalue()}") from exc
    finally:
        os.chdir(old)
    return buf.getvalue()


def _figures(name: str, step: int) -> list[tuple[str, str, bytes]]:
    import matplotlib.pyplot as plt

    out = []
    for k, num in enumerate(plt.get_fignums(), start=1):
        fig = plt.figure(num)
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        out.append((f"{name}-{step}-{k}.png", "; ".join(titles) or f"figure of step {step}", buf.getvalue()))
    plt.close("all")
    return out


def _trim(text: str, limit: int = 40) -> str:
    lines = text.rstrip().splitlines()
    if len(lines) > limit:
        lines = [*lines[: limit // 2], f"... ({len(lines) - limit} lines left out)", *lines[-limit // 2 :]]
    return "\n".join(lines)


def render(name: str, source: str, workdir: Path) -> Rendered:
    """Run the page ``name`` in ``workdir`` and return it with outputs and figures inserted."""
    import matplotlib

    matplotlib.use("Agg")
    namespace: dict = {"__name__": "__main__"}
    result = Rendered("")
    parts: list[str] = []
    pos = 0
    for step, m in enumerate(FENCE.finditer(source), start=1):
        parts.append(source[pos : m.end()])
        pos = m.end()
        lang, code = m.group(1), m.group(2)
        first = code.strip().splitlines()[0] if code.strip() else ""
        try:
            if lang == "python":
                output = _python(code, namespace, workdir)
            else:
                output = "".join(f"$ {cmd}\n{_shell(cmd, workdir)}" for cmd in commands(code))
                output = "\n".join(output.splitlines()[1:]) if len(commands(code)) == 1 else output
        except TutorialError as exc:
            raise TutorialError(f"tutorial {name}, step {step} ({first!r}) failed: {exc}") from exc
        if output.strip():
            parts.append(f'\n```text title="Output"\n{_trim(output)}\n```\n')
        for fname, alt, png in _figures(name, step) if lang == "python" else []:
            result.figures[fname] = png
            parts.append(f"\n![{alt}](img/{fname})\n")
    parts.append(source[pos:])
    result.markdown = "".join(parts)
    return result
