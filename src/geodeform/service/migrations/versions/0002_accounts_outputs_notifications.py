"""Accounts (token expiry, disabled, e-mail), the outputs and subscriber of a job, the notification outbox.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("token_expires", sa.DateTime, nullable=True))
        batch.add_column(sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("email", sa.String(254), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("outputs", sa.Text, nullable=True))
        batch.add_column(sa.Column("subscriber", sa.Text, nullable=True))
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("target", sa.String(1024), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tries", sa.Integer, nullable=False),
        sa.Column("next_try", sa.DateTime, nullable=False),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("sent", sa.DateTime, nullable=True),
        sa.UniqueConstraint("job_id", "event", "target", "attempt", name="uq_notifications_once"),
    )
    op.create_index("ix_notifications_due", "notifications", ["status", "next_try"])


def downgrade() -> None:
    op.drop_table("notifications")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("subscriber")
        batch.drop_column("outputs")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("email")
        batch.drop_column("disabled")
        batch.drop_column("token_expires")
