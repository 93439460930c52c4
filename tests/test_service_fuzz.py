"""Schemathesis against the served OpenAPI document: no input makes the service answer 5xx."""

from __future__ import annotations

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from _service_helpers import Server, add_users, db_url, running, write_pair

MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    data = tmp / "data"
    data.mkdir()
    ref, sec = write_pair(data, size=64)
    db = db_url("sqlite", tmp)
    (token,) = add_users(db, "fuzzer")
    # No workers: the fuzzer's accepted jobs just wait (and are counted against its active job limit).
    server = Server(
        db=db, data_root=data, jobs_dir=tmp / "jobs", workers=0, args=("--max-active-jobs", "1000")
    )
    with running(server):
        r = httpx.post(
            f"{server.url}/processes/offsets/execution",
            json={"inputs": {"reference": ref, "secondary": sec}},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 201
        yield server, token, r.json()["jobID"]


def _operations(schema):
    for result in schema.get_all_operations():
        yield result.ok()


@pytest.mark.parametrize("authenticated", [True, False])
def test_no_server_error_for_any_generated_request(served, authenticated):
    server, token, job_id = served
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {token}"} if authenticated else {}
    failures: list[str] = []
    for operation in _operations(schema):
        _fuzz(operation, server.url, headers, job_id, failures)
    assert not failures, "\n".join(failures[:10])


def _fuzz(operation, base_url: str, headers: dict[str, str], job_id: str, failures: list[str]) -> None:
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
            response = case.call(base_url=base_url, headers=headers, timeout=30)
            if response.status_code >= 500:
                failures.append(f"{operation.label}: {response.status_code} {case.as_curl_command()}")

    check()
