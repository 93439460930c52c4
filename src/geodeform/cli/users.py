"""``geodeform users``: accounts of the web service (``geodeform serve``)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Annotated, Any

import typer

from geodeform.cli.app import app
from geodeform.errors import InvalidInputError

__all__ = ["add", "disable", "enable", "list_users", "revoke", "rotate"]

users_app = typer.Typer(help="Accounts of the web service (API tokens).", no_args_is_help=True)
app.add_typer(users_app, name="users")

_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,189}$")
_DURATION = re.compile(r"^(\d{1,5})([dhw])$")
_UNITS = {"d": "days", "h": "hours", "w": "weeks"}

Db = Annotated[
    str, typer.Option(help="Job store: SQLite file path or URL, or postgresql://USER@HOST:PORT/DB.")
]
Name = Annotated[str, typer.Argument(help="Account name.")]
Expires = Annotated[
    str | None,
    typer.Option(
        help="Token expiry: a duration (90d, 12h, 2w) from now, or a date YYYY-MM-DD (UTC midnight); "
        "default: never."
    ),
]


def expiry(text: str | None, *, now: dt.datetime | None = None) -> dt.datetime | None:
    """``--expires`` as a naive UTC time: ``90d`` / ``12h`` / ``2w`` from ``now``, or a date; None: never."""
    if text is None:
        return None
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    m = _DURATION.match(text.strip())
    if m:
        n, unit = int(m.group(1)), m.group(2)
        return now + dt.timedelta(**{_UNITS[unit]: n})
    try:
        return dt.datetime.combine(dt.date.fromisoformat(text.strip()), dt.time())
    except ValueError:
        raise InvalidInputError(
            f"--expires {text!r}: give a duration like 90d, 12h, 2w or a date YYYY-MM-DD"
        ) from None


def _open(db: str) -> Any:
    from geodeform.service.store import JobStore, migrate  # service extra: imported when the command runs

    migrate(db)
    return JobStore(db)


def _need(found: bool, name: str) -> None:
    if not found:
        raise InvalidInputError(f"no user {name!r}; `geodeform users list` shows the accounts")


@users_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Account name: letters, digits, '_', '.', '@', '-' (≤ 64).")],
    db: Db = "geodeform-service.db",
    admin: Annotated[bool, typer.Option("--admin", help="May see and dismiss every user's jobs.")] = False,
    email: Annotated[
        str | None, typer.Option(help="E-mail address for job notifications (subscriber mailto:).")
    ] = None,
    expires: Expires = None,
) -> None:
    """Create an account and print its API token alone on the last line (only its hash is stored).

    Example: TOKEN=$(geodeform users add alice --db service.db --expires 90d | tail -1)
    """
    if not _NAME.match(name):
        raise InvalidInputError(
            f"user name {name!r} not allowed: use 1-64 letters, digits, '_', '.', '@', '-'"
        )
    if email is not None and not _EMAIL.match(email):
        raise InvalidInputError(f"--email {email!r} is not an e-mail address")
    until = expiry(expires)
    store = _open(db)
    try:
        if store.user_exists(name):
            raise InvalidInputError(f"user {name!r} already exists; choose another name")
        token = store.add_user(name, role="admin" if admin else "user", email=email, expires=until)
    finally:
        store.close()
    valid = f", valid until {until:%Y-%m-%d %H:%M} UTC" if until else ""
    typer.echo(f"user {name} created ({'admin' if admin else 'user'}{valid}); API token (shown once):")
    typer.echo(token)


@users_app.command("list")
def list_users(db: Db = "geodeform-service.db") -> None:
    """List the accounts: name, role, state (active, disabled, revoked, expired), token expiry, e-mail."""
    store = _open(db)
    try:
        users = store.list_users()
    finally:
        store.close()
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    typer.echo(f"{'name':<24} {'role':<6} {'state':<9} {'token expires':<17} e-mail")
    for u in users:
        expired = u.token_expires is not None and u.token_expires <= now
        state = "disabled" if u.disabled else "revoked" if u.revoked else "expired" if expired else "active"
        until = f"{u.token_expires:%Y-%m-%d %H:%M}" if u.token_expires else "never"
        typer.echo(f"{u.name:<24} {u.role:<6} {state:<9} {until:<17} {u.email or ''}")


@users_app.command("rotate")
def rotate(name: Name, db: Db = "geodeform-service.db", expires: Expires = None) -> None:
    """Give NAME a new token (printed alone on the last line); the old one stops working at once."""
    until = expiry(expires)
    store = _open(db)
    try:
        token = store.rotate_token(name, expires=until)
    finally:
        store.close()
    _need(token is not None, name)
    typer.echo(f"new API token of {name} (shown once; the old one no longer works):")
    typer.echo(token)


def _change_account(db: str, name: str, change: Callable[[Any], bool], done: str) -> None:
    """Apply ``change`` to the store at ``db`` (False: no account ``name``, exit 2), then print ``done``."""
    store = _open(db)
    try:
        found = change(store)
    finally:
        store.close()
    _need(found, name)
    typer.echo(done)


@users_app.command("revoke")
def revoke(name: Name, db: Db = "geodeform-service.db") -> None:
    """Make NAME's token unusable at once (the account and its jobs stay; `rotate` gives a new token)."""
    _change_account(db, name, lambda store: store.revoke_token(name), f"token of {name} revoked")


@users_app.command("disable")
def disable(name: Name, db: Db = "geodeform-service.db") -> None:
    """Refuse every request of NAME (their jobs and files stay; `enable` undoes it)."""
    _change_account(db, name, lambda store: store.set_disabled(name, True), f"account {name} disabled")


@users_app.command("enable")
def enable(name: Name, db: Db = "geodeform-service.db") -> None:
    """Serve NAME's requests again (after `disable`)."""
    _change_account(db, name, lambda store: store.set_disabled(name, False), f"account {name} enabled")
