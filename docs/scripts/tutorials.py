"""Run a tutorial page's code blocks in order and render each block's output and figures below it.

A tutorial source (``docs/tutorial_src/NAME.md``) is Markdown whose ```` ```python ```` blocks are executed
in one namespace (like a notebook) and whose ```` ```console ```` blocks hold shell commands (``$ cmd``).
:func:`render` runs the page in a **new interpreter** (``python``: by default this one; the tests give the
python of a clean virtual environment where only the wheel is installed), started in an **empty folder**,
with that interpreter's ``bin`` first on PATH (so ``geodeform`` is its console script). That process is
this file run as a script (``python -I tutorials.py --run BLOCKS OUT``): it needs only the standard library,
and matplotlib if the page uses it. Each step's output, figures and success go to ``OUT``; :func:`render`
inserts them into the page and returns them with a per-step record (:class:`Rendered`).

Used at build time by ``docs/scripts/gen_tutorials.py`` (mkdocs-gen-files) and by ``tests/test_docs.py``.
A block that fails, a block that draws but makes no figure, an image that does not exist and a page that
loads anything from outside the site each stop the build with the page and the step named.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

FENCE = re.compile(r"^```(python|console)\n(.*?)^```\n", re.S | re.M)
ANY_FENCE = re.compile(r"^```.*?^```\n", re.S | re.M)  # every fenced block (text, yaml... too)
# What a browser would load from the page: Markdown images and the src/href of HTML elements that load.
MD_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)")
HTML_LOAD = re.compile(
    r"<(?:img|script|iframe|video|audio|source|embed|object|link|track)\b[^>]*?\b(?:src|href|data|srcset)\s*=\s*"
    r"[\"']?([^\"'\s>]+)",
    re.I,
)
DRAWS = re.compile(r"\bplt\.|\.plot\(|\.imshow\(|\.contourf?\(|\.quiver\(")
OUTSIDE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.I)  # http:, https:, data:..., protocol-relative


class TutorialError(RuntimeError):
    """A tutorial page failed: a code block raised, a figure is missing, or the page loads from outside."""


@dataclass
class Step:
    """What one block did when the page ran."""

    step: int
    lang: str
    first_line: str
    ok: bool
    seconds: float
    cpu: float = 0.0  # CPU seconds of the page's process and the commands it ran (console blocks)
    output: str = ""
    figures: list[str] = field(default_factory=list)
    alts: list[str] = field(default_factory=list)  # each figure's axes titles, its alternative text
    error: str = ""


@dataclass
class Rendered:
    """The page's Markdown with outputs and figure links, its figures (name -> PNG bytes), and the record
    of the run: the interpreter that ran it, where ``geodeform`` was imported from, whether the folder was
    empty when it started, and every step."""

    markdown: str
    figures: dict[str, bytes] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    python: str = ""
    geodeform: str = ""  # "path/to/geodeform/__init__.py version", "" if the page never imported it
    started_empty: bool = False

    def record(self) -> dict:
        """The run as JSON-able data (no figure bytes)."""
        return {
            "python": self.python,
            "geodeform": self.geodeform,
            "started_empty": self.started_empty,
            "steps": [asdict(s) for s in self.steps],
            "figures": sorted(self.figures),
        }


def blocks(source: str) -> list[tuple[str, str]]:
    """(language, code) of every executed block, in page order."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(source)]


def commands(code: str) -> list[str]:
    """The ``$ command`` lines of a console block."""
    return [line[2:] for line in code.splitlines() if line.startswith("$ ")]


def _step_at(source: str, pos: int) -> str:
    """'before step 1' / 'after step K': where ``pos`` lies among the page's executed blocks."""
    done = sum(1 for m in FENCE.finditer(source) if m.end() <= pos)
    return f"after step {done}" if done else "before step 1"


def check_loads(
    name: str, source: str, page_dir: Path | None = None, figures: tuple[str, ...] | None = None
) -> None:
    """Fail when the page would load anything from outside the site (an ``http(s):``, ``data:`` or ``//``
    image, script, frame, style sheet...), or (when ``figures`` is given) shows an image that exists neither
    among the run's ``figures`` (``img/NAME``) nor under ``page_dir`` (the folder the page is built in, e.g.
    docs/tutorials). Links to other sites (``[text](https://...)``) are fine: a reader follows them, the
    page does not load them. Code blocks are not looked at. The message names the page and the step."""
    prose = ANY_FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), source)  # no code, same offsets
    for regex in (MD_IMAGE, HTML_LOAD):
        for m in regex.finditer(prose):
            url = m.group(1)
            where = f"tutorial {name}, {_step_at(source, m.start())}"
            if OUTSIDE.match(url):
                raise TutorialError(f"{where}: the page loads {url!r} from outside the site")
            target = url.split("#")[0].split("?")[0]
            if (
                figures is not None
                and regex is MD_IMAGE
                and not (
                    target.removeprefix("img/") in figures
                    or (page_dir is not None and (page_dir / target).is_file())
                )
            ):
                raise TutorialError(
                    f"{where}: image {url!r} is missing (neither made by the page nor in the docs)"
                )


def render(
    name: str,
    source: str,
    workdir: Path,
    *,
    python: str | None = None,
    page_dir: Path | None = None,
    timeout: float = 1200,
) -> Rendered:
    """Run the page ``name`` in the empty folder ``workdir`` with ``python`` (default: this interpreter) in a
    new process, and return it with outputs and figures inserted after each block, and the run's record.
    ``page_dir``: the folder the page is built in, where the images it shows beside its own figures are.

    Raises
    ------
    TutorialError
        A block failed (or the process died, or ran out of ``timeout`` seconds), a block that draws made no
        figure, an image is missing, or the page loads from outside the site: the message names the page
        and the step.
    """
    check_loads(name, source)  # before running anything
    found = list(FENCE.finditer(source))
    with tempfile.TemporaryDirectory(prefix=f"tutorial-{name}-out-") as tmp:
        out = Path(tmp)
        (out / "blocks.json").write_text(json.dumps([[m.group(1), m.group(2)] for m in found]))
        exe = python or sys.executable
        env = {**os.environ, "MPLBACKEND": "Agg", "COLUMNS": "110"}  # rich tables as wide as the page
        env.pop("PYTHONPATH", None)
        args = [exe, "-I", str(Path(__file__).resolve()), "--run", str(out / "blocks.json"), str(out), name]
        died = _run_process(args, workdir, env, timeout)
        lines = (out / "steps.jsonl").read_text().splitlines() if (out / "steps.jsonl").exists() else []
        records = [json.loads(line) for line in lines]
        head = next((r for r in records if r.get("kind") == "start"), {})
        steps = [Step(**r["step"]) for r in records if r.get("kind") == "step"]
        result = Rendered(
            "", python=head.get("python", ""), started_empty=head.get("empty", False), steps=steps
        )
        result.geodeform = next((r["geodeform"] for r in records if r.get("kind") == "end"), "")
        for s in steps:
            result.figures.update({f: (out / f).read_bytes() for f in s.figures})
    _raise_on_failure(name, found, steps, died)
    parts: list[str] = []
    pos = 0
    for m, s in zip(found, steps, strict=True):
        parts.append(source[pos : m.end()])
        pos = m.end()
        if s.output.strip():
            parts.append(f'\n```text title="Output"\n{_trim(s.output)}\n```\n')
        for fname, alt in zip(s.figures, s.alts, strict=True):
            parts.append(f"\n![{alt}](img/{fname})\n")
    parts.append(source[pos:])
    result.markdown = "".join(parts)
    check_loads(name, result.markdown, page_dir, tuple(result.figures))
    return result


def run_in_group(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` in its own process group, killed whole on a timeout (with the commands it started, e.g.
    a page's `geodeform run`), then re-raise :class:`subprocess.TimeoutExpired`."""
    with subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def _run_process(args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    """Run the page's process (:func:`run_in_group`); '' if it succeeded, else what went wrong."""
    try:
        done = run_in_group(args, cwd, env, timeout)
    except subprocess.TimeoutExpired:
        return f"no end after {timeout:.0f} s"
    return "" if done.returncode == 0 else f"exit code {done.returncode}:\n{done.stdout}\n{done.stderr}"


def _raise_on_failure(name: str, found: list[re.Match[str]], steps: list[Step], died: str) -> None:
    for s in steps:
        where = f"tutorial {name}, step {s.step} ({s.first_line!r})"
        if not s.ok:
            raise TutorialError(f"{where} failed: {s.error}")
        if s.lang == "python" and DRAWS.search(found[s.step - 1].group(2)) and not s.figures:
            raise TutorialError(f"{where}: the block draws a figure but none was made (plt.close? no axes?)")
    if len(steps) < len(found):
        k = len(steps) + 1
        first = _first_line(found[k - 1].group(2))
        raise TutorialError(f"tutorial {name}, step {k} ({first!r}) failed: the page's process died, {died}")
    if died:
        raise TutorialError(f"tutorial {name}, after the last step: the page's process failed, {died}")


def _first_line(code: str) -> str:
    return code.strip().splitlines()[0] if code.strip() else ""


def _trim(text: str, limit: int = 40) -> str:
    lines = text.rstrip().splitlines()
    if len(lines) > limit:
        lines = [*lines[: limit // 2], f"... ({len(lines) - limit} lines left out)", *lines[-limit // 2 :]]
    return "\n".join(lines)


# --- the page's own process (python -I tutorials.py --run BLOCKS OUT) -------------------------------------


def _shell(cmd: str) -> str:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    proc = subprocess.run(cmd, shell=True, env={**os.environ, "PATH": path}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise TutorialError(f"`{cmd}` exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


def _save_figures(name: str, step: int, out: Path) -> tuple[list[str], list[str]]:
    """Save and close every open matplotlib figure (none if the page never imported pyplot): file names and
    alternative texts."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return [], []
    names, alts = [], []
    for k, num in enumerate(plt.get_fignums(), start=1):
        fig = plt.figure(num)
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        names.append(f"{name}-{step}-{k}.png")
        alts.append("; ".join(titles) or f"figure of step {step}")
        fig.savefig(out / names[-1], format="png", dpi=90)
    plt.close("all")
    return names, alts


def _cpu() -> float:
    """CPU seconds of this process and of the children it has waited for (a console block's commands)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _run_step(lang: str, code: str, namespace: dict) -> str:
    if lang == "console":
        cmds = commands(code)
        output = "".join(f"$ {cmd}\n{_shell(cmd)}" for cmd in cmds)
        return "\n".join(output.splitlines()[1:]) if len(cmds) == 1 else output
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            exec(compile(code, "<tutorial>", "exec"), namespace)  # our own pages, not user input
    except Exception as exc:
        raise TutorialError(f"{type(exc).__name__}: {exc}\n{buf.getvalue()}") from exc
    return buf.getvalue()


def run_page(blocks_json: Path, out: Path, name: str) -> int:
    """Run the blocks in this process, in the current folder; one JSON line per step to ``out/steps.jsonl``
    (written as it goes, so a crash still names the step), figures as ``out/NAME-STEP-K.png``."""
    sys.path.insert(0, os.getcwd())  # as for a script saved in this folder
    namespace: dict = {"__name__": "__main__"}
    with (out / "steps.jsonl").open("w") as log:

        def write(record: dict) -> None:
            log.write(json.dumps(record) + "\n")
            log.flush()

        write({"kind": "start", "python": sys.executable, "empty": not any(Path.cwd().iterdir())})
        for step, (lang, code) in enumerate(json.loads(blocks_json.read_text()), start=1):
            t0, cpu0 = time.perf_counter(), _cpu()
            record = Step(step, lang, _first_line(code), ok=True, seconds=0.0)
            try:
                record.output = _run_step(lang, code, namespace)
            except TutorialError as exc:
                record.ok, record.error = False, str(exc)
            if lang == "python":
                record.figures, record.alts = _save_figures(name, step, out)
            record.seconds = round(time.perf_counter() - t0, 2)
            record.cpu = round(_cpu() - cpu0, 2)
            write({"kind": "step", "step": asdict(record)})
            if not record.ok:
                return 1
        mod = sys.modules.get("geodeform")
        where = f"{mod.__file__} {mod.__version__}" if mod is not None else ""
        write({"kind": "end", "geodeform": where})
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["--run"]:
    sys.exit(run_page(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]))
