"""``geodeform users``: accounts of the web service (``geodeform serve``)."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from geodeform.cli.app import app
from geodeform.errors import InvalidInputError

__all__ = ["add"]

users_app = typer.Typer(help="Accounts of the web service (API tokens).", no_args_is_help=True)
app.add_typer(users_app, name="users")

_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


@users_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Account name: letters, digits, '_', '.', '@', '-' (≤ 64).")],
    db: Annotated[
        str, typer.Option(help="Job store: SQLite file path or URL, or postgresql://USER@HOST:PORT/DB.")
    ] = "geodeform-service.db",
    admin: Annotated[bool, typer.Option("--admin", help="May see and dismiss every user's jobs.")] = False,
) -> None:
    """Create an account and print its API token alone on the last line (only its hash is stored).

    Example: TOKEN=$(geodeform users add alice --db service.db | tail -1)
    """
    from geodeform.service.store import JobStore, migrate  # service extra: imported when the command runs

    if not _NAME.match(name):
        raise InvalidInputError(
            f"user name {name!r} not allowed: use 1-64 letters, digits, '_', '.', '@', '-'"
        )
    migrate(db)
    store = JobStore(db)
    try:
        if store.user_exists(name):
            raise InvalidInputError(f"user {name!r} already exists; choose another name")
        token = store.add_user(name, role="admin" if admin else "user")
    finally:
        store.close()
    typer.echo(f"user {name} created ({'admin' if admin else 'user'}); API token (shown once):")
    typer.echo(token)
