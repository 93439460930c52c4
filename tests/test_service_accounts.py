"""Accounts (``geodeform users ...``, token expiry), uploads into a private folder within quotas, the
retention sweep, and notifications: webhooks to a receiver started here and e-mail through a local SMTP
server (aiosmtpd), in-process. The exactly-once success notification after a worker is killed is checked
by ``test_service_recovery.py::test_kill_9_of_a_worker_mid_job_then_the_job_finishes`` (a real
``geodeform serve``, slow)."""

from __future__ import annotations

import datetime as dt
import io
import json

import numpy as np
import pytest
import rasterio
import sqlalchemy as sa
from rasterio.transform import from_origin

from _service_helpers import Receiver, auth, free_port, write_pair
from geodeform.service.models import Job
from geodeform.service.store import JobStore
from geodeform.service.worker import sweep

OFFSETS = {"chip": 16, "step": 16, "search": 4}


@pytest.fixture(scope="module")
def smtp():
    """A local SMTP server (aiosmtpd) keeping the messages it receives."""
    from aiosmtpd.controller import Controller

    class Keep:
        def __init__(self) -> None:
            self.messages: list[tuple[str, list[str], str]] = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append((envelope.mail_from, envelope.rcpt_tos, envelope.content.decode()))
            return "250 OK"

    handler = Keep()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, handler
    controller.stop()


@pytest.fixture(scope="module")
def service_settings(smtp):
    controller, _ = smtp
    return {
        "webhook_hosts": ("127.0.0.1",),
        "smtp_host": "127.0.0.1",
        "smtp_port": controller.port,
        "notify_backoff_s": 0.0,
        "max_upload_bytes": 400_000,
        "max_user_disk_bytes": 3_000_000,
        "public_url": "https://geo.example.org/prefix",
    }


@pytest.fixture(scope="module")
def svc(service):
    ref, sec = write_pair(service.data_root)
    tokens = {name: service.add_user(name, email=f"{name}@example.org") for name in ("alice", "bob")}
    return service, tokens, {"reference": ref, "secondary": sec, **OFFSETS}


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _geotiff(rows: int = 64, *, crs: str | None = "EPSG:32607") -> bytes:
    data = np.random.default_rng(0).random((rows, rows), dtype=np.float32)
    buf = io.BytesIO()
    profile = dict(driver="GTiff", width=rows, height=rows, count=1, dtype="float32")
    if crs:
        profile.update(crs=crs, transform=from_origin(350000.0, 6700000.0, 30.0, 30.0))
    with rasterio.MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data, 1)
        buf.write(mem.read())
    return buf.getvalue()


# --- accounts ---------------------------------------------------------------------------------------------


def test_users_list_rotate_revoke_disable_and_expiry(cli, tmp_path):
    db = str(tmp_path / "u.db")
    res = cli("users", "add", "carol", "--db", db, "--email", "carol@example.org", "--expires", "30d")
    assert res.code == 0, res.output
    token = res.stdout.strip().splitlines()[-1]
    store = JobStore(db)
    try:
        assert store.user_for_token(token).email == "carol@example.org"
        listed = cli("users", "list", "--db", db).stdout
        assert "carol" in listed and "active" in listed and "carol@example.org" in listed
        new = cli("users", "rotate", "carol", "--db", db).stdout.strip().splitlines()[-1]
        assert store.user_for_token(token) is None and store.user_for_token(new).name == "carol"
        assert cli("users", "revoke", "carol", "--db", db).code == 0
        assert store.user_for_token(new) is None and "revoked" in cli("users", "list", "--db", db).stdout
        new = cli("users", "rotate", "carol", "--db", db).stdout.strip().splitlines()[-1]
        assert cli("users", "disable", "carol", "--db", db).code == 0
        assert store.user_for_token(new) is None and "disabled" in cli("users", "list", "--db", db).stdout
        assert cli("users", "enable", "carol", "--db", db).code == 0
        assert store.user_for_token(new).name == "carol"
        past = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(seconds=1)
        assert store.rotate_token("carol", expires=past) is not None
        assert "expired" in cli("users", "list", "--db", db).stdout
        for bad in (("rotate", "nobody"), ("add", "x y"), ("add", "dave", "--expires", "soon")):
            res = cli("users", *bad, "--db", db)
            assert res.code == 2 and res.exception is not None, bad
    finally:
        store.close()


def test_an_expired_token_is_refused(svc):
    service, _, _ = svc
    past = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(minutes=1)
    token = service.store.add_user("old", expires=past)
    r = service.client.get("/jobs", headers=auth(token))
    assert r.status_code == 401 and "expired" in r.json()["detail"]


# --- uploads ----------------------------------------------------------------------------------------------


def test_uploads_are_private_checked_and_usable_in_jobs(svc):
    service, tokens, inputs = svc
    c, a, b = service.client, auth(tokens["alice"]), auth(tokens["bob"])
    ref_bytes = (service.data_root / inputs["reference"]).read_bytes()
    r = c.put("/uploads/my_ref.tif", content=ref_bytes, headers=a)
    assert r.status_code == 201, r.text
    assert r.json()["path"] == "uploads/my_ref.tif"
    listed = c.get("/uploads", headers=a).json()
    assert [u["name"] for u in listed["uploads"]] == ["my_ref.tif"] and listed["disk_bytes"] >= len(ref_bytes)
    assert c.get("/uploads", headers=b).json()["uploads"] == []
    mask = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    assert c.put("/uploads/ice.geojson", content=json.dumps(mask), headers=a).status_code == 201
    doc = service.run("offsets", {**inputs, "reference": "uploads/my_ref.tif"}, tokens["alice"])
    assert doc["status"] == "successful", doc
    r = c.post(
        "/processes/offsets/execution",
        json={"inputs": {**inputs, "reference": "uploads/my_ref.tif"}},
        headers=b,
    )
    assert r.status_code == 400 and "your uploads" in r.json()["problems"][0]["problem"]
    assert c.delete("/uploads/my_ref.tif", headers=a).status_code == 200
    assert c.delete("/uploads/my_ref.tif", headers=a).status_code == 404


@pytest.mark.parametrize(
    ("name", "content", "status", "words"),
    [
        ("x.vrt", b"<VRTDataset/>", 400, "ends in"),
        ("../x.tif", b"II*\x00", 404, ""),
        (".hidden.tif", b"II*\x00", 400, "ends in"),
        ("a.tif", b"<VRTDataset><SourceFilename>/etc/passwd</SourceFilename></VRTDataset>", 400, "TIFF"),
        ("a.tif", b"II*\x00garbage", 400, "GeoTIFF"),
        ("a.json", b'{"type": "Point", "coordinates": [0, 0]}', 400, "GeoJSON"),
        ("a.json", b"[[[[", 400, "JSON"),
        ("a.tif", b"", 400, "empty"),
        ("big.tif", b"II*\x00" + b"0" * 500_000, 413, "max_upload_bytes"),
    ],
)
def test_bad_uploads_are_refused(svc, name, content, status, words):
    service, tokens, _ = svc
    r = service.client.put(f"/uploads/{name}", content=content, headers=auth(tokens["alice"]))
    assert r.status_code == status, (r.status_code, r.text)
    assert words in r.text
    assert not any(p.name.startswith(".") for p in service.settings.uploads_root.rglob("*") if p.is_file())


def test_a_tiff_without_crs_is_refused(svc):
    service, tokens, _ = svc
    r = service.client.put("/uploads/plain.tif", content=_geotiff(crs=None), headers=auth(tokens["alice"]))
    assert r.status_code == 400 and "coordinate reference system" in r.text


def test_the_disk_quota_bounds_uploads_and_submissions(tmp_path):
    from _service_helpers import in_process_service

    with in_process_service(tmp_path, max_user_disk_bytes=40_000, max_upload_bytes=1_000_000) as service:
        ref, sec = write_pair(service.data_root)
        token = service.add_user("alice")
        a = auth(token)
        r = service.client.put("/uploads/big.tif", content=_geotiff(128), headers=a)
        assert r.status_code == 413 and "quota" in r.text
        assert service.client.put("/uploads/small.tif", content=_geotiff(64), headers=a).status_code == 201
        doc = service.run("offsets", {"reference": ref, "secondary": sec, **OFFSETS}, token)
        assert doc["status"] == "failed" and "disk quota" in doc["message"], doc  # stopped while running
        (service.settings.uploads_root / "1" / "filler.tif").write_bytes(b"0" * 40_000)
        r = service.client.post(
            "/processes/offsets/execution", json={"inputs": {"reference": ref, "secondary": sec}}, headers=a
        )
        assert r.status_code == 400 and "max_disk_bytes" in r.json()["problems"][0]["problem"]


# --- retention --------------------------------------------------------------------------------------------


def test_retention_removes_old_and_dismissed_job_folders(svc):
    service, tokens, inputs = svc
    doc = service.run("offsets", inputs, tokens["alice"])
    old = doc["jobID"]
    keep = service.run("offsets", inputs, tokens["alice"])["jobID"]
    with service.store.session() as s:
        s.execute(
            sa.update(Job).where(Job.id == old).values(finished=dt.datetime(2000, 1, 1), status="successful")
        )
    (service.jobs_dir / "stray").mkdir()
    removed = sweep(service.store, service.settings)
    assert old in removed and keep not in removed
    assert not (service.jobs_dir / old).exists() and (service.jobs_dir / keep).exists()
    status = service.client.get(f"/jobs/{old}", headers=auth(tokens["alice"])).json()
    assert status["status"] == "dismissed" and "retention" in status["message"]


# --- notifications ----------------------------------------------------------------------------------------


def test_webhooks_success_once_in_progress_and_failure(svc, receiver):
    service, tokens, inputs = svc
    sub = {
        "successUri": receiver.url("/ok"),
        "failedUri": receiver.url("/failed"),
        "inProgressUri": receiver.url("/running"),
    }
    doc = service.run("offsets", inputs, tokens["alice"], subscriber=sub)
    assert doc["status"] == "successful"
    assert service.deliver() == 2 and service.deliver() == 0  # in progress + success, then nothing
    (ok,) = receiver.on("/ok")
    assert ok["jobID"] == doc["jobID"] and ok["netcdf"]["href"].startswith(
        "https://geo.example.org/prefix/jobs/"
    )
    assert receiver.on("/running")[0]["status"] == "running" and receiver.on("/failed") == []
    headers = next(h for p, _, h in receiver.received if p == "/ok")
    assert headers["Geodeform-Notification-Id"]
    # A job that fails: its input vanished between submission and run.
    (service.data_root / "gone.tif").write_bytes((service.data_root / inputs["reference"]).read_bytes())
    job = service.submit("offsets", {**inputs, "reference": "gone.tif"}, tokens["alice"], subscriber=sub)
    (service.data_root / "gone.tif").unlink()
    service.run_jobs()
    service.deliver()
    (failed,) = receiver.on("/failed")
    assert failed["jobID"] == job and "no file 'gone.tif'" in failed["detail"]
    assert str(service.data_root) not in json.dumps(failed)


def test_webhook_failures_are_retried(svc):
    service, tokens, inputs = svc
    receiver = Receiver(fail=2)
    try:
        doc = service.run("offsets", inputs, tokens["alice"], subscriber={"successUri": receiver.url("/r")})
        for _ in range(3):
            service.deliver()
        assert len(receiver.on("/r")) == 1 and receiver.on("/r")[0]["jobID"] == doc["jobID"]
        assert service.store.notifications(doc["jobID"])[0][2:] == ("sent", 3)
    finally:
        receiver.close()


@pytest.mark.parametrize(
    ("sub", "field", "words"),
    [
        ({"successUri": "https://evil.example.com/x"}, "subscriber.successUri", "not a webhook host"),
        ({"failedUri": "ftp://127.0.0.1/x"}, "subscriber.failedUri", "scheme"),
        ({"successUri": "mailto:someone@else.org"}, "subscriber.successUri", "own e-mail"),
        ({"successUri": "http://u:p@127.0.0.1/x"}, "subscriber.successUri", "credentials"),
        ({"onDone": "http://127.0.0.1/x"}, "subscriber.onDone", "unknown field"),
        ({"successUri": 5}, "subscriber.successUri", "URI"),
    ],
)
def test_subscribers_are_checked_at_submission(svc, sub, field, words):
    service, tokens, inputs = svc
    r = service.client.post(
        "/processes/offsets/execution",
        json={"inputs": inputs, "subscriber": sub},
        headers=auth(tokens["alice"]),
    )
    assert r.status_code == 400, r.text
    problems = {p["input"]: p["problem"] for p in r.json()["problems"]}
    assert words in problems[field], problems


def test_email_notification_through_smtp(svc, smtp):
    service, tokens, inputs = svc
    _, handler = smtp
    before = len(handler.messages)
    doc = service.run("offsets", inputs, tokens["bob"], subscriber={"successUri": "mailto:bob@example.org"})
    assert service.deliver() == 1
    _, to, text = handler.messages[before]
    assert to == ["bob@example.org"] and doc["jobID"] in text and "successful" in text
    assert f"https://geo.example.org/prefix/jobs/{doc['jobID']}/results" in text
