"""Alembic environment of the job store, run on the connection that `store.migrate` gives."""

from __future__ import annotations

from alembic import context

from geodeform.service.store import Base, make_engine

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic -x url=...` from a shell
    url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///geodeform-service.db")
    with make_engine(url).begin() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
        context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    context.run_migrations()
