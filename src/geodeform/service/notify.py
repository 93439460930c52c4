"""Notifications of job changes: OGC ``subscriber`` webhooks and e-mail, through an outbox with retries.

An execute request may carry ``subscriber: {successUri, failedUri, inProgressUri}``. Each URI is either

- an ``http(s)`` URL on a host the operator allows (``--webhook-host``): the service POSTs JSON to it (the
  results document on success, an exception document on failure, the status document when a job starts);
- ``mailto:ADDRESS`` with the account's own address (``geodeform users add --email``), when the operator
  configured an SMTP server (``--smtp-host``): the service sends a short e-mail.

Notifications are rows of the job store written in the same transaction as the job change they report
(:meth:`~geodeform.service.store.JobStore.finish`), so a job's end is reported once per target even when a
worker is killed and the job runs again; :func:`deliver_due` sends them, retrying failures with doubling
waits. Every delivery carries ``Geodeform-Notification-Id`` (stable across retries) so that a receiver can
drop a repeat if a sender dies between sending and recording it.
"""

from __future__ import annotations

import datetime as dt
import email.message
import http.client
import ipaddress
import json
import logging
import smtplib
import socket
import ssl
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from geodeform.errors import InvalidInputError
from geodeform.service.documents import results_document, status_info
from geodeform.service.errors import EXCEPTIONS, Problem
from geodeform.service.models import JobInfo, NotificationInfo, UserInfo, utcnow
from geodeform.service.safety import is_public_address
from geodeform.service.settings import ServiceSettings
from geodeform.service.store import JobStore, Notice, Notices

__all__ = [
    "SUBSCRIBER_KEYS",
    "Notifier",
    "check_subscriber",
    "check_webhook_url",
    "deliver_due",
    "final_notices",
    "progress_notices",
]

log = logging.getLogger(__name__)

SUBSCRIBER_KEYS = {"successUri": "success", "failedUri": "failed", "inProgressUri": "in-progress"}
"""OGC subscriber fields and the job event each one is told of."""


def _allowed(host: str, port: int, hosts: tuple[str, ...]) -> str | None:
    """The allow-list entry matching ``host:port`` (an entry without a port matches any), or None."""
    for entry in hosts:
        entry = entry.strip().lower()
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if name == host and (not entry_port or entry_port == str(port)):
            return name
    return None


def check_webhook_url(url: str, hosts: tuple[str, ...]) -> tuple[str, int, list[str]]:
    """Check a webhook URL; its host, port and the addresses to connect to.

    Raises
    ------
    InvalidInputError
        Not http(s), credentials in it, a host (and port) not allowed by the operator, or a host name that
        resolves to a non-public address (an IP literal or ``localhost`` the operator listed is allowed).
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError as exc:
        raise InvalidInputError(f"not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInputError(f"URL scheme {parts.scheme or '(none)'!r} not allowed: http(s) or mailto")
    if parts.username or parts.password:
        raise InvalidInputError("credentials in URLs are not allowed")
    if not host or _allowed(host, port, hosts) is None:
        raise InvalidInputError(
            f"host {host or '(none)'!r} (port {port}) is not a webhook host of this server"
        )
    try:
        literal: Any = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        return host, port, [str(literal)]
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise InvalidInputError(f"host {host!r} does not resolve: {exc}") from None
    addresses = [str(info[4][0]) for info in infos]
    if host != "localhost" and not all(is_public_address(a) for a in addresses):
        raise InvalidInputError(f"host {host!r} resolves to a non-public address; not allowed")
    return host, port, addresses


def check_subscriber(
    subscriber: Any, settings: ServiceSettings, user: UserInfo
) -> tuple[dict[str, str], list[Problem]]:
    """The subscriber of an execute request, checked: ``{OGC key: URI}`` and the problems found."""
    if subscriber is None:
        return {}, []
    if not isinstance(subscriber, Mapping):
        return {}, [Problem("subscriber", "must be an object with successUri, failedUri, inProgressUri")]
    clean: dict[str, str] = {}
    problems: list[Problem] = []
    for key, uri in subscriber.items():
        where = f"subscriber.{key}"
        if key not in SUBSCRIBER_KEYS:
            problems.append(Problem(where, f"unknown field; use {', '.join(SUBSCRIBER_KEYS)}"))
        elif not isinstance(uri, str) or not 0 < len(uri) <= 1024:
            problems.append(Problem(where, "must be a URI of at most 1024 characters"))
        elif uri.lower().startswith("mailto:"):
            address = uri[7:].strip()
            if not settings.smtp_host:
                problems.append(Problem(where, "this server sends no e-mail (no SMTP server configured)"))
            elif not user.email or address.lower() != user.email.lower():
                problems.append(Problem(where, "mailto: only to your account's own e-mail address"))
            else:
                clean[key] = f"mailto:{user.email}"
        else:
            try:
                check_webhook_url(uri, settings.webhook_hosts)
                clean[key] = uri
            except InvalidInputError as exc:
                problems.append(Problem(where, str(exc)))
    return clean, problems


def _base(settings: ServiceSettings) -> str:
    return (settings.public_url or "").rstrip("/")


def _mail(job: JobInfo, settings: ServiceSettings, event: str) -> dict[str, Any]:
    url = f"{_base(settings)}/jobs/{job.id}"
    subject = f"geodeform job {job.id[:8]} ({job.process_id}): {job.status}"
    text = f"Job {job.id} ({job.process_id}) is {job.status}: {job.message}\nStatus: {url}\n"
    if event == "success":
        text += f"Results: {url}/results\n"
    return {"subject": subject, "text": text}


def _payload(job: JobInfo, settings: ServiceSettings, event: str) -> dict[str, Any]:
    base = _base(settings)
    if event == "success":
        return {"jobID": job.id, "status": job.status, **results_document(job, base)}
    if event == "failed":
        return {
            "type": f"{EXCEPTIONS}/job-failed",
            "title": "Job failed",
            "status": 500,
            "detail": job.message,
            "jobID": job.id,
        }
    return status_info(job, base)


def _notices(job: JobInfo, settings: ServiceSettings, event: str, attempt: int) -> list[Notice]:
    out: list[Notice] = []
    for key, uri in (job.subscriber or {}).items():
        if SUBSCRIBER_KEYS.get(key) == event:
            mail = uri.startswith("mailto:")
            payload = _mail(job, settings, event) if mail else _payload(job, settings, event)
            out.append((event, uri, attempt, payload))
    return out


def final_notices(settings: ServiceSettings) -> Notices:
    """The notifications of a job's end (success or failure), for :meth:`JobStore.finish` and ``reap``."""

    def notices(job: JobInfo) -> list[Notice]:
        event = {"successful": "success", "failed": "failed"}.get(job.status)
        return [] if event is None else _notices(job, settings, event, 0)

    return notices


def progress_notices(job: JobInfo, settings: ServiceSettings) -> list[Notice]:
    """The notifications of a job's start (one per attempt)."""
    return _notices(job, settings, "in-progress", job.attempts)


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def post_webhook(url: str, payload: Mapping[str, Any], settings: ServiceSettings, *, note_id: int) -> None:
    """POST ``payload`` as JSON to ``url``, connecting to the address checked (no redirect followed).

    Raises
    ------
    OSError
        Connection failures and non-2xx answers (``InvalidInputError`` when the URL is no longer allowed).
    """
    host, port, addresses = check_webhook_url(url, settings.webhook_hosts)
    parts = urlsplit(url)
    kind = _PinnedHTTPS if parts.scheme.lower() == "https" else _PinnedHTTP
    conn = kind(host, port, addresses[0], 10.0)
    body = json.dumps(payload).encode()
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "geodeform-service",
        "Geodeform-Notification-Id": str(note_id),
    }
    try:
        conn.request("POST", path, body=body, headers=headers)
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        raise OSError(f"{type(exc).__name__}: {exc}") from None
    finally:
        conn.close()
    if not 200 <= status < 300:
        raise OSError(f"the receiver answered HTTP {status}")


def send_mail(to: str, payload: Mapping[str, Any], settings: ServiceSettings, *, note_id: int) -> None:
    """Send the e-mail of ``payload`` (subject, text) through the configured SMTP server."""
    msg = email.message.EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = settings.smtp_from, to, str(payload.get("subject", ""))
    msg["Geodeform-Notification-Id"] = str(note_id)
    msg.set_content(str(payload.get("text", "")), cte="8bit")
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=20) as smtp:
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password)
        smtp.send_message(msg)


def _deliver(note: NotificationInfo, settings: ServiceSettings) -> None:
    if note.target.startswith("mailto:"):
        if not settings.smtp_host:
            raise InvalidInputError("no SMTP server configured")
        send_mail(note.target[7:], note.payload, settings, note_id=note.id)
    else:
        post_webhook(note.target, note.payload, settings, note_id=note.id)


def deliver_due(store: JobStore, settings: ServiceSettings, *, limit: int = 100) -> int:
    """Send the notifications that are due (at most ``limit``); how many were sent."""
    sent = 0
    for _ in range(limit):
        note = store.next_notification()
        if note is None:
            break
        try:
            _deliver(note, settings)
        except InvalidInputError as exc:  # no longer allowed: never will be
            store.notification_done(note.id, error=str(exc))
            log.warning("notification %d to %s given up: %s", note.id, note.target, exc)
        except (OSError, smtplib.SMTPException) as exc:
            retry = None
            if note.tries < settings.notify_attempts:
                wait = settings.notify_backoff_s * 2 ** (note.tries - 1)
                retry = utcnow() + dt.timedelta(seconds=wait)
            store.notification_done(note.id, error=str(exc) or type(exc).__name__, retry_at=retry)
            log.warning("notification %d to %s failed (try %d): %s", note.id, note.target, note.tries, exc)
        else:
            store.notification_done(note.id)
            sent += 1
    return sent


class Notifier:
    """A thread delivering due notifications every ``period`` seconds (started by ``geodeform serve``)."""

    def __init__(self, settings: ServiceSettings, period: float = 1.0) -> None:
        self.settings, self.period = settings, period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="notifier", daemon=True)

    def start(self) -> None:
        """Start delivering."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the delivery under way."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def _loop(self) -> None:
        store = JobStore(self.settings.db)
        try:
            while not self._stop.wait(self.period):
                try:
                    deliver_due(store, self.settings)
                except Exception:  # the database is away for a moment: try again later
                    log.exception("notification delivery failed; trying again")
        finally:
            store.close()
