"""Schemathesis against the app's OpenAPI document, in-process (ASGI): no input makes the service answer 5xx.

Every operation that takes input gets at least 100 generated requests with a token (each sent as generated
and again aimed at a real process and job), a few without one; a stateful run follows the document's links
(execute -> status, results, dismiss) through sequences of calls.
"""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.stateful import run_state_machine_as_test

from _service_helpers import write_pair

MAX_EXAMPLES = 100  # per operation, with a token
UNAUTHENTICATED_EXAMPLES = 20  # without one every operation but the public ones stops at the 401


@pytest.fixture(scope="module")
def service_settings():
    # No worker runs: the fuzzer's accepted jobs just wait (and are counted against its active job limit).
    return {"max_active_jobs": 100_000, "max_upload_bytes": 100_000}


@pytest.fixture(scope="module")
def served(service):
    ref, sec = write_pair(service.data_root, size=64)
    token = service.add_user("fuzzer")
    job_id = service.submit("offsets", {"reference": ref, "secondary": sec}, token)
    schema = schemathesis.openapi.from_asgi("/openapi.json", service.client.app)
    return service, token, job_id, schema


def _operations(schema):
    for result in schema.get_all_operations():
        yield result.ok()


@pytest.mark.slow
@pytest.mark.parametrize("authenticated", [True, False])
def test_no_server_error_for_any_generated_request(served, authenticated):
    _, token, job_id, schema = served
    headers = {"Authorization": f"Bearer {token}"} if authenticated else {}
    failures: list[str] = []
    seen: set[int] = set()
    counts: dict[str, int] = {}
    examples = MAX_EXAMPLES if authenticated else UNAUTHENTICATED_EXAMPLES
    for operation in _operations(schema):
        _fuzz(operation, headers, job_id, failures, seen, counts, examples)
    assert not failures, "\n".join(failures[:10])
    varied = {k: n for k, n in counts.items() if k not in ("GET /", "GET /conformance", "GET /map")}
    assert min(varied.values()) >= examples, counts  # operations without input have few distinct requests
    # The requests reached the app and were answered: found, not found, unauthorised or not.
    assert {200, 404} <= seen and (400 in seen or not authenticated), seen
    assert (401 in seen) is not authenticated, seen


def _fuzz(operation, headers, job_id, failures, seen, counts, examples) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    def check(case):
        counts[operation.label] = counts.get(operation.label, 0) + 1
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


@pytest.mark.slow
def test_no_server_error_along_the_documents_links(served):
    """Sequences of calls following the OpenAPI links: submit, then status / results / dismissal of the
    job just created, with a token."""
    _, token, _, schema = served
    failures: list[str] = []
    calls: dict[str, int] = {}

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case):
            return {"headers": {"Authorization": f"Bearer {token}"}}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            key = f"{case.operation.method.upper()} {case.operation.path}"
            calls[key] = calls.get(key, 0) + 1
            if response.status_code >= 500:
                failures.append(f"{key}: {response.status_code} {case.as_curl_command()}")

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=25,
            stateful_step_count=5,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        ),
    )
    assert not failures, "\n".join(failures[:10])
    linked = {k for k in calls if k.startswith(("GET /jobs/{jobId}", "DELETE /jobs/{jobId}"))}
    assert calls.get("POST /processes/{processId}/execution") and linked, calls
