"""scope api keys to connections and admin rights

Revision ID: 4b8e2f1c7a90
Revises: 9d57941426be
Create Date: 2026-12-03 19:35:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Column types as they were at this revision; later model changes do not alter it.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = "4b8e2f1c7a90"
down_revision: str | None = "9d57941426be"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch_op:
        # Keys created before scopes existed keep their powers: admin, all
        # connections.
        batch_op.add_column(
            sa.Column(
                "is_admin", sa.Boolean(), nullable=False, server_default=sa.true()
            )
        )
        batch_op.add_column(sa.Column("connection_ids", JSON, nullable=True))
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.alter_column("is_admin", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.drop_column("connection_ids")
        batch_op.drop_column("is_admin")
