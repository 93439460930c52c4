"""What a user's input may name: files inside the configured data roots, URLs on configured catalogue hosts.

Every path a user names reaches the file system through ``geodeform.service.paths.resolve_input``
(the user's own uploads and job outputs, then the shared data roots), built on :func:`check_relative` and
:func:`find_in_root` here; every URL goes through :func:`check_url`. The rules: no ``..``, no absolute
paths, no symlink leading out of a root, no ``file://`` (or any scheme but https), no loopback, private,
link-local or otherwise non-public address (SSRF), no credentials in URLs. :func:`resolve_data_path` and
:func:`resolve_data_folder` apply the path rules to the shared roots alone (for scripts and tools that
serve no particular user).
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
import urllib.request
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from geodeform.errors import DataError, InvalidInputError

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "CheckedUrl",
    "check_relative",
    "check_url",
    "check_url_address",
    "fetch_url",
    "find_in_root",
    "is_public_address",
    "is_url",
    "resolve_data_folder",
    "resolve_data_path",
]


def is_url(value: str) -> bool:
    """Whether ``value`` starts with a URL scheme (``https:``, ``file:``): then it is a URL, not a path."""
    return re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", value) is not None


MAX_NAME_BYTES = 255
"""Longest file or folder name (one path component), bytes of UTF-8: the usual file-system limit."""
MAX_PATH_BYTES = 1024
"""Longest relative path accepted, bytes of UTF-8."""


def check_relative(value: str) -> PurePosixPath:
    """``value`` as a relative POSIX path that stays where it starts: the checks every path input passes.

    Raises
    ------
    InvalidInputError
        Empty, control characters or ``\\``, absolute (or ``~``), ``..``, a name longer than
        :data:`MAX_NAME_BYTES` or a path longer than :data:`MAX_PATH_BYTES`.
    """
    if not value or "\\" in value or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidInputError(
            "must be a relative path inside a data root, with '/' separators and no control characters"
        )
    if len(value.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise InvalidInputError(f"path longer than {MAX_PATH_BYTES} bytes")
    rel = PurePosixPath(value)
    if rel.is_absolute() or value.startswith("~"):
        raise InvalidInputError("absolute paths are not allowed: give a path relative to a data root")
    if ".." in rel.parts:
        raise InvalidInputError("'..' is not allowed in paths")
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in rel.parts):
        raise InvalidInputError(f"a file or folder name is longer than {MAX_NAME_BYTES} bytes")
    return rel


def find_in_root(root: Path, rel: PurePosixPath, *, folder: bool) -> Path | None:
    """``root / rel`` resolved if it is a file (a folder with ``folder``) inside ``root``; None if none.

    Raises
    ------
    InvalidInputError
        If a symlink leads out of ``root``, or the file system refuses the name (too long, a symlink loop).
    """
    root = root.resolve()
    try:
        real = (root / rel).resolve()
        if not real.is_relative_to(root):
            raise InvalidInputError("path leads out of the data root (symlink); not allowed")
        found = real.is_dir() if folder else real.is_file()
    except OSError as exc:  # too long for this file system, a loop of symlinks, no permission...
        raise InvalidInputError(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    except RuntimeError:  # Python < 3.13 reports a loop of symlinks this way
        raise InvalidInputError("cannot be read (a loop of symlinks)") from None
    return real if found else None


def resolve_data_path(value: str, roots: Sequence[Path]) -> Path:
    """The existing file that ``value`` (relative to one of ``roots``) names, symlinks resolved.

    Raises
    ------
    InvalidInputError
        If ``value`` is absolute, climbs with ``..``, leads out of its root through a symlink, has overlong
        names, or names no file in any root.
    """
    rel = check_relative(value)
    for root in roots:
        real = find_in_root(root, rel, folder=False)
        if real is not None:
            return real
    raise InvalidInputError(f"no file {value!r} in the data roots")


def resolve_data_folder(value: str, roots: Sequence[Path]) -> Path:
    """The existing folder that ``value`` (relative to one of ``roots``) names, symlinks resolved.

    Raises
    ------
    InvalidInputError
        If ``value`` holds control characters, is absolute, climbs with ``..``, leads out of its root
        through a symlink, has overlong names, or names no folder in any root.
    """
    if any(ord(ch) < 32 for ch in value):
        raise InvalidInputError("a folder name may not contain control characters (NUL, newline, ...)")
    rel = check_relative(value.rstrip("/") or ".")
    for root in roots:
        real = find_in_root(root, rel, folder=True)
        if real is not None:
            return real
    raise InvalidInputError(f"no folder {value!r} in the data roots")


def is_public_address(address: str) -> bool:
    """Whether an IP address (text; IPv6 zone allowed) is globally routable: not loopback, private,
    link-local, multicast or reserved (IPv4-mapped IPv6 addresses are judged as their IPv4 address)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved)


_public = is_public_address


class CheckedUrl(NamedTuple):
    """A URL the service may fetch and the address it was checked against (connect there, not by name)."""

    url: str  #: the URL, unchanged
    host: str  #: its host name, lower case (for the TLS certificate and the ``Host`` header)
    port: int  #: its port (443 when not given)
    address: str  #: the public IP address the host resolved to when checked


def check_url(url: str, hosts: Sequence[str]) -> str:
    """Check that the service may fetch ``url``; returns it unchanged.

    Raises
    ------
    InvalidInputError
        If the scheme is not https, the URL carries credentials, the host is not one of ``hosts``, or the
        host is (or resolves to) a loopback, private, link-local or reserved address.
    """
    return check_url_address(url, hosts).url


def check_url_address(url: str, hosts: Sequence[str]) -> CheckedUrl:
    """:func:`check_url`, also returning the checked address, so that the connection goes where the check
    looked (a host name resolved a second time could answer differently: DNS rebinding).

    Raises
    ------
    InvalidInputError
        As :func:`check_url`.
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or 443
    except ValueError as exc:
        raise InvalidInputError(f"not a valid URL: {exc}") from None
    if parts.scheme.lower() != "https":
        raise InvalidInputError(f"URL scheme {parts.scheme or '(none)'!r} not allowed; only https")
    if parts.username or parts.password:
        raise InvalidInputError("credentials in URLs are not allowed")
    if not host:
        raise InvalidInputError("URL has no host")
    try:
        literal = ipaddress.ip_address(host)  # (``hostname`` has no brackets)
    except ValueError:
        literal = None
    if host == "localhost" or host.endswith(".localhost") or (literal is not None and not _public(host)):
        raise InvalidInputError("URLs to loopback, private or link-local addresses are not allowed")
    if host not in {h.lower() for h in hosts}:
        raise InvalidInputError(f"host {host!r} is not a configured catalogue host")
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise InvalidInputError(f"host {host!r} does not resolve: {exc}") from None
    if not infos or not all(_public(str(info[4][0])) for info in infos):
        raise InvalidInputError(f"host {host!r} resolves to a non-public address; not allowed")
    return CheckedUrl(url, host, port, str(infos[0][4][0]))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        # A redirect could lead anywhere (loopback included): refuse them all.
        return None


class _PinnedConnection(http.client.HTTPSConnection):
    """HTTPS to a host name, connected to one given address (TLS still verifies the name)."""

    def __init__(self, host: str, *, address: str, context: ssl.SSLContext, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)  # (the parent's TLS context is not used: connect() wraps with ours)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout, self.source_address)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


class _PinnedHTTPS(urllib.request.HTTPSHandler):
    def __init__(self, address: str) -> None:
        super().__init__()
        self._tls = ssl.create_default_context()
        self._address = address

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        def connection(host: str, **kwargs: Any) -> _PinnedConnection:  # kwargs: the request's timeout
            return _PinnedConnection(host, address=self._address, context=self._tls, **kwargs)

        return self.do_open(connection, req)  # type: ignore[arg-type]


def fetch_url(url: str, dest: Path, *, hosts: Sequence[str], max_bytes: int, timeout: float = 60.0) -> Path:
    """Download ``url`` (checked with :func:`check_url`, no redirects) to ``dest``, at most ``max_bytes``.

    The connection goes to the address the check resolved (DNS rebinding cannot move it to an internal
    address between the check and the download); the TLS certificate is verified against the host name.

    Raises
    ------
    InvalidInputError
        If the URL fails :func:`check_url`.
    DataError
        If the download fails, is redirected or is larger than ``max_bytes`` (no file is left behind).
    """
    checked = check_url_address(url, hosts)
    opener = urllib.request.build_opener(_NoRedirect, _PinnedHTTPS(checked.address))
    try:
        with opener.open(url, timeout=timeout) as resp, open(dest, "wb") as out:
            total = 0
            while chunk := resp.read(1 << 20):
                total += len(chunk)
                if total > max_bytes:
                    raise DataError(f"{url} is larger than the {max_bytes} byte limit")
                out.write(chunk)
    except OSError as exc:
        dest.unlink(missing_ok=True)
        if isinstance(exc, DataError):
            raise
        raise DataError(f"could not fetch {url}: {exc}") from exc
    return dest
