"""Per-customer daily roll-ups, for the QA trend views under a tier filter (issue 15, scale).

Revision ID: 0008
Revises: 0007
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        'customer_rollups',
        sa.Column('customer_id', sa.String(length=200), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('source', sa.String(length=80), nullable=False),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('category', sa.String(length=200), nullable=False),
        sa.Column('topic', sa.String(length=16), nullable=False),
        sa.Column('customer_turns', sa.Integer(), nullable=False),
        sa.Column('complaints', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('customer_id', 'day', 'source', 'channel', 'category', 'topic'),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('customer_rollups')
