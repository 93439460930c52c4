"""Shared fixtures. Each area appends its fixtures in a section headed by a comment."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _ci_skips import pytest_runtest_makereport  # noqa: F401 - no silent skip under CI=true (hook)
from _timeline import (  # noqa: F401 - GEODEFORM_TEST_TIMELINE=DIR records each test's wall and CPU (hooks)
    pytest_runtest_call,
    pytest_runtest_setup,
    pytest_runtest_teardown,
)
from _wheel import WheelDemo, WheelVenv, make_wheel_venv, once_per_session, run_wheel_demo
from geodeform.cli import main
from geodeform.demo import load_texture
from geodeform.errors import GeodeformError

# cli ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CliResult:
    """What ``geodeform ARGS`` did: exit code, captured streams, and the error behind an exit 2.

    Attributes
    ----------
    code
        Exit code, as the console script would return it (0 ok, 2 for our errors and usage errors).
    stdout, stderr
        Captured text.
    exception
        The :class:`geodeform.errors.GeodeformError` that ``main()`` turned into its one-line message and exit
        code 2 (so tests can check its type), else None.
    """

    code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None

    @property
    def output(self) -> str:
        """Standard output followed by standard error."""
        return self.stdout + self.stderr


CliRunner = Callable[..., CliResult]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """Run ``geodeform ARGS`` in this process through ``geodeform.cli.main`` (the console script's entry
    point): same exit codes and error text, without a new interpreter.

    ``cli(*args, cwd=None, env=None)`` returns a :class:`CliResult`; ``env`` sets environment variables
    (e.g. ``{"COLUMNS": "200"}`` for wide tables) for that call only.
    """

    def run(*args: object, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> CliResult:
        with monkeypatch.context() as patch:
            patch.setattr(sys, "argv", ["geodeform", *map(str, args)])
            if cwd is not None:
                patch.chdir(cwd)
            for key, value in (env or {}).items():
                patch.setenv(key, value)
            capsys.readouterr()  # drop what earlier code printed
            code, error = 0, None
            try:
                main()
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
                # main() exits from inside its `except GeodeformError` block: the error is the context.
                if isinstance(stop.__context__, GeodeformError):
                    error = stop.__context__
            captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err, error)

    return run


# service ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service_settings() -> dict[str, Any]:
    """ServiceSettings fields of the module's ``service`` (override this fixture in a test module)."""
    return {}


@pytest.fixture(scope="module")
def service(tmp_path_factory, service_settings):
    """The web service in-process, one per test module: the app on a temporary SQLite store behind a
    ``TestClient`` (``service.client``), data root ``service.data_root``, users made straight in the store
    with ``service.add_user(name)``, jobs run by a real worker in this process with ``service.run_jobs()``
    (:class:`_service_helpers.InProcessService`)."""
    # Imported here, not at the top: the app and its worker stack are only loaded by the tests that use them.
    from _service_helpers import in_process_service

    with in_process_service(tmp_path_factory.mktemp("service"), **service_settings) as svc:
        yield svc


# isolation ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def private_aoi_cache(tmp_path_factory: pytest.TempPathFactory):
    """Each test process reads catalogue scenes through an AOI cache of its own (``GEODEFORM_CACHE``, also
    seen by the subprocesses it starts), not the user's ``~/.cache/geodeform`` that other test processes and
    runs share: a test that expects a read finds no file another one left."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GEODEFORM_CACHE", str(tmp_path_factory.mktemp("geodeform-cache")))
        yield


# engine -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def texture() -> np.ndarray:
    """The shipped 576 × 576 Landsat-8 B4 crop (courtesy of the U.S. Geological Survey) as float64 DN,
    read-only (copy it to modify it): real texture for offset-tracking tests with imposed shifts."""
    tex = load_texture().astype(np.float64)
    tex.flags.writeable = False
    return tex


# --- a real browser (Debian chromium driven by Playwright; tests/test_docs.py) ---------------------------


@pytest.fixture(scope="module")
def chromium_browser():
    """Debian's chromium through Playwright (no browser download); skipped when either is missing.

    Module scope: a Playwright sync session keeps an event loop on this thread while it is open, so one left
    open for the whole session breaks every later test that starts its own (test_service_proxy.py)."""
    exe = os.environ.get("GEODEFORM_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(exe).is_file():
        pytest.skip("chromium missing (scripts/services.d/chromium.sh installs Debian's)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


# --- order of the test files and the workers (scripts/test.sh runs them on two pytest-xdist workers) --------

# Test files by their measured whole-suite cost, longest first (seconds of one 2-core run, ~100-300 s down to
# ~15 s). scripts/test.sh hands whole files to two workers in collection order (`--dist loadfile
# --no-loadscope-reorder`): with the long files first, the short ones fill the gaps at the end instead of one
# long file starting last on a worker while the other idles. Files not named keep their order, after these.
LONGEST_FIRST = (
    "test_docs.py",
    "test_packaging.py",
    # files that compile no numba kernel, for whichever worker is free first while the other may still run
    # test_docs.py's tutorial scripts (on a clean clone they compile the checkout's kernels: a kernel-using
    # test that runs meanwhile compiles the same kernels again in its own processes)
    "test_service_fuzz.py",
    "test_search.py",
    "test_layers.py",
    "test_config.py",
    "test_service_store.py",
    "test_service_limits.py",
    "test_cluster.py",
    "test_service_recovery.py",
    "test_workflows.py",
    "test_service_api.py",
    "test_service_accounts.py",
    "test_service_page.py",
    "test_offsets.py",
    "test_quake_workflow.py",
    "test_service_proxy.py",
    "test_real_scenes.py",
    "test_cli_offsets.py",
    "test_ortho.py",
)

WHEEL_CHAIN = (
    "tests/test_docs.py::test_getting_started_demo_and_its_explanation",
    "tests/test_demo.py::test_demo_runs_offline_and_recovers_the_known_flow",
    "tests/test_docs.py::test_site_builds_strict",
    "tests/test_docs.py::test_tutorial_code_blocks_run_in_an_empty_folder",
    "tests/test_docs.py::test_tutorial_pages_in_chromium",
    "tests/test_packaging.py::test_sdist_and_wheel_install_in_a_clean_venv_and_run_the_demo",
)
"""The tests that need the built wheel (fixture ``wheel_venv``, directly or through ``wheel_demo`` or
``docs_site``), in the order they run: under ``--dist loadfile`` they are one unit of work (not their files)
that one worker starts first: the wheel, the demo from it (with a fresh install's kernel cache; the
getting-started, demo and packaging tests all check that one run), the docs build that runs each tutorial
page with it, and the tests that read them, while the other worker runs
everything else. By file (test_docs.py, test_packaging.py) they were on both workers, and one waited for the
other's wheel and demo with nothing to do (2+ min per run). Collection fails when this list and the tests
that use ``wheel_venv`` differ."""


def _chain_name(nodeid: str) -> str:
    return nodeid.split("[", 1)[0]  # a parametrized test's node id without its parameters


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests of :data:`WHEEL_CHAIN` first, in that order, then the files of :data:`LONGEST_FIRST`, in
    that order (a stable sort: the tests of a file keep their order, and the other files theirs)."""
    chain = {name: k for k, name in enumerate(WHEEL_CHAIN)}
    for item in items:
        uses, named = "wheel_venv" in getattr(item, "fixturenames", ()), _chain_name(item.nodeid) in chain
        if uses != named:
            raise pytest.UsageError(
                f"{item.nodeid} {'uses' if uses else 'does not use'} the fixture wheel_venv (directly or "
                f"through wheel_demo, docs_site) but is {'not ' if uses else ''}named in WHEEL_CHAIN of "
                "tests/conftest.py: the two must agree"
            )
    rank = {name: len(chain) + k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(
        key=lambda item: chain.get(_chain_name(item.nodeid), rank.get(item.path.name, len(chain) + len(rank)))
    )


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: unknown without it (-p no:xdist)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` with :data:`WHEEL_CHAIN` as one unit of work (of its own, not its files');
    other ``--dist`` modes are pytest-xdist's."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling  # only under pytest-xdist, which calls this hook

    class LoadFileAndWheelChain(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "wheel-chain" if _chain_name(nodeid) in WHEEL_CHAIN else super()._split_scope(nodeid)

    return LoadFileAndWheelChain(config, log)


# --- docs and packaging: the wheel in a clean venv and the demo run from it, once per test session -------
# (tests/test_docs.py, tests/test_packaging.py; helpers in tests/_wheel.py, safe under pytest-xdist)


@pytest.fixture(scope="session")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> WheelVenv:
    """The wheel installed in a clean venv, built once for the test session (:class:`WheelVenv`)."""
    pytest.importorskip("build")
    made = once_per_session(tmp_path_factory, "wheel-venv", make_wheel_venv)
    return WheelVenv(**{k: Path(p) for k, p in made.items()})


@pytest.fixture(scope="session")
def wheel_demo(tmp_path_factory: pytest.TempPathFactory, wheel_venv: WheelVenv) -> WheelDemo:
    """The getting-started demo run from the wheel once for the test session (the demo test checks its
    error against the truth and its products, the packaging test that it ran from the wheel, the docs test
    its last line and the script that explains it)."""
    made = once_per_session(tmp_path_factory, "wheel-demo", lambda d: run_wheel_demo(d, wheel_venv))
    return WheelDemo(Path(made["cwd"]), Path(made["out"]), made["returncode"], made["stdout"], made["stderr"])
