"""The documentation never rots: every tutorial script runs and checks its result against the truth, the
getting-started commands work, the generated references list what the code has, and the site builds with
``mkdocs build --strict`` (no warning, no broken link).
"""

from __future__ import annotations

import enum
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest

from _shared import SHARED_DATA as SHARED  # beside the checkout or above it (worktrees)

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


def _run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GEODEFORM_DATA": str(SHARED),
        "NO_MKDOCS_2_WARNING": "1",
        "DISABLE_MKDOCS_2_WARNING": "true",
    }
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


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


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TUTORIALS))
def test_tutorial_script_runs_and_meets_its_truth(name: str, tmp_path: Path) -> None:
    needs = TUTORIALS[name]
    if needs is not None and not (SHARED / needs).is_dir():
        pytest.skip(f"shared data set {needs} not found in {SHARED}")
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
def test_getting_started_demo_and_its_explanation(tmp_path: Path) -> None:
    # --cluster sync: the same workflow without starting Dask workers (tests/test_demo.py runs the default).
    demo = _run([str(BIN / "geodeform"), "demo", "--out", "demo-out", "--cluster", "sync"], cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    last = demo.stdout.strip().splitlines()[-1]
    m = re.match(
        r"velocity error vs truth: RMSE ([\d.]+) m/yr \(([\d.]+) px.* over (\d+)% of the nodes",
        last,
    )
    assert m, last
    assert float(m.group(2)) < 0.15 and int(m.group(3)) >= 90
    explained = _run([sys.executable, str(EXAMPLES / "demo_explained.py")], cwd=tmp_path)
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


@pytest.mark.slow
def test_site_builds_strict(tmp_path: Path) -> None:
    """``mkdocs build --strict``: any warning (broken link, bad docstring, missing snippet) fails."""
    if shutil.which("mkdocs", path=str(BIN)) is None:
        pytest.skip("mkdocs not installed (pip install -e '.[docs]')")
    proc = _run([str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = tmp_path / "site"
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
