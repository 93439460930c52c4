"""The application object in-process: the map page hook and the OGC error documents (no server needed)."""

from __future__ import annotations

import sys
import types

from fastapi import APIRouter
from fastapi.testclient import TestClient

from geodeform.service.app import create_app
from geodeform.service.settings import ServiceSettings
from geodeform.service.store import migrate


def test_page_router_is_mounted_when_the_module_exists(tmp_path, monkeypatch):
    page = types.ModuleType("geodeform.service.page")
    page.router = APIRouter()

    @page.router.get("/map")
    def _map() -> dict[str, str]:
        return {"page": "map"}

    monkeypatch.setitem(sys.modules, "geodeform.service.page", page)
    app = create_app(ServiceSettings(db=str(tmp_path / "s.db"), jobs_dir=tmp_path / "jobs"))
    migrate(str(tmp_path / "s.db"))
    with TestClient(app) as client:
        assert client.get("/map").json() == {"page": "map"}
        assert client.get("/", headers={"Accept": "text/html"}).text.startswith("<!doctype html>")


def test_unknown_route_and_method_are_ogc_documents(tmp_path):
    migrate(str(tmp_path / "s.db"))
    app = create_app(ServiceSettings(db=str(tmp_path / "s.db"), jobs_dir=tmp_path / "jobs"))
    with TestClient(app) as client:
        r = client.get("/nowhere")
        assert r.status_code == 404 and r.json()["status"] == 404
        r = client.put("/processes")
        assert r.status_code == 405 and r.json()["title"]
