"""The service's ``sar`` process: a Sentinel-1 GRD job (SAFE folders in the data root) run in-process."""

from __future__ import annotations

import pytest

from _service_helpers import auth
from geodeform.sar import footprint
from test_workflows_sar import _real_pair, needs_shared


def test_sar_is_a_process(service) -> None:  # type: ignore[no-untyped-def]
    doc = service.client.get("/processes/sar").json()
    assert "Sentinel-1" in doc["description"] and {"inputs", "sar", "roi"} <= set(doc["inputs"])


@needs_shared
@pytest.mark.slow
def test_sar_process_runs_a_grd_pair_from_the_data_root(service) -> None:  # type: ignore[no-untyped-def]
    s1, s2, ref, _, _ = _real_pair(service.data_root, shape=(192, 224))
    token = service.add_user("sar-user")
    roi = footprint(ref, whole=False).buffer(-0.003).bounds
    job = {
        "inputs": [{"path": s1.name, "date": "2021-12-23"}, {"path": s2.name, "date": "2022-01-04"}],
        "roi": list(roi),
        "matching": {"step": 16, "expected_max_speed": 1000.0},
    }
    doc = service.run("sar", job, token)
    assert doc["status"] == "successful", doc
    res = service.client.get(f"/jobs/{doc['jobID']}/results", headers=auth(token)).json()
    assert {"track_022_nc", "catalog"} <= set(res)
    track = service.client.get(res["track_022_nc"]["href"], headers=auth(token))
    assert track.status_code == 200 and track.content[:4] == b"\x89HDF"
    # a folder outside the data root is refused before anything runs
    bad = {**job, "inputs": [{"path": "../x.SAFE", "date": "2021-12-23"}, job["inputs"][1]]}
    r = service.client.post("/processes/sar/execution", json={"inputs": bad}, headers=auth(token))
    assert r.status_code == 400 and "inputs.0.path" in r.text
