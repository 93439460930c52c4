"""The documentation never rots: every tutorial script runs and checks its result against the truth, the
getting-started commands work, the generated references list what the code has, and the site builds with
``mkdocs build --strict`` (no warning, no broken link).
"""

from __future__ import annotations

import enum
import functools
import html as html_lib
import http.server
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from _ci_skips import in_ci
from _shared import SHARED_DATA as SHARED  # beside the checkout or above it (worktrees)
from _wheel import WheelDemo, WheelVenv, once_per_session

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"
BIN = Path(sys.executable).parent


def _refgen():
    spec = importlib.util.spec_from_file_location("refgen", ROOT / "docs" / "scripts" / "refgen.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["refgen"] = mod
    spec.loader.exec_module(mod)
    return mod


def _run(
    args: list[str], cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GEODEFORM_DATA": str(SHARED),
        "NO_MKDOCS_2_WARNING": "1",
        "DISABLE_MKDOCS_2_WARNING": "true",
        **(env or {}),
    }
    # Its own process group, killed whole on a timeout: a script's children (`geodeform run ...`) go with it.
    return _tutorials_module().run_in_group(args, cwd, env, timeout)


# Tutorial script -> shared data set it needs (None: runs on what the repository ships).
TUTORIALS = {
    "ice": None,
    "ice_kaskawulsh": "glaft_kaskawulsh",
    "slide": None,  # part 1 (Pandora2D) skips itself when the shared data are absent
    "quake": None,
    "quake_pair": None,
    "survey": None,
    "sar": "s1_grd",
    "cluster": None,  # Dask LocalCluster, two worker processes
}


# Page that shows each script and its output; the script's last output line must be on it (pages whose
# printed numbers no longer match the code fail here). None: the output holds a temporary path.
PAGES = {
    "ice": "tutorials/ice.md",
    "ice_kaskawulsh": "tutorials/ice.md",
    "slide": "tutorials/slide.md",
    "quake": "tutorials/quake.md",
    "quake_pair": "tutorials/quake.md",
    "survey": "tutorials/survey.md",
    "sar": "tutorials/sar.md",
    "cluster": None,
    "demo_explained": "getting-started.md",
}


def _assert_output_shown(name: str, stdout: str) -> None:
    page = PAGES[name]
    if page is None:
        return
    last = stdout.strip().splitlines()[-1]
    assert last in (ROOT / "docs" / page).read_text(), (
        f"docs/{page} does not show the current output of docs/examples/{name}.py: {last!r}; "
        "update the page (and docs/scripts/make_figures.py's figures)"
    )


def test_every_tutorial_script_is_tested() -> None:
    scripts = {p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_")}
    assert scripts == set(TUTORIALS) | {"demo_explained"} == set(PAGES)


# The cluster script last: its two Dask worker processes then load the kernels the one-process scripts
# before it compiled into the checkout's numba cache, instead of both compiling them side by side (with an
# empty cache, after a change to a kernel: twice the compile CPU, and a timeout on a crowded machine).
TUTORIAL_ORDER = sorted(TUTORIALS, key=lambda name: (name == "cluster", name))


@pytest.mark.slow
@pytest.mark.parametrize("name", TUTORIAL_ORDER)
def test_tutorial_script_runs_and_meets_its_truth(name: str, tmp_path: Path) -> None:
    needs = TUTORIALS[name]
    if needs is not None and not (SHARED / needs).is_dir():
        pytest.skip(f"shared data set {needs} not found in {SHARED}")  # a failure under CI=true
    if name == "slide" and not (SHARED / "pandora2d_s2").is_dir() and in_ci():
        pytest.fail(f"CI=true: the slide tutorial's part 1 needs shared data set pandora2d_s2 in {SHARED}")
    args = [str(tmp_path)] if name == "cluster" else []  # where it writes its GeoTIFFs and products
    proc = _run([sys.executable, str(EXAMPLES / f"{name}.py"), *args], cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # the scripts assert against the truth
    if name == "slide" and not (SHARED / "pandora2d_s2").is_dir():
        # part 1 (real pairs from the shared data) says it is skipped; part 2 runs on shipped data
        assert "skipped" in proc.stdout.splitlines()[0]
    else:
        assert "skipped" not in proc.stdout.splitlines()[0]
    if name == "slide" and (SHARED / "pandora2d_s2").is_dir():  # the real pairs were measured, not skipped
        assert proc.stdout.count("T19KER") + proc.stdout.count("T50JML") == 6
    _assert_output_shown(name, proc.stdout)


@pytest.mark.slow
def test_getting_started_demo_and_its_explanation(wheel_demo: WheelDemo, wheel_venv: WheelVenv) -> None:
    """``geodeform demo`` from a fresh install of the wheel (run once for the session, the packaging test
    checks its products), then the page's script that explains it, with the same install, in that folder."""
    assert wheel_demo.returncode == 0, wheel_demo.stdout[-3000:] + wheel_demo.stderr
    last = wheel_demo.stdout.strip().splitlines()[-1]
    m = re.match(
        r"velocity error vs truth: RMSE ([\d.]+) m/yr \(([\d.]+) px.* over (\d+)% of the nodes",
        last,
    )
    assert m, last
    assert float(m.group(2)) < 0.15 and int(m.group(3)) >= 90
    explained = _run([str(wheel_venv.python), str(EXAMPLES / "demo_explained.py")], cwd=wheel_demo.cwd)
    assert explained.returncode == 0, explained.stdout + explained.stderr
    assert f"RMSE {m.group(1)} m/yr" in explained.stdout  # the same number as the demo's last line
    assert last in (ROOT / "docs" / "getting-started.md").read_text()
    _assert_output_shown("demo_explained", explained.stdout)


@pytest.mark.slow
def test_gallery_script_prints_what_the_gallery_page_shows(tmp_path: Path) -> None:
    """docs/scripts/gallery.py draws the real-data gallery; its Kaskawulsh line is on docs/gallery.md."""
    if not (SHARED / "glaft_kaskawulsh").is_dir():
        pytest.skip(f"shared data set glaft_kaskawulsh not found in {SHARED}")
    script = ROOT / "docs" / "scripts" / "gallery.py"
    proc = _run([sys.executable, str(script), "kaskawulsh", "--img", str(tmp_path)], cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(t for t in proc.stdout.splitlines() if t.startswith("kaskawulsh: default filters keep"))
    assert line in (ROOT / "docs" / "gallery.md").read_text(), line
    assert "nodes differing: 0;" in line  # the same nodes in m/day and m/yr
    assert (tmp_path / "gallery_kaskawulsh.png").stat().st_size > 10_000


def test_pages_show_the_tested_scripts() -> None:
    """Tutorial pages include the scripts (snippets), so the code shown is the code tested."""
    pages = "\n".join(p.read_text() for p in (ROOT / "docs").rglob("*.md"))
    for name in [*TUTORIALS, "demo_explained"]:
        assert f'--8<-- "docs/examples/{name}.py"' in pages, name
    for img in (ROOT / "docs" / "img").glob("*.png"):
        assert f"img/{img.name}" in pages, f"{img.name} is not shown on any page"


def test_cli_reference_has_every_command_and_option() -> None:
    refgen = _refgen()
    command = refgen.geodeform_command()
    text = refgen.cli_markdown(command)
    for name, sub in command.commands.items():
        assert f"`geodeform {name}`" in text
        for param in sub.params:
            for opt in param.opts:
                shown = opt if opt.startswith("-") else (param.metavar or param.name).upper()
                assert f"`{shown}`" in text, (name, opt)


def test_config_reference_renders_every_field() -> None:
    pydantic = pytest.importorskip("pydantic")
    refgen = _refgen()

    class Method(str, enum.Enum):
        ncc = "ncc"
        phase = "phase"

    class Matching(pydantic.BaseModel):
        """How pairs are matched."""

        model_config = pydantic.ConfigDict(extra="forbid")
        method: Method = pydantic.Field(Method.ncc, description="Matcher.")
        chip: int = pydantic.Field(32, ge=4, description="Chip size (px).")
        max_days: float | None = pydantic.Field(
            None, description="Longest pair", json_schema_extra={"unit": "d"}
        )

    class Job(pydantic.BaseModel):
        """A job."""

        preset: Literal["ice", "slide"] = pydantic.Field("ice", description="Preset.")
        matching: Matching = pydantic.Field(default_factory=Matching, description="Matching settings.")

    text = refgen.config_markdown([Job])
    assert "## `Job`" in text and "## `matching` (Matching)" in text and "Unknown keys are rejected." in text
    assert "section [`matching`](#matching-matching)" in text
    assert "| `preset` | literal | — | `'ice'` | `'ice'`, `'slide'` | Preset. |" in text
    assert "| `chip` | int | px | `32` | ≥ `4` | Chip size (px). |" in text
    assert "| `method` | Method | — | `'ncc'` | `'ncc'`, `'phase'` | Matcher. |" in text
    assert "| `max_days` | float \\| None | d | `None` |" in text


def test_config_reference_follows_geodeform_config() -> None:
    refgen = _refgen()
    models = refgen.config_models()
    if importlib.util.find_spec("geodeform.config") is None:
        assert models == []
    else:
        text = refgen.config_markdown(models)
        for model in models:
            for name, info in model.model_fields.items():
                assert f"`{info.alias or name}`" in text


@dataclass(frozen=True)
class DocsSite:
    """``mkdocs build --strict`` run once for the test session, its tutorial pages run by the python of the
    clean venv where only the wheel is installed: the site, the record of every tutorial page's run
    (``docs/scripts/gen_tutorials.py``: page -> interpreter, steps...), the build's exit code and log."""

    site: Path
    record: dict[str, Any]
    returncode: int
    log: str

    def check(self) -> None:
        assert self.returncode == 0, self.log


def _build_site(folder: Path, python: Path) -> dict[str, Any]:
    record = folder / "tutorial-runs.json"
    env = {"GEODEFORM_TUTORIAL_PYTHON": str(python), "GEODEFORM_TUTORIAL_RECORD": str(record)}
    args = [str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(folder / "site")]
    proc = _run(args, cwd=ROOT, timeout=3600, env=env)  # a hang, not a slow crowded machine
    runs = json.loads(record.read_text()) if record.exists() else {}
    return {
        "site": str(folder / "site"),
        "record": runs,
        "returncode": proc.returncode,
        "log": proc.stdout + proc.stderr,
    }


@pytest.fixture(scope="session")
def docs_site(tmp_path_factory: pytest.TempPathFactory, wheel_venv: WheelVenv) -> DocsSite:
    """The site built once for the session (under pytest-xdist too), each tutorial page run once in it."""
    if shutil.which("mkdocs", path=str(BIN)) is None:
        pytest.skip("mkdocs not installed (pip install -e '.[docs]')")
    made = once_per_session(tmp_path_factory, "docs-site", lambda d: _build_site(d, wheel_venv.python))
    return DocsSite(Path(made["site"]), made["record"], made["returncode"], made["log"])


@pytest.mark.slow
def test_site_builds_strict(docs_site: DocsSite) -> None:
    """``mkdocs build --strict``: any warning (broken link, bad docstring, missing snippet) fails."""
    docs_site.check()
    site = docs_site.site
    cli = (site / "reference" / "cli" / "index.html").read_text()
    assert "geodeform offsets" in cli and "--max-aoi-cloud" in cli
    api = (site / "reference" / "api" / "geodeform.offsets" / "index.html").read_text()
    assert "NccOptions" in api and "search_range" in api
    assert ":class:" not in api and ":func:" not in api  # roles rewritten by docs/scripts/griffe_roles.py
    assert (site / "img" / "demo_velocity.png").exists()
    assert "peerbench" in (site / "peerbench" / "index.html").read_text()
    if importlib.util.find_spec("geodeform.config") is not None:
        config = (site / "reference" / "config" / "index.html").read_text()
        assert "expected_max_speed" in config and "m/yr" in config and "geodeform init --preset ice" in config
        assert "geodeform run" in cli and "geodeform init" in cli


# --- tutorials run and rendered at build time (docs/tutorial_src -> tutorials/NAME-steps.md) -------------

TUTORIAL_SOURCES = sorted((ROOT / "docs" / "tutorial_src").glob("*.md"))


def _tutorials_module():
    spec = importlib.util.spec_from_file_location("tutorials", ROOT / "docs" / "scripts" / "tutorials.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["tutorials"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_tutorial_sources_are_in_the_nav_and_show_a_figure_early() -> None:
    tutorials = _tutorials_module()
    nav = (ROOT / "mkdocs.yml").read_text()
    assert TUTORIAL_SOURCES
    for src in TUTORIAL_SOURCES:
        assert f"tutorials/{src.stem}-steps.md" in nav, src.name
        text = src.read_text()
        assert any(lang == "console" for lang, _ in tutorials.blocks(text)), "command line first"
        # the first figure is made within the first screen (~40 lines): the first python block ends there
        first_python = text.index("```python")
        end = text.index("\n```\n", first_python)
        assert text[:end].count("\n") <= 40 and "plt." in text[first_python:end], src.name


@pytest.mark.slow
def test_a_failing_tutorial_block_names_the_page_and_step(tmp_path: Path) -> None:
    tutorials = _tutorials_module()
    page = "# t\n\n```python\nx = 1\n```\n\n```python\nraise ValueError('no such band B99')\n```\n"
    with pytest.raises(tutorials.TutorialError, match=r"tutorial t, step 2 .*no such band B99"):
        tutorials.render("t", page, tmp_path)


@pytest.mark.slow
def test_a_failing_console_block_names_the_step(tmp_path: Path) -> None:
    """A ``$ geodeform ...`` block runs the console script in a new interpreter (hence slow)."""
    tutorials = _tutorials_module()
    with pytest.raises(tutorials.TutorialError, match=r"step 1 .*exited with"):
        tutorials.render("t", "```console\n$ geodeform no-such-command\n```\n", tmp_path)


@pytest.mark.slow
def test_a_block_that_draws_no_figure_names_the_step(tmp_path: Path) -> None:
    tutorials = _tutorials_module()
    page = "```python\nx = 1\n```\n\n```python\nimport matplotlib.pyplot as plt\nplt.close('all')\n```\n"
    with pytest.raises(
        tutorials.TutorialError, match=r"tutorial t, step 2 .*draws a figure but none was made"
    ):
        tutorials.render("t", page, tmp_path)


@pytest.mark.slow
def test_a_page_whose_process_dies_names_the_step(tmp_path: Path) -> None:
    tutorials = _tutorials_module()
    page = "```python\nx = 1\n```\n\n```python\nimport os\nos._exit(3)\n```\n"
    with pytest.raises(tutorials.TutorialError, match=r"tutorial t, step 2 .*process died, exit code 3"):
        tutorials.render("t", page, tmp_path)


@pytest.mark.parametrize(
    ("prose", "message"),
    [
        ("![map](https://tile.example.org/1/2/3.png)", r"after step 1: the page loads 'https://tile"),
        ('<script src="//cdn.example.org/plotly.js"></script>', r"after step 1: the page loads '//cdn"),
        ('<iframe src="http://example.org/map"></iframe>', r"after step 1: the page loads 'http://"),
        ("![map](img/t-9-1.png)", r"after step 1: image 'img/t-9-1.png' is missing"),
        ("![logo](../img/no-such.png)", r"after step 1: image '../img/no-such.png' is missing"),
    ],
)
def test_a_page_loading_from_outside_or_missing_an_image_names_the_step(prose: str, message: str) -> None:
    tutorials = _tutorials_module()
    page = f"# t\n\n```python\nx = 1\n```\n\n{prose}\n\n```python\ny = 2\n```\n"
    with pytest.raises(tutorials.TutorialError, match=r"tutorial t, " + message):
        tutorials.check_loads("t", page, ROOT / "docs" / "tutorials", figures=("t-1-1.png",))
    # links to other sites, images the run made or the docs hold, and URLs in code are fine
    fine = "[GLAFT](https://example.org) ![a](img/t-1-1.png) ![b](../img/ice.png)\n```text\n<img src='http://x'>\n```\n"
    tutorials.check_loads("t", fine, ROOT / "docs" / "tutorials", figures=("t-1-1.png",))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("page", "message"),
    [
        (
            "```python\nx = 1\n```\n\n```python\nimport numpy\nnumpy.zeros(-1)\n```\n",
            r"tutorial bad, step 2 .*failed",
        ),
        (
            "```python\nimport matplotlib.pyplot as plt\nplt.plot([1, 2])\n```\n\n![x](img/gone.png)\n",
            "missing",
        ),
        ("```python\nx = 1\n```\n\n![x](https://example.org/x.png)\n", "outside the site"),
    ],
    ids=["failing-block", "missing-figure", "outside-load"],
)
def test_a_bad_tutorial_fails_the_mkdocs_build(page: str, message: str, tmp_path: Path) -> None:
    """The same checks stop ``mkdocs build`` (a small site that runs docs/scripts/gen_tutorials.py)."""
    if shutil.which("mkdocs", path=str(BIN)) is None:
        pytest.skip("mkdocs not installed (pip install -e '.[docs]')")
    (tmp_path / "docs" / "tutorial_src").mkdir(parents=True)
    (tmp_path / "docs" / "index.md").write_text("# t\n")
    (tmp_path / "docs" / "tutorial_src" / "bad.md").write_text(f"# Bad\n\n{page}")
    script = ROOT / "docs" / "scripts" / "gen_tutorials.py"
    (tmp_path / "mkdocs.yml").write_text(
        f"site_name: t\nstrict: true\nexclude_docs: tutorial_src/\nplugins:\n  - gen-files:\n"
        f"      scripts: ['{script}']\n"
    )
    proc = _run([str(BIN / "mkdocs"), "build", "--strict"], cwd=tmp_path, timeout=300)
    assert proc.returncode != 0
    assert re.search(r"TutorialError: tutorial bad, (step|after step|before step) \d", proc.stderr), (
        proc.stderr
    )
    assert re.search(message, proc.stderr), proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("src", TUTORIAL_SOURCES, ids=lambda p: p.stem)
def test_tutorial_code_blocks_run_in_an_empty_folder(
    src: Path, docs_site: DocsSite, wheel_venv: WheelVenv
) -> None:
    """Every block of the page ran as shown, in order, in a new interpreter started in an empty folder, with
    geodeform from the wheel in a clean venv (the build ran the page, once; its record says how each step
    went); the built page shows each step's output and figures, the first within the first screen."""
    docs_site.check()
    tutorials = _tutorials_module()
    run = docs_site.record[src.stem]
    assert run["python"] == str(wheel_venv.python) and run["started_empty"], run["python"]
    assert run["geodeform"].startswith(str(wheel_venv.venv)), run["geodeform"]  # not the checkout's copy
    text = src.read_text()
    shown = [(lang, code.strip().splitlines()[0]) for lang, code in tutorials.blocks(text)]
    steps = run["steps"]
    assert [(s["lang"], s["first_line"]) for s in steps] == shown  # every block, in page order
    assert all(s["ok"] for s in steps), [s for s in steps if not s["ok"]]
    assert "RMSE" in "".join(s["output"] for s in steps)  # the page checks its result against the truth
    first_figure = next(s["step"] for s in steps if s["figures"])
    block_end = list(tutorials.FENCE.finditer(text))[first_figure - 1].end() - len("\n```\n")
    assert text[:block_end].count("\n") <= 40, f"{src.name}: the first figure comes after line 40"
    html = (docs_site.site / "tutorials" / f"{src.stem}-steps" / "index.html").read_text()
    for s in steps:
        for fig in s["figures"]:
            assert f'src="../img/{fig}"' in html, (src.stem, s["step"], fig)
            assert (docs_site.site / "tutorials" / "img" / fig).stat().st_size > 5_000, fig
        if s["output"].strip():
            last = s["output"].strip().splitlines()[-1].strip()
            assert html_lib.escape(last, quote=False) in html, (src.stem, s["step"], last)


@pytest.mark.slow
def test_tutorial_pages_in_chromium(docs_site: DocsSite, chromium_browser, tmp_path: Path) -> None:
    """Each tutorial page shows its figures (no broken image) and requests nothing outside the site."""
    docs_site.check()
    built_site = docs_site.site
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(built_site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    pages = ["tutorials/", *(f"tutorials/{name}/" for name in ("ice", "slide", "quake", "survey", "sar"))]
    pages += [f"tutorials/{src.stem}-steps/" for src in TUTORIAL_SOURCES]
    try:
        context = chromium_browser.new_context(viewport={"width": 1280, "height": 900})
        outside: list[str] = []
        context.on("request", lambda req: None if req.url.startswith(origin) else outside.append(req.url))
        # Every page in a tab of its own, all loading at once (each waits for its network to go idle, which
        # takes at least half a second of nothing: one after the other, most of this test's time).
        tabs = []
        for path in pages:
            url = f"{origin}/{path.rstrip('/')}/"
            tab = context.new_page()
            tabs.append((path, url, tab, tab.goto(url, wait_until="commit")))
        for path, url, tab, response in tabs:
            tab.wait_for_load_state("networkidle")
            assert response is not None and response.ok, url
            script = "els => els.map(e => [e.getAttribute('src'), e.complete && e.naturalWidth > 0])"
            images = tab.eval_on_selector_all("article img", script)
            broken = [src for src, ok in images if not ok]
            assert not broken, f"{path}: broken images {broken}"
            if path.endswith("-steps/"):
                assert len(images) >= 2, f"{path}: its figures are missing"
        assert not outside, f"pages requested outside the site: {sorted(set(outside))}"
        shown = next(tab for path, _, tab, _ in tabs if path == "tutorials/ice-steps/")
        shown.bring_to_front()
        shot = tmp_path / "tutorial_ice_steps.png"
        shown.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        context.close()
    finally:
        server.shutdown()
        thread.join()
