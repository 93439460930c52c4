"""Shared helpers for the tests that talk to the local STAC API (started by scripts/services.d/stac.sh)."""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

STAC_DATA = Path(__file__).parent / "data" / "stac"
ASSETS = STAC_DATA / "assets"
CLEAR = "S2B_33TWM_20230813_0_L2A"  # R122, eo:cloud_cover 1.1
CLOUDY = "S2A_33TWM_20230818_0_L2A"  # R122, eo:cloud_cover 43.9
OTHER_ORBIT = "S2A_33TWM_20230815_0_L2A"  # R079, 10.8 % no data over the tile
LANDSAT = "LC08_L2SP_001062_20201031_20201106_02_T2"
# Inside tile 33TWM, away from the no-data edge of orbit 79 (lon, lat degrees).
BBOX = (15.5, 46.2, 15.9, 46.5)


def stac_url() -> str:
    """URL of the local STAC API, or skip the test with the reason."""
    url = os.environ.get("GEODEFORM_TEST_STAC_URL")
    if not url:
        pytest.skip(
            "GEODEFORM_TEST_STAC_URL is not set: run the tests through `bash scripts/test.sh`, which starts "
            "the local STAC server (scripts/services.d/stac.sh)"
        )
    return url


def closed_port_url() -> str:
    """An http URL on localhost where nothing listens (the port was just bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Static files with HTTP Range support (what GDAL's /vsicurl/ needs); fails the first N requests."""

    root: Path
    fail_first: int
    requests: list[tuple[str, str | None]]

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    def _serve(self) -> None:
        cls = type(self)
        cls.requests.append((self.command, self.headers.get("Range")))
        if cls.fail_first > 0:
            cls.fail_first -= 1
            return self._reply(503, {}, b"")
        path = cls.root / self.path.lstrip("/")
        if not path.is_file():
            return self._reply(404, {}, b"")
        data = path.read_bytes()
        match = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        if not match:
            return self._reply(200, {"Accept-Ranges": "bytes"}, data)
        first = int(match.group(1))
        last = min(int(match.group(2)) if match.group(2) else len(data) - 1, len(data) - 1)
        headers = {"Accept-Ranges": "bytes", "Content-Range": f"bytes {first}-{last}/{len(data)}"}
        return self._reply(206, headers, data[first : last + 1])

    do_GET = _serve
    do_HEAD = _serve


@contextlib.contextmanager
def range_server(root: Path, *, fail_first: int = 0) -> Iterator[tuple[str, type[_RangeHandler]]]:
    """Serve ``root`` on a free localhost port; yields (base URL, handler class with ``requests`` log)."""
    handler = type("Handler", (_RangeHandler,), {"root": root, "fail_first": fail_first, "requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
