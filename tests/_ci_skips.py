"""No silent skip in CI (issue 27): under ``CI=true`` a test skipped because the shared data sets
(``shared/data``), the browser (chromium) or a package of the ``test`` extra (e.g. ``compliance-checker``)
are missing is reported as failed, so that a green CI means they ran. Loaded by ``conftest.py``;
``python -m pytest -p _ci_skips`` loads it alone (``tests`` on the path).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

# the skip reasons of the tests that need shared/data, chromium or the test extra ("... not found at <path in
# shared/data>", "... is not installed: in the test extra ...", see TEST_EXTRA)
MISSING = re.compile(r"shared[/ ]data|not found at|chromium missing|in the test extra", re.IGNORECASE)

TEST_EXTRA = "{} is not installed: in the test extra (pip install -e '.[test]')"
"""Skip reason of a test whose package of the ``test`` extra is missing (a failure under ``CI=true``)."""


def in_ci() -> bool:
    """Whether ``$CI`` is set to a true value (GitHub Actions, GitLab and most CI services set CI=true)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not report.skipped or hasattr(report, "wasxfail") or not in_ci():
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if MISSING.search(str(reason)):
        report.outcome = "failed"
        report.longrepr = (
            f"CI=true: {item.nodeid} must run in CI but was skipped: {reason}\n"
            "Provide ../shared/data (or GEODEFORM_SHARED_DATA), chromium (scripts/services.d/chromium.sh) "
            "and the test extra (pip install -e '.[test]')."
        )
