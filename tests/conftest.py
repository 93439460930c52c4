"""Shared fixtures of the test suite, one section per area."""

from __future__ import annotations

from typing import Any

import pytest

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
