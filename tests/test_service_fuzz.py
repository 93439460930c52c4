"""Schemathesis against the app's OpenAPI document, in-process (ASGI): no input makes the service answer
5xx."""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from _service_helpers import write_pair

MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def service_settings():
    # No worker runs: the fuzzer's accepted jobs just wait (and are counted against its active job limit).
    return {"max_active_jobs": 1000}


@pytest.fixture(scope="module")
def served(service):
    ref, sec = write_pair(service.data_root, size=64)
    token = service.add_user("fuzzer")
    job_id = service.submit("offsets", {"reference": ref, "secondary": sec}, token)
    return service, token, job_id


def _operations(schema):
    for result in schema.get_all_operations():
        yield result.ok()


@pytest.mark.slow
@pytest.mark.parametrize("authenticated", [True, False])
def test_no_server_error_for_any_generated_request(served, authenticated):
    service, token, job_id = served
    schema = schemathesis.openapi.from_asgi("/openapi.json", service.client.app)
    headers = {"Authorization": f"Bearer {token}"} if authenticated else {}
    failures: list[str] = []
    seen: set[int] = set()
    for operation in _operations(schema):
        _fuzz(operation, headers, job_id, failures, seen)
    assert not failures, "\n".join(failures[:10])
    # The requests reached the app and were answered: found, not found, unauthorised or not.
    assert {200, 404} <= seen, seen
    assert (401 in seen) is not authenticated, seen


def _fuzz(operation, headers: dict[str, str], job_id: str, failures: list[str], seen: set[int]) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    def check(case):
        # As generated (unknown ids, mostly), then aimed at the real process and a real job of the user's.
        for pinned in (False, True):
            if pinned:
                params = case.path_parameters or {}
                if "processId" in params:
                    params["processId"] = "offsets"
                if "jobId" in params:
                    params["jobId"] = job_id
            response = case.call(headers=headers)
            seen.add(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{operation.label}: {response.status_code} {case.as_curl_command()}")

    check()
